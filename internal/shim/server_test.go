package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// serveEnv makes the test binary serve as berth-shim: Spawn runs it with
// --state-dir, as it runs the real one.
const serveEnv = "BERTH_SHIM_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if len(os.Args) != 3 || os.Args[1] != "--state-dir" {
			fmt.Fprintf(os.Stderr, "berth-shim: usage: --state-dir DIR, got %q\n", os.Args[1:])
			os.Exit(2)
		}
		if err := Serve(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fakeRuntime is a stand-in OCI runtime: its container's init is a sleep
// (reparented to the shim) that `start` lets go on, and `update` records
// its command line and standard input in the runtime root. With a file
// "update.fail" in the root, update fails as runc does, through its log.
const fakeRuntime = `#!/bin/sh
argv="$*"
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--log-format) shift 2 ;;
	--*) shift ;;
	*) break ;;
	esac
done
cmd=$1; shift
id=
while [ $# -gt 0 ]; do
	case "$1" in
	--pid-file) pidfile=$2; shift 2 ;;
	--bundle|--console-socket|--resources|--process) shift 2 ;;
	-*) shift ;;
	*) [ -n "$id" ] || id=$1; shift ;;
	esac
done
dir=$root/$id
case $cmd in
create)
	mkdir -p "$dir"
	sh -c 'while [ ! -e "$0/started" ]; do sleep 0.01; done; exec sleep 1000' "$dir" </dev/null >/dev/null 2>&1 &
	echo $! >"$pidfile"
	echo $! >"$dir/pid" ;;
start) touch "$dir/started" ;;
state)
	if kill -0 "$(cat "$dir/pid")" 2>/dev/null; then echo '{"status":"running"}'; else echo '{"status":"stopped"}'; fi ;;
kill) kill -9 "$(cat "$dir/pid")" ;;
delete)
	[ -d "$dir" ] || { echo "container $id does not exist" >&2; exit 1; }
	kill -9 "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir" ;;
update)
	if [ -e "$root/update.fail" ]; then
		echo '{"level":"error","msg":"cannot set memory limit: device or resource busy"}' >>"$log"
		exit 1
	fi
	echo "$argv" >"$root/update.args"
	cat >"$root/update.json" ;;
*) echo "unknown command $cmd" >&2; exit 1 ;;
esac
`

// spawnFake spawns the test binary as the shim of a fake-runtime container.
func spawnFake(t *testing.T) (*Client, Opts) {
	t.Helper()
	t.Setenv(serveEnv, "1")
	base := t.TempDir()
	rt := filepath.Join(base, "fake-runtime")
	if err := os.WriteFile(rt, []byte(fakeRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(base, "bundle")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"process":{"terminal":false,"args":["sleep"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Opts{
		ID: "fake1", Bundle: bundle, StateDir: filepath.Join(base, "s"),
		ShimBinary: os.Args[0], Runtime: rt, RuntimeRoot: filepath.Join(base, "root"),
		RuntimeArgs: []string{"--systemd-cgroup"},
	}
	if err := os.MkdirAll(o.RuntimeRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Spawn(ctx, o)
	if err != nil {
		t.Fatalf("spawn shim: %v", err)
	}
	t.Cleanup(func() {
		if processGone(c.ShimPid()) {
			return // the test killed it, and cleaned up after it
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := c.Delete(ctx, true); err != nil {
			t.Errorf("delete the container: %v", err)
			syscall.Kill(c.ShimPid(), syscall.SIGKILL)
		}
	})
	return c, o
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestUpdate checks that an update reaches the runtime as `update
// --resources - ID` after the shim's global runtime flags, with the
// resources as JSON on its standard input.
func TestUpdate(t *testing.T) {
	c, o := spawnFake(t)
	ctx := testCtx(t)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	limit, swap, pids := int64(16<<20), int64(32<<20), int64(50)
	shares := uint64(512)
	want := specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap},
		CPU:    &specs.LinuxCPU{Shares: &shares, Cpus: "0"},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
	if err := c.Update(ctx, &want); err != nil {
		t.Fatalf("Update: %v", err)
	}
	args, err := os.ReadFile(filepath.Join(o.RuntimeRoot, "update.args"))
	if err != nil {
		t.Fatalf("the runtime ran no update: %v", err)
	}
	wantArgs := fmt.Sprintf("--systemd-cgroup --root %s --log %s --log-format json update --resources - %s",
		o.RuntimeRoot, filepath.Join(c.StateDir(), rtLogName), o.ID)
	if got := strings.TrimSpace(string(args)); got != wantArgs {
		t.Errorf("runtime command line\n got %s\nwant %s", got, wantArgs)
	}
	b, err := os.ReadFile(filepath.Join(o.RuntimeRoot, "update.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got specs.LinuxResources
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("the runtime's standard input %q is not resources: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the runtime read %s", b)
	}

	// The runtime's own error comes back, from its log.
	if err := os.WriteFile(filepath.Join(o.RuntimeRoot, "update.fail"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, &want); err == nil || !strings.Contains(err.Error(), "cannot set memory limit: device or resource busy") {
		t.Errorf("a failed runtime update: %v, want the runtime's message", err)
	}
	os.Remove(filepath.Join(o.RuntimeRoot, "update.fail"))

	if err := c.Update(ctx, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Update(nil) = %v, want an invalid argument", err)
	}
	if _, err := c.call(ctx, request{Op: opUpdate, Resources: json.RawMessage(`[1]`)}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("update with a JSON array = %v, want an invalid argument", err)
	}

	// A container that exited has nothing to update.
	if err := c.Kill(ctx, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	es, err := c.Wait(ctx)
	if err != nil || es.Code != 137 {
		t.Fatalf("Wait after SIGKILL = %+v, %v; want 137", es, err)
	}
	if es.OOMKilled {
		t.Errorf("a SIGKILL reported as an OOM kill: %+v", es)
	}
	if err := c.Update(ctx, &want); !errdefs.IsConflict(err) {
		t.Errorf("update of an exited container = %v, want a conflict", err)
	}
}

// TestCleanup deletes the container of a shim killed with SIGKILL through
// the runtime it was spawned with.
func TestCleanup(t *testing.T) {
	c, o := spawnFake(t)
	ctx := testCtx(t)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	initPid := c.Pid()
	if err := Cleanup(ctx, c.StateDir()); !errdefs.IsConflict(err) {
		t.Fatalf("Cleanup while the shim runs = %v, want a conflict", err)
	}
	t.Cleanup(func() {
		if !processGone(initPid) {
			syscall.Kill(initPid, syscall.SIGKILL)
		}
	})
	if err := syscall.Kill(c.ShimPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	if processGone(initPid) {
		t.Fatalf("the container's init %d went with its shim", initPid)
	}
	if err := Cleanup(ctx, c.StateDir()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.RuntimeRoot, o.ID)); !os.IsNotExist(err) {
		t.Errorf("the runtime still knows the container: %v", err)
	}
	for !processGone(initPid) { // SIGKILL takes effect asynchronously
		if ctx.Err() != nil {
			syscall.Kill(initPid, syscall.SIGKILL)
			t.Fatalf("the container's init %d still runs", initPid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Once more: the runtime no longer knows it, which is no error.
	if err := Cleanup(ctx, c.StateDir()); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
	if err := Cleanup(ctx, t.TempDir()); err != nil {
		t.Errorf("Cleanup of a directory where no shim was spawned: %v", err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, configName), []byte(`{"id":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(ctx, bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Cleanup with a config naming no runtime = %v, want an invalid argument", err)
	}
}
