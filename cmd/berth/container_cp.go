package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// splitCpArg splits CONTAINER:PATH; a local path holding a colon must
// start with / or . as in docker.
func splitCpArg(arg string) (ctr, p string) {
	if filepath.IsAbs(arg) || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	ctr, p, ok := strings.Cut(arg, ":")
	if !ok {
		return "", arg
	}
	return ctr, p
}

func (c *cli) cpCommand() *cobra.Command {
	var archive, follow, quiet bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcCtr, src := splitCpArg(args[0])
			dstCtr, dst := splitCpArg(args[1])
			switch {
			case srcCtr != "" && dstCtr != "":
				return errors.New("copying between containers is not supported")
			case srcCtr == "" && dstCtr == "":
				return errors.New("must specify at least one container source")
			case src == "" || dst == "":
				return errors.New("filesystem paths must not be empty")
			}
			ctx := cmd.Context()
			api, err := c.client(ctx)
			if err != nil {
				return err
			}
			if srcCtr != "" {
				// -L: a link is replaced by what it points to in the
				// container (the daemon resolves it), copied under the
				// link's name as docker does.
				rebase := ""
				if follow {
					st, err := api.ContainerStatPath(ctx, srcCtr, client.ContainerStatPathOptions{Path: src})
					if err == nil && st.Stat.Mode&os.ModeSymlink != 0 && st.Stat.LinkTarget != "" {
						target := st.Stat.LinkTarget
						if !path.IsAbs(target) {
							target = path.Join(path.Dir(path.Clean(src)), target)
						}
						rebase = path.Base(path.Clean(src))
						if path.Base(target) == rebase {
							rebase = ""
						}
						src = target
					}
				}
				res, err := api.CopyFromContainer(ctx, srcCtr, client.CopyFromContainerOptions{SourcePath: src})
				if err != nil {
					return err // the daemon's answer names the path, as docker prints it
				}
				defer res.Content.Close()
				if dst == "-" {
					_, err := io.Copy(c.out, res.Content)
					return err
				}
				return extractCopy(res.Content, res.Stat.Name, res.Stat.Mode.IsDir(), src, dst, rebase)
			}
			// Into the container: where the archive lands and under what name.
			var content io.Reader
			dir, rename := dst, ""
			if src == "-" {
				content = c.in
			} else {
				fi, err := statLocal(src, follow)
				if err != nil {
					return err
				}
				st, err := api.ContainerStatPath(ctx, dstCtr, client.ContainerStatPathOptions{Path: dst})
				if err == nil && st.Stat.Mode&os.ModeSymlink != 0 && st.Stat.LinkTarget != "" {
					// A link as destination: the copy goes where it points in
					// the container (the daemon resolved it), as docker does.
					target := st.Stat.LinkTarget
					if !path.IsAbs(target) {
						target = path.Join(path.Dir(path.Clean(dst)), target)
					}
					dst = target
					st, err = api.ContainerStatPath(ctx, dstCtr, client.ContainerStatPathOptions{Path: dst})
				}
				switch {
				case err == nil && st.Stat.Mode.IsDir():
				case err == nil && fi.IsDir():
					return fmt.Errorf("cannot copy directory %s over the file %s in %s", src, dst, dstCtr)
				case err == nil || cerrdefs.IsNotFound(err):
					if strings.HasSuffix(dst, "/") && err != nil {
						return fmt.Errorf("destination directory %s does not exist in %s", dst, dstCtr)
					}
					dir, rename = path.Dir(dst), path.Base(dst)
				default:
					return fmt.Errorf("stat %s in %s: %w", dst, dstCtr, err)
				}
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(writeCopyTar(pw, src, rename, follow, archive)) }()
				defer pr.Close()
				content = pr
			}
			_, err = api.CopyToContainer(ctx, dstCtr, client.CopyToContainerOptions{DestinationPath: dir, Content: content, CopyUIDGID: archive})
			if err != nil {
				return err
			}
			if !quiet && src != "-" && c.outIsTerminal() {
				fmt.Fprintf(c.errw, "Successfully copied %s to %s:%s\n", src, dstCtr, dst)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&archive, "archive", "a", false, "archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&follow, "follow-link", "L", false, "always follow symbol link in SRC_PATH")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress progress output during copy")
	return cmd
}

func statLocal(p string, follow bool) (os.FileInfo, error) {
	if follow {
		return os.Stat(p)
	}
	return os.Lstat(p)
}

// writeCopyTar writes src as a tar stream: named base(src) (or rename), or
// only its contents when src ends in "/.".
func writeCopyTar(w io.Writer, src, rename string, follow, keepOwner bool) error {
	tw := tar.NewWriter(w)
	contentsOnly := strings.HasSuffix(src, "/.") || src == "."
	root := filepath.Clean(src)
	top := filepath.Base(root)
	if rename != "" {
		top = rename
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(top, filepath.ToSlash(rel))
		if contentsOnly {
			if rel == "." {
				return nil
			}
			name = filepath.ToSlash(rel)
		}
		fi, err := statLocal(p, follow && p == root)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("tar header for %s: %w", p, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if !keepOwner {
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractCopy unpacks a container's archive of srcPath (top entry
// srcName) at the local dst with docker cp's rules: into dst when it is an
// existing directory, else as dst itself; only the contents for "/.". All
// writes go through an os.Root so no entry can land outside it. The
// archive of / has its entries rooted at "/", as Docker's daemon sends it.
// rebase, when set, names the copy in an existing directory (cp -L of a
// link keeps the link's name).
func extractCopy(r io.Reader, srcName string, srcIsDir bool, srcPath, dst, rebase string) error {
	contentsOnly := strings.HasSuffix(srcPath, "/.")
	var base, rename string
	fi, err := os.Stat(dst)
	switch {
	case err == nil && fi.IsDir():
		base = dst
		if contentsOnly {
			rename = "."
		} else if rebase != "" {
			rename = rebase
		}
	case err == nil && srcIsDir:
		return fmt.Errorf("cannot copy a directory to the file %s", dst)
	case err == nil || errors.Is(err, fs.ErrNotExist):
		if strings.HasSuffix(dst, string(filepath.Separator)) && err != nil {
			return fmt.Errorf("destination directory %s does not exist", dst)
		}
		base, rename = filepath.Dir(dst), filepath.Base(dst)
		if contentsOnly && srcIsDir {
			if err := os.Mkdir(dst, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create %s: %w", dst, err)
			}
			base, rename = dst, "."
		}
	default:
		return fmt.Errorf("stat %s: %w", dst, err)
	}
	root, err := os.OpenRoot(base)
	if err != nil {
		return fmt.Errorf("open %s: %w", base, err)
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		first, rest, _ := strings.Cut(name, "/")
		switch {
		case srcName == "/" && path.IsAbs(name):
			// The root's archive: "/" itself, then "/bin", "/etc/..."; in
			// an existing directory its contents land there directly.
			name = strings.TrimPrefix(name, "/")
			if rename != "" {
				name = path.Join(rename, name)
			} else if name == "" {
				name = "."
			}
		case first == srcName || srcName == "":
			if rename != "" {
				first = rename
			}
			name = path.Clean(path.Join(first, rest))
		case contentsOnly:
			// Entries already relative to the copied directory.
		default:
			return fmt.Errorf("archive entry %q is outside the copied path %s", hdr.Name, srcName)
		}
		if name == "." {
			continue
		}
		if strings.HasPrefix(name, "../") || name == ".." || path.IsAbs(name) {
			return fmt.Errorf("archive entry %q escapes %s", hdr.Name, base)
		}
		if err := extractEntry(root, tr, hdr, name); err != nil {
			return fmt.Errorf("extract %s into %s: %w", hdr.Name, base, err)
		}
	}
}

func extractEntry(root *os.Root, r io.Reader, hdr *tar.Header, name string) error {
	mode := hdr.FileInfo().Mode().Perm()
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeReg:
		_ = root.Remove(name)
		f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeSymlink:
		_ = root.Remove(name)
		return root.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		target := path.Clean(hdr.Linkname)
		_ = root.Remove(name)
		return root.Link(target, name)
	default:
		// Devices, fifos and the like are not recreated by a copy.
		return nil
	}
}
