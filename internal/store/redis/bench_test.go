package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"greyd/internal/store"
	"greyd/internal/store/redis/redistest"
)

// benchKey is a triplet key shaped like greyd's (and like the buntdb
// benchmarks'): client network, sender, recipient.
func benchKey(i int) string {
	return fmt.Sprintf("198.51.%d.%d/sender%d@example.org/rcpt%d@example.net", i>>8&255, i&255, i, i%977)
}

// BenchmarkStep is one request's store step against a real redis-server
// on the same machine: a new triplet (read, decide, write) with the
// auto-whitelist on, Redis's clock. serial is one caller (a lone Postfix
// connection, one round trip at a time); parallel is GOMAXPROCS×4
// callers, which rueidis pipelines over its few connections.
func BenchmarkStep(b *testing.B) {
	for _, tr := range []struct {
		name  string
		start func(testing.TB, ...string) *redistest.Server
	}{
		{"unix", redistest.Start},
		{"tcp", redistest.StartTCP},
	} {
		srv := tr.start(b)
		// A generous deadline: this measures throughput, and a busy
		// machine must not turn into a failed benchmark.
		s := open(b, srv, Options{Timeout: 10 * time.Second})
		connected(b, s)
		in := func(i int) *store.StepInput {
			return &store.StepInput{
				ClientKey: "198.51." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255), TripletKey: benchKey(i),
				Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400, AWLClients: 5,
			}
		}
		b.Run(tr.name+"/serial", func(b *testing.B) {
			srv.Must("CONFIG", "RESETSTAT")
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.Step(context.Background(), in(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			reportServerTime(b, srv)
		})
		b.Run(tr.name+"/parallel", func(b *testing.B) {
			srv.Must("CONFIG", "RESETSTAT")
			var n atomic.Int64
			b.SetParallelism(4)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Step(context.Background(), in(int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportServerTime(b, srv)
		})
	}
}

// reportServerTime reports the time Redis spent running the script, per
// step (INFO commandstats): the part of a step no client can speed up.
func reportServerTime(b *testing.B, srv *redistest.Server) {
	b.StopTimer()
	f := srv.Info("commandstats")["cmdstat_evalsha"]
	for _, kv := range strings.Split(f, ",") {
		if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
			if us, err := strconv.ParseFloat(v, 64); err == nil {
				b.ReportMetric(us*1000, "redis-ns/op")
			}
		}
	}
	b.StartTimer()
}

// BenchmarkMemoryPerTriplet writes 100 000 new triplets and reports
// Redis's used_memory growth per triplet (with the key prefix, the
// "first,last" value and the TTL). Run it once:
//
//	go test -run '^$' -bench MemoryPerTriplet -benchtime 1x ./internal/store/redis
func BenchmarkMemoryPerTriplet(b *testing.B) {
	const n = 100_000
	srv := redistest.Start(b)
	s := open(b, srv, Options{Timeout: 10 * time.Second})
	connected(b, s)
	for b.Loop() {
		b.StopTimer()
		srv.Must("FLUSHALL")
		before, _ := strconv.ParseInt(srv.Info("memory")["used_memory"], 10, 64)
		b.StartTimer()
		var next atomic.Int64
		done := make(chan error, 16)
		for range 16 {
			go func() {
				for {
					i := next.Add(1) - 1
					if i >= n {
						done <- nil
						return
					}
					in := &store.StepInput{TripletKey: benchKey(int(i)), Delay: 300, RetryWindow: 2 * 86400, MaxAge: 35 * 86400}
					if _, err := s.Step(context.Background(), in); err != nil {
						done <- err
						return
					}
				}
			}()
		}
		for range 16 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		info := srv.Info("memory")
		after, _ := strconv.ParseInt(info["used_memory"], 10, 64)
		keys := srv.Info("keyspace")["db0"]
		b.ReportMetric(float64(after-before)/n, "bytes/triplet")
		b.Logf("used_memory %d -> %d (%s) for %d triplets: %.1f bytes/triplet; keyspace %s; key length %d",
			before, after, info["used_memory_human"], n, float64(after-before)/n, keys, len("{greyd:}t:"+benchKey(n/2)))
		b.StartTimer()
	}
}
