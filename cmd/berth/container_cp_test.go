package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExtractCopyRules(t *testing.T) {
	dir := tarOf(t, entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", body: "x", typ: tar.TypeReg},
		entry{name: "d/l", link: "f", typ: tar.TypeSymlink})

	// Into an existing directory: keeps the source's name.
	dst := t.TempDir()
	if err := extractCopy(bytes.NewReader(dir.Bytes()), "d", true, "/d", dst, ""); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dst, "d", "f")) != "x" {
		t.Error("d/f not copied into the directory")
	}
	if l, err := os.Readlink(filepath.Join(dst, "d", "l")); err != nil || l != "f" {
		t.Errorf("symlink: %q %v", l, err)
	}
	// To a new path: takes that name.
	newp := filepath.Join(t.TempDir(), "renamed")
	if err := extractCopy(bytes.NewReader(dir.Bytes()), "d", true, "/d", newp, ""); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(newp, "f")) != "x" {
		t.Error("renamed/f missing")
	}
	// "/." copies the contents only.
	dst = t.TempDir()
	if err := extractCopy(bytes.NewReader(dir.Bytes()), "d", true, "/d/.", dst, ""); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dst, "f")) != "x" {
		t.Error("contents of d not copied")
	}
	// A file onto a new name.
	file := tarOf(t, entry{name: "hosts", body: "127.0.0.1", typ: tar.TypeReg})
	target := filepath.Join(t.TempDir(), "h.txt")
	if err := extractCopy(file, "hosts", false, "/etc/hosts", target, ""); err != nil {
		t.Fatal(err)
	}
	if readFile(t, target) != "127.0.0.1" {
		t.Error("file not copied to its new name")
	}
	// A directory cannot replace a file.
	if err := extractCopy(bytes.NewReader(dir.Bytes()), "d", true, "/d", target, ""); err == nil {
		t.Error("directory copied over a file")
	}
}

func TestExtractCopyStaysInside(t *testing.T) {
	outside := t.TempDir()
	for name, tr := range map[string]*bytes.Buffer{
		"dotdot": tarOf(t, entry{name: "d/../../escape", body: "x", typ: tar.TypeReg}),
		"symlink then write": tarOf(t, entry{name: "d/", typ: tar.TypeDir},
			entry{name: "d/l", link: outside, typ: tar.TypeSymlink}, entry{name: "d/l/escape", body: "x", typ: tar.TypeReg}),
		"other top": tarOf(t, entry{name: "other/f", body: "x", typ: tar.TypeReg}),
	} {
		dst := t.TempDir()
		err := extractCopy(tr, "d", true, "/d", dst, "")
		if err == nil {
			t.Errorf("%s: extracted without error", name)
		}
		if _, serr := os.Stat(filepath.Join(outside, "escape")); serr == nil {
			t.Errorf("%s: wrote outside the destination", name)
		}
		if _, serr := os.Stat(filepath.Join(filepath.Dir(dst), "escape")); serr == nil {
			t.Errorf("%s: wrote beside the destination", name)
		}
	}
}

func TestWriteCopyTar(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	names := func(srcArg, rename string) string {
		var b bytes.Buffer
		if err := writeCopyTar(&b, srcArg, rename, false, false); err != nil {
			t.Fatal(err)
		}
		var got []string
		tr := tar.NewReader(&b)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s: owner %d:%d without -a", h.Name, h.Uid, h.Gid)
			}
			got = append(got, h.Name)
		}
		return strings.Join(got, " ")
	}
	if got := names(src, ""); got != "src/ src/sub/ src/sub/f" {
		t.Errorf("plain: %s", got)
	}
	if got := names(src, "dst"); got != "dst/ dst/sub/ dst/sub/f" {
		t.Errorf("renamed: %s", got)
	}
	if got := names(src+"/.", ""); got != "sub/ sub/f" {
		t.Errorf("contents: %s", got)
	}
}

func TestSplitCpArg(t *testing.T) {
	for in, want := range map[string][2]string{
		"ctr:/etc/hosts": {"ctr", "/etc/hosts"},
		"/local:colon":   {"", "/local:colon"},
		"./a:b":          {"", "./a:b"},
		"plain":          {"", "plain"},
		"-":              {"", "-"},
	} {
		c, p := splitCpArg(in)
		if c != want[0] || p != want[1] {
			t.Errorf("splitCpArg(%q) = %q, %q", in, c, p)
		}
	}
}

// The archive of a container's / has Docker's layout: entries rooted at
// "/". Copied to a new path it becomes that directory; into an existing
// directory its contents land there; nothing climbs out.
func TestExtractCopyRoot(t *testing.T) {
	root := tarOf(t, entry{name: "/", typ: tar.TypeDir}, entry{name: "/etc/", typ: tar.TypeDir},
		entry{name: "/etc/hostname", body: "h", typ: tar.TypeReg}, entry{name: "/../../escape", body: "e", typ: tar.TypeReg})
	newp := filepath.Join(t.TempDir(), "new")
	if err := extractCopy(bytes.NewReader(root.Bytes()), "/", true, "/", newp, ""); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(newp, "etc", "hostname")); got != "h" {
		t.Errorf("new path: %q", got)
	}
	if got := readFile(t, filepath.Join(newp, "escape")); got != "e" {
		t.Errorf("a climbing entry is not kept under the copy: %q", got)
	}
	existing := t.TempDir()
	if err := extractCopy(bytes.NewReader(root.Bytes()), "/", true, "/", existing, ""); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(existing, "etc", "hostname")); got != "h" {
		t.Errorf("existing directory: %q", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(existing), "escape")); err == nil {
		t.Error("an entry escaped the destination")
	}
}

// cp -L names the followed link's copy after the link in an existing
// directory.
func TestExtractCopyRebase(t *testing.T) {
	file := tarOf(t, entry{name: "shadow", body: "s", typ: tar.TypeReg})
	dst := t.TempDir()
	if err := extractCopy(bytes.NewReader(file.Bytes()), "shadow", false, "/etc/shadow", dst, "abs"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dst, "abs")); got != "s" {
		t.Errorf("rebased copy: %q", got)
	}
}
