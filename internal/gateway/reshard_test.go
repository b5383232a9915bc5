package gateway

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"
)

// TestNodeReshard runs a reshard's publish modes on one node against the
// simulator: 2 shards publish while 4 new ones start in ModeHold; once
// every new shard is ready with its guilds, the old generation switches to
// ModeDedup, then the new, then the old holds, then the new publishes in
// batches and becomes current. Every event the simulator sent is in the
// stream exactly once, and none of the new sessions' own READY and
// GUILD_CREATE burst is.
func TestNodeReshard(t *testing.T) {
	cfg := testSimConfig()
	cfg.Shards, cfg.EventRate, cfg.RecordDeliveries = 2, 100, true
	s, api := startSim(t, cfg)
	b := newMemBroker(t)
	ncfg := testNodeConfig(t, api, b)
	ncfg.ShardCount = 2
	n, stop := runNode(t, ncfg)
	// Every guild arrived on the old sessions: an event of a guild still
	// due its GUILD_CREATE goes to no old session, only to new ones.
	waitFor(t, 10*time.Second, "2 shards ready with their guilds", func() bool {
		for _, st := range n.Status() {
			if st.GuildsPending > 0 || !st.GuildsKnown {
				return false
			}
		}
		return allReady(n)
	})

	n.SetMode(4, ModeHold, 4)
	ctx := context.Background()
	for i := range 4 {
		if err := n.Start(ctx, 4, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Start(ctx, 4, 1); err == nil {
		t.Error("Start of a running shard: no error")
	}
	waitFor(t, 10*time.Second, "the new generation ready with its guilds", func() bool {
		ready := 0
		for _, st := range n.Status() {
			if st.NumShards == 4 && st.State == StateReady.String() && st.GuildsKnown && st.GuildsPending == 0 && st.Mode == "hold" {
				ready++
			}
		}
		return ready == 4
	})
	var marks []int64
	step := func(count int, m PublishMode) {
		marks = append(marks, s.Stats().EventIDs)
		n.SetMode(count, m, 4)
		if got := n.Mode(count); got != m {
			t.Fatalf("Mode(%d) = %v after SetMode(%v)", count, got, m)
		}
		time.Sleep(300 * time.Millisecond)
	}
	step(2, ModeDedup)
	step(4, ModeDedup)
	step(2, ModeHandover)
	waitFor(t, 10*time.Second, "the old generation handed over", func() bool {
		for _, st := range n.Status() {
			if st.NumShards == 2 && !st.HandedOver {
				return false
			}
		}
		return true
	})
	step(2, ModeHold)
	step(4, ModePublish)
	n.Promote(4)
	if got := n.ShardCount(); got != 4 {
		t.Fatalf("ShardCount() = %d after Promote(4)", got)
	}
	if err := n.Retire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, st := range n.Status() {
		if st.NumShards != 4 || st.Mode != "publish" {
			t.Errorf("after the reshard: shard %d/%d in mode %s", st.Shard, st.NumShards, st.Mode)
		}
	}
	if !n.Owns(3) {
		t.Error("Owns(3) = false: shard 3 of the new count runs here")
	}
	time.Sleep(500 * time.Millisecond)
	stop()

	// Each session gets the events in the order they were made: every
	// event up to the newest each new shard published was due to reach
	// the stream by now.
	seen := map[string]int{}
	newest := map[int]uint64{}
	for _, e := range b.events(t) {
		if id, err := strconv.ParseUint(e.simID, 10, 64); err == nil && e.n == 4 {
			newest[e.shard] = max(newest[e.shard], id)
		}
		if e.n == 4 && (e.typ == "READY" || e.typ == "GUILD_CREATE") {
			t.Errorf("the new generation published its own %s (shard %d)", e.typ, e.shard)
		}
		if e.simID != "" {
			seen[e.simID]++
		}
	}
	last := uint64(math.MaxUint64)
	for j := range 4 {
		last = min(last, newest[j])
	}
	delivered := s.Delivered()
	lost, dup, total := 0, 0, 0
	for id := uint64(1); id <= last; id++ {
		if !delivered.Has(id) {
			continue
		}
		total++
		switch c := seen[strconv.FormatUint(id, 10)]; {
		case c == 0:
			lost++
			if lost <= 10 {
				t.Logf("event %d lost (the steps began at events %v)", id, marks)
			}
		case c > 1:
			dup++
		}
	}
	if lost > 0 || dup > 0 || total < 500 {
		t.Errorf("of %d events: %d lost, %d published more than once", total, lost, dup)
	}
	if b.dups == 0 {
		t.Error("the broker dropped no duplicate: the overlap never published an event twice, so the test proves nothing about it")
	}
	t.Logf("%d events, %d copies dropped by the broker's deduplication", total, b.dups)
}
