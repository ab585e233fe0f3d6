package process

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
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

// The privileged tests run Apply in a child: the test binary re-executed with
// these variables set. TestMain hands such a child to childMain.
const (
	envChild    = "BERTH_PROCESS_TEST_CHILD"    // "exec" or "self"
	envSpec     = "BERTH_PROCESS_TEST_SPEC"     // the specs.Process as JSON
	envAffinity = "BERTH_PROCESS_TEST_AFFINITY" // a CPU list for SetCPUAffinity after Apply
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		childMain(mode)
		return
	}
	os.Exit(m.Run())
}

// childMain applies the process from the environment on a locked thread,
// then either execs busybox to print what the exec'd process got ("exec") or
// prints the calling thread's state from Go ("self").
func childMain(mode string) {
	runtime.LockOSThread()
	var p specs.Process
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &p); err != nil {
		fmt.Fprintln(os.Stderr, "decode process:", err)
		os.Exit(2)
	}
	if err := Apply(&p); err != nil {
		fmt.Fprintln(os.Stderr, "apply:", err)
		os.Exit(3)
	}
	if cpus := os.Getenv(envAffinity); cpus != "" {
		if err := SetCPUAffinity(0, cpus); err != nil {
			fmt.Fprintln(os.Stderr, "affinity:", err)
			os.Exit(3)
		}
	}
	switch mode {
	case "exec":
		err := syscall.Exec(testutil.BusyboxPath, []string{"cat", "/proc/self/status", "/proc/self/limits", "/proc/self/oom_score_adj"}, []string{"PATH=/bin"})
		fmt.Fprintln(os.Stderr, "exec busybox:", err)
		os.Exit(4)
	case "self":
		for _, f := range []string{"/proc/thread-self/status", "/proc/self/limits", "/proc/self/oom_score_adj"} {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(5)
			}
			os.Stdout.Write(b)
		}
		prio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, 0, 0)
		if errno != 0 {
			fmt.Fprintln(os.Stderr, "ioprio_get:", errno)
			os.Exit(5)
		}
		fmt.Printf("berth-ioprio:\t%d\n", prio)
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sched_getattr:", err)
			os.Exit(5)
		}
		fmt.Printf("berth-sched:\t%d %d %d\n", attr.Policy, attr.Nice, attr.Priority)
		fmt.Printf("berth-thread-uids:\t%s\n", threadUids())
		os.Exit(0)
	}
	os.Exit(6)
}

// threadUids lists the distinct Uid lines of every thread of the process.
func threadUids() string {
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	seen := map[string]bool{}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Uid:\t"); ok {
				seen[strings.ReplaceAll(v, "\t", " ")] = true
			}
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return strings.Join(out, "|")
}

// result is what a child printed: /proc status lines, limits and oom score.
type result struct {
	status map[string]string
	limits map[string][2]string // "Max open files" -> soft, hard
	oom    string
}

// runChild runs Apply(p) in a child in mode and parses what it printed.
// On an Apply failure it returns the child's stderr as the error.
func runChild(t *testing.T, mode string, p *specs.Process, extraEnv ...string) (*result, error) {
	t.Helper()
	return runChildAttr(t, mode, p, &syscall.SysProcAttr{}, extraEnv...)
}

// runChildAttr is runChild with the child started with attr (namespaces).
func runChildAttr(t *testing.T, mode string, p *specs.Process, attr *syscall.SysProcAttr, extraEnv ...string) (*result, error) {
	t.Helper()
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envSpec+"="+string(js))
	cmd.Env = append(cmd.Env, extraEnv...)
	attr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr = attr
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("child: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseOutput(t, stdout.String()), nil
}

func parseOutput(t *testing.T, out string) *result {
	r := &result{status: map[string]string{}, limits: map[string][2]string{}}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "Max "):
			// /proc/PID/limits: "%-25s %-20s %-20s %-10s"
			if len(l) < 67 {
				t.Fatalf("short limits line %q", l)
			}
			r.limits[strings.TrimSpace(l[:25])] = [2]string{strings.TrimSpace(l[26:46]), strings.TrimSpace(l[47:67])}
		case strings.Contains(l, ":\t"):
			k, v, _ := strings.Cut(l, ":\t")
			r.status[k] = strings.TrimSpace(v)
		case strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "Limit "):
			r.oom = strings.TrimSpace(l)
		}
	}
	if len(r.status) == 0 {
		t.Fatalf("child printed no status:\n%s", out)
	}
	return r
}

// mask is the /proc status spelling of a capability set.
func mask(names ...string) string {
	known := knownCaps()
	var m uint64
	for _, n := range names {
		c, ok := known[n]
		if !ok {
			panic("unknown capability " + n)
		}
		m |= 1 << uint(c)
	}
	return fmt.Sprintf("%016x", m)
}

func (r *result) expect(t *testing.T, key, want string) {
	t.Helper()
	if got := r.status[key]; got != want {
		t.Errorf("%s = %q, want %q", key, got, want)
	}
}

func hostLacks(t *testing.T, c capability.Cap) bool {
	t.Helper()
	own, err := ownCaps()
	if err != nil {
		t.Fatal(err)
	}
	return own.bounding&(1<<uint(c)) == 0
}

func TestKnownCapabilities(t *testing.T) {
	names := KnownCapabilities()
	last, err := capability.LastCap()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != int(last)+1 {
		t.Errorf("%d names, want %d (0..%s)", len(names), last+1, capName(last))
	}
	known := knownCaps()
	for i, n := range names {
		c, ok := known[n]
		if !ok || int(c) != i {
			t.Errorf("names[%d] = %q, number %d (known %v)", i, n, c, ok)
		}
	}
	for _, want := range []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_BIND_SERVICE"} {
		if _, ok := known[want]; !ok {
			t.Errorf("%s not known", want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	set, err := ParseCPUList("0-2,5")
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[int]bool{0: true, 1: true, 2: true, 3: false, 4: false, 5: true} {
		if set.IsSet(c) != want {
			t.Errorf("CPU %d set = %v, want %v", c, !want, want)
		}
	}
	if set.Count() != 4 {
		t.Errorf("count %d, want 4", set.Count())
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "0,,1", "99999"} {
		if _, err := ParseCPUList(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseCPUList(%q) = %v, want an invalid-argument error", bad, err)
		}
	}
}

func intp(v int) *int       { return &v }
func u32p(v uint32) *uint32 { return &v }
func allSets(names ...string) *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{Bounding: names, Effective: names, Permitted: names, Inheritable: names, Ambient: names}
}

func TestValidate(t *testing.T) {
	var nofile unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &nofile); err != nil {
		t.Fatal(err)
	}
	nrOpen, err := readNrOpen()
	if err != nil {
		t.Fatal(err)
	}
	sysResource, err := hasEffective(capability.CAP_SYS_RESOURCE)
	if err != nil {
		t.Fatal(err)
	}
	def := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

	type tc struct {
		name  string
		p     specs.Process
		want  []string // substrings of the error; nil means success
		skip  string
		class error
	}
	cases := []tc{
		{name: "docker-like", p: specs.Process{
			User:         specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10}, Umask: u32p(0o027)},
			Capabilities: &specs.LinuxCapabilities{Bounding: def, Effective: def, Permitted: def},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}},
			OOMScoreAdj:  intp(1000), NoNewPrivileges: true,
			IOPriority:      &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 4},
			Scheduler:       &specs.Scheduler{Policy: specs.SchedBatch, Nice: 5},
			ExecCPUAffinity: &specs.CPUAffinity{Initial: "0", Final: "0-1"},
		}},
		{name: "all sets default", p: specs.Process{Capabilities: allSets(def...)}},
		{name: "unknown cap bounding", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_TEST"}}}, want: []string{"bounding", `"CAP_TEST"`}, class: errdefs.ErrInvalidArgument},
		{name: "unknown cap effective", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_TEST"}}}, want: []string{"effective", `"CAP_TEST"`}, class: errdefs.ErrInvalidArgument},
		{name: "unknown cap permitted", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Permitted: []string{"CAP_KILL", "CAP_TEST"}}}, want: []string{"permitted", `"CAP_TEST"`}, class: errdefs.ErrInvalidArgument},
		{name: "unknown cap inheritable", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Inheritable: []string{"CAP_TEST"}}}, want: []string{"inheritable", `"CAP_TEST"`}, class: errdefs.ErrInvalidArgument},
		{name: "unknown cap ambient", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Ambient: []string{"CAP_TEST"}}}, want: []string{"ambient", `"CAP_TEST"`}, class: errdefs.ErrInvalidArgument},
		{name: "lower-case cap name", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"cap_kill"}}}, want: []string{`"cap_kill"`}},
		{name: "effective outside permitted", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: def, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_AUDIT_WRITE"}}}, want: []string{"CAP_KILL", "permitted"}},
		{name: "ambient outside inheritable", p: specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: def, Permitted: def, Ambient: []string{"CAP_KILL"}}}, want: []string{"ambient", "CAP_KILL", "inheritable"}},
		{name: "uid -1", p: specs.Process{User: specs.User{UID: invalidID}}, want: []string{"uid 4294967295"}},
		{name: "gid -1", p: specs.Process{User: specs.User{GID: invalidID}}, want: []string{"gid 4294967295"}},
		{name: "additional gid -1", p: specs.Process{User: specs.User{AdditionalGids: []uint32{invalidID}}}, want: []string{"additionalGids", "4294967295"}},
		{name: "umask too big", p: specs.Process{User: specs.User{Umask: u32p(0o1000)}}, want: []string{"umask 01000"}},
		{name: "unknown rlimit", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_FOO", Soft: 1, Hard: 1}}}, want: []string{`"RLIMIT_FOO"`}, class: errdefs.ErrInvalidArgument},
		{name: "duplicate rlimit", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_CORE"}}}, want: []string{"RLIMIT_CORE", "more than once"}},
		{name: "rlimit soft above hard", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2048, Hard: 1024}}}, want: []string{"RLIMIT_NOFILE", "2048", "1024"}, class: errdefs.ErrInvalidArgument},
		{name: "rlimit unlimited", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: unix.RLIM_INFINITY, Hard: unix.RLIM_INFINITY}}},
			skip: map[bool]string{true: "", false: "host's RLIMIT_CORE hard limit is finite"}[coreUnlimited(t)]},
		{name: "rlimit hard above host", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: nofile.Max + 1}}},
			want:  []string{"RLIMIT_NOFILE", strconv.FormatUint(nofile.Max+1, 10), "1024", strconv.FormatUint(nofile.Max, 10), "CAP_SYS_RESOURCE"},
			class: errdefs.ErrFailedPrecond,
			skip:  map[bool]string{true: "the runtime has CAP_SYS_RESOURCE", false: ""}[sysResource]},
		{name: "nofile above nr_open", p: specs.Process{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: nrOpen + 1}}}, want: []string{"RLIMIT_NOFILE", "nr_open"}},
		{name: "apparmor", p: specs.Process{ApparmorProfile: "berth-default"}, want: []string{"AppArmor", "berth-default", "not enabled"}, class: errdefs.ErrFailedPrecond,
			skip: map[bool]string{true: "AppArmor is enabled on this host", false: ""}[AppArmorEnabled()]},
		{name: "selinux", p: specs.Process{SelinuxLabel: "system_u:system_r:container_t:s0"}, want: []string{"SELinux", "container_t", "not enabled"}, class: errdefs.ErrFailedPrecond,
			skip: map[bool]string{true: "SELinux is enabled on this host", false: ""}[selinuxOn(t)]},
		{name: "oom too low", p: specs.Process{OOMScoreAdj: intp(-1001)}, want: []string{"oomScoreAdj -1001"}},
		{name: "oom too high", p: specs.Process{OOMScoreAdj: intp(1001)}, want: []string{"oomScoreAdj 1001"}},
		{name: "oom bounds", p: specs.Process{OOMScoreAdj: intp(-1000)}},
		{name: "ioprio class", p: specs.Process{IOPriority: &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_FAST"}}, want: []string{"IOPRIO_CLASS_FAST"}},
		{name: "ioprio priority", p: specs.Process{IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 8}}, want: []string{"priority 8"}},
		{name: "sched policy", p: specs.Process{Scheduler: &specs.Scheduler{Policy: "SCHED_FAST"}}, want: []string{"SCHED_FAST"}},
		{name: "sched iso", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedISO}}, want: []string{"SCHED_ISO", "not supported"}},
		{name: "sched nice", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Nice: 20}}, want: []string{"nice 20"}},
		{name: "sched fifo priority", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedFIFO}}, want: []string{"priority 0", "SCHED_FIFO"}},
		{name: "sched other priority", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Priority: 5}}, want: []string{"priority 5"}},
		{name: "sched flag", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{"SCHED_FLAG_FAST"}}}, want: []string{"SCHED_FLAG_FAST"}},
		{name: "sched deadline", p: specs.Process{Scheduler: &specs.Scheduler{Policy: specs.SchedDeadline, Runtime: 20, Deadline: 10}}, want: []string{"runtime (20)"}},
		{name: "cpu affinity", p: specs.Process{ExecCPUAffinity: &specs.CPUAffinity{Final: "1-0"}}, want: []string{"execCPUAffinity.final", `"1-0"`}},
	}
	if hostLacks(t, capability.CAP_SYS_RESOURCE) {
		for _, set := range []string{"bounding", "effective", "permitted", "inheritable", "ambient"} {
			lc := &specs.LinuxCapabilities{}
			names := []string{"CAP_KILL", "CAP_SYS_RESOURCE"}
			switch set {
			case "bounding":
				lc.Bounding = names
			case "effective":
				lc.Effective = names
			case "permitted":
				lc.Permitted = names
			case "inheritable":
				lc.Inheritable = names
			case "ambient":
				lc.Ambient = names
			}
			cases = append(cases, tc{name: "sys_resource " + set, p: specs.Process{Capabilities: lc},
				want: []string{set, "CAP_SYS_RESOURCE is not in the runtime's own bounding set"}, class: errdefs.ErrFailedPrecond})
		}
		cases = append(cases, tc{name: "all known caps", p: specs.Process{Capabilities: allSets(KnownCapabilities()...)},
			want: []string{"bounding", "CAP_SYS_RESOURCE"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			err := Validate(&c.p)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want an error with %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if c.class != nil && !errors.Is(err, c.class) {
				t.Errorf("error %q is not of class %v", err, c.class)
			}
		})
	}
	if err := Validate(nil); err != nil {
		t.Errorf("Validate(nil) = %v", err)
	}
}

func TestValidateInUserNamespace(t *testing.T) {
	all := allSets(KnownCapabilities()...)
	if err := ValidateInUserNamespace(&specs.Process{Capabilities: all}); err != nil {
		t.Errorf("all known capabilities in a user namespace: %v", err)
	}
	err := ValidateInUserNamespace(&specs.Process{Capabilities: &specs.LinuxCapabilities{Ambient: []string{"CAP_TEST"}}})
	if err == nil || !strings.Contains(err.Error(), "CAP_TEST") {
		t.Errorf("unknown capability in a user namespace: %v", err)
	}
}

func coreUnlimited(t *testing.T) bool {
	var l unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, nil, &l); err != nil {
		t.Fatal(err)
	}
	return l.Max == unix.RLIM_INFINITY
}

func selinuxOn(t *testing.T) bool {
	on, err := SELinuxEnabled()
	if err != nil {
		t.Fatal(err)
	}
	return on
}

func TestGrantableCapabilities(t *testing.T) {
	names, err := GrantableCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no grantable capabilities")
	}
	p := &specs.Process{Capabilities: allSets(names...)}
	if err := Validate(p); err != nil {
		t.Errorf("Validate of every grantable capability: %v", err)
	}
	// Independently: the known names whose bit is set in /proc's CapBnd.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bnd uint64
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:\t"); ok {
			if bnd, err = strconv.ParseUint(v, 16, 64); err != nil {
				t.Fatal(err)
			}
		}
	}
	var want []string
	for i, n := range KnownCapabilities() {
		if bnd&(1<<uint(i)) != 0 {
			want = append(want, n)
		}
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("grantable %v, want %v (CapBnd %016x)", names, want, bnd)
	}
}
