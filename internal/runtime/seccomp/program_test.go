package seccomp

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
)

func notifyProfile(flags ...specs.LinuxSeccompFlag) *specs.LinuxSeccomp {
	p := allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActNotify})
	p.ListenerPath = "/run/agent.sock"
	p.Flags = flags
	return &p
}

func TestCompileFlags(t *testing.T) {
	p, err := Compile(notifyProfile(FlagTsync, specs.LinuxSeccompFlagLog))
	if err != nil {
		t.Fatal(err)
	}
	if want := uint(flagTsync | flagLog | flagNewListener | flagTsyncEsrch); !p.Notify() || p.flags != want {
		t.Errorf("notify %v flags %#x, want a listener and flags %#x", p.Notify(), p.flags, want)
	}
	if flagSupported(flagWaitKillableRecv) {
		q := allowWith(specs.LinuxSyscall{Names: []string{"mkdir"}, Action: specs.ActErrno})
		q.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}
		p, err := Compile(&q)
		if err != nil {
			t.Fatal(err)
		}
		if p.Notify() || p.flags != 0 {
			t.Errorf("without notify rules: notify %v flags %#x, want no listener and no flags", p.Notify(), p.flags)
		}
	}
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}

func TestProgramMarshalRoundTrip(t *testing.T) {
	p, err := Compile(notifyProfile(FlagTsync))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q Program
	if err := q.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.insns, q.insns) || p.flags != q.flags || p.notify != q.notify || q.Len() == 0 {
		t.Errorf("round trip changed the program: %d/%d instructions, flags %#x/%#x", p.Len(), q.Len(), p.flags, q.flags)
	}
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"other magic": append([]byte("berth-seccomp-9\n"), b[len(programMagic):]...),
		"truncated":   b[:len(b)-3],
		"count":       append(b[:len(b):len(b)], make([]byte, 8)...),
		"flags": func() []byte {
			c := slices.Clone(b)
			c[len(programMagic)+4] = 0x80 // an unknown high flag bit
			return c
		}(),
		"notify without listener flag": func() []byte {
			c := slices.Clone(b)
			c[len(programMagic)] = 0
			return c
		}(),
	} {
		var r Program
		if err := r.UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestMarshalledProgramLoadsInChild(t *testing.T) {
	prof := allowWith(specs.LinuxSyscall{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: uintp(30)})
	p, err := Compile(&prof)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.MarshalBinary()
	dir := filepath.Join(t.TempDir(), "made")
	r := runChildSpec(t, childSpec{Program: b, Args: []string{"mkdir", dir}})
	if r.code != 1 || !strings.Contains(r.out, "Read-only file system") {
		t.Errorf("exit %d output %q, want mkdir denied with EROFS", r.code, r.out)
	}
}

func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.bpf"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompileCached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	prof := notifyProfile()
	fresh, err := Compile(prof)
	if err != nil {
		t.Fatal(err)
	}
	first, err := CompileCached(dir, prof)
	if err != nil {
		t.Fatal(err)
	}
	entries := cacheEntries(t, dir)
	if len(entries) != 1 {
		t.Fatalf("cache holds %v, want one program", entries)
	}
	second, err := CompileCached(dir, prof)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Program{first, second} {
		if !slices.Equal(p.insns, fresh.insns) || p.flags != fresh.flags || p.notify != fresh.notify {
			t.Errorf("cached program differs from a fresh compilation")
		}
	}
	// The cache answers: a changed entry is what the second call returned.
	st, _ := os.Stat(entries[0])
	if err := os.WriteFile(entries[0], encodeInsns(fresh.insns[:1]), st.Mode()); err != nil {
		t.Fatal(err)
	}
	if third, err := CompileCached(dir, prof); err != nil || third.Len() != 1 {
		t.Errorf("cache entry not used: %v", err)
	}
	// Flags are not part of the program: same entry, different flags.
	withLog := notifyProfile(specs.LinuxSeccompFlagLog)
	p, err := CompileCached(dir, withLog)
	if err != nil || p.flags&flagLog == 0 || len(cacheEntries(t, dir)) != 1 {
		t.Errorf("flags: %v, flags %#x, entries %v", err, p.flags, cacheEntries(t, dir))
	}
	// Different rules: a second entry.
	other := allowWith(specs.LinuxSyscall{Names: []string{"mkdir"}, Action: specs.ActErrno})
	if _, err := CompileCached(dir, &other); err != nil || len(cacheEntries(t, dir)) != 2 {
		t.Errorf("other rules: %v, entries %v", err, cacheEntries(t, dir))
	}
	// Bad profiles fail before the cache is consulted.
	bad := allowWith(specs.LinuxSyscall{Names: []string{"mkdir"}, Action: "SCMP_ACT_BOGUS"})
	if _, err := CompileCached(dir, &bad); err == nil {
		t.Error("a bad profile compiled")
	}
}

func TestCompileCachedRefusesUnsafeCache(t *testing.T) {
	prof := notifyProfile()
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := CompileCached(dir, prof); err != nil {
		t.Fatal(err)
	}
	entry := cacheEntries(t, dir)[0]

	if err := os.Chmod(entry, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := CompileCached(dir, prof); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("group/other-writable entry: %v", err)
	}
	if err := os.WriteFile(entry, []byte("1234567"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(entry, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CompileCached(dir, prof); err == nil || !strings.Contains(err.Error(), "not a whole number of instructions") {
		t.Errorf("corrupt entry: %v", err)
	}
	if err := os.Remove(entry); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", entry); err != nil {
		t.Fatal(err)
	}
	if _, err := CompileCached(dir, prof); err == nil {
		t.Error("symlinked entry was followed")
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := CompileCached(dir, prof); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable dir: %v", err)
	}
}

func TestValidateNamesArchLibseccompLacks(t *testing.T) {
	err := Validate(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchM68K}})
	major, minor, _ := libseccomp.GetLibraryVersion()
	if major == 2 && minor < 6 {
		if err == nil || !strings.Contains(err.Error(), "SCMP_ARCH_M68K") {
			t.Errorf("libseccomp %d.%d has no m68k; got %v", major, minor, err)
		}
	} else if err != nil {
		t.Error(err)
	}
}
