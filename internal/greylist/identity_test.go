package greylist

import (
	"testing"
	"time"

	"greyd/internal/identity"
)

func autoSnapshot(t *testing.T) *Snapshot {
	snap := testSnapshot(t)
	snap.Identity = identity.New(identity.Defaults())
	return snap
}

// TestLookupByAuto: a pooled sender retrying from another network passes
// at its first retry under lookup_by "auto" and not under "subnet"; names
// that are not verified, or that look dynamic, stay keyed by network.
func TestLookupByAuto(t *testing.T) {
	first := req("209.85.220.41", "mail-sor-f41.google.com", "alice@gmail.com", "bob@example.org")
	retry := req("209.85.128.73", "mail-wm1-f73.google.com", "alice@gmail.com", "bob@example.org")
	t.Run("auto", func(t *testing.T) {
		runSteps(t, autoSnapshot(t), newStore(t), []step{
			{0, first, Greylist, New, 300, 0},
			{600 * time.Second, retry, FirstPass, TripletFound, 0, 600},
			{700 * time.Second, first, Pass, TripletFound, 0, 0},
		})
	})
	t.Run("subnet", func(t *testing.T) {
		runSteps(t, testSnapshot(t), newStore(t), []step{
			{0, first, Greylist, New, 300, 0},
			{600 * time.Second, retry, Greylist, New, 300, 0},
		})
	})
	for _, name := range []string{"unknown", "", "c-73-15-220-11.hsd1.ca.comcast.net", "dsl-pool.example.net"} {
		t.Run("stays on subnet: "+name, func(t *testing.T) {
			runSteps(t, autoSnapshot(t), newStore(t), []step{
				{0, req("73.15.220.11", name, "x@example.net", "bob@example.org"), Greylist, New, 300, 0},
				{600 * time.Second, req("73.16.1.2", name, "x@example.net", "bob@example.org"), Greylist, New, 300, 0},
			})
		})
	}
}

// TestAutoKeepsWhatPassedUnderSubnet: switching a site from subnet to
// auto greylists nothing that had passed; the auto-whitelist stays per
// address, not per organisation.
func TestAutoKeepsWhatPassedUnderSubnet(t *testing.T) {
	st := newStore(t)
	a := req("209.85.220.41", "mail-sor-f41.google.com", "alice@gmail.com", "bob@example.org")
	runSteps(t, testSnapshot(t), st, []step{
		{0, a, Greylist, New, 300, 0},
		{300 * time.Second, a, FirstPass, TripletFound, 0, 300},
	})
	d := Decide(t.Context(), a, autoSnapshot(t), st, t0.Add(time.Hour))
	if d.Action != Pass || d.Reason != TripletFound || !d.Step.ViaAlt || d.Org != "google.com" || d.Identity != identity.OrgDomain {
		t.Fatalf("after the switch: %+v", d)
	}
	snap := autoSnapshot(t)
	snap.AutoWhitelistClients = 1
	st = newStore(t)
	runSteps(t, snap, st, []step{
		{0, a, Greylist, New, 300, 0},
		{300 * time.Second, a, FirstPass, TripletFound, 0, 300},
		// The same address: auto-whitelisted.
		{400 * time.Second, req("209.85.220.41", "mail-sor-f41.google.com", "other@gmail.com", "bob@example.org"), Pass, ClientAWL, 0, 0},
		// Another host of the organisation: not.
		{400 * time.Second, req("209.85.128.73", "mail-wm1-f73.google.com", "other@gmail.com", "bob@example.org"), Greylist, New, 300, 0},
	})
}
