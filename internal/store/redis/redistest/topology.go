package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// MasterName is the Sentinel master set of StartSentinel.
const MasterName = "greydtest"

// Sentinel tunings, far below the defaults (30 s, 3 min) so a failover
// takes a few seconds.
const (
	DownAfter       = 1000 * time.Millisecond
	FailoverTimeout = 3000 * time.Millisecond
)

// SentinelSet is a master, its replica and three sentinels (quorum 2),
// all on 127.0.0.1.
type SentinelSet struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// StartSentinel starts a SentinelSet and waits until the replica is in
// sync and every sentinel knows the replica and the other two sentinels.
func StartSentinel(t testing.TB) *SentinelSet {
	t.Helper()
	Need(t)
	x := &SentinelSet{Master: StartTCP(t)}
	mport := strconv.Itoa(x.Master.Port)
	x.Replica = StartTCP(t, "--replicaof", "127.0.0.1", mport)
	WaitFor(t, 10*time.Second, "replica in sync", func() bool {
		return x.Replica.Info("replication")["master_link_status"] == "up"
	})
	for range 3 {
		x.Sentinels = append(x.Sentinels, startOnPort(t, "redis-sentinel", false, func(dir string, port int) []string {
			conf := filepath.Join(dir, "sentinel.conf")
			text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\ndaemonize no\n", port, dir, filepath.Join(dir, "sentinel.log")) +
				fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n", MasterName, mport) +
				fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", MasterName, DownAfter.Milliseconds()) +
				fmt.Sprintf("sentinel failover-timeout %s %d\n", MasterName, FailoverTimeout.Milliseconds()) +
				fmt.Sprintf("sentinel parallel-syncs %s 1\n", MasterName)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{conf}
		}))
	}
	// Sentinels find each other through the master's hello channel, every
	// 2 s.
	WaitFor(t, 20*time.Second, "sentinels know each other and the replica", func() bool {
		for _, s := range x.Sentinels {
			m := s.fields("SENTINEL", "MASTER", MasterName)
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				return false
			}
		}
		return true
	})
	return x
}

// Addrs are the sentinels' addresses.
func (x *SentinelSet) Addrs() []string {
	var a []string
	for _, s := range x.Sentinels {
		a = append(a, s.Addr())
	}
	return a
}

// MasterAddr is the master's address according to the first sentinel
// that answers.
func (x *SentinelSet) MasterAddr() string {
	for _, s := range x.Sentinels {
		r, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
		if err != nil {
			continue
		}
		if host, port, ok := strings.Cut(r, "\n"); ok {
			return host + ":" + port
		}
	}
	return ""
}

// fields runs a command whose reply is a flat list of names and values.
func (s *Server) fields(args ...string) map[string]string {
	r, err := s.Do(args...)
	if err != nil {
		return nil
	}
	l := strings.Split(r, "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(l); i += 2 {
		m[l[i]] = l[i+1]
	}
	return m
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n cluster-enabled servers, joins them with
// redis-cli --cluster create, and waits until every node reports the
// cluster ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Need(t)
	c := &Cluster{}
	for range n {
		c.Nodes = append(c.Nodes, startOnPort(t, "redis-server", true, func(dir string, port int) []string {
			return append(baseArgs(dir), "--port", strconv.Itoa(port),
				"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "2000")
		}))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	WaitFor(t, 20*time.Second, "cluster state ok on every node", func() bool {
		for _, s := range c.Nodes {
			info := s.Must("CLUSTER", "INFO")
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)) {
				return false
			}
		}
		return true
	})
	return c
}

// Addrs are the nodes' addresses.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.Nodes {
		a = append(a, s.Addr())
	}
	return a
}
