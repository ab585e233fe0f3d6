package mount

import (
	"errors"
	"reflect"
	"testing"

	"github.com/berth-project/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		opts  []string
		flags uintptr
	}{
		{nil, 0},
		{[]string{"defaults"}, 0},
		{[]string{"ro"}, unix.MS_RDONLY},
		{[]string{"ro", "rw"}, 0},
		{[]string{"rw", "ro"}, unix.MS_RDONLY},
		{[]string{"nosuid", "nodev", "noexec"}, unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{[]string{"nosuid", "suid", "nodev", "dev", "noexec", "exec"}, 0},
		{[]string{"sync"}, unix.MS_SYNCHRONOUS},
		{[]string{"sync", "async"}, 0},
		{[]string{"dirsync"}, unix.MS_DIRSYNC},
		{[]string{"remount"}, unix.MS_REMOUNT},
		{[]string{"mand"}, unix.MS_MANDLOCK},
		{[]string{"mand", "nomand"}, 0},
		{[]string{"noatime"}, unix.MS_NOATIME},
		{[]string{"noatime", "atime"}, 0},
		{[]string{"nodiratime"}, unix.MS_NODIRATIME},
		{[]string{"nodiratime", "diratime"}, 0},
		{[]string{"relatime"}, unix.MS_RELATIME},
		{[]string{"relatime", "norelatime"}, 0},
		{[]string{"strictatime"}, unix.MS_STRICTATIME},
		{[]string{"strictatime", "nostrictatime"}, 0},
		{[]string{"noatime", "strictatime"}, unix.MS_STRICTATIME},
		{[]string{"strictatime", "relatime"}, unix.MS_RELATIME},
		{[]string{"lazytime"}, unix.MS_LAZYTIME},
		{[]string{"lazytime", "nolazytime"}, 0},
		{[]string{"nosymfollow"}, unix.MS_NOSYMFOLLOW},
		{[]string{"bind"}, unix.MS_BIND},
		{[]string{"rbind"}, unix.MS_BIND | unix.MS_REC},
	} {
		o, err := Parse(tc.opts)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.opts, err)
			continue
		}
		if o.Flags != tc.flags {
			t.Errorf("Parse(%q).Flags = %#x, want %#x", tc.opts, o.Flags, tc.flags)
		}
		if o.Data != "" || len(o.Propagation) != 0 {
			t.Errorf("Parse(%q) = %+v: unexpected data or propagation", tc.opts, o)
		}
	}
}

func TestParseBind(t *testing.T) {
	o, _ := Parse([]string{"bind", "ro"})
	if !o.Bind || o.Recursive {
		t.Errorf("bind: Bind=%v Recursive=%v", o.Bind, o.Recursive)
	}
	o, _ = Parse([]string{"rbind"})
	if !o.Bind || !o.Recursive {
		t.Errorf("rbind: Bind=%v Recursive=%v", o.Bind, o.Recursive)
	}
	o, _ = Parse([]string{"nosuid"})
	if o.Bind || o.Recursive {
		t.Errorf("nosuid: Bind=%v Recursive=%v", o.Bind, o.Recursive)
	}
	if !(Mount{Type: "bind"}).IsBind(Options{}) || (Mount{Type: "tmpfs"}).IsBind(Options{}) {
		t.Error("IsBind by type is wrong")
	}
}

func TestParsePropagation(t *testing.T) {
	o, err := Parse([]string{"rbind", "rprivate", "shared", "rslave", "private", "runbindable", "unbindable", "slave", "rshared"})
	if err != nil {
		t.Fatal(err)
	}
	want := []uintptr{
		unix.MS_REC | unix.MS_PRIVATE, unix.MS_SHARED, unix.MS_REC | unix.MS_SLAVE, unix.MS_PRIVATE,
		unix.MS_REC | unix.MS_UNBINDABLE, unix.MS_UNBINDABLE, unix.MS_SLAVE, unix.MS_REC | unix.MS_SHARED,
	}
	if !reflect.DeepEqual(o.Propagation, want) {
		t.Errorf("Propagation = %#x, want %#x", o.Propagation, want)
	}
	if o.Flags != unix.MS_BIND|unix.MS_REC {
		t.Errorf("propagation leaked into Flags: %#x", o.Flags)
	}
	for _, name := range []string{"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"} {
		p, ok := PropagationFlag(name)
		if !ok || PropagationName(p) != name {
			t.Errorf("PropagationFlag/Name round trip of %q: %#x %v %q", name, p, ok, PropagationName(p))
		}
	}
}

func TestParseRecursive(t *testing.T) {
	for _, tc := range []struct {
		opts     []string
		set, clr uint64
	}{
		{[]string{"rro"}, unix.MOUNT_ATTR_RDONLY, 0},
		{[]string{"rrw"}, 0, unix.MOUNT_ATTR_RDONLY},
		{[]string{"rro", "rrw"}, 0, unix.MOUNT_ATTR_RDONLY},
		{[]string{"rrw", "rro"}, unix.MOUNT_ATTR_RDONLY, 0},
		{[]string{"rnosuid", "rnodev", "rnoexec"}, unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC, 0},
		{[]string{"rsuid", "rdev", "rexec"}, 0, unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC},
		{[]string{"rnodiratime"}, unix.MOUNT_ATTR_NODIRATIME, 0},
		{[]string{"rdiratime"}, 0, unix.MOUNT_ATTR_NODIRATIME},
		{[]string{"rnoatime"}, unix.MOUNT_ATTR_NOATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rstrictatime"}, unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnoatime", "rrelatime"}, unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnoatime", "rstrictatime"}, unix.MOUNT_ATTR_STRICTATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"ratime"}, unix.MOUNT_ATTR_RELATIME, unix.MOUNT_ATTR__ATIME},
		{[]string{"rnosymfollow"}, unix.MOUNT_ATTR_NOSYMFOLLOW, 0},
		{[]string{"rsymfollow"}, 0, unix.MOUNT_ATTR_NOSYMFOLLOW},
	} {
		o, err := Parse(tc.opts)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.opts, err)
			continue
		}
		if o.RecAttrSet != tc.set || o.RecAttrClr != tc.clr {
			t.Errorf("Parse(%q): set %#x clr %#x, want %#x %#x", tc.opts, o.RecAttrSet, o.RecAttrClr, tc.set, tc.clr)
		}
		if o.Flags != 0 || o.Data != "" {
			t.Errorf("Parse(%q) = %+v: recursive option leaked", tc.opts, o)
		}
	}
}

func TestParseData(t *testing.T) {
	o, err := Parse([]string{"nosuid", "mode=755", "x-systemd.automount", "size=65536k", "newinstance", "tmpcopyup", "x-berth.foo=bar", ""})
	if err != nil {
		t.Fatal(err)
	}
	if o.Data != "mode=755,size=65536k,newinstance" {
		t.Errorf("Data = %q", o.Data)
	}
	if o.Flags != unix.MS_NOSUID {
		t.Errorf("Flags = %#x", o.Flags)
	}
	if !TmpCopyUp([]string{"tmpcopyup"}) || TmpCopyUp([]string{"tmpcopyup", "notmpcopyup"}) || TmpCopyUp(nil) {
		t.Error("TmpCopyUp is wrong")
	}
}

func TestParseIdmapRefused(t *testing.T) {
	for _, opt := range []string{"idmap", "ridmap", "idmap=uids=0-1000-10;gids=0-1000-10"} {
		_, err := Parse([]string{"bind", opt})
		if !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("Parse(%q) = %v, want a not-implemented error", opt, err)
		}
	}
}

func TestAttrsOf(t *testing.T) {
	if a := attrsOf(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOATIME); a != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOATIME {
		t.Errorf("attrsOf = %#x", a)
	}
	if a := attrsOf(unix.MS_STRICTATIME | unix.MS_NODEV | unix.MS_NOEXEC); a != unix.MOUNT_ATTR_STRICTATIME|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC {
		t.Errorf("attrsOf = %#x", a)
	}
}

func TestFdOf(t *testing.T) {
	for in, want := range map[string]int{"/proc/self/fd/7": 7, "/proc/thread-self/fd/12": 12, "/proc/self/fd/x": -1, "/tmp/a": -1, "/proc/self/fd/": -1} {
		if n, _ := fdOf(in); n != want {
			t.Errorf("fdOf(%q) = %d, want %d", in, n, want)
		}
	}
}
