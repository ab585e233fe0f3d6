package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-project/berth/internal/errdefs"
)

// dataRootState is what a failed create must leave as it found it.
type dataRootState struct {
	containers []string // entries of <data-root>/containers
	snapshots  int
	volumes    []string // entries of <data-root>/volumes
	listed     int      // containers the engine lists
}

func (r *realEnv) dataRootState() dataRootState {
	r.t.Helper()
	var s dataRootState
	names := func(dir string) []string {
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			r.t.Fatalf("read %s: %v", dir, err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	s.containers = names(filepath.Join(r.dataRoot, "containers"))
	s.volumes = names(filepath.Join(r.dataRoot, "volumes"))
	st, err := r.e.Stats(context.Background())
	if err != nil {
		r.t.Fatalf("engine stats: %v", err)
	}
	s.snapshots = st.Snapshots
	list, err := r.e.ContainerList(context.Background(), ContainerListOptions{All: true})
	if err != nil {
		r.t.Fatalf("list containers: %v", err)
	}
	s.listed = len(list)
	return s
}

// sameState fails t, naming what, when the data root changed from before.
func (r *realEnv) sameState(what string, before dataRootState) {
	r.t.Helper()
	r.sameStateAs(what, before, r.dataRootState())
}

func (r *realEnv) sameStateAs(what string, before, after dataRootState) {
	r.t.Helper()
	if !slices.Equal(before.containers, after.containers) {
		r.t.Errorf("%s: <data-root>/containers holds %v, before %v", what, after.containers, before.containers)
	}
	if before.snapshots != after.snapshots {
		r.t.Errorf("%s: %d snapshots, before %d", what, after.snapshots, before.snapshots)
	}
	if !slices.Equal(before.volumes, after.volumes) {
		r.t.Errorf("%s: <data-root>/volumes holds %v, before %v", what, after.volumes, before.volumes)
	}
	if before.listed != after.listed {
		r.t.Errorf("%s: the engine lists %d containers, before %d", what, after.listed, before.listed)
	}
	if ms, _ := mountsUnder(r.dataRoot, r.execRoot); len(ms) > 0 {
		r.t.Errorf("%s: mounts under the roots: %v", what, ms)
	}
}

// TestRealCreateRollback: a create that fails leaves no record, snapshot,
// directory, volume or name reservation behind, and says what was wrong.
func TestRealCreateRollback(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	if _, err := r.tryCreate("taken", nil, "true"); err != nil {
		t.Fatalf("create the container that holds the name: %v", err)
	}
	for _, tc := range []struct {
		what  string
		name  string
		cfg   func(*container.Config)
		hc    *container.HostConfig
		class func(error) bool
		says  string // the error names this
	}{
		{what: "unknown runtime", name: "c1", hc: &container.HostConfig{Runtime: "no-such-runtime"},
			class: errdefs.IsInvalidArgument, says: "no-such-runtime"},
		{what: "unknown image", name: "c2", cfg: func(c *container.Config) { c.Image = "no-such-image:1" },
			class: errdefs.IsNotFound, says: "no-such-image"},
		{what: "invalid name", name: "bad name!",
			class: errdefs.IsInvalidArgument, says: "bad name!"},
		{what: "name in use", name: "taken",
			class: errdefs.IsConflict, says: "taken"},
		{what: "invalid volume name", name: "c3", hc: &container.HostConfig{Binds: []string{"bad$vol:/v"}},
			class: errdefs.IsInvalidArgument, says: "bad$vol"},
		{what: "relative bind destination", name: "c4", hc: &container.HostConfig{Binds: []string{"/tmp:relative"}},
			class: errdefs.IsInvalidArgument, says: "relative"},
		{what: "unsupported log driver", name: "c5", hc: &container.HostConfig{LogConfig: container.LogConfig{Type: "syslog"}},
			class: errdefs.IsInvalidArgument, says: "syslog"},
		// Fails after the directory and the snapshot were made.
		{what: "invalid extra host (after the snapshot is prepared)", name: "c6", hc: &container.HostConfig{ExtraHosts: []string{"no-address-here"}},
			class: errdefs.IsInvalidArgument, says: "no-address-here"},
	} {
		before := r.dataRootState()
		cfg := &container.Config{Image: r.image, Cmd: []string{"true"}}
		if tc.cfg != nil {
			tc.cfg(cfg)
		}
		id, err := r.tryCreateConfig(tc.name, cfg, tc.hc)
		if err == nil {
			t.Errorf("%s: create succeeded (container %s), want it refused", tc.what, id)
			continue
		}
		if !tc.class(err) {
			t.Errorf("%s: error %q has the wrong class", tc.what, err)
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %q does not name %q", tc.what, err, tc.says)
		}
		r.sameState(tc.what, before)
		// The name is free again (except the one in use).
		if tc.name != "taken" && validName.MatchString(tc.name) {
			id, err := r.tryCreate(tc.name, nil, "true")
			if err != nil {
				t.Errorf("%s: the name %s is not free after the failed create: %v", tc.what, tc.name, err)
				continue
			}
			if err := r.e.ContainerRemove(context.Background(), id, false, true); err != nil {
				t.Errorf("remove %s: %v", id, err)
			}
			r.assertNoTrace(id)
		}
	}
}

// TestRealCreateRollbackAnonymousVolume: a create that fails after the
// image's anonymous volumes were made removes them again (Docker's failed
// create removes the container with its anonymous volumes).
func TestRealCreateRollbackAnonymousVolume(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	img := r.importImage([]string{"VOLUME /srv"})
	before := r.dataRootState()
	_, err := r.tryCreateConfig("", &container.Config{Image: img, Cmd: []string{"true"}}, &container.HostConfig{ExtraHosts: []string{"no-address-here"}})
	if err == nil || !strings.Contains(err.Error(), "no-address-here") {
		t.Fatalf("create with an invalid extra host: %v, want an error naming it", err)
	}
	// Everything but the volumes is as before.
	after := r.dataRootState()
	leaked := slices.DeleteFunc(slices.Clone(after.volumes), func(v string) bool { return slices.Contains(before.volumes, v) })
	after.volumes = before.volumes
	r.sameStateAs("failed create of a container with an image VOLUME", before, after)
	if len(leaked) > 0 {
		t.Fatalf("a ContainerCreate that fails after planMounts (here writeNetworkFiles on an invalid extra host) leaves the anonymous volumes planMounts made for the image's VOLUMEs: <data-root>/volumes/%v (Docker removes a failed create's anonymous volumes)", leaked)
	}
}

// TestRealCreateBindSourceMissing: a --mount bind whose source does not
// exist is refused at create, as Docker does ("bind source path does not
// exist"), and leaves nothing behind; if the engine lets it through, the
// start fails and still leaves no mount, shim or cgroup behind.
func TestRealCreateBindSourceMissing(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	hc := &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: missing, Target: "/x"}}}
	before := r.dataRootState()
	id, err := r.tryCreate("bindmissing", hc, "true")
	if err != nil {
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), missing) {
			t.Errorf("create with a missing bind source: %v, want an invalid-argument error naming %s", err, missing)
		}
		r.sameState("failed create with a missing bind source", before)
		return
	}
	// The engine accepted it: the start must fail cleanly.
	startErr := r.e.ContainerStart(context.Background(), id)
	if startErr == nil {
		t.Fatalf("start of a container whose bind source %s is missing succeeded", missing)
	}
	if !strings.Contains(startErr.Error(), missing) && !strings.Contains(startErr.Error(), "/x") {
		t.Errorf("start error %q names neither the source %s nor the target /x", startErr, missing)
	}
	r.assertNoRunLeft(id)
	t.Fatalf("ContainerCreate accepts a --mount bind whose source %s does not exist (Docker refuses it at create: `invalid mount config for type \"bind\": bind source path does not exist`); the start then fails with %q", missing, startErr)
}

// assertNoRunLeft fails t for anything a failed or finished run of the
// container left: rootfs mounts, shim processes, cgroups, a shim state
// directory.
func (r *realEnv) assertNoRunLeft(id string) {
	r.t.Helper()
	if ms, _ := mountsUnder(filepath.Join(r.dataRoot, "containers", id)); len(ms) > 0 {
		r.t.Errorf("container %s: mounts left: %v", id, ms)
	}
	if cg := cgroupsOf(id); len(cg) > 0 {
		r.t.Errorf("container %s: cgroups left: %v", id, cg)
	}
	if p := processesMentioning(id); len(p) > 0 {
		r.t.Errorf("container %s: processes left: %v", id, p)
	}
}

// TestRealStartInvalidUser: a user the image does not have fails the start
// (as Docker: "unable to find user"), records the error and exit code 128,
// and leaves no mount, shim or cgroup; the container can then be removed
// without a trace.
func TestRealStartInvalidUser(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id, err := r.tryCreateConfig("baduser", &container.Config{Image: r.image, User: "nosuchuser", Cmd: []string{"true"}}, nil)
	if err != nil {
		// Refusing it at create is fine too, if nothing is left.
		if !strings.Contains(err.Error(), "nosuchuser") {
			t.Errorf("create with an invalid user: %v, want an error naming nosuchuser", err)
		}
		return
	}
	err = r.e.ContainerStart(context.Background(), id)
	if err == nil || !strings.Contains(err.Error(), "nosuchuser") {
		t.Fatalf("start with user nosuchuser: %v, want an error naming the user", err)
	}
	st := r.inspect(id).State
	if st.Running || st.ExitCode != 128 || !strings.Contains(st.Error, "nosuchuser") {
		t.Errorf("after the failed start: state %+v, want not running, exit 128 and the error", st)
	}
	r.assertNoRunLeft(id)
	if err := r.e.ContainerRemove(context.Background(), id, false, true); err != nil {
		t.Fatalf("rm: %v", err)
	}
	r.assertNoTrace(id)
}

// TestRealStartMissingBinary: a command that does not exist in the image
// fails the start with an error naming it, and the container is left
// exited with nothing running or mounted.
func TestRealStartMissingBinary(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	id := r.create("nobinary", nil, "/no/such/binary")
	err := r.e.ContainerStart(context.Background(), id)
	if err == nil {
		// Docker fails the start; a runtime that starts the process and
		// lets exec fail reports 127 at exit instead.
		code := r.wait(id)
		t.Errorf("start of a container whose command does not exist succeeded (exit %d), want the start to fail", code)
	} else if !strings.Contains(err.Error(), "/no/such/binary") {
		t.Errorf("start error %q does not name the missing command", err)
	}
	// Docker leaves such a container "created" with the error and a
	// non-zero exit code; "exited" is as good.
	st := r.inspect(id).State
	if st.Running || (st.Status != StateCreated && st.Status != StateExited) || st.ExitCode == 0 || !strings.Contains(st.Error, "/no/such/binary") {
		t.Errorf("after the failed start: state %+v, want created or exited, a non-zero exit code and the error", st)
	}
	r.assertNoRunLeft(id)
	if err := r.e.ContainerRemove(context.Background(), id, false, true); err != nil {
		t.Fatalf("rm: %v", err)
	}
	r.assertNoTrace(id)
}

// TestRealStartSpawnFailures: a start that cannot spawn its shim (missing
// shim binary) or whose runtime binary is missing fails naming it, and
// leaves the container startable later, with no mount, shim or cgroup.
func TestRealStartSpawnFailures(t *testing.T) {
	r := startReal(t)
	if r == nil {
		return
	}
	ctx := context.Background()
	rtID := r.create("", &container.HostConfig{Runtime: "missing-runtime"}, "true")
	err := r.e.ContainerStart(ctx, rtID)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/runtime") {
		t.Errorf("start with a missing runtime binary: %v, want an error naming /nonexistent/runtime", err)
	}
	r.assertNoRunLeft(rtID)
	if st := r.inspect(rtID).State; st.Running || st.Error == "" {
		t.Errorf("after the failed start: state %+v, want not running with the error", st)
	}

	id := r.create("", nil, "sh", "-c", "exit 6")
	r.closeEngine()
	r.shimBinary = "/nonexistent/berth-shim"
	r.open()
	err = r.e.ContainerStart(ctx, id)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/berth-shim") {
		t.Errorf("start with a missing shim binary: %v, want an error naming /nonexistent/berth-shim", err)
	}
	r.assertNoRunLeft(id)
	r.closeEngine()
	r.shimBinary = ""
	r.open()
	r.start(id)
	if code := r.wait(id); code != 6 {
		t.Errorf("start after the failed one: exit %d, want 6", code)
	}
}
