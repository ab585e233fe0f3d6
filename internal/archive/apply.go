package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-project/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Defaults bounding what one layer may expand to.
const (
	DefaultMaxSize    int64 = 64 << 30 // uncompressed bytes
	DefaultMaxEntries       = 1 << 21  // tar entries
)

// Whiteout names of the OCI image layer format.
const (
	WhiteoutPrefix = ".wh."
	WhiteoutOpaque = ".wh..wh..opq"
	whiteoutMeta   = ".wh..wh."
)

// Overlay xattrs: the opaque marker Apply sets, and the prefixes of overlay's
// private attributes, which a layer may not carry (they would let a layer
// forge redirects or opaqueness behind the whiteout rules).
const (
	overlayOpaqueXattr = "trusted.overlay.opaque"
	trustedOverlay     = "trusted.overlay."
	userOverlay        = "user.overlay."
)

// ApplyOpt changes how Apply extracts.
type ApplyOpt func(*applyOptions)

type applyOptions struct {
	maxSize    int64
	maxEntries int
	devices    bool
	ownership  bool
	plainNames bool
}

// WithMaxSize bounds the uncompressed size of the layer (DefaultMaxSize).
func WithMaxSize(n int64) ApplyOpt { return func(o *applyOptions) { o.maxSize = n } }

// WithMaxEntries bounds the number of tar entries (DefaultMaxEntries).
func WithMaxEntries(n int) ApplyOpt { return func(o *applyOptions) { o.maxEntries = n } }

// WithDevices says whether character and block device entries are created.
// When they are not, such entries are skipped. The default is to create them
// when running as root: layers rarely carry /dev entries, and a container
// only reaches a device node in its image through its own device cgroup,
// which the runtime restricts.
func WithDevices(allow bool) ApplyOpt { return func(o *applyOptions) { o.devices = allow } }

// WithOwnership says whether the entries' owners are applied (lchown). The
// default is to apply them when running as root and not otherwise.
func WithOwnership(apply bool) ApplyOpt { return func(o *applyOptions) { o.ownership = apply } }

// WithPlainNames extracts ".wh." entries as the files they name instead of
// applying them as whiteouts: for an archive that is not an image layer
// (docker cp), where such a name must neither delete what is there nor mark
// a directory opaque.
func WithPlainNames() ApplyOpt { return func(o *applyOptions) { o.plainNames = true } }

// ErrLimit is the class of the error Apply returns when a layer exceeds the
// size or entry bounds; it is also of class errdefs.ErrInvalidArgument.
var ErrLimit = errors.New("layer exceeds extraction limit")

// Apply reads a layer tar from r (gzip, zstd or uncompressed, detected from
// its first bytes) and writes it into dir for use as an overlay layer, never
// outside dir. It returns the digest and size of the uncompressed stream:
// the layer's diffID, hashed in the same pass.
//
// Entries are applied as the image spec says: regular files, directories,
// symlinks, hardlinks (to an entry already extracted inside dir), fifos and,
// if allowed, devices, with owner, mode (setuid/setgid/sticky too), mtime
// and xattrs; an entry replaces what is at its path unless both are
// directories. ".wh.<name>" becomes a character device 0/0 named <name> and
// ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory, so that dir
// is ready to be an overlay lower layer. Absolute names are taken relative
// to dir; a name or hardlink target climbing out with ".." fails the layer
// (as Docker does); every lookup resolves symlinks inside dir. xattrs the filesystem
// refuses are skipped, except security.capability; trusted.overlay.* and
// user.overlay.* xattrs in the layer are dropped.
//
// Errors name the entry. Exceeding WithMaxSize or WithMaxEntries fails with
// an error of class ErrLimit. On error dir holds part of the layer; the
// caller extracts into a temporary directory it removes on failure.
func Apply(ctx context.Context, dir string, r io.Reader, opts ...ApplyOpt) (digest.Digest, int64, error) {
	o := applyOptions{
		maxSize:    DefaultMaxSize,
		maxEntries: DefaultMaxEntries,
		devices:    os.Geteuid() == 0,
		ownership:  os.Geteuid() == 0,
	}
	for _, opt := range opts {
		opt(&o)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	comp, err := DetectCompression(br)
	if err != nil {
		return "", 0, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	dec, err := Decompress(br, comp)
	if err != nil {
		return "", 0, fmt.Errorf("apply layer to %s: %w", dir, errdefs.InvalidArgument(err))
	}
	defer dec.Close()

	rt, err := openRoot(dir)
	if err != nil {
		return "", 0, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	defer rt.close()

	// Decompression and hashing run beside the extraction, handing the
	// uncompressed stream over a pipe.
	pr, pw := io.Pipe()
	h := sha256.New()
	var size int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for {
			if err := ctx.Err(); err != nil {
				pw.CloseWithError(err)
				return
			}
			n, rerr := dec.Read(buf)
			if n > 0 {
				size += int64(n)
				if size > o.maxSize {
					pw.CloseWithError(errdefs.With(ErrLimit, errdefs.InvalidArgument(fmt.Errorf("uncompressed layer larger than %d bytes", o.maxSize))))
					return
				}
				h.Write(buf[:n])
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
			}
			if rerr == io.EOF {
				pw.Close()
				return
			}
			if rerr != nil {
				pw.CloseWithError(fmt.Errorf("read %s layer stream: %w", comp, rerr))
				return
			}
		}
	}()

	ub := bufio.NewReaderSize(pr, 1<<20)
	x := &extractor{ctx: ctx, root: rt, opts: o, buf: make([]byte, 1<<20), parentFd: -1, uid: os.Geteuid(), gid: os.Getegid()}
	err = x.run(tar.NewReader(ub))
	if err == nil {
		// The diffID covers the whole stream, padding after the end marker too.
		_, err = io.Copy(io.Discard, ub)
		if err != nil {
			err = fmt.Errorf("read layer end: %w", err)
		}
	}
	pr.CloseWithError(errors.New("extraction stopped"))
	wg.Wait()
	x.dropParent()
	if err != nil {
		return "", 0, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	return digest.NewDigest(digest.SHA256, h), size, nil
}

// extractor applies tar entries inside a root.
type extractor struct {
	ctx  context.Context
	root *root
	opts applyOptions
	buf  []byte

	// The directory of the previous entry, kept open: tar entries come
	// grouped by directory. Replaced when an entry lives elsewhere.
	parentRel string
	parentFd  int

	dirs     []dirTimes
	entries  int
	uid, gid int // who the extraction runs as
}

type dirTimes struct {
	rel          string
	atime, mtime time.Time
}

func (x *extractor) run(tr *tar.Reader) error {
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar entry: %w", err)
		}
		x.entries++
		if x.entries > x.opts.maxEntries {
			return errdefs.With(ErrLimit, errdefs.InvalidArgument(fmt.Errorf("entry %q: layer has more than %d entries", hdr.Name, x.opts.maxEntries)))
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	// Directory times last: creating children changed them. Deepest first.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if err := x.setTimes(d.rel, d.atime, d.mtime); err != nil && !errors.Is(err, unix.ENOENT) { // ENOENT: removed by a later entry
			return fmt.Errorf("entry %q: set times: %w", d.rel, err)
		}
	}
	return nil
}

// parent returns a descriptor of the directory rel, creating it if missing.
// It stays owned by the extractor.
func (x *extractor) parent(rel string) (int, error) {
	if x.parentFd >= 0 && x.parentRel == rel {
		return x.parentFd, nil
	}
	fd, err := x.root.mkdirAll(rel)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("parent %q is not a directory", rel)
		}
		return -1, fmt.Errorf("parent %q: %w", rel, err)
	}
	x.dropParent()
	x.parentRel, x.parentFd = rel, fd
	return fd, nil
}

func (x *extractor) dropParent() {
	if x.parentFd >= 0 {
		unix.Close(x.parentFd)
	}
	x.parentFd, x.parentRel = -1, ""
}

func (x *extractor) entry(hdr *tar.Header, tr *tar.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dirRel, base := path.Dir(rel), path.Base(rel)

	if strings.HasPrefix(base, WhiteoutPrefix) && !x.opts.plainNames {
		return x.whiteout(dirRel, base)
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errdefs.InvalidArgument(errors.New("the layer root must be a directory"))
		}
		fd, err := unix.Openat(x.root.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := x.setMetaFd(fd, hdr, false); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirTimes{rel, hdr.AccessTime, hdr.ModTime})
		return nil
	}

	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if hdr.Typeflag == tar.TypeLink {
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		if target == rel {
			return nil // a hardlink to itself
		}
	}
	if (hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock) && !x.opts.devices {
		return nil
	}

	dirfd, err := x.parent(dirRel)
	if err != nil {
		return err
	}
	// Create first; only if something is in the way, look at it: an entry
	// replaces what is at its path unless both are directories.
	fresh := true
	fd, err := x.create(dirfd, base, hdr)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if serr := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil {
			return fmt.Errorf("inspect existing: %w", serr)
		}
		if hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err, fresh = nil, false
		} else {
			// dirfd is the entry's parent, which removing a child of it
			// leaves valid.
			if err := removeAt(dirfd, base); err != nil {
				return fmt.Errorf("replace existing: %w", err)
			}
			fd, err = x.create(dirfd, base, hdr)
		}
	}
	if err != nil {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		err = x.copyFile(fd, tr)
		if err == nil {
			err = x.setMetaFd(fd, hdr, fresh)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(dirfd, base, timespecs(hdr.AccessTime, hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times: %w", err)
		}
		return nil
	case tar.TypeDir:
		fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory: %w", err)
		}
		defer unix.Close(fd)
		if err := x.setMetaFd(fd, hdr, fresh); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirTimes{rel, hdr.AccessTime, hdr.ModTime})
		return nil
	case tar.TypeSymlink:
		return x.setMetaAt(dirfd, base, hdr, false)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return x.setMetaAt(dirfd, base, hdr, true)
	}
	return nil // hardlinks share their target's metadata
}

// create makes the entry hdr as base in dirfd, failing with EEXIST if
// something is there. A regular file is created empty and its open
// descriptor returned; for other types the descriptor is -1.
func (x *extractor) create(dirfd int, base string, hdr *tar.Header) (int, error) {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		fd, err := unix.Openat(dirfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return -1, fmt.Errorf("create file: %w", err)
		}
		return fd, nil
	case tar.TypeDir:
		if err := unix.Mkdirat(dirfd, base, 0o700); err != nil {
			return -1, fmt.Errorf("create directory: %w", err)
		}
		return -1, nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, dirfd, base); err != nil {
			return -1, fmt.Errorf("create symlink: %w", err)
		}
		return -1, nil
	case tar.TypeLink:
		return -1, x.hardlink(dirfd, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := 0
		if hdr.Typeflag != tar.TypeFifo {
			dev = int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		}
		if err := unix.Mknodat(dirfd, base, kind|0o600, dev); err != nil {
			return -1, fmt.Errorf("create node: %w", err)
		}
		return -1, nil
	}
	return -1, errdefs.InvalidArgument(fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag))
}

// whiteout applies a ".wh." entry in directory dirRel.
func (x *extractor) whiteout(dirRel, base string) error {
	if base == WhiteoutOpaque {
		dirfd, err := x.parent(dirRel)
		if err != nil {
			return err
		}
		fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open opaque directory: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark directory opaque: %w", err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // aufs bookkeeping (.wh..wh.plnk, ...), meaningless here
	}
	name := strings.TrimPrefix(base, WhiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return errdefs.InvalidArgument(fmt.Errorf("whiteout of %q", name))
	}
	dirfd, err := x.parent(dirRel)
	if err != nil {
		return err
	}
	if err := removeAt(dirfd, name); err != nil {
		return fmt.Errorf("remove whited-out %s: %w", name, err)
	}
	if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create overlay whiteout %s: %w", name, err)
	}
	return nil
}

// hardlink links base in dirfd to the already extracted entry hdr.Linkname,
// looked up inside the root. The final component is not followed, so a
// link to a symlink links the symlink.
func (x *extractor) hardlink(dirfd int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "." {
		return errdefs.InvalidArgument(fmt.Errorf("hardlink to the layer root"))
	}
	tfd, err := x.root.openDir(path.Dir(target))
	if err != nil {
		return errdefs.InvalidArgument(fmt.Errorf("hardlink target %q is not in the layer: %w", hdr.Linkname, err))
	}
	defer unix.Close(tfd)
	if err := unix.Linkat(tfd, path.Base(target), dirfd, base, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errdefs.InvalidArgument(fmt.Errorf("hardlink target %q is not in the layer", hdr.Linkname))
		}
		return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (x *extractor) copyFile(fd int, tr *tar.Reader) error {
	for {
		n, err := tr.Read(x.buf)
		for off := 0; off < n; {
			w, werr := unix.Write(fd, x.buf[off:n])
			if werr != nil {
				if errors.Is(werr, unix.EINTR) {
					continue
				}
				return fmt.Errorf("write file: %w", werr)
			}
			off += w
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrLimit) {
				return err
			}
			return fmt.Errorf("read file content: %w", err)
		}
	}
}

// setMetaFd applies owner, mode and xattrs to an open file or directory.
// A fresh one already belongs to the extracting user.
func (x *extractor) setMetaFd(fd int, hdr *tar.Header, fresh bool) error {
	if x.opts.ownership && !(fresh && hdr.Uid == x.uid && hdr.Gid == x.gid) {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod %o: %w", hdr.Mode&0o7777, err)
	}
	return setXattrs(hdr, x.uid == 0, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	})
}

// setMetaAt applies owner, (mode,) xattrs and times to base in dirfd
// without following it: for symlinks and device nodes.
func (x *extractor) setMetaAt(dirfd int, base string, hdr *tar.Header, chmod bool) error {
	if x.opts.ownership {
		if err := unix.Fchownat(dirfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if chmod {
		if err := chmodNode(dirfd, base, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("chmod %o: %w", hdr.Mode&0o7777, err)
		}
	}
	if err := setXattrs(hdr, x.uid == 0, func(name string, value []byte) error {
		return unix.Lsetxattr(procPath(dirfd, base), name, value, 0)
	}); err != nil {
		return err
	}
	ts := timespecs(hdr.AccessTime, hdr.ModTime)
	if err := unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// chmodNode sets the mode of the device node or fifo base in dirfd without
// following a symlink: the directory may be a live container's, whose
// processes can replace the node made a moment ago by a symlink to a host
// file (fchmodat has no AT_SYMLINK_NOFOLLOW). The node is pinned by an
// O_PATH descriptor, checked, and changed through it.
func chmodNode(dirfd int, base string, mode uint32) error {
	fd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
	default:
		return fmt.Errorf("%s was replaced while it was extracted (now of type %#o)", base, st.Mode&unix.S_IFMT)
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}

// setTimes sets the times of the directory rel, looked up inside the root.
func (x *extractor) setTimes(rel string, atime, mtime time.Time) error {
	if rel == "." {
		return unix.UtimesNanoAt(x.root.fd(), ".", timespecs(atime, mtime), 0)
	}
	dirfd, err := x.root.openDir(path.Dir(rel))
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return unix.UtimesNanoAt(dirfd, path.Base(rel), timespecs(atime, mtime), unix.AT_SYMLINK_NOFOLLOW)
}

const paxXattr = "SCHILY.xattr."

// setXattrs applies the entry's PAX xattrs with set. Attributes the
// filesystem or the kernel refuses are skipped, except security.capability
// when extracting as root, without which a binary would silently lose its
// file capabilities (without root it cannot be set at all).
func setXattrs(hdr *tar.Header, strictCaps bool, set func(name string, value []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || name == "" || strings.HasPrefix(name, trustedOverlay) || strings.HasPrefix(name, userOverlay) {
			continue
		}
		err := set(name, []byte(v))
		if err == nil {
			continue
		}
		if (name != "security.capability" || !strictCaps) && (errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ERANGE)) {
			continue
		}
		return fmt.Errorf("set xattr %s: %w", name, err)
	}
	return nil
}

func timespecs(atime, mtime time.Time) []unix.Timespec {
	if atime.IsZero() {
		atime = mtime
	}
	return []unix.Timespec{
		{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
}
