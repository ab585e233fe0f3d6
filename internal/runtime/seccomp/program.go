package seccomp

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// Program is a compiled filter with the seccomp(2) flags to install it
// with. Compiling takes milliseconds (tens for a profile with three
// architectures such as Docker's default); installing takes microseconds.
// So the runtime can compile on the host during `create` (or take a cached
// compilation, see CompileCached), hand the Program to the init as bytes
// (MarshalBinary), and have the init only install it before execve.
type Program struct {
	insns  []unix.SockFilter
	flags  uint
	notify bool
}

// Notify reports whether the filter has SCMP_ACT_NOTIFY rules, that is
// whether Load returns a listener fd.
func (p *Program) Notify() bool { return p.notify }

// Len is the number of BPF instructions.
func (p *Program) Len() int { return len(p.insns) }

// Compile validates a profile and compiles it into a Program.
func Compile(s *specs.LinuxSeccomp) (*Program, error) {
	return compile(s, func() ([]unix.SockFilter, error) { return compileBPF(s) })
}

func compile(s *specs.LinuxSeccomp, bpf func() ([]unix.SockFilter, error)) (*Program, error) {
	if s == nil {
		return nil, invalid("no profile to compile")
	}
	if err := check(s); err != nil {
		return nil, err
	}
	bits, err := kernelFlags(s.Flags)
	if err != nil {
		return nil, err
	}
	insns, err := bpf()
	if err != nil {
		return nil, err
	}
	notify := UsesNotify(s)
	if !notify {
		// The flag changes how a listener waits; the kernel refuses it
		// on a filter without one, where it means nothing.
		bits &^= flagWaitKillableRecv
	} else {
		bits |= flagNewListener
		if bits&flagTsync != 0 {
			// The kernel refuses TSYNC with a listener unless a
			// thread that cannot sync fails with ESRCH instead.
			bits |= flagTsyncEsrch
		}
	}
	return &Program{insns: insns, flags: bits, notify: notify}, nil
}

// UsesNotify reports whether a profile has SCMP_ACT_NOTIFY rules, so that
// loading it yields a listener to pass to listenerPath. The listener is
// close-on-exec and listenerPath is a host path: the init has to hand the
// fd to a runtime process on the host (as runc's init does over its sync
// pipe during create) before it execs.
func UsesNotify(s *specs.LinuxSeccomp) bool {
	if s == nil {
		return false
	}
	for _, sc := range s.Syscalls {
		if sc.Action == specs.ActNotify {
			return true
		}
	}
	return false
}

// compileBPF builds a checked profile with libseccomp and exports it.
func compileBPF(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	filter, err := build(s)
	if err != nil {
		return nil, errdefs.InvalidArgument(err)
	}
	defer filter.Release()
	insns, err := export(filter)
	if err != nil {
		return nil, err
	}
	return withEnosysStub(s, insns), nil
}

// Load builds the profile's filter and installs it for the calling thread
// (for every thread of the process with SECCOMP_FILTER_FLAG_TSYNC); see
// Program.Load.
func Load(s *specs.LinuxSeccomp) (notifyFD int, err error) {
	if s == nil {
		return -1, nil
	}
	p, err := Compile(s)
	if err != nil {
		return -1, err
	}
	return p.Load()
}

// Load installs the filter for the calling thread (for every thread of the
// process with SECCOMP_FILTER_FLAG_TSYNC). The caller must have locked its
// goroutine to the OS thread and have set no_new_privs or hold
// CAP_SYS_ADMIN. Syscalls the calling thread makes afterwards are filtered:
// the init calls it last, right before execve.
//
// With SCMP_ACT_NOTIFY rules it returns the listener fd (close-on-exec, so
// it must be passed on before execve), which goes to the profile's
// listenerPath with SendListener; otherwise it returns -1.
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to a filter with a
// listener and is dropped from one without.
func (p *Program) Load() (notifyFD int, err error) {
	fd, err := install(p.insns, p.flags)
	if err != nil {
		return -1, fmt.Errorf("seccomp: load filter (%d instructions, flags %#x): %w", len(p.insns), p.flags, explain(err))
	}
	return fd, nil
}

// programMagic starts a marshalled Program.
var programMagic = []byte("berth-seccomp-1\n")

// MarshalBinary encodes the Program for UnmarshalBinary in another
// process of the same machine (native byte order).
func (p *Program) MarshalBinary() ([]byte, error) {
	b := bytes.NewBuffer(make([]byte, 0, len(programMagic)+9+8*len(p.insns)))
	b.Write(programMagic)
	notify := byte(0)
	if p.notify {
		notify = 1
	}
	b.WriteByte(notify)
	b.Write(binary.NativeEndian.AppendUint32(nil, uint32(p.flags)))
	b.Write(binary.NativeEndian.AppendUint32(nil, uint32(len(p.insns))))
	b.Write(encodeInsns(p.insns))
	return b.Bytes(), nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (p *Program) UnmarshalBinary(data []byte) error {
	rest, ok := bytes.CutPrefix(data, programMagic)
	if !ok || len(rest) < 9 {
		return errors.New("seccomp: decode program: not a Berth seccomp program")
	}
	notify := rest[0] == 1
	flags := uint(binary.NativeEndian.Uint32(rest[1:5]))
	n := int(binary.NativeEndian.Uint32(rest[5:9]))
	insns, err := decodeInsns(rest[9:])
	if err != nil {
		return fmt.Errorf("seccomp: decode program: %w", err)
	}
	if len(insns) != n {
		return fmt.Errorf("seccomp: decode program: %d instructions, header says %d", len(insns), n)
	}
	if notify != (flags&flagNewListener != 0) || flags&^uint(flagTsync|flagLog|flagSpecAllow|flagNewListener|flagTsyncEsrch|flagWaitKillableRecv) != 0 {
		return fmt.Errorf("seccomp: decode program: bad flags %#x", flags)
	}
	*p = Program{insns: insns, flags: flags, notify: notify}
	return nil
}

const insnSize = 8 // struct sock_filter

func encodeInsns(insns []unix.SockFilter) []byte {
	out := make([]byte, 0, insnSize*len(insns))
	for _, in := range insns {
		out = binary.NativeEndian.AppendUint16(out, in.Code)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out
}

func decodeInsns(raw []byte) ([]unix.SockFilter, error) {
	if len(raw) == 0 || len(raw)%insnSize != 0 {
		return nil, fmt.Errorf("filter program has %d bytes, not a whole number of instructions", len(raw))
	}
	if len(raw)/insnSize > 0xffff {
		return nil, fmt.Errorf("filter program has %d instructions, more than seccomp(2) accepts", len(raw)/insnSize)
	}
	insns := make([]unix.SockFilter, len(raw)/insnSize)
	for i := range insns {
		b := raw[i*insnSize:]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:2]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	return insns, nil
}

// CompileCached is Compile with the BPF program cached in cacheDir, keyed
// by the profile's rules, the libseccomp version and the architecture:
// containers started with the same profile skip libseccomp. cacheDir is
// created 0700 if missing and must be owned by the caller and writable by
// no one else, since a program read from it is installed as is.
func CompileCached(cacheDir string, s *specs.LinuxSeccomp) (*Program, error) {
	if s == nil {
		return nil, invalid("no profile to compile")
	}
	return compile(s, func() ([]unix.SockFilter, error) {
		if err := checkCacheDir(cacheDir); err != nil {
			return nil, err
		}
		key, err := cacheKey(s)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(cacheDir, key+".bpf")
		if insns, err := readCached(path); err == nil {
			return insns, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		insns, err := compileBPF(s)
		if err != nil {
			return nil, err
		}
		if err := writeCached(cacheDir, path, insns); err != nil {
			return nil, err
		}
		return insns, nil
	})
}

func checkCacheDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("seccomp: create cache dir %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("seccomp: cache dir %s: %w", dir, err)
	}
	return checkOwned(dir, &st, unix.S_IFDIR)
}

// checkOwned refuses a cache entry or directory another user could have
// written.
func checkOwned(path string, st *unix.Stat_t, kind uint32) error {
	if st.Mode&unix.S_IFMT != kind {
		return fmt.Errorf("seccomp: cache %s: unexpected file type %#o", path, st.Mode&unix.S_IFMT)
	}
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("seccomp: cache %s: owned by uid %d with mode %#o, want uid %d and not writable by group or others", path, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	return nil
}

// cacheKey hashes what decides the BPF program. Flags and the listener are
// not part of the program.
func cacheKey(s *specs.LinuxSeccomp) (string, error) {
	rules, err := json.Marshal(struct {
		DefaultAction   specs.LinuxSeccompAction
		DefaultErrnoRet *uint
		Architectures   []specs.Arch
		Syscalls        []specs.LinuxSyscall
	}{s.DefaultAction, s.DefaultErrnoRet, s.Architectures, s.Syscalls})
	if err != nil {
		return "", fmt.Errorf("seccomp: encode profile for cache key: %w", err)
	}
	major, minor, micro := libseccomp.GetLibraryVersion()
	h := sha256.New()
	fmt.Fprintf(h, "berth-seccomp-cache-2 %s libseccomp-%d.%d.%d\n", runtime.GOARCH, major, minor, micro)
	h.Write(rules)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readCached(path string) ([]unix.SockFilter, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("seccomp: cached program %s: %w", path, err)
	}
	if err := checkOwned(path, &st, unix.S_IFREG); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("seccomp: read cached program %s: %w", path, err)
	}
	insns, err := decodeInsns(raw)
	if err != nil {
		return nil, fmt.Errorf("seccomp: cached program %s: %w", path, err)
	}
	return insns, nil
}

func writeCached(dir, path string, insns []unix.SockFilter) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*.bpf")
	if err != nil {
		return fmt.Errorf("seccomp: cache program in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(encodeInsns(insns)); err != nil {
		tmp.Close()
		return fmt.Errorf("seccomp: write cached program %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("seccomp: write cached program %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("seccomp: cache program as %s: %w", path, err)
	}
	return nil
}
