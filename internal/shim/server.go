package shim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/berth-project/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

var errNotTTY = errdefs.FailedPrecondition(errors.New("process has no terminal"))

// config is what Spawn hands the shim in shim.json.
type config struct {
	ID            string   `json:"id"`
	Bundle        string   `json:"bundle"`
	Runtime       string   `json:"runtime"`
	RuntimeRoot   string   `json:"runtimeRoot"`
	RuntimeArgs   []string `json:"runtimeArgs,omitempty"`
	LogPath       string   `json:"logPath,omitempty"`
	LogMaxSize    int64    `json:"logMaxSize,omitempty"`
	LogMaxFiles   int      `json:"logMaxFiles,omitempty"`
	OpenStdin     bool     `json:"openStdin,omitempty"`
	StdinOnce     bool     `json:"stdinOnce,omitempty"`
	ConsoleHeight uint16   `json:"consoleHeight,omitempty"`
	ConsoleWidth  uint16   `json:"consoleWidth,omitempty"`
	// ReadyFD is a pipe the shim writes one byte to (and closes) once its
	// socket is published, so Spawn need not poll for it; 0 for none.
	ReadyFD int `json:"readyFd,omitempty"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format(time.RFC3339Nano)+" berth-shim: "+format+"\n", args...)
}

// server is the running shim.
type server struct {
	dir    string
	cfg    config
	reaper *reaper
	env    []string
	init   *proc
	log    *LogWriter
	oom    *oomCounter // nil when the container's memory cgroup is unknown

	mu       sync.Mutex
	execs    map[string]*proc
	counter  atomic.Int64
	quit     chan struct{}
	exitOnce sync.Once
	trimmer  *time.Timer
	ln       *os.File
}

// Serve runs the shim for the container described by shim.json in
// stateDir: it creates the container, then serves clients on shim.sock
// until the container is deleted or the shim is shut down. It is
// berth-shim's whole life; it returns an error only when the container
// could not be created or the socket not served.
func Serve(stateDir string) error {
	// A shim lives as long as its container: keep it small. One P is plenty for a process that mostly sleeps, and spares the
	// per-P caches and threads.
	goruntime.GOMAXPROCS(1)
	// A low GC target keeps the heap near its (small) live size; the limit
	// is a backstop far above it, never a target the collector chases.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(32 << 20)

	b, err := os.ReadFile(filepath.Join(stateDir, configName))
	if err != nil {
		return fmt.Errorf("read shim config: %w", err)
	}
	s := &server{dir: stateDir, execs: map[string]*proc{}, quit: make(chan struct{})}
	if err := json.Unmarshal(b, &s.cfg); err != nil {
		return fmt.Errorf("parse shim config %s: %w", filepath.Join(stateDir, configName), err)
	}
	var ready *os.File
	if s.cfg.ReadyFD > 2 {
		// Never handed on to the runtime or the container.
		unix.CloseOnExec(s.cfg.ReadyFD)
		ready = os.NewFile(uintptr(s.cfg.ReadyFD), "ready")
		defer ready.Close()
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	ignoreSignals()
	s.env = os.Environ()
	s.reaper = newReaper()

	// Listen under a temporary name and publish the socket by renaming it
	// once the container is created: a client that finds shim.sock finds
	// a created container, and a failed create leaves no socket.
	sockPath := filepath.Join(stateDir, socketName)
	os.Remove(sockPath)
	tmpSock := filepath.Join(stateDir, tmpSocketName)
	os.Remove(tmpSock)
	ln, err := listenUnix(tmpSock)
	if err != nil {
		return err
	}
	s.ln = ln
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("chmod %s: %w", tmpSock, err)
	}
	if err := s.create(); err != nil {
		ln.Close()
		os.Remove(tmpSock)
		return err
	}
	if err := os.Rename(tmpSock, sockPath); err != nil {
		ln.Close()
		return fmt.Errorf("publish socket %s: %w", sockPath, err)
	}
	if ready != nil {
		_, _ = ready.Write([]byte{1})
		ready.Close()
	}
	go s.watchInit()
	for {
		conn, err := accept(ln)
		if err != nil {
			select {
			case <-s.quit:
				return nil
			default:
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept on %s: %w", sockPath, err)
		}
		go s.handle(conn)
	}
}

func ignoreSignals() {
	// The shim has no terminal and its clients come and go: none of these
	// may end it while its container runs. They are caught and dropped,
	// not ignored: an ignored signal stays ignored across execve, and the
	// runtime and the container would inherit that (a shell's trap on HUP
	// or INT would never fire).
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	go func() {
		for range ch {
		}
	}()
	resetIgnoredSignals()
}

// kernelSigaction is the kernel's struct sigaction (amd64, arm64).
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// resetIgnoredSignals sets every signal the shim inherited as ignored back
// to its default, so the runtime it starts (runc or crun included) and
// the container do not inherit SIG_IGN through execve. The Go runtime
// leaves some inherited ignores in place (SIGHUP, SIGINT and the real-time
// signals libc uses); handlers the Go runtime installed are not touched.
func resetIgnoredSignals() {
	for sig := 1; sig < 65; sig++ {
		if sig == int(syscall.SIGKILL) || sig == int(syscall.SIGSTOP) {
			continue
		}
		var old kernelSigaction
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
			continue
		}
		if old.handler != 1 { // SIG_IGN
			continue
		}
		dfl := kernelSigaction{} // SIG_DFL
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}

// runtimeArgs builds a runtime command line: the global flags, then args.
func (s *server) runtimeArgs(args ...string) []string {
	argv := []string{s.cfg.Runtime}
	argv = append(argv, s.cfg.RuntimeArgs...)
	argv = append(argv, "--root", s.cfg.RuntimeRoot, "--log", filepath.Join(s.dir, rtLogName), "--log-format", "json")
	return append(argv, args...)
}

// runtimeError names a failed runtime command with the runtime's own
// message: the last error its log gained since offset, or its output.
func (s *server) runtimeError(args []string, code int, offset int64, out []byte) error {
	msg := strings.TrimSpace(string(out))
	if m := lastLogError(filepath.Join(s.dir, rtLogName), offset); m != "" {
		msg = m
	}
	if msg == "" {
		msg = "exit status " + strconv.Itoa(code)
	}
	// Clients see Docker's form ("OCI runtime create failed: ..."); the
	// whole command line, with its private paths, goes to the shim's log.
	logf("%s %s: %s", s.cfg.Runtime, strings.Join(args, " "), msg)
	verb := "command"
	if len(args) > 0 {
		verb = args[0]
	}
	err := fmt.Errorf("OCI runtime %s failed: %s", verb, msg)
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "does not exist") || strings.Contains(lower, "not found"):
		return errdefs.NotFound(err)
	case strings.Contains(lower, "not running") || strings.Contains(lower, "not paused") || strings.Contains(lower, "is paused") || strings.Contains(lower, "already"):
		return errdefs.Conflict(err)
	}
	return err
}

func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// lastLogError returns the message of the last error-level entry in the
// runtime's json log after offset.
func lastLogError(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	var msg string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			msg = e.Msg
		}
	}
	return msg
}

// run runs a runtime command that does not touch the container's stdio
// and returns its standard output.
func (s *server) run(args ...string) ([]byte, error) { return s.runInput(nil, args...) }

// runInput is run with input on the command's standard input (none, and
// /dev/null there, when nil).
func (s *server) runInput(input []byte, args ...string) ([]byte, error) {
	argv := s.runtimeArgs(args...)
	offset := logSize(filepath.Join(s.dir, rtLogName))
	var stdin *os.File
	if input == nil {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		stdin = devnull
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		go func() {
			w.Write(input) // fails only when the command exits without reading it
			w.Close()
		}()
		stdin = r
	}
	defer stdin.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	_, exit, err := s.reaper.start(argv, []*os.File{stdin, outW, outW}, s.env)
	outW.Close()
	stdin.Close()
	if err != nil {
		outR.Close()
		return nil, fmt.Errorf("run %s: %w", s.cfg.Runtime, err)
	}
	out, _ := io.ReadAll(io.LimitReader(outR, 1<<20))
	outR.Close()
	if code := <-exit; code != 0 {
		return out, s.runtimeError(args, code, offset, out)
	}
	return out, nil
}

// stdio is the child side and the shim side of a process's stdio.
type stdio struct {
	child         []*os.File // stdin, stdout, stderr for the runtime
	stdinW        *os.File
	stdout        *os.File
	stderr        *os.File
	consoleSocket *os.File
	consolePath   string
}

func (io *stdio) closeChild() {
	for _, f := range io.child {
		if f != nil {
			f.Close()
		}
	}
}

func (io *stdio) closeAll() {
	io.closeChild()
	for _, f := range []*os.File{io.stdinW, io.stdout, io.stderr} {
		if f != nil {
			f.Close()
		}
	}
	if io.consoleSocket != nil {
		io.consoleSocket.Close()
		os.Remove(io.consolePath)
	}
}

// newStdio makes a process's stdio: a console socket for a terminal, or
// pipes (stdin only when wanted, /dev/null otherwise).
func (s *server) newStdio(tty, stdin bool) (*stdio, error) {
	st := &stdio{}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if tty {
		// The runtime's own output goes to the shim's log (childFiles).
		st.consolePath = filepath.Join(s.dir, "c"+strconv.FormatInt(s.counter.Add(1), 10)+".sock")
		os.Remove(st.consolePath)
		l, err := listenUnix(st.consolePath)
		if err != nil {
			devnull.Close()
			return nil, fmt.Errorf("console socket: %w", err)
		}
		st.consoleSocket = l
		st.child = []*os.File{devnull, nil, nil}
		return st, nil
	}
	st.child = []*os.File{devnull, nil, nil}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			st.closeAll()
			return nil, err
		}
		devnull.Close()
		st.child[0], st.stdinW = r, w
	}
	for i, dst := range []**os.File{&st.stdout, &st.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			st.closeAll()
			return nil, err
		}
		st.child[i+1], *dst = w, r
	}
	return st, nil
}

// childFiles returns the descriptors the runtime process gets.
func (st *stdio) childFiles() []*os.File {
	if st.consoleSocket != nil {
		return []*os.File{st.child[0], os.Stderr, os.Stderr}
	}
	return st.child
}

// receiveConsole accepts the runtime's connection on the console socket
// and takes the pty master it sends.
func receiveConsole(l *os.File) (*os.File, error) {
	conn, err := accept(l)
	if err != nil {
		return nil, fmt.Errorf("accept on console socket: %w", err)
	}
	defer conn.Close()
	fd, err := recvFd(conn)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("console: %w", err)
	}
	return os.NewFile(uintptr(fd), "pty-master"), nil
}

type consoleResult struct {
	f   *os.File
	err error
}

// startProc runs a runtime command (create or exec) that starts a process
// with the given stdio and returns the process's pid from pidFile.
func (s *server) startProc(p *proc, st *stdio, pidFile string, args ...string) error {
	var consoleCh chan consoleResult
	if st.consoleSocket != nil {
		consoleCh = make(chan consoleResult, 1)
		go func() {
			f, err := receiveConsole(st.consoleSocket)
			consoleCh <- consoleResult{f, err}
		}()
	}
	argv := s.runtimeArgs(args...)
	offset := logSize(filepath.Join(s.dir, rtLogName))
	_, exit, err := s.reaper.start(argv, st.childFiles(), s.env)
	st.closeChild()
	if err != nil {
		return fmt.Errorf("run %s: %w", s.cfg.Runtime, err)
	}
	code := <-exit
	if st.consoleSocket != nil {
		st.consoleSocket.Close()
		os.Remove(st.consolePath)
		st.consoleSocket = nil
	}
	if code != 0 {
		if consoleCh != nil {
			if r := <-consoleCh; r.f != nil {
				r.f.Close()
			}
		}
		return s.runtimeError(args, code, offset, nil)
	}
	if consoleCh != nil {
		r := <-consoleCh
		if r.err != nil {
			return fmt.Errorf("%s %s: %w", filepath.Base(s.cfg.Runtime), args[0], r.err)
		}
		p.console = r.f
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("read pid file %s: %w", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("pid file %s holds %q, not a pid", pidFile, b)
	}
	p.pid = pid
	return nil
}

// startIO starts copying a started process's output; logged output goes
// to the container log. It returns when the copiers are running.
func (s *server) startIO(p *proc, st *stdio, log *LogWriter) {
	var wg sync.WaitGroup
	if p.console != nil {
		wg.Add(1)
		var ls *lineSplitter
		if log != nil {
			ls = newLineSplitter(log, "stdout")
		}
		p.outputs = []*os.File{p.console}
		go p.copyOutput(p.console, frameStdout, ls, &wg)
	} else {
		p.stdinW = st.stdinW
		wg.Add(2)
		var lo, le *lineSplitter
		if log != nil {
			lo, le = newLineSplitter(log, "stdout"), newLineSplitter(log, "stderr")
		}
		p.outputs = []*os.File{st.stdout, st.stderr}
		go p.copyOutput(st.stdout, frameStdout, lo, &wg)
		go p.copyOutput(st.stderr, frameStderr, le, &wg)
	}
	go func() {
		wg.Wait()
		close(p.outDone)
	}()
}

// create runs `runtime create` for the container.
func (s *server) create() error {
	spec, err := readSpec(s.cfg.Bundle)
	if err != nil {
		return err
	}
	p := newProc("")
	p.tty = spec.Process.Terminal
	p.hasStdin = s.cfg.OpenStdin
	p.once = s.cfg.StdinOnce
	if s.cfg.LogPath != "" {
		lw, err := NewLogWriter(s.cfg.LogPath, s.cfg.LogMaxSize, s.cfg.LogMaxFiles)
		if err != nil {
			return err
		}
		s.log = lw
	}
	st, err := s.newStdio(p.tty, s.cfg.OpenStdin)
	if err != nil {
		return fmt.Errorf("stdio for %s: %w", s.cfg.ID, err)
	}
	pidFile := filepath.Join(s.dir, initPidName)
	os.Remove(pidFile)
	args := []string{"create", "--bundle", s.cfg.Bundle, "--pid-file", pidFile}
	if st.consoleSocket != nil {
		args = append(args, "--console-socket", st.consolePath)
	}
	args = append(args, s.cfg.ID)
	if err := s.startProc(p, st, pidFile, args...); err != nil {
		st.closeAll()
		return err
	}
	if p.console != nil && s.cfg.ConsoleHeight > 0 && s.cfg.ConsoleWidth > 0 {
		if err := p.resize(s.cfg.ConsoleHeight, s.cfg.ConsoleWidth); err != nil {
			logf("set initial console size of %s: %v", s.cfg.ID, err)
		}
	}
	s.startIO(p, st, s.log)
	s.init = p
	if s.oom, err = openOOMCounter(p.pid); err != nil {
		// A runtime may run a container without a memory cgroup (rootless
		// without delegation): it can then not be OOM-killed on its own.
		logf("container %s: no OOM kill count: %v", s.cfg.ID, err)
	}
	return nil
}

// bundleSpec is the part of a bundle's config.json the shim reads; it
// decodes no more, to keep its memory small.
type bundleSpec struct {
	Process struct {
		Terminal bool `json:"terminal"`
	} `json:"process"`
}

// execProcess is the part of an exec's process spec the shim checks.
type execProcess struct {
	Terminal bool     `json:"terminal"`
	Args     []string `json:"args"`
}

func readSpec(bundle string) (*bundleSpec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var spec bundleSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &spec, nil
}

// watch waits for a process's exit and the end of its output, then
// records the exit and ends its attach streams. atExit, when set, completes
// the status the moment the process exited.
func (s *server) watch(p *proc, exit <-chan int, atExit func(*ExitStatus)) {
	e := ExitStatus{Code: <-exit, ExitedAt: time.Now().UTC()}
	if atExit != nil {
		atExit(&e)
	}
	select {
	case <-p.outDone:
	case <-time.After(ioDrainTimeout):
		logf("output of %s still open %s after it exited; closing it", p.name(), ioDrainTimeout)
		for _, f := range p.outputs {
			f.Close()
		}
		<-p.outDone
	}
	p.endOutput()
	p.stdinEOF(true)
	if p.console != nil {
		p.console.Close()
	}
	p.exit = e
}

func (s *server) watchInit() {
	p := s.init
	s.watch(p, s.reaper.claim(p.pid), s.checkOOM)
	if s.log != nil {
		s.log.Close()
	}
	if err := writeExitFile(s.dir, p.exit); err != nil {
		logf("record exit of %s: %v", s.cfg.ID, err)
	}
	close(p.exited)
}

// checkOOM sets OOMKilled in the init's exit status from the container's
// OOM kill counter, read as the init exits: the container (and its cgroup)
// still exists, as only a delete through this shim removes it.
func (s *server) checkOOM(e *ExitStatus) {
	if s.oom == nil {
		return
	}
	killed, err := s.oom.killed()
	if err != nil {
		logf("container %s: read OOM kill count at exit: %v", s.cfg.ID, err)
	}
	e.OOMKilled = killed
	s.oom.close()
}

// writeExitFile records an exit status atomically: a synced temporary
// file renamed over exit.json, then the directory synced.
func writeExitFile(dir string, e ExitStatus) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".exit-*")
	if err != nil {
		return fmt.Errorf("create exit file in %s: %w", dir, err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, exitName))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write exit file in %s: %w", dir, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadExit returns the exit status a shim recorded in stateDir, for a
// container whose shim is gone. It fails with errdefs.ErrNotFound when
// none was recorded.
func ReadExit(stateDir string) (ExitStatus, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, exitName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ExitStatus{}, errdefs.NotFound(fmt.Errorf("no exit status in %s", stateDir))
		}
		return ExitStatus{}, fmt.Errorf("read exit status in %s: %w", stateDir, err)
	}
	var e ExitStatus
	if err := json.Unmarshal(b, &e); err != nil {
		return ExitStatus{}, fmt.Errorf("parse exit status in %s: %w", stateDir, err)
	}
	return e, nil
}

// idleTrimDelay is how long after a call or an exec ended the shim
// collects garbage and hands free memory back to the system.
const idleTrimDelay = 250 * time.Millisecond

// trimSoon schedules that trim, pushing it back while calls keep coming:
// a shim spends its life idle, and what it holds then is what a host with
// many containers pays, while its heap target would let it keep garbage
// from the last burst until the next one.
func (s *server) trimSoon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trimmer == nil {
		s.trimmer = time.AfterFunc(idleTrimDelay, debug.FreeOSMemory)
		return
	}
	s.trimmer.Reset(idleTrimDelay)
}

func (s *server) handle(conn *os.File) {
	defer s.trimSoon()
	rd := bufio.NewReaderSize(conn, 4096)
	var req request
	if err := readJSONLine(rd, &req); err != nil {
		conn.Close()
		return
	}
	switch req.Op {
	case opAttach:
		s.attach(conn, rd, req)
		return
	case opExec:
		s.exec(conn, rd, req)
		return
	case opWait:
		s.wait(conn, req)
		return
	}
	resp := s.call(req)
	writeJSONLine(conn, resp)
	conn.Close()
	if req.Op == opDelete && resp.Err == "" || req.Op == opShutdown && resp.Err == "" {
		s.exit()
	}
}

// exit stops serving and ends the shim.
func (s *server) exit() {
	s.exitOnce.Do(func() {
		close(s.quit)
		os.Remove(filepath.Join(s.dir, socketName))
		s.ln.Close()
	})
}

func (s *server) proc(execID string) (*proc, error) {
	if execID == "" {
		return s.init, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.execs[execID]
	if !ok {
		return nil, errdefs.NotFound(fmt.Errorf("exec %s not found in container %s", execID, s.cfg.ID))
	}
	return p, nil
}

func (s *server) call(req request) response {
	p, err := s.proc(req.ExecID)
	if err != nil {
		return errResponse(err)
	}
	switch req.Op {
	case opInfo:
		return response{Info: &InfoSummary{ID: s.cfg.ID, Pid: s.init.pid, ShimPid: os.Getpid(), Terminal: s.init.tty, Stdin: s.init.hasStdin}}
	case opStart:
		if _, err := s.run("start", s.cfg.ID); err != nil {
			return errResponse(err)
		}
		return response{Pid: p.pid}
	case opKill:
		if req.ExecID != "" {
			if p.isExited() {
				return errResponse(errdefs.Conflict(fmt.Errorf("exec %s has exited", req.ExecID)))
			}
			if err := unix.Kill(p.pid, syscall.Signal(req.Signal)); err != nil {
				return errResponse(fmt.Errorf("signal exec %s: %w", req.ExecID, err))
			}
			return response{}
		}
		if p.isExited() && !req.All {
			return errResponse(errdefs.Conflict(fmt.Errorf("container %s is not running", s.cfg.ID)))
		}
		args := []string{"kill"}
		if req.All {
			args = append(args, "--all")
		}
		if _, err := s.run(append(args, s.cfg.ID, strconv.Itoa(req.Signal))...); err != nil {
			return errResponse(err)
		}
		return response{}
	case opState:
		r := response{Pid: p.pid}
		if p.isExited() {
			e := p.exit
			r.Exit = &e
			r.Status = "stopped"
			return r
		}
		if req.ExecID != "" {
			r.Status = "running"
			return r
		}
		st, err := s.runtimeStatus()
		if err != nil {
			return errResponse(err)
		}
		r.Status = st
		return r
	case opPause, opResume:
		if _, err := s.run(req.Op, s.cfg.ID); err != nil {
			return errResponse(err)
		}
		return response{}
	case opResize:
		if err := p.resize(req.Height, req.Width); err != nil {
			return errResponse(fmt.Errorf("resize %s: %w", p.name(), err))
		}
		return response{}
	case opCloseIn:
		p.stdinEOF(true)
		return response{}
	case opUpdate:
		if req.ExecID != "" {
			return errResponse(errdefs.InvalidArgument(fmt.Errorf("update of exec %s: resources belong to the container", req.ExecID)))
		}
		if r := bytes.TrimSpace(req.Resources); len(r) == 0 || r[0] != '{' || !json.Valid(r) {
			return errResponse(errdefs.InvalidArgument(fmt.Errorf("update container %s: resources are not a JSON object", s.cfg.ID)))
		}
		if p.isExited() {
			return errResponse(errdefs.Conflict(fmt.Errorf("update container %s: it is not running", s.cfg.ID)))
		}
		if _, err := s.runInput(req.Resources, "update", "--resources", "-", s.cfg.ID); err != nil {
			return errResponse(err)
		}
		return response{}
	case opDelete:
		running := !p.isExited()
		force := req.Force
		if running && !force {
			// A container created but never started goes like a stopped
			// one (runtimes differ on whether that takes --force).
			if st, err := s.runtimeStatus(); err != nil || st != "created" {
				return errResponse(errdefs.Conflict(fmt.Errorf("container %s is running: stop it or delete with force", s.cfg.ID)))
			}
			force = true
		}
		if running && s.oom != nil {
			// A forced delete removes the cgroup with the container: count
			// its OOM kills first.
			if err := s.oom.sample(); err != nil && !errors.Is(err, os.ErrClosed) {
				logf("container %s: read OOM kill count before delete: %v", s.cfg.ID, err)
			}
		}
		args := []string{"delete"}
		if force {
			args = append(args, "--force")
		}
		if _, err := s.run(append(args, s.cfg.ID)...); err != nil && !errdefs.IsNotFound(err) {
			return errResponse(err)
		}
		if running {
			<-p.exited // the runtime killed it
		}
		r := response{}
		e := p.exit
		r.Exit = &e
		return r
	case opShutdown:
		if !p.isExited() {
			return errResponse(errdefs.Conflict(fmt.Errorf("container %s is running", s.cfg.ID)))
		}
		return response{}
	}
	return errResponse(errdefs.InvalidArgument(fmt.Errorf("unknown operation %q", req.Op)))
}

// runtimeStatus asks the runtime for the container's status.
func (s *server) runtimeStatus() (string, error) {
	out, err := s.run("state", s.cfg.ID)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &st); err != nil {
		return "", fmt.Errorf("parse state of %s: %w", s.cfg.ID, err)
	}
	return st.Status, nil
}

// maxExitedExecs is how many finished execs a shim remembers for Wait;
// older ones are forgotten (a health check every few seconds must not
// grow the shim for ever).
const maxExitedExecs = 64

func (s *server) pruneExecs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var exited []*proc
	for _, p := range s.execs {
		if p.isExited() {
			exited = append(exited, p)
		}
	}
	if len(exited) <= maxExitedExecs {
		return
	}
	slices.SortFunc(exited, func(a, b *proc) int { return a.exit.ExitedAt.Compare(b.exit.ExitedAt) })
	for _, p := range exited[:len(exited)-maxExitedExecs] {
		delete(s.execs, p.id)
	}
}

// wait answers when the process has exited, or drops the call when the
// client goes away.
func (s *server) wait(conn *os.File, req request) {
	defer conn.Close()
	p, err := s.proc(req.ExecID)
	if err != nil {
		writeJSONLine(conn, errResponse(err))
		return
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	select {
	case <-p.exited:
		e := p.exit
		writeJSONLine(conn, response{Exit: &e})
	case <-gone:
	}
}

// attach streams a process's output to the client and its input to the
// process.
func (s *server) attach(conn *os.File, rd *bufio.Reader, req request) {
	p, err := s.proc(req.ExecID)
	if err != nil {
		writeJSONLine(conn, errResponse(err))
		conn.Close()
		return
	}
	// Subscribed before the response goes out, so a client that got it is
	// sure to see all later output; its frames wait for the response (wmu).
	sub := &subscriber{conn: conn, stdout: req.Stdout, stderr: req.Stderr}
	sub.wmu.Lock()
	p.mu.Lock()
	ended := p.ended
	if !ended {
		p.subs[sub] = struct{}{}
	}
	p.mu.Unlock()
	err = writeJSONLine(conn, response{Pid: p.pid})
	if ended && err == nil {
		err = writeFrame(conn, frameEnd, nil)
	}
	sub.wmu.Unlock()
	if err != nil || ended {
		p.unsubscribe(sub)
		conn.Close()
		return
	}
	s.serveAttach(p, sub, rd, req)
}

// serveAttach forwards a subscribed client's input until it goes away.
func (s *server) serveAttach(p *proc, sub *subscriber, rd *bufio.Reader, req request) {
	var buf []byte
	for {
		kind, b, err := readFrame(rd, buf)
		if err != nil {
			break
		}
		buf = b[:0]
		if kind != frameStdin || !req.Stdin {
			continue
		}
		if len(b) == 0 {
			p.stdinEOF(req.CloseIn)
			continue
		}
		if err := p.writeStdin(b); err != nil {
			continue
		}
	}
	p.unsubscribe(sub)
	sub.conn.Close()
}

// exec starts a process in the container with `runtime exec` and streams
// its stdio over the connection that asked for it, attached before the
// process starts so no output is lost.
func (s *server) exec(conn *os.File, rd *bufio.Reader, req request) {
	fail := func(err error) {
		writeJSONLine(conn, errResponse(err))
		conn.Close()
	}
	if req.ExecID == "" || strings.ContainsAny(req.ExecID, "/\x00") || len(req.ExecID) > 128 {
		fail(errdefs.InvalidArgument(fmt.Errorf("invalid exec id %q", req.ExecID)))
		return
	}
	var ep execProcess
	if err := json.Unmarshal(req.Process, &ep); err != nil {
		fail(errdefs.InvalidArgument(fmt.Errorf("exec %s: process spec: %w", req.ExecID, err)))
		return
	}
	if len(ep.Args) == 0 {
		fail(errdefs.InvalidArgument(fmt.Errorf("exec %s: no process args", req.ExecID)))
		return
	}
	if s.init.isExited() {
		fail(errdefs.Conflict(fmt.Errorf("container %s is not running", s.cfg.ID)))
		return
	}
	p := newProc(req.ExecID)
	p.tty = ep.Terminal
	p.hasStdin = req.Stdin
	p.once = true // an exec's stdin closes with its client's, as docker exec -i
	s.mu.Lock()
	if _, dup := s.execs[req.ExecID]; dup {
		s.mu.Unlock()
		fail(errdefs.AlreadyExists(fmt.Errorf("exec %s already exists in container %s", req.ExecID, s.cfg.ID)))
		return
	}
	s.execs[req.ExecID] = p
	s.mu.Unlock()
	// The client is subscribed before the process starts, its frames held
	// back (wmu) until the response line is out.
	sub := &subscriber{conn: conn, stdout: true, stderr: true}
	sub.wmu.Lock()
	p.subscribe(sub)
	n := strconv.FormatInt(s.counter.Add(1), 10)
	specPath := filepath.Join(s.dir, "exec"+n+".json")
	pidFile := filepath.Join(s.dir, "exec"+n+".pid")
	err := s.startExec(p, req, specPath, pidFile)
	os.Remove(specPath)
	os.Remove(pidFile)
	if err != nil {
		s.mu.Lock()
		delete(s.execs, req.ExecID)
		s.mu.Unlock()
		p.unsubscribe(sub)
		sub.wmu.Unlock()
		fail(err)
		return
	}
	if err := writeJSONLine(conn, response{Pid: p.pid}); err != nil {
		conn.Close()
	}
	sub.wmu.Unlock()
	s.serveAttach(p, sub, rd, req)
}

func (s *server) startExec(p *proc, req request, specPath, pidFile string) error {
	if err := os.WriteFile(specPath, req.Process, 0o600); err != nil {
		return fmt.Errorf("write exec %s process: %w", req.ExecID, err)
	}
	st, err := s.newStdio(p.tty, req.Stdin)
	if err != nil {
		return fmt.Errorf("stdio for exec %s: %w", req.ExecID, err)
	}
	args := []string{"exec", "--process", specPath, "--pid-file", pidFile, "-d"}
	if st.consoleSocket != nil {
		args = append(args, "--console-socket", st.consolePath)
	}
	args = append(args, s.cfg.ID)
	if err := s.startProc(p, st, pidFile, args...); err != nil {
		st.closeAll()
		return err
	}
	if p.console != nil && req.Height > 0 && req.Width > 0 {
		if err := p.resize(req.Height, req.Width); err != nil {
			logf("set console size of exec %s: %v", req.ExecID, err)
		}
	}
	exit := s.reaper.claim(p.pid)
	s.startIO(p, st, nil)
	go func() {
		s.watch(p, exit, nil)
		close(p.exited)
		s.pruneExecs()
		s.trimSoon()
	}()
	return nil
}
