package process

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
	"github.com/berth-project/berth/internal/testutil"
)

var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func mustRun(t *testing.T, mode string, p *specs.Process, env ...string) *result {
	t.Helper()
	r, err := runChild(t, mode, p, env...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustFail(t *testing.T, p *specs.Process, want ...string) {
	t.Helper()
	_, err := runChild(t, "self", p)
	if err == nil {
		t.Fatalf("Apply succeeded, want an error with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// TestApplyRootDefaultCaps: a root process with Docker's default set keeps
// exactly that set, on the thread and after execve.
func TestApplyRootDefaultCaps(t *testing.T) {
	testutil.RequiresRoot(t)
	p := &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: dockerCaps, Effective: dockerCaps, Permitted: dockerCaps}}
	want := mask(dockerCaps...)
	for _, mode := range []string{"self", "exec"} {
		t.Run(mode, func(t *testing.T) {
			r := mustRun(t, mode, p)
			r.expect(t, "CapBnd", want)
			r.expect(t, "CapPrm", want)
			r.expect(t, "CapEff", want)
			r.expect(t, "CapInh", mask())
			r.expect(t, "CapAmb", mask())
			r.expect(t, "Uid", "0\t0\t0\t0")
			r.expect(t, "NoNewPrivs", "0")
			r.expect(t, "Umask", "0022")
		})
	}
}

// TestApplyEachSet gives every set a different content and checks each on
// the thread right after Apply; after execve a non-root process without
// file capabilities keeps only its ambient set (plus inheritable, bounding).
func TestApplyEachSet(t *testing.T) {
	testutil.RequiresRoot(t)
	caps := &specs.LinuxCapabilities{
		Bounding:    []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"},
		Permitted:   []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"},
		Effective:   []string{"CAP_CHOWN", "CAP_KILL"},
		Inheritable: []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"},
		Ambient:     []string{"CAP_NET_BIND_SERVICE"},
	}
	p := &specs.Process{User: specs.User{UID: 1000, GID: 1000}, Capabilities: caps}

	r := mustRun(t, "self", p)
	r.expect(t, "CapBnd", mask(caps.Bounding...))
	r.expect(t, "CapPrm", mask(caps.Permitted...))
	r.expect(t, "CapEff", mask(caps.Effective...))
	r.expect(t, "CapInh", mask(caps.Inheritable...))
	r.expect(t, "CapAmb", mask(caps.Ambient...))
	r.expect(t, "Uid", "1000\t1000\t1000\t1000")
	// setresuid reached every thread of the process, not only the locked one.
	r.expect(t, "berth-thread-uids", "1000 1000 1000 1000")

	r = mustRun(t, "exec", p)
	r.expect(t, "CapBnd", mask(caps.Bounding...))
	r.expect(t, "CapPrm", mask(caps.Ambient...))
	r.expect(t, "CapEff", mask(caps.Ambient...))
	r.expect(t, "CapInh", mask(caps.Inheritable...))
	r.expect(t, "CapAmb", mask(caps.Ambient...))
	r.expect(t, "Uid", "1000\t1000\t1000\t1000")
}

// TestApplyRootExecSets: for uid 0 the kernel gives the exec'd process its
// bounding and inheritable sets as permitted and effective.
func TestApplyRootExecSets(t *testing.T) {
	testutil.RequiresRoot(t)
	caps := &specs.LinuxCapabilities{
		Bounding:    []string{"CAP_CHOWN", "CAP_KILL"},
		Permitted:   []string{"CAP_KILL"},
		Effective:   []string{"CAP_KILL"},
		Inheritable: []string{"CAP_KILL"},
	}
	r := mustRun(t, "exec", &specs.Process{Capabilities: caps})
	r.expect(t, "CapBnd", mask("CAP_CHOWN", "CAP_KILL"))
	r.expect(t, "CapPrm", mask("CAP_CHOWN", "CAP_KILL"))
	r.expect(t, "CapEff", mask("CAP_CHOWN", "CAP_KILL"))
	r.expect(t, "CapInh", mask("CAP_KILL"))
	r.expect(t, "CapAmb", mask())
}

func TestApplyCapabilityErrors(t *testing.T) {
	testutil.RequiresRoot(t)
	mustFail(t, &specs.Process{Capabilities: &specs.LinuxCapabilities{Permitted: []string{"CAP_TEST"}}}, "unknown capability", `"CAP_TEST"`)
	// Apply does not pre-check what Validate does; the kernel refuses and the
	// error says why.
	mustFail(t, &specs.Process{User: specs.User{UID: 1000, GID: 1000}, Capabilities: &specs.LinuxCapabilities{Permitted: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL"}}},
		"raise ambient capability CAP_KILL", "inheritable")
	if hostLacks(t, capability.CAP_SYS_RESOURCE) {
		// Apply itself reaches the kernel, which refuses; Validate says why first.
		mustFail(t, &specs.Process{Capabilities: allSets("CAP_KILL", "CAP_SYS_RESOURCE")}, "capset", "CAP_SYS_RESOURCE")
	}
}

// TestApplyUser: uid, gid, supplementary groups and umask; without
// capabilities a non-root user has none left.
func TestApplyUser(t *testing.T) {
	testutil.RequiresRoot(t)
	p := &specs.Process{User: specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 3000}, Umask: u32p(0o077)}}
	for _, mode := range []string{"self", "exec"} {
		t.Run(mode, func(t *testing.T) {
			r := mustRun(t, mode, p)
			r.expect(t, "Uid", "1000\t1000\t1000\t1000")
			r.expect(t, "Gid", "1001\t1001\t1001\t1001")
			r.expect(t, "Groups", "2000 3000")
			r.expect(t, "Umask", "0077")
			r.expect(t, "CapEff", mask())
			r.expect(t, "CapPrm", mask())
		})
	}
	// No additional gids: the root's supplementary groups are cleared too.
	r := mustRun(t, "exec", &specs.Process{User: specs.User{UID: 65534, GID: 65534}})
	r.expect(t, "Groups", "")
	r.expect(t, "Gid", "65534\t65534\t65534\t65534")
	r.expect(t, "Umask", "0022")
}

func TestApplyRlimits(t *testing.T) {
	testutil.RequiresRoot(t)
	var nofile unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &nofile); err != nil {
		t.Fatal(err)
	}
	if nofile.Max < 2048 {
		t.Skipf("host RLIMIT_NOFILE hard limit %d is below 2048", nofile.Max)
	}
	p := &specs.Process{Rlimits: []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1000, Hard: 2000},
		{Type: "RLIMIT_CORE", Soft: 0, Hard: 4096},
		{Type: "RLIMIT_CPU", Soft: 100, Hard: 200},
	}}
	for _, mode := range []string{"self", "exec"} {
		t.Run(mode, func(t *testing.T) {
			r := mustRun(t, mode, p)
			for name, want := range map[string][2]string{
				"Max open files":     {"1000", "2000"},
				"Max core file size": {"0", "4096"},
				"Max cpu time":       {"100", "200"},
			} {
				if got := r.limits[name]; got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		})
	}
	t.Run("above host hard", func(t *testing.T) {
		sysResource, err := hasEffective(capability.CAP_SYS_RESOURCE)
		if err != nil {
			t.Fatal(err)
		}
		if sysResource {
			t.Skip("the runtime has CAP_SYS_RESOURCE")
		}
		hard := strconv.FormatUint(nofile.Max+1, 10)
		mustFail(t, &specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: nofile.Max + 1}}},
			"setrlimit RLIMIT_NOFILE", "hard "+hard, "operation not permitted", "CAP_SYS_RESOURCE")
	})
	t.Run("soft above hard", func(t *testing.T) {
		mustFail(t, &specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 20, Hard: 10}}},
			"RLIMIT_CORE soft 20 hard 10", "invalid argument")
	})
}

func TestApplyNoNewPrivs(t *testing.T) {
	testutil.RequiresRoot(t)
	for _, nnp := range []bool{true, false} {
		t.Run(fmt.Sprint(nnp), func(t *testing.T) {
			r := mustRun(t, "exec", &specs.Process{NoNewPrivileges: nnp, User: specs.User{UID: 1000, GID: 1000}})
			r.expect(t, "NoNewPrivs", map[bool]string{true: "1", false: "0"}[nnp])
		})
	}
}

func TestApplyOOMScoreAdj(t *testing.T) {
	testutil.RequiresRoot(t)
	for _, v := range []int{500, 1000} {
		r := mustRun(t, "exec", &specs.Process{OOMScoreAdj: intp(v)})
		if r.oom != strconv.Itoa(v) {
			t.Errorf("oom_score_adj = %q, want %d", r.oom, v)
		}
	}
	sysResource, err := hasEffective(capability.CAP_SYS_RESOURCE)
	if err != nil {
		t.Fatal(err)
	}
	if !sysResource {
		mustFail(t, &specs.Process{OOMScoreAdj: intp(-1000)}, "oom_score_adj to -1000", "CAP_SYS_RESOURCE")
	}
}

func TestApplyLSMRefused(t *testing.T) {
	testutil.RequiresRoot(t)
	if AppArmorEnabled() {
		t.Skip("AppArmor is enabled on this host")
	}
	mustFail(t, &specs.Process{ApparmorProfile: "berth-default"}, "AppArmor exec profile", "berth-default", "AppArmor is not enabled")
	if selinuxOn(t) {
		t.Skip("SELinux is enabled on this host")
	}
	mustFail(t, &specs.Process{SelinuxLabel: "system_u:system_r:container_t:s0"}, "SELinux exec label", "container_t")
}

func TestApplyIOPriorityAndScheduler(t *testing.T) {
	testutil.RequiresRoot(t)
	r := mustRun(t, "self", &specs.Process{
		IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 6},
		Scheduler:  &specs.Scheduler{Policy: specs.SchedBatch, Nice: 7},
	})
	r.expect(t, "berth-ioprio", strconv.Itoa(2<<ioprioClassShift|6))
	r.expect(t, "berth-sched", fmt.Sprintf("%d 7 0", unix.SCHED_BATCH))

	r = mustRun(t, "self", &specs.Process{
		IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE},
		Scheduler:  &specs.Scheduler{Policy: specs.SchedIdle},
	})
	r.expect(t, "berth-ioprio", strconv.Itoa(3<<ioprioClassShift))
	r.expect(t, "berth-sched", fmt.Sprintf("%d 0 0", unix.SCHED_IDLE))

	// A real-time policy may be refused where the cgroup has no real-time
	// budget; anywhere else it must apply.
	r, err := runChild(t, "self", &specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 10}})
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skipf("SCHED_FIFO refused here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, "berth-sched", fmt.Sprintf("%d 0 10", unix.SCHED_FIFO))
}

func TestSetCPUAffinity(t *testing.T) {
	testutil.RequiresRoot(t)
	r := mustRun(t, "exec", &specs.Process{}, envAffinity+"=0")
	r.expect(t, "Cpus_allowed_list", "0")
}

// userns starts a child in a new user namespace mapping 0 and 1000 to the
// same host ids, with setgroups allowed or denied.
func userns(allowSetgroups bool) *syscall.SysProcAttr {
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1000, HostID: 1000, Size: 1}}
	return &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                ids,
		GidMappings:                ids,
		GidMappingsEnableSetgroups: allowSetgroups,
	}
}

// TestApplyInUserNamespace: a process in its own user namespace has a full
// bounding set there, so capabilities the host runtime lacks can be given
// (ValidateInUserNamespace accepts them); with setgroups denied, additional
// gids are refused with a clear error and everything else still applies.
func TestApplyInUserNamespace(t *testing.T) {
	testutil.RequiresRoot(t)
	all := KnownCapabilities()
	p := &specs.Process{User: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}}, Capabilities: allSets(all...)}
	if err := ValidateInUserNamespace(p); err != nil {
		t.Fatal(err)
	}
	r, err := runChildAttr(t, "self", p, userns(true))
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, "CapBnd", mask(all...))
	r.expect(t, "CapAmb", mask(all...))
	r.expect(t, "Uid", "1000\t1000\t1000\t1000")
	r.expect(t, "Groups", "1000")

	_, err = runChildAttr(t, "self", p, userns(false))
	if err == nil || !strings.Contains(err.Error(), "setgroups is denied") {
		t.Errorf("additional gids with setgroups denied: %v", err)
	}
	p.User.AdditionalGids = nil
	r, err = runChildAttr(t, "exec", p, userns(false))
	if err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Gid", "1000\t1000\t1000\t1000")
	r.expect(t, "CapAmb", mask(all...))
}

// TestSetCPUAffinityOfPid: the exec path's parent pins its child by pid.
func TestSetCPUAffinityOfPid(t *testing.T) {
	testutil.RequiresRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	cmd := exec.Command(testutil.BusyboxPath, "sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := SetCPUAffinity(cmd.Process.Pid, "1"); err != nil {
		t.Fatal(err)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(cmd.Process.Pid, &set); err != nil {
		t.Fatal(err)
	}
	if set.Count() != 1 || !set.IsSet(1) {
		t.Errorf("child affinity has %d CPUs, CPU 1 set %v; want only CPU 1", set.Count(), set.IsSet(1))
	}
	if err := SetCPUAffinity(cmd.Process.Pid, "x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad list: %v", err)
	}
}
