package shim

import (
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper collects every child of the shim, including the container's init
// and exec processes reparented to it as a child subreaper, and hands each
// exit to whoever claimed that pid. One reaper owns wait4: nothing else in
// the shim waits for processes.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan int
	exited  map[int]orphanExit // exits nobody claimed yet
}

type orphanExit struct {
	code int
	at   time.Time
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]chan int{}, exited: map[int]orphanExit{}}
	sig := make(chan os.Signal, 32)
	signal.Notify(sig, unix.SIGCHLD)
	go func() {
		for range sig {
			r.reap()
		}
	}()
	return r
}

// exitCode turns a wait status into a shell-style exit code.
func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (r *reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue
		}
		code := exitCode(ws)
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- code
		} else {
			now := time.Now()
			r.exited[pid] = orphanExit{code: code, at: now}
			for p, e := range r.exited {
				if now.Sub(e.at) > time.Minute {
					delete(r.exited, p) // a stray grandchild nobody will ask about
				}
			}
		}
		r.mu.Unlock()
	}
}

// claim returns a channel receiving pid's exit code. Claim a pid right
// after learning it: an exit that came first is kept for a minute.
func (r *reaper) claim(pid int) <-chan int {
	ch := make(chan int, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- e.code
		return ch
	}
	r.waiters[pid] = ch
	return ch
}

// start starts a process with the given stdio and returns a channel
// receiving its exit code. The claim is made under the lock the reaper
// dispatches under, so an immediate exit is not lost.
func (r *reaper) start(argv []string, files []*os.File, env []string) (int, <-chan int, error) {
	ch := make(chan int, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: files, Env: env})
	if err != nil {
		return 0, nil, err
	}
	pid := p.Pid
	p.Release()
	if e, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		ch <- e.code
	} else {
		r.waiters[pid] = ch
	}
	return pid, ch, nil
}
