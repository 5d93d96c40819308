package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Group is the group whose members may use the control socket.
const Group = "greyd"

// Listen creates the control socket at path: mode 0660, group greyd when
// that group exists. When greyd may not give it to group greyd (started
// by hand by a user outside the group), the socket is 0600, for greyd's
// own user and root only, and warning says so. A socket file left by a greyd that crashed is
// replaced; one that a live process still answers on is not (two daemons
// must not steal each other's socket), nor is a file that is no socket.
// The packaged unit creates /run/greyd (RuntimeDirectory=); outside it a
// missing directory is created (0750) when its parent exists, so greyd
// started by hand as root has its control socket at the default path too.
func Listen(path string) (ln net.Listener, warning string, err error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		_ = os.Mkdir(dir, 0o750) // an error is reported by the Stat below
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, "", fmt.Errorf("control socket %s: directory %s: %w (the packaged unit creates it with RuntimeDirectory=greyd; or set control { socket = ... })", path, dir, errUnwrapPath(err))
	} else if !fi.IsDir() {
		return nil, "", fmt.Errorf("control socket %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, "", fmt.Errorf("control socket %s: a file that is not a socket is in the way; not replacing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, "", fmt.Errorf("control socket %s: another process (another greyd?) is serving on it; not replacing it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, "", fmt.Errorf("control socket %s: removing the stale socket: %w", path, errUnwrapPath(err))
		}
	}
	ln, err = net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("control socket %s: %w", path, err)
	}
	// Under the packaged unit (group greyd) the socket is the group's
	// already, and chown is forbidden there (SystemCallFilter=~@privileged
	// includes @chown): only change what needs changing.
	mode := os.FileMode(0o660)
	if gid, ok := groupID(); ok && !hasGroup(path, gid) {
		if err := os.Chown(path, -1, int(gid)); err != nil {
			// Started by hand by a user outside group greyd: that user
			// still gets greyd's commands, nobody else in its group does.
			mode = 0o600
			warning = fmt.Sprintf("control socket %s: cannot give it to group %s (%v): only uid %d (greyd's own user) and root may use it; to share it with the group, run greyd as a member of group %s",
				path, Group, errUnwrapPath(err), os.Geteuid(), Group)
		}
	}
	// The peer check stands behind these permissions either way; chmod
	// after bind leaves a moment with the umask's mode, which the
	// packaged unit's UMask=0027 already keeps from others.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("control socket %s: %w", path, errUnwrapPath(err))
	}
	return ln, warning, nil
}

// hasGroup reports whether path's group is gid.
func hasGroup(path string, gid uint32) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Gid == gid
}

func errUnwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// groupID looks group greyd up (each time: it may be created after greyd
// started, and only refused connections and Listen ask).
func groupID() (uint32, bool) {
	g, err := user.LookupGroup(Group)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(id), err == nil
}

// peer is who is at the other end of a control connection.
type peer struct {
	known         bool
	uid, gid, pid uint32
}

func (p peer) String() string {
	if !p.known {
		return "unknown peer"
	}
	return fmt.Sprintf("uid %d (gid %d, pid %d)", p.uid, p.gid, p.pid)
}

// peerOf reads the connection's SO_PEERCRED: the credentials of the
// process that connected, as the kernel recorded them at connect().
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return peer{}
	}
	return peer{known: true, uid: cred.Uid, gid: cred.Gid, pid: uint32(cred.Pid)}
}

// access decides who may use the control socket.
type access struct {
	self   uint32 // the daemon's user: it may open the database anyway
	socket string
	// ownerOnly: Listen could not give the socket to group greyd, so
	// its members are not let in either.
	ownerOnly bool
	// Lookups, variables for tests.
	group     func() (uint32, bool)
	groups    func(pid uint32) []uint32
	unmapped  func(uid uint32) bool
	guardedFn func() bool
}

func newAccess(socket string) *access {
	a := &access{self: uint32(os.Geteuid()), socket: socket, group: groupID, groups: procGroups, unmapped: unmappedUID}
	a.guardedFn = a.guarded
	if fi, err := os.Stat(socket); err == nil && fi.Mode().Perm()&0o077 == 0 {
		a.ownerOnly = true
	}
	return a
}

// allow reports whether p may use the API, and if not, why.
func (a *access) allow(p peer) (bool, string) {
	if !p.known {
		return false, "its credentials cannot be read"
	}
	if p.uid == 0 || p.uid == a.self {
		return true, ""
	}
	if a.ownerOnly {
		return false, fmt.Sprintf("not root and not greyd's own user (uid %d)", a.self)
	}
	gid, ok := a.group()
	if ok {
		if p.gid == gid {
			return true, ""
		}
		for _, g := range a.groups(p.pid) {
			if g == gid {
				return true, ""
			}
		}
	}
	// Under systemd's PrivateUsers=yes, every user but root and greyd
	// looks like the overflow user "nobody", and ProtectProc=invisible
	// hides their processes: a member of group greyd cannot be told from
	// anyone else here. The kernel already told them apart at connect():
	// it lets only root, user greyd and members of group greyd open a
	// socket that is 0660 and group greyd. So an identity this namespace
	// cannot see is let in exactly while the socket is still guarded so.
	if ok && a.unmapped(p.uid) && a.guardedFn() {
		return true, ""
	}
	if !ok {
		return false, fmt.Sprintf("not root and not in group %s (which does not exist on this system)", Group)
	}
	return false, fmt.Sprintf("not root and not in group %s", Group)
}

// hint says who may use the socket.
func (a *access) hint() string {
	if a.ownerOnly {
		return fmt.Sprintf("as root or as uid %d (greyd could not give its control socket to group %s)", a.self, Group)
	}
	return "as root or as a member of group " + Group
}

// guarded reports whether the socket file admits only its owner and
// group greyd.
func (a *access) guarded() bool {
	fi, err := os.Stat(a.socket)
	if err != nil || fi.Mode().Perm()&0o007 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	gid, gok := a.group()
	return ok && gok && st.Gid == gid
}

// procGroups reads the supplementary groups of pid ("Groups:" of
// /proc/<pid>/status); SO_PEERCRED only has the primary one.
func procGroups(pid uint32) []uint32 {
	f, err := os.Open("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range strings.Fields(rest) {
			if g, err := strconv.ParseUint(f, 10, 32); err == nil {
				out = append(out, uint32(g))
			}
		}
		return out
	}
	return nil
}

// unmappedUID reports whether uid is the kernel's overflow uid while
// greyd runs in a user namespace that does not map every user (systemd's
// PrivateUsers=yes): then it stands for any user outside the mapping.
func unmappedUID(uid uint32) bool {
	// /proc/sys/kernel/overflowuid would say which uid that is, but the
	// packaged unit's ProcSubset=pid hides /proc/sys: the map of our own
	// user namespace says the same. A uid inside none of its ranges can
	// only be the overflow uid the kernel shows for an unmapped peer; the
	// initial namespace maps every uid, so there nothing is unmapped.
	m, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(m)), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			return false // unreadable: do not guess
		}
		first, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if uint64(uid) >= first && uint64(uid) < first+count {
			return false
		}
	}
	return len(lines) > 0
}

type peerKey struct{}

// connContext remembers each connection's peer for the handlers.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerOf(c))
}

func peerFrom(ctx context.Context) peer {
	p, _ := ctx.Value(peerKey{}).(peer)
	return p
}
