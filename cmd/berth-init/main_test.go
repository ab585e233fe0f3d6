package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/testutil"
)

// The test binary is berth-init itself when BERTH_INIT_TEST_MAIN is set:
// the tests run it as the init of /bin/sh scripts.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_INIT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// hangGuard bounds a wait that only a broken init would make endless.
const hangGuard = time.Minute

// initProc is berth-init (the test binary) running a command.
type initProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

// startInit runs berth-init with args; sys, when set, is its SysProcAttr;
// a leading "--env", "KEY=VALUE" pair adds to its environment.
// Whatever is left of it and its command is killed when t ends.
func startInit(t *testing.T, sys *syscall.SysProcAttr, args ...string) *initProc {
	t.Helper()
	p := &initProc{lines: make(chan string, 16), done: make(chan struct{})}
	env := append(os.Environ(), "BERTH_INIT_TEST_MAIN=1")
	if len(args) >= 2 && args[0] == "--env" {
		env, args = append(env, args[1]), args[2:]
	}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = env
	p.cmd.SysProcAttr = sys
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start berth-init: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		// The command runs in its own process group with everything it
		// started: end the groups, then the init.
		for _, c := range childrenOf(p.cmd.Process.Pid) {
			unix.Kill(-c, unix.SIGKILL)
		}
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// line is the command's next line of output.
func (p *initProc) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("berth-init's output ended; stderr: %s", p.stderr.String())
		}
		return l
	case <-time.After(hangGuard):
		t.Fatalf("no output from berth-init's command within %v", hangGuard)
	}
	return ""
}

// wait returns berth-init's exit code.
func (p *initProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(hangGuard):
		t.Fatalf("berth-init did not exit within %v", hangGuard)
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("wait for berth-init: %v", p.err)
	}
	return p.cmd.ProcessState.ExitCode()
}

// childrenOf lists the processes whose parent is pid, zombies included.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, err := procStat(c); err == nil && ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// procStat reads a process's parent and state from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	s := string(data)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 2 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat: %q", pid, s)
	}
	ppid, err = strconv.Atoi(rest[1])
	return ppid, rest[0][0], err
}

// procPgrp reads a process's group from /proc/<pid>/stat.
func procPgrp(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 3 {
		return 0, fmt.Errorf("short /proc/%d/stat: %q", pid, s)
	}
	return strconv.Atoi(rest[2])
}

// script writes a /bin/sh script into a temporary directory.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		argv    []string
		want    options
		wantErr string
	}{
		{argv: []string{"--", "sh", "-c", "true"}, want: options{args: []string{"sh", "-c", "true"}}},
		{argv: []string{"sh", "-s"}, want: options{args: []string{"sh", "-s"}}},
		{argv: []string{"-s", "-g", "--", "ls"}, want: options{subreaper: true, group: true, args: []string{"ls"}}},
		{argv: []string{"-gs", "ls", "--", "-x"}, want: options{subreaper: true, group: true, args: []string{"ls", "--", "-x"}}},
		{argv: []string{"--", "-s"}, want: options{args: []string{"-s"}}},
		{argv: []string{"-h"}, want: options{help: true}},
		{argv: []string{"--help"}, want: options{help: true}},
		{argv: []string{"-x", "ls"}, wantErr: `unknown option "-x"`},
		{argv: []string{"-s", "--"}, wantErr: "no command given"},
		{argv: nil, wantErr: "no command given"},
	} {
		got, err := parseArgs(tc.argv)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("parseArgs(%q) error = %v, want %q", tc.argv, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v", tc.argv, got, err, tc.want)
		}
	}
}

// The init exits with the command's code, 128+N for a signal N.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 255", 255},
		{"kill -KILL $$", 128 + 9},
		{"kill -TERM $$", 128 + 15},
	} {
		p := startInit(t, nil, "--", "/bin/sh", "-c", tc.cmd)
		if got := p.wait(t); got != tc.want {
			t.Errorf("berth-init -- sh -c %q exited %d, want %d (stderr: %s)", tc.cmd, got, tc.want, p.stderr.String())
		}
	}
}

// A command that cannot be started is named, with a shell's codes.
func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		env  string
		code int
		msg  string
	}{
		{[]string{"--", "berth-init-no-such-command"}, "", 127, `berth-init: exec "berth-init-no-such-command": no such file or directory`},
		{[]string{"--", filepath.Join(dir, "missing")}, "", 127, `berth-init: exec "` + filepath.Join(dir, "missing") + `": no such file or directory`},
		{[]string{"--", "/etc/passwd/x"}, "", 127, `berth-init: exec "/etc/passwd/x": not a directory`},
		{[]string{"--", notExec}, "", 126, `berth-init: exec "` + notExec + `": permission denied`},
		{[]string{"not-executable"}, "PATH=/nonexistent:" + dir, 126, `berth-init: exec "not-executable": permission denied`},
		{[]string{"--", dir}, "", 126, `berth-init: exec "` + dir + `": permission denied`},
		{[]string{"-x", "ls"}, "", 1, `berth-init: unknown option "-x"`},
		{[]string{"-s"}, "", 1, "berth-init: no command given"},
	} {
		var p *initProc
		if tc.env != "" {
			p = startInit(t, nil, append([]string{"--env", tc.env}, tc.argv...)...)
		} else {
			p = startInit(t, nil, tc.argv...)
		}
		code := p.wait(t)
		first, _, _ := strings.Cut(p.stderr.String(), "\n")
		if code != tc.code || first != tc.msg {
			t.Errorf("berth-init %q: exit %d, stderr %q; want %d, %q", tc.argv, code, first, tc.code, tc.msg)
		}
	}
}

// Every catchable signal the init receives reaches the command, whose
// trap decides the exit code.
func TestForwardsSignals(t *testing.T) {
	sigs := []syscall.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGQUIT, unix.SIGWINCH, unix.SIGALRM, unix.SIGPIPE, unix.SIGABRT}
	for i, sig := range sigs {
		name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
		code := 10 + i
		sh := fmt.Sprintf("trap 'exit %d' %s; echo ready; while :; do sleep 0.1; done", code, name)
		p := startInit(t, nil, "/bin/sh", "-c", sh)
		if l := p.line(t); l != "ready" {
			t.Fatalf("%s: command printed %q", name, l)
		}
		if err := p.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if got := p.wait(t); got != code {
			t.Errorf("%s: berth-init exited %d, want the trap's %d (stderr: %s)", name, got, code, p.stderr.String())
		}
	}
}

// With -g the signal reaches the command's whole process group: here a
// shell it started in the background, which the command waits for.
func TestForwardsToProcessGroup(t *testing.T) {
	sh := script(t, `#!/bin/sh
trap 'wait; exit 4' TERM
/bin/sh -c 'trap "echo inner got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done' &
wait
`)
	p := startInit(t, nil, "-g", "--", sh)
	if l := p.line(t); l != "ready" {
		t.Fatalf("command printed %q", l)
	}
	if err := p.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if l := p.line(t); l != "inner got TERM" {
		t.Errorf("the background shell printed %q, want its TERM trap's line", l)
	}
	if got := p.wait(t); got != 4 {
		t.Errorf("berth-init -g exited %d, want 4 (stderr: %s)", got, p.stderr.String())
	}
}

// orphanScript leaves an orphan (a sleep) for the init to adopt, then waits
// for a line on stdin.
const orphanScript = `/bin/sh -c 'sleep 1000 >/dev/null 2>&1 &'
echo spawned
read line
exit 0
`

// checkReapsOrphan runs orphanScript under p: the orphan is re-parented to
// the init, and once it dies it is reaped, not left a zombie.
func checkReapsOrphan(t *testing.T, p *initProc) {
	t.Helper()
	if l := p.line(t); l != "spawned" {
		t.Fatalf("command printed %q", l)
	}
	// The init's children: the command, leader of its process group, and
	// the adopted orphan in that group.
	orphan := 0
	kids := childrenOf(p.cmd.Process.Pid)
	for _, k := range kids {
		if pgrp, err := procPgrp(k); err == nil && pgrp != k {
			orphan = k
		}
	}
	if len(kids) != 2 || orphan == 0 {
		t.Fatalf("berth-init's children are %v, want the command and the orphan", kids)
	}
	if err := unix.Kill(orphan, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hangGuard)
	for {
		_, state, err := procStat(orphan)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped within %v (state %c, err %v)", orphan, hangGuard, state, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	io.WriteString(p.stdin, "done\n")
	if got := p.wait(t); got != 0 {
		t.Errorf("berth-init exited %d, want 0 (stderr: %s)", got, p.stderr.String())
	}
}

// Not PID 1, the init registers as a child subreaper (with -s or without)
// and reaps the orphans of its descendants.
func TestReapsOrphansAsSubreaper(t *testing.T) {
	for _, flags := range [][]string{{"--"}, {"-s", "--"}} {
		p := startInit(t, nil, append(flags, "/bin/sh", "-c", orphanScript)...)
		checkReapsOrphan(t, p)
		if p.stderr.Len() != 0 {
			t.Errorf("berth-init %q wrote to stderr: %s", flags, p.stderr.String())
		}
	}
}

// As PID 1 of a new PID namespace, the init reaps the namespace's orphans
// and still receives and forwards signals sent from outside.
func TestPID1(t *testing.T) {
	testutil.RequiresRoot(t)
	p := startInit(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}, "/bin/sh", "-c", orphanScript)
	checkReapsOrphan(t, p)

	p = startInit(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}, "/bin/sh", "-c",
		"trap 'exit 7' TERM; echo $PPID; while :; do sleep 0.1; done")
	if l := p.line(t); l != "1" {
		t.Fatalf("the command's parent in the namespace is %q, want the init as PID 1", l)
	}
	if err := p.cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := p.wait(t); got != 7 {
		t.Errorf("berth-init as PID 1 exited %d after SIGTERM, want the trap's 7", got)
	}
}

// With stdin the controlling terminal, the command's own process group is
// the terminal's foreground: Ctrl-C interrupts it directly.
func TestTerminalForeground(t *testing.T) {
	ptm, pts := openPTY(t)
	cmd := exec.Command(os.Args[0], "/bin/sh", "-c", "cat /proc/$$/stat; while :; do sleep 0.1; done")
	cmd.Env = append(os.Environ(), "BERTH_INIT_TEST_MAIN=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			for _, c := range childrenOf(cmd.Process.Pid) {
				unix.Kill(-c, unix.SIGKILL)
			}
			cmd.Process.Kill()
			<-done
		}
	})
	pts.Close()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(ptm)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var stat string
	select {
	case stat = <-lines:
	case <-time.After(hangGuard):
		t.Fatal("no output on the terminal")
	}
	// pid (comm) state ppid pgrp session tty_nr tpgid ...
	f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	if len(f) < 6 {
		t.Fatalf("unexpected stat line %q", stat)
	}
	pid := strings.Fields(stat)[0]
	if f[2] != pid || f[5] != pid {
		t.Fatalf("command %s has process group %s and the terminal's foreground is %s; want both its own pid (stat %q)", pid, f[2], f[5], stat)
	}
	if _, err := ptm.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("Ctrl-C did not end the command")
	}
	if got := cmd.ProcessState.ExitCode(); got != 128+int(unix.SIGINT) {
		t.Errorf("berth-init exited %d after Ctrl-C, want %d", got, 128+int(unix.SIGINT))
	}
}

func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptm, pts
}

// berth-init built as the Makefile builds it is static: no program
// interpreter (dynamic loader) and no shared libraries, so it runs in any
// root filesystem.
func TestStaticBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go toolchain not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "berth-init")
	build := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bins := []string{bin}
	// The binary `make build` produced, when there is one.
	if fi, err := os.Stat("../../bin/berth-init"); err == nil && !fi.IsDir() {
		bins = append(bins, "../../bin/berth-init")
	}
	for _, b := range bins {
		f, err := elf.Open(b)
		if err != nil {
			t.Fatalf("open %s: %v", b, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: it is dynamically linked", b)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
			t.Errorf("%s needs shared libraries %q (%v)", b, libs, err)
		}
		f.Close()
	}
}
