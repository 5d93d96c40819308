package buntdb

import (
	"context"
	"fmt"
	"testing"
	"time"
)

const benchKeys = 100_000

// benchDB is a file database with SyncEverySecond holding benchKeys
// triplets with Postgrey-shaped keys.
func benchDB(b *testing.B) (*DB, []string) {
	b.Helper()
	d := openT(b, dbPath(b), Options{Sync: SyncEverySecond})
	keys := make([]string, benchKeys)
	ctx := context.Background()
	for i := range keys {
		keys[i] = fmt.Sprintf("198.51.%d.%d/sender%d@example.org/rcpt%d@example.net", i>>8&255, i&255, i, i%977)
		if err := d.PutTriplet(ctx, keys[i], Triplet{First: 1763812500, Last: 1763812500 + int64(i)}, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	return d, keys
}

func BenchmarkTripletGet(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, found, err := d.Triplet(ctx, keys[i%benchKeys]); !found || err != nil {
			b.Fatal(found, err)
		}
		i++
	}
}

func BenchmarkTripletGetParallel(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, found, err := d.Triplet(ctx, keys[i%benchKeys]); !found || err != nil {
				b.Error(found, err)
				return
			}
			i += 7
		}
	})
}

func BenchmarkTripletPut(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.PutTriplet(ctx, keys[i%benchKeys], Triplet{First: 1763812500, Last: 1763899999}, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRoundTrip is the store's share of one greylisted request: look
// the triplet up, write it back.
func BenchmarkRoundTrip(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := keys[i%benchKeys]
		t, _, err := d.Triplet(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		t.Last++
		if err := d.PutTriplet(ctx, k, t, 35*24*time.Hour); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRoundTripParallel(b *testing.B) {
	d, keys := benchDB(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i%benchKeys]
			t, _, err := d.Triplet(ctx, k)
			if err == nil {
				t.Last++
				err = d.PutTriplet(ctx, k, t, 35*24*time.Hour)
			}
			if err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}
