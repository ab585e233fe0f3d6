package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv selects a helper role when the test binary re-executes itself.
const childEnv = "BERTH_ARCHIVE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "overlay" {
		os.Exit(overlayChild())
	}
	os.Exit(m.Run())
}

// overlayChild runs in its own mount namespace: it mounts an overlay of
// $LOWERDIR on $TARGET and prints the merged tree.
func overlayChild() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Fprintln(os.Stderr, "make / private:", err)
		return 1
	}
	target := os.Getenv("TARGET")
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, "lowerdir="+os.Getenv("LOWERDIR")); err != nil {
		fmt.Fprintln(os.Stderr, "mount overlay:", err)
		return 1
	}
	out, err := listTree(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		return 1
	}
	fmt.Print(out)
	return 0
}

// mergedView mounts lowers (newest first) as an overlay in a child process
// with its own mount namespace and returns its listing.
func mergedView(t *testing.T, lowers ...string) string {
	t.Helper()
	target := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=overlay", "TARGET="+target, "LOWERDIR="+strings.Join(lowers, ":"))
	cmd.SysProcAttr = &unix.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("overlay child: %v: %s", err, stderr.String())
	}
	return string(out)
}

// listTree describes every entry under dir, one line each, sorted: path,
// type, mode, owner, size, content hash, link target, device, xattrs, mtime
// (seconds; directories and files only) and hardlink group.
func listTree(dir string) (string, error) {
	var lines []string
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s type=%o mode=%o owner=%d:%d", rel, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s mtime=%d", len(b), hex.EncodeToString(sum[:6]), st.Mtim.Sec)
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFDIR:
			if rel != "." {
				line += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
			}
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += fmt.Sprintf(" -> %s mtime=%d", target, st.Mtim.Sec)
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			if st.Rdev != 0 { // whiteouts carry no times
				line += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
			}
		case unix.S_IFIFO:
			line += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
		}
		names, _ := listxattr(p)
		sort.Strings(names)
		for _, n := range names {
			v, _ := getxattr(p, n)
			line += fmt.Sprintf(" xattr:%s=%q", n, v)
		}
		lines = append(lines, line)
		return nil
	})
	for _, group := range inodes {
		sort.Strings(group)
		lines = append(lines, "hardlinks "+strings.Join(group, " "))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n", err
}

// entry is a tar entry to build a test layer from.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string, mode int64) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(1600000000, 0)}, body: body}
}

func dir(name string, mode int64) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, ModTime: time.Unix(1500000000, 0)}}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: time.Unix(1400000000, 0)}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, ModTime: time.Unix(1400000000, 0)}}
}

func makeTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("write header %s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, data []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Compress(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newTarReader(b []byte) *tar.Reader { return tar.NewReader(bytes.NewReader(b)) }
