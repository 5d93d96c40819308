package control

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"greyd/internal/greylist"
	"greyd/internal/store/buntdb"
)

// TestAccessOwnerOnly: a socket Listen could not give to group greyd
// admits root and greyd's own user only, in the peer check too.
func TestAccessOwnerOnly(t *testing.T) {
	tests := []struct {
		name string
		p    peer
		want bool
	}{
		{"root", peer{known: true, uid: 0, gid: 0}, true},
		{"greyd's own user", peer{known: true, uid: 1000, gid: 1000}, true},
		{"primary group greyd", peer{known: true, uid: 1001, gid: 130}, false},
		{"supplementary group greyd", peer{known: true, uid: 1001, gid: 1001}, false},
		{"unmapped", peer{known: true, uid: 65534, gid: 65534}, false},
	}
	for i, tc := range tests {
		a := &access{
			self:      1000,
			ownerOnly: true,
			group:     func() (uint32, bool) { return 130, true },
			groups:    func(uint32) []uint32 { return []uint32{130} },
			unmapped:  func(uint32) bool { return true },
			guardedFn: func() bool { return true },
		}
		got, why := a.allow(tc.p)
		if got != tc.want || !got && !strings.Contains(why, "not greyd's own user (uid 1000)") {
			t.Errorf("%d %s: allow(%v) = %v (%s), want %v", i, tc.name, tc.p, got, why, tc.want)
		}
	}
}

// TestRefusedPeer: over a real socket, with the credentials the kernel
// records at connect(), a peer that is neither root, nor greyd's user,
// nor in group greyd gets 403 and a log line. Run as root, the peer is a
// thread of this test that took uid 65534 (SO_PEERCRED records the
// connecting thread's credentials). Run as any other user, which has no
// second uid to take (a user namespace maps it to itself), greyd's own
// user is made another one.
func TestRefusedPeer(t *testing.T) {
	root := os.Geteuid() == 0
	dir, err := os.MkdirTemp("", "greyd-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "c.sock")
	ln, _, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := buntdb.Open(buntdb.Memory, buntdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv := NewServer(Options{Engine: greylist.NewEngine(db, testSnap(t, false), time.Now, log), Admin: db, Log: log})
	a := newAccess(path)
	a.group = func() (uint32, bool) { return 4242424, true } // a group greyd the peer is not in
	peerUID := 65534
	if !root {
		peerUID = os.Geteuid()
		a.self = uint32(peerUID) + 1
	}
	srv.access = a
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	dial := func() (net.Conn, error) { return net.Dial("unix", path) }
	if root {
		dial = func() (net.Conn, error) { return dialAs(path, peerUID) }
		// On the socket as Listen leaves it (0660), the kernel refuses
		// the peer first.
		if c, err := dial(); !errors.Is(err, syscall.EACCES) {
			t.Errorf("uid %d on a 0660 socket: %v, want EACCES", peerUID, err)
			if c != nil {
				c.Close()
			}
		}
		// Root gets in.
		if status, body := get(t, func() (net.Conn, error) { return net.Dial("unix", path) }); status != http.StatusOK {
			t.Errorf("root: %d %s", status, body)
		}
	}
	os.Chmod(path, 0o666) // from here on the peer check alone decides
	status, body := get(t, dial)
	want := "permission denied: uid " + strconv.Itoa(peerUID) + " "
	if status != http.StatusForbidden || !strings.Contains(body, want) || !strings.Contains(body, "not in group greyd") {
		t.Errorf("uid %d: %d %s; want 403 with %q", peerUID, status, body, want)
	}
	if !strings.Contains(logs.String(), "control socket: refused uid "+strconv.Itoa(peerUID)+" (gid ") {
		t.Errorf("no log line for the refused peer:\n%s", logs)
	}
}

// dialAs connects to the unix socket at path from a thread whose
// effective uid and gid are uid, without supplementary groups. The thread is never unlocked: it ends with its
// goroutine, credentials and all.
func dialAs(path string, uid int) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		// Raw system calls change this thread only (syscall.Setresuid
		// and the like change every thread of the process). Groups
		// first, while the thread may still change them.
		for _, call := range [][4]uintptr{
			{syscall.SYS_SETGROUPS, 0, 0, 0},
			{syscall.SYS_SETRESGID, ^uintptr(0), uintptr(uid), ^uintptr(0)},
			{syscall.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)},
		} {
			if _, _, e := syscall.RawSyscall(call[0], call[1], call[2], call[3]); e != 0 {
				ch <- result{nil, e}
				return
			}
		}
		c, err := net.Dial("unix", path)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// get asks for the stats on a connection from dial and returns the
// status and body.
func get(t *testing.T, dial func() (net.Conn, error)) (int, string) {
	t.Helper()
	c, err := dial()
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /v1/stats HTTP/1.1\r\nHost: greyd\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
