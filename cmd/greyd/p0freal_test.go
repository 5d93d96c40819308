package main

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"greyd/internal/p0f"
)

// The real p0f (Debian's /usr/sbin/p0f) in a network namespace of its
// own, watching its loopback for `tcp dst port 25`, fed two SYNs crafted
// with scapy (Debian's python3-scapy) after signatures of p0f's own
// /etc/p0f/p0f.fp: "Windows 7 or 8" from 192.0.2.10, "Linux 3.11 and
// newer" from 192.0.2.20. greyd asks its socket, a file shared across
// the namespaces, and decides: the Windows client is greylisted, the
// Linux one passes. As root the namespace is unshare --net; otherwise a
// user namespace maps us to root in it, and where the kernel refuses
// that the test fails, saying so.

// p0fSYNs is the scapy script: one SYN per fingerprint, on lo.
const p0fSYNs = `
from scapy.all import Ether, IP, TCP, sendp, conf
conf.verb = 0
def syn(src, ttl, window, options, sport):
    return (Ether(src="00:00:00:00:00:00", dst="00:00:00:00:00:00") /
            IP(src=src, dst="127.0.0.1", ttl=ttl, flags="DF", id=4321) /
            TCP(sport=sport, dport=25, flags="S", seq=1000, window=window, options=options))
# p0f.fp: s:win:Windows:7 or 8  *:128:0:*:8192,2:mss,nop,ws,nop,nop,sok:df,id+:0
windows = syn("192.0.2.10", 128, 8192,
              [("MSS", 1460), ("NOP", None), ("WScale", 2), ("NOP", None), ("NOP", None), ("SAckOK", b"")], 49152)
# p0f.fp: s:unix:Linux:3.11 and newer  *:64:0:*:mss*20,10:mss,sok,ts,nop,ws:df,id+:0
linux = syn("192.0.2.20", 64, 1460 * 20,
            [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456, 0)), ("NOP", None), ("WScale", 10)], 49153)
sendp([windows, linux], iface="lo")
`

// p0fNamespace runs p0f in the namespace; the SYNs are sent once its
// socket exists, and the file "sent" says so. Polls have deadlines.
const p0fNamespace = `set -e
dir=$1
ip link set lo up
/usr/sbin/p0f -i lo -f /etc/p0f/p0f.fp -s "$dir/p0f.sock" 'tcp dst port 25' >"$dir/p0f.log" 2>&1 &
i=0
while [ ! -S "$dir/p0f.sock" ]; do
	i=$((i+1)); [ $i -lt 200 ] || { echo "p0f did not create its socket"; cat "$dir/p0f.log"; exit 1; }
	sleep 0.05
done
/usr/bin/python3 "$dir/syn.py"
touch "$dir/sent"
wait
`

func TestP0fReal(t *testing.T) {
	for _, bin := range []string{"/usr/sbin/p0f", "/usr/bin/python3", "unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing (make deps installs p0f, python3-scapy and iproute2): %v", bin, err)
		}
	}
	dir, err := os.MkdirTemp("", "greyd-p0f-") // short: a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "syn.py"), []byte(p0fSYNs), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--net"}
	if os.Geteuid() != 0 {
		args = []string{"--user", "--map-root-user", "--net"}
	}
	args = append(args, "sh", "-c", p0fNamespace, "sh", dir)
	ns := exec.Command("unshare", args...)
	out := &syncBuf{}
	ns.Stdout, ns.Stderr = out, out
	ns.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ns.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-ns.Process.Pid, syscall.SIGKILL) // p0f with its shell
		<-done
	})
	p0fLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "p0f.log")); return string(b) }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "sent")); err == nil {
			break
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the namespace ended (%v; as uid %d, unshare %q):\n%s\np0f:\n%s", err, os.Geteuid(), args[:len(args)-4], out, p0fLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SYNs sent within 30s:\n%s\np0f:\n%s", out, p0fLog())
		}
	}

	// p0f reads the SYNs from the capture on its own time: ask it
	// directly until it knows both, then greyd.
	socket := filepath.Join(dir, "p0f.sock")
	want := map[string]string{"192.0.2.10": "Windows", "192.0.2.20": "Linux"}
	cl := p0f.New(p0f.Options{})
	defer cl.Close()
	for addr, osName := range want {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			a, err := cl.Query(ctx, socket, netip.MustParseAddr(addr))
			cancel()
			if err == nil && a.OSName == osName {
				t.Logf("p0f on %s: %+v", addr, a)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("p0f on %s: %+v, %v; want os_name %q\np0f:\n%s", addr, a, err, osName, p0fLog())
			}
		}
	}

	gdir := t.TempDir()
	sock, _ := testConfig(t, gdir, p0fConfig(socket, freePort(t)))
	d := startDaemon(t, gdir)
	c := dial(t, "unix", sock)
	now := time.Now().Unix()
	ask := func(addr string) string {
		return c.ask(selRcpt(addr, "mx.example.net", "mx.example.net", "x@example.net", "bob@example.org", now)...)
	}
	if got := ask("192.0.2.10"); got != greylisted {
		t.Errorf("the Windows client: got %q, want %q", got, greylisted)
	}
	d.waitLog("action=greylist, reason=new, score=3, signals=p0f.windows:3, client_name=mx.example.net, client_address=192.0.2.10")
	if got := ask("192.0.2.20"); got != "DUNNO" {
		t.Errorf("the Linux client: got %q, want DUNNO", got)
	}
	d.waitLog("action=pass, reason=score, score=-1, signals=p0f.unix:-1, client_name=mx.example.net, client_address=192.0.2.20")
	x := explainJSON(t, filepath.Join(gdir, "greyd.hcl"), 1, "192.0.2.10", "mx.example.net", "y@example.net", "carol@example.org")
	if p := x.Selective.P0f; p == nil || p.OSName != "Windows" || p.OSFlavor != "7 or 8" || p.Distance != 0 {
		t.Errorf("explain's p0f: %+v", p)
	}
}
