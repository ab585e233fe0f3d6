package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/errdefs"
)

// Diff writes to w an uncompressed layer tar of the changes that the overlay
// upper directory upper holds over the layers lowers (ordered as overlay's
// lowerdir, newest first). Overlay whiteouts (character devices 0/0) become
// ".wh.<name>" entries and opaque directories (trusted.overlay.opaque=y, or
// user.overlay.opaque=y for a userxattr mount) get a ".wh..wh..opq" entry;
// a whiteout hiding nothing in any lower is left out. With no lowers, upper
// is a whole root filesystem and every whiteout is kept.
//
// Entries are written parents first and in byte order of names within a
// directory, with mtimes in whole seconds and no user or group names, so the
// same tree always gives the same tar. Files hardlinked together within
// upper are written once and linked after. The upper must not change while
// Diff runs (the container is stopped or paused).
func Diff(ctx context.Context, w io.Writer, upper string, lowers []string, opts ...DiffOpt) error {
	d := &differ{ctx: ctx, tw: tar.NewWriter(w), links: map[fileID]string{}}
	for _, o := range opts {
		o(d)
	}
	for _, l := range lowers {
		rt, err := openRoot(l)
		if err != nil {
			return fmt.Errorf("diff %s: open lower %s: %w", upper, l, err)
		}
		defer rt.close()
		d.lowers = append(d.lowers, rt)
	}
	// Everything below upper is opened relative to its directory with
	// O_NOFOLLOW, so a tree changed under Diff cannot lead it outside.
	fd, err := unix.Open(upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("diff %s: %w", upper, err)
	}
	err = d.dir(fd, "")
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("diff %s: %w", upper, err)
	}
	if err := d.tw.Close(); err != nil {
		return fmt.Errorf("diff %s: finish tar: %w", upper, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

// DiffOpt changes what Diff writes.
type DiffOpt func(*differ)

// WithSkip leaves out every entry for which skip, given its path relative
// to upper and its lstat, returns true (a directory with all it holds).
func WithSkip(skip func(rel string, st *unix.Stat_t) bool) DiffOpt {
	return func(d *differ) { d.skip = skip }
}

type differ struct {
	ctx    context.Context
	tw     *tar.Writer
	lowers []*root
	links  map[fileID]string
	skip   func(rel string, st *unix.Stat_t) bool
}

// dir writes the entries inside the directory open as fd, which is rel
// ("" for upper itself).
func (d *differ) dir(fd int, rel string) error {
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(dup), rel)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("read directory %q: %w", rel, err)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := d.entry(fd, name, path.Join(rel, name)); err != nil {
			return fmt.Errorf("%q: %w", path.Join(rel, name), err)
		}
	}
	return nil
}

// entry writes the entry name of the directory dirfd, which is rel.
func (d *differ) entry(dirfd int, name, rel string) error {
	if len(rel) > unix.PathMax {
		// A tree nested deeper than any path can name (a container's
		// doing): each level holds its name, so memory would grow with the
		// square of the depth. Docker's walk fails there too.
		return errdefs.InvalidArgument(fmt.Errorf("path %.64s... is longer than %d bytes", rel, unix.PathMax))
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if d.skip != nil && d.skip(rel, &st) {
		return nil
	}
	dirRel := path.Dir(rel)
	mtime := time.Unix(st.Mtim.Sec, 0)
	typ := st.Mode & unix.S_IFMT
	pp := procPath(dirfd, name) // for the l*xattr calls, which have no *at form

	if typ == unix.S_IFCHR && st.Rdev == 0 {
		if !d.inLowers(rel) {
			return nil
		}
		return d.marker(path.Join(dirRel, WhiteoutPrefix+name), mtime)
	}

	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	if err := d.xattrs(pp, hdr); err != nil {
		return err
	}
	switch typ {
	case unix.S_IFREG:
		id := fileID{uint64(st.Dev), st.Ino}
		if st.Nlink > 1 {
			if first, ok := d.links[id]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return d.tw.WriteHeader(hdr)
			}
			d.links[id] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		return d.regular(dirfd, name, hdr, &st)
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
		opaque := false
		for _, x := range []string{overlayOpaqueXattr, userOverlay + "opaque"} {
			if v, err := getxattr(pp, x); err == nil && string(v) == "y" {
				opaque = true
			}
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := d.tw.WriteHeader(hdr); err != nil {
			return err
		}
		if opaque {
			if err := d.marker(path.Join(rel, WhiteoutOpaque), mtime); err != nil {
				return err
			}
		}
		return d.dir(fd, rel)
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, name)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets cannot be archived; Docker skips them too
	}
	return d.tw.WriteHeader(hdr)
}

// regular writes the regular file name of dirfd, whose stat was st. The
// file is opened for reading only once it is known to be that very file:
// in a running container's tree (export) a process can replace it after
// the stat by a FIFO (an open that never returns) or a device node it may
// not open itself but the engine, outside the container's device cgroup,
// could (a host disk's content in the archive).
func (d *differ) regular(dirfd int, name string, hdr *tar.Header, st *unix.Stat_t) error {
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var now unix.Stat_t
	if err := unix.Fstat(pfd, &now); err != nil {
		return err
	}
	if now.Mode&unix.S_IFMT != unix.S_IFREG || now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("%s changed while it was archived (no longer the regular file it was)", name)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	if err := d.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(d.tw, f); err != nil {
		return fmt.Errorf("copy content: %w", err)
	}
	return nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// marker writes an empty whiteout file entry.
func (d *differ) marker(name string, mtime time.Time) error {
	return d.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX})
}

// inLowers reports whether rel exists in any lower (or there are none).
func (d *differ) inLowers(rel string) bool {
	if len(d.lowers) == 0 {
		return true
	}
	for _, l := range d.lowers {
		fd, err := l.openDir(path.Dir(rel))
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstatat(fd, path.Base(rel), &st, unix.AT_SYMLINK_NOFOLLOW)
		unix.Close(fd)
		if err == nil {
			return true
		}
	}
	return false
}

// xattrs records the xattrs of the file at p (not followed) but overlay's
// own as PAX records.
func (d *differ) xattrs(p string, hdr *tar.Header) error {
	names, err := listxattr(p)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list xattrs: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, trustedOverlay) || strings.HasPrefix(name, userOverlay) {
			continue
		}
		v, err := getxattr(p, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return fmt.Errorf("get xattr %s: %w", name, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+name] = string(v)
	}
	return nil
}

func listxattr(p string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			if len(buf) > 1<<20 {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
