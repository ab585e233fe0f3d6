// The namespace entry constructor: see nsenter.go for the protocol.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#define MAX_JOIN 16

struct join {
	int flag;
	int fd;
	char *path;
};

static int initpipe = -1;

static void bail(const char *fmt, ...)
{
	char msg[1024];
	int n = snprintf(msg, sizeof(msg), "error ");
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(msg))
		n = sizeof(msg) - 1;
	if (saved != 0)
		n += snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	if (n >= (int)sizeof(msg) - 1)
		n = sizeof(msg) - 2;
	msg[n++] = '\n';
	if (initpipe >= 0)
		send(initpipe, msg, n, MSG_NOSIGNAL);
	else
		fprintf(stderr, "berth-runtime: nsenter: %.*s", n - 6, msg + 6);
	_exit(1);
}

static void sendmsg_str(const char *s)
{
	if (send(initpipe, s, strlen(s), MSG_NOSIGNAL) < 0)
		bail("send %s to runtime", s);
}

static const char *nsname(int flag)
{
	switch (flag) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWNET: return "net";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWNS: return "mnt";
	case CLONE_NEWCGROUP: return "cgroup";
	case CLONE_NEWTIME: return "time";
	}
	return "unknown";
}

// Joining order, as the kernel's permission checks want it: the user
// namespace first (it grants the capabilities for the rest), the mount
// namespace late (the paths were opened before anything was joined).
static const int join_order[] = {
	CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWNET,
	CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWTIME,
};

static void become_root(void)
{
	if (setresgid(0, 0, 0) < 0)
		bail("setresgid(0) in the user namespace");
	if (setresuid(0, 0, 0) < 0)
		bail("setresuid(0) in the user namespace");
}

// join_cgroups moves this process into its cgroup through the v1 "tasks"
// files the runtime opened for it (_BERTH_CGROUPFDS, a comma-separated list
// of descriptors): "0" names the writing thread, which is the whole process
// while it is single-threaded, as it is here before Go starts. The kernel
// moves a thread that moves itself without the global lock a PID written to
// cgroup.procs takes. Errors are left to the runtime, which checks every
// directory and moves the process itself where this did not.
static void join_cgroups(void)
{
	const char *env = getenv("_BERTH_CGROUPFDS");
	if (env == NULL)
		return;
	while (*env != '\0') {
		char *end;
		long fd = strtol(env, &end, 10);
		if (end == env)
			break;
		if (fd >= 3 && fd != initpipe) {
			ssize_t n;
			do
				n = write((int)fd, "0", 1);
			while (n < 0 && errno == EINTR);
			close((int)fd);
		}
		env = *end == ',' ? end + 1 : end;
	}
	errno = 0;
}

// reset_signals gives the container's process every signal at its default
// disposition and none blocked, whatever the runtime's caller ignored or
// blocked: an ignored signal survives execve, and a container started
// from a shell under nohup, or by an engine ignoring SIGHUP, would
// otherwise never see it (a trap on it in the container would not fire).
// Only ignored signals are touched, through the kernel directly: libc
// refuses its own real-time signals (32, 33) in sigaction, and a handler
// libc installed for them must stay. The Go runtime then installs its own
// handlers, which execve resets.
struct kernel_sigaction {
	unsigned long handler;
	unsigned long flags;
	unsigned long restorer;
	unsigned long mask;
};

static void reset_signals(void)
{
	for (int sig = 1; sig < 65; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		struct kernel_sigaction old, dfl;
		memset(&old, 0, sizeof(old));
		memset(&dfl, 0, sizeof(dfl));
		dfl.handler = (unsigned long)SIG_DFL;
		if (syscall(SYS_rt_sigaction, sig, NULL, &old, sizeof(old.mask)) == 0 &&
		    old.handler == (unsigned long)SIG_IGN)
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	errno = 0;
}

void berth_nsenter(void)
{
	const char *env = getenv("_BERTH_INITPIPE");
	if (env == NULL || *env == '\0')
		return;
	reset_signals();
	initpipe = atoi(env);
	if (initpipe < 3) {
		initpipe = -1;
		errno = 0;
		bail("bad _BERTH_INITPIPE %s", env);
	}
	join_cgroups();

	// The plan ends with the line "end"; nothing follows it until the
	// runtime has our answer, so reading up to it consumes exactly the plan.
	static char buf[65536];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(initpipe, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			bail("read namespace plan");
		len += n;
		buf[len] = '\0';
		if (strcmp(buf, "end\n") == 0 || (len >= 5 && strcmp(buf + len - 5, "\nend\n") == 0))
			break;
		if (len == sizeof(buf) - 1) {
			errno = 0;
			bail("namespace plan too long");
		}
	}
	buf[len - 4] = '\0';

	struct join joins[MAX_JOIN];
	int njoin = 0, unshare_flags = 0, have_timens = 0;
	long long mono_s = 0, mono_ns = 0, boot_s = 0, boot_ns = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		errno = 0;
		if (strncmp(line, "join ", 5) == 0) {
			char *end;
			if (njoin == MAX_JOIN)
				bail("too many namespaces to join");
			joins[njoin].flag = (int)strtol(line + 5, &end, 10);
			if (*end != ' ')
				bail("bad plan line %s", line);
			joins[njoin].path = end + 1;
			joins[njoin].fd = -1;
			njoin++;
		} else if (strncmp(line, "unshare ", 8) == 0) {
			unshare_flags = (int)strtol(line + 8, NULL, 10);
		} else if (strncmp(line, "timens ", 7) == 0) {
			if (sscanf(line + 7, "%lld %lld %lld %lld", &mono_s, &mono_ns, &boot_s, &boot_ns) != 4)
				bail("bad plan line %s", line);
			have_timens = 1;
		} else if (strcmp(line, "end") != 0) {
			bail("bad plan line %s", line);
		}
	}

	// Open every path before joining anything: after joining the mount
	// namespace they may no longer resolve.
	for (int i = 0; i < njoin; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			bail("open %s namespace %s", nsname(joins[i].flag), joins[i].path);
	}
	int joined = 0;
	for (size_t o = 0; o < sizeof(join_order) / sizeof(join_order[0]); o++) {
		for (int i = 0; i < njoin; i++) {
			if (joins[i].flag != join_order[o])
				continue;
			if (setns(joins[i].fd, joins[i].flag) < 0)
				bail("join %s namespace %s", nsname(joins[i].flag), joins[i].path);
			close(joins[i].fd);
			joined |= joins[i].flag;
			if (joins[i].flag == CLONE_NEWUSER)
				become_root();
		}
	}

	if (unshare_flags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			bail("create user namespace");
		sendmsg_str("userns\n");
		char uack[3];
		ssize_t k = read(initpipe, uack, sizeof(uack));
		if (k != 3 || memcmp(uack, "ok\n", 3) != 0) {
			errno = 0;
			bail("runtime did not write the user namespace ID maps");
		}
		become_root();
	}
	int rest = unshare_flags & ~(CLONE_NEWUSER | CLONE_NEWCGROUP);
	if (rest != 0 && unshare(rest) < 0)
		bail("create namespaces (flags %#x)", rest);

	// The runtime moves us into the container's cgroup meanwhile; wait
	// for it, so that the cgroup namespace is rooted there and the child
	// forked below starts inside it.
	sendmsg_str("cgroup\n");
	char ack[3];
	if (read(initpipe, ack, sizeof(ack)) != 3 || memcmp(ack, "ok\n", 3) != 0) {
		errno = 0;
		bail("runtime did not place the process in its cgroup");
	}
	if ((unshare_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
		bail("create cgroup namespace");

	if (have_timens) {
		char offs[128];
		int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			bail("open /proc/self/timens_offsets");
		int len = snprintf(offs, sizeof(offs), "monotonic %lld %lld\nboottime %lld %lld\n",
				   mono_s, mono_ns, boot_s, boot_ns);
		if (write(fd, offs, len) != len)
			bail("write time namespace offsets");
		close(fd);
	}

	// A new or joined PID or time namespace applies to children only: fork
	// once, and let the runtime know the child's host PID.
	pid_t self = getpid();
	if ((unshare_flags | joined) & (CLONE_NEWPID | CLONE_NEWTIME)) {
		self = fork();
		if (self < 0)
			bail("fork into the pid namespace");
		if (self == 0)
			return;
	}
	char msg[32];
	snprintf(msg, sizeof(msg), "pid %d\n", (int)self);
	sendmsg_str(msg);
	if (self != getpid())
		_exit(0);
}
