package specgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/berth-project/berth/internal/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Errors of user and group lookup, with the wording Docker users know.
var (
	ErrNoPasswdEntries = errors.New("no matching entries in passwd file")
	ErrNoGroupEntries  = errors.New("no matching entries in group file")
	ErrIDRange         = errors.New("uids and gids must be in range 0-2147483647")
)

const maxID = 1<<31 - 1

type passwdEntry struct {
	name     string
	uid, gid int
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// LookupUser resolves a user spec ("", "name", "uid", "name:group",
// "uid:gid", ...) and the --group-add list against /etc/passwd and
// /etc/group inside rootfs, as Docker does: a name must be in passwd (or
// group), a number need not; without an explicit group the user's primary
// group and the groups listing the user as a member are used. The primary
// group comes first among the additional groups, then the member groups,
// then the added ones, each once.
func LookupUser(rootfs, spec string, groupAdd []string) (specs.User, error) {
	var u specs.User
	users, err := readPasswd(rootfs)
	if err != nil {
		return u, err
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return u, err
	}
	userArg, groupArg, _ := strings.Cut(spec, ":")
	uidArg, uidErr := strconv.Atoi(userArg)
	gidArg, gidErr := strconv.Atoi(groupArg)

	uid, gid := 0, 0
	matched := ""
	found := false
	for _, p := range users {
		switch {
		case userArg == "":
			found = p.uid == 0
		case uidErr == nil:
			found = p.uid == uidArg
		default:
			found = p.name == userArg
		}
		if found {
			matched, uid, gid = p.name, p.uid, p.gid
			break
		}
	}
	if !found && userArg != "" {
		if uidErr != nil {
			return u, errdefs.InvalidArgument(fmt.Errorf("unable to find user %s: %w", userArg, ErrNoPasswdEntries))
		}
		if uidArg < 0 || uidArg > maxID {
			return u, errdefs.InvalidArgument(fmt.Errorf("user %s: %w", userArg, ErrIDRange))
		}
		uid = uidArg
	}
	var sgids []int
	if groupArg != "" {
		gfound := false
		for _, g := range groups {
			if (gidErr == nil && g.gid == gidArg) || (gidErr != nil && g.name == groupArg) {
				gid, gfound = g.gid, true
				break
			}
		}
		if !gfound {
			if gidErr != nil {
				return u, errdefs.InvalidArgument(fmt.Errorf("unable to find group %s: %w", groupArg, ErrNoGroupEntries))
			}
			if gidArg < 0 || gidArg > maxID {
				return u, errdefs.InvalidArgument(fmt.Errorf("group %s: %w", groupArg, ErrIDRange))
			}
			gid = gidArg
		}
	} else if matched != "" {
		for _, g := range groups {
			for _, m := range g.members {
				if m == matched {
					sgids = append(sgids, g.gid)
					break
				}
			}
		}
	}
	for _, ag := range groupAdd {
		gfound := false
		for _, g := range groups {
			if g.name == ag || strconv.Itoa(g.gid) == ag {
				sgids = append(sgids, g.gid)
				gfound = true
				break
			}
		}
		if gfound {
			continue
		}
		n, err := strconv.ParseInt(ag, 10, 64)
		if err != nil {
			return u, errdefs.InvalidArgument(fmt.Errorf("unable to find group %s: %w", ag, ErrNoGroupEntries))
		}
		if n < 0 || n > maxID {
			return u, errdefs.InvalidArgument(fmt.Errorf("group %s: %w", ag, ErrIDRange))
		}
		sgids = append(sgids, int(n))
	}
	u.UID, u.GID = uint32(uid), uint32(gid)
	seen := map[int]bool{}
	for _, g := range append([]int{gid}, sgids...) {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	return u, nil
}

// openInRootfs opens a regular file inside rootfs for reading, resolving
// the path (and any symlink on it) inside rootfs. A missing file is nil.
func openInRootfs(rootfs, name string) (*os.File, error) {
	h, err := pathrs.OpenInRoot(rootfs, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s in rootfs %s: %w", name, rootfs, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open %s in rootfs %s: %w", name, rootfs, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s in rootfs %s: %w", name, rootfs, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, errdefs.InvalidArgument(fmt.Errorf("%s in rootfs %s is not a regular file", name, rootfs))
	}
	return f, nil
}

// maxAccountFile bounds what is read of /etc/passwd and /etc/group.
const maxAccountFile = 16 << 20

func readAccountFile(rootfs, name string, fields int) ([][]string, error) {
	f, err := openInRootfs(rootfs, name)
	if err != nil || f == nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, maxAccountFile))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, ":")
		for len(parts) < fields {
			parts = append(parts, "")
		}
		out = append(out, parts)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s in rootfs %s: %w", name, rootfs, err)
	}
	return out, nil
}

// readPasswd parses /etc/passwd (name:password:uid:gid:gecos:home:shell);
// lines whose IDs are not numbers are skipped.
func readPasswd(rootfs string) ([]passwdEntry, error) {
	lines, err := readAccountFile(rootfs, "/etc/passwd", 7)
	if err != nil {
		return nil, err
	}
	var out []passwdEntry
	for _, p := range lines {
		uid, err1 := strconv.Atoi(p[2])
		gid, err2 := strconv.Atoi(p[3])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: p[0], uid: uid, gid: gid})
	}
	return out, nil
}

// readGroup parses /etc/group (name:password:gid:member,member...).
func readGroup(rootfs string) ([]groupEntry, error) {
	lines, err := readAccountFile(rootfs, "/etc/group", 4)
	if err != nil {
		return nil, err
	}
	var out []groupEntry
	for _, p := range lines {
		gid, err := strconv.Atoi(p[2])
		if err != nil {
			continue
		}
		g := groupEntry{name: p[0], gid: gid}
		for _, m := range strings.Split(p[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.members = append(g.members, m)
			}
		}
		out = append(out, g)
	}
	return out, nil
}
