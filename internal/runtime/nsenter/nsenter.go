// Package nsenter puts a berth-runtime process into its container's
// namespaces before the Go runtime starts.
//
// setns(2) into a mount or user namespace needs a single-threaded process, and
// the Go runtime starts threads before main runs. So the work is done by a C
// constructor that runs first, in every process of the binary that imports this
// package, and does nothing unless the environment variable _BERTH_INITPIPE
// names the socket over which the runtime sends the namespace plan. It joins the
// namespaces named by path (user first), unshares the new ones (asking the
// runtime to write the user namespace's ID maps), writes time namespace
// offsets, and forks once when the PID or time namespace only applies to
// children. The process that continues into Go is then inside every namespace;
// the runtime learns its host PID from the socket.
//
// Before the plan, the constructor moves the process into its cgroup through
// the v1 "tasks" files named by _BERTH_CGROUPFDS (descriptor numbers,
// comma-separated), writing "0" to each while the process is single-threaded:
// the kernel moves a thread that moves itself without the global lock that a
// PID written to cgroup.procs takes (whose first use waits for an RCU grace
// period). It closes those descriptors; failures are left to the runtime,
// which checks the membership when the constructor reports "cgroup".
//
// The plan is a block of lines, ended by the line "end":
//
//	join <CLONE_NEW* flag> <path>
//	unshare <CLONE_NEW* flags>
//	timens <monotonic s> <monotonic ns> <boottime s> <boottime ns>
//
// and the constructor answers, a line each, "userns" (then waits for "ok") when it created a
// user namespace, "cgroup" (then waits for "ok": the runtime has moved it into the
// container's cgroup, which it does while the namespaces are being made) before it
// creates the cgroup namespace and forks, and finally "pid <host pid>" or
// "error <message>".
package nsenter

/*
#cgo CFLAGS: -Wall -O2
extern void berth_nsenter(void);
void __attribute__((constructor)) berth_nsenter_init(void) { berth_nsenter(); }
*/
import "C"

// EnvInitPipe names the environment variable that carries the init socket's
// file descriptor number.
const EnvInitPipe = "_BERTH_INITPIPE"

// EnvCgroupFDs names the environment variable that lists the descriptors
// of the cgroup v1 "tasks" files the process writes itself into.
const EnvCgroupFDs = "_BERTH_CGROUPFDS"
