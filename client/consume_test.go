package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// workload builds batches for shards 0..numShards-1, perShard events each
// with sequence numbers 1..perShard, in batches of 1 to 3 events of one type
// and one guild, with the shards interleaved. The subject's partition token
// is broker.Partition(guild, gatewayParts).
func workload(numShards, perShard, gatewayParts int, seed uint64) []testBatch {
	rng := rand.New(rand.NewPCG(seed, 1))
	types := []string{"MESSAGE_CREATE", "TYPING_START", "GUILD_CREATE", "USER_UPDATE"}
	last := make([]int64, numShards)
	var out []testBatch
	for {
		var open []int
		for s, l := range last {
			if l < int64(perShard) {
				open = append(open, s)
			}
		}
		if len(open) == 0 {
			return out
		}
		shard := open[rng.IntN(len(open))]
		typ := types[rng.IntN(len(types))]
		guild := guildOn(shard, numShards, rng.IntN(50))
		if typ == "USER_UPDATE" {
			guild = 0
		}
		b := testBatch{shard: shard, numShards: numShards, session: "sess" + string(rune('a'+shard)), partition: broker.Partition(guild, gatewayParts)}
		for n := 1 + rng.IntN(3); n > 0 && last[shard] < int64(perShard); n-- {
			last[shard]++
			b.events = append(b.events, newTestEvent(typ, last[shard], guild))
		}
		out = append(out, b)
	}
}

func (e *env) publishAll(t *testing.T, batches []testBatch) {
	t.Helper()
	for _, b := range batches {
		e.publish(t, b)
	}
}

// expected returns the events of batches that keep says to keep, by key.
func expected(batches []testBatch, keep func(b testBatch, ev testEvent) bool) map[string]gotEvent {
	out := map[string]gotEvent{}
	for _, b := range batches {
		for _, ev := range b.events {
			if keep != nil && !keep(b, ev) {
				continue
			}
			k := ev.key(b.shard, b.session)
			out[k] = gotEvent{Key: k, Type: ev.typ, Shard: b.shard, NumShards: b.numShards, Seq: ev.seq, GuildID: ev.guild, Raw: string(ev.raw), Data: string(ev.d)}
		}
	}
	return out
}

// checkOrder checks that each shard's events came in increasing sequence.
func checkOrder(t *testing.T, got []gotEvent) {
	t.Helper()
	last := map[int]int64{}
	for _, g := range got {
		if g.Seq <= last[g.Shard] {
			t.Errorf("shard %d: seq %d after %d", g.Shard, g.Seq, last[g.Shard])
		}
		last[g.Shard] = g.Seq
	}
}

func byKey(got []gotEvent) map[string]gotEvent {
	m := make(map[string]gotEvent, len(got))
	for _, g := range got {
		m[g.Key] = g
	}
	return m
}

func TestConsumeOrderAcrossShards(t *testing.T) {
	e := newEnv(t)
	batches := workload(4, 60, 1, 1)
	e.publishAll(t, batches)
	want := expected(batches, nil)

	c := e.connect(t, Config{Consumer: "order"})
	rec := newRecorder(len(want))
	var inFlight [4]atomic.Int32
	var overlap atomic.Bool
	var concurrent atomic.Int32
	var maxConcurrent atomic.Int32
	cs := startConsume(t, c, func(ctx context.Context, ev *Event) error {
		if inFlight[ev.Shard].Add(1) != 1 {
			overlap.Store(true)
		}
		n := concurrent.Add(1)
		for m := maxConcurrent.Load(); n > m && !maxConcurrent.CompareAndSwap(m, n); m = maxConcurrent.Load() {
		}
		defer concurrent.Add(-1)
		defer inFlight[ev.Shard].Add(-1)
		return rec.handle(ctx, ev)
	})
	got := rec.wait(t)
	if err := cs.stop(t); err != nil {
		t.Errorf("Consume = %v, want nil after cancel", err)
	}
	if overlap.Load() {
		t.Error("handler ran twice at once for one shard")
	}
	t.Logf("handler calls at once: at most %d", maxConcurrent.Load())
	checkOrder(t, got)
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, g := range got {
		if g.Redelivered {
			t.Errorf("event %s marked redelivered", g.Key)
		}
	}
	waitFor(t, "every batch acknowledged", func() bool {
		info := e.consumerInfo(t, "order")
		return info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == uint64(len(batches))
	})
	if got := c.numShards; got != 4 {
		t.Errorf("learnt shard count %d, want 4", got)
	}
}

func TestConsumeTypeFilter(t *testing.T) {
	e := newEnv(t)
	batches := workload(2, 40, 1, 2)
	e.publishAll(t, batches)
	types := map[string]bool{"MESSAGE_CREATE": true, "GUILD_CREATE": true}
	want := expected(batches, func(_ testBatch, ev testEvent) bool { return types[ev.typ] })

	c := e.connect(t, Config{Consumer: "types", Types: []string{"MESSAGE_CREATE", "GUILD_CREATE", "MESSAGE_CREATE"}})
	rec := newRecorder(len(want))
	cs := startConsume(t, c, rec.handle)
	got := rec.wait(t)
	// Whatever the server sent and the client skipped is acknowledged too.
	waitFor(t, "all batches acknowledged", func() bool {
		info := e.consumerInfo(t, "types")
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	cs.stop(t)
	checkOrder(t, got)
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	info := e.consumerInfo(t, "types")
	wantFilters := []string{"gatehouse.ev.*.*.GUILD_CREATE", "gatehouse.ev.*.*.MESSAGE_CREATE"}
	if diff := cmp.Diff(wantFilters, info.Config.FilterSubjects); diff != "" {
		t.Errorf("server filter (-want +got):\n%s", diff)
	}
}

func TestConsumeShardFilter(t *testing.T) {
	e := newEnv(t)
	batches := workload(4, 30, 1, 3)
	e.publishAll(t, batches)
	want := expected(batches, func(b testBatch, _ testEvent) bool { return b.shard == 1 || b.shard == 3 })

	c := e.connect(t, Config{Consumer: "shards", Shards: []int{3, 1}})
	rec := newRecorder(len(want))
	cs := startConsume(t, c, rec.handle)
	got := rec.wait(t)
	cs.stop(t)
	checkOrder(t, got)
	if diff := cmp.Diff(want, byKey(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	wantFilters := []string{"gatehouse.ev.1.*.*", "gatehouse.ev.3.*.*"}
	if diff := cmp.Diff(wantFilters, e.consumerInfo(t, "shards").Config.FilterSubjects); diff != "" {
		t.Errorf("server filter (-want +got):\n%s", diff)
	}
}

func TestConsumePartitionFilter(t *testing.T) {
	tests := []struct {
		name                 string
		gatewayParts         int // what the batches are published with
		cfg                  Config
		wantPartition, parts int
		wantFilter           string
	}{
		{
			name:         "server filters, same count",
			gatewayParts: 4,
			cfg:          Config{Partitions: 4, Partition: 2, GatewayPartitions: 4},
			parts:        4, wantPartition: 2,
			wantFilter: "gatehouse.ev.*.2.*",
		},
		{
			name:         "client filters, gateway unpartitioned",
			gatewayParts: 1,
			cfg:          Config{Partitions: 2, Partition: 1},
			parts:        2, wantPartition: 1,
			wantFilter: "gatehouse.ev.>",
		},
		{
			name:         "client filters partition 0 with guild-less events",
			gatewayParts: 4,
			cfg:          Config{Partitions: 3, Partition: 0},
			parts:        3, wantPartition: 0,
			wantFilter: "gatehouse.ev.>",
		},
		{
			name:         "server narrows, client finishes",
			gatewayParts: 4,
			cfg:          Config{Partitions: 2, Partition: 1, GatewayPartitions: 4},
			parts:        2, wantPartition: 1,
			wantFilter: "", // two subjects, checked below
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			batches := workload(2, 60, tt.gatewayParts, uint64(10+i))
			e.publishAll(t, batches)
			want := expected(batches, func(_ testBatch, ev testEvent) bool {
				return broker.Partition(ev.guild, tt.parts) == tt.wantPartition
			})
			if len(want) == 0 {
				t.Fatal("workload has no event in the partition")
			}
			tt.cfg.Consumer = "parts"
			c := e.connect(t, tt.cfg)
			rec := newRecorder(len(want))
			cs := startConsume(t, c, rec.handle)
			got := rec.wait(t)
			// What the server sent and the client skipped is acknowledged too.
			waitFor(t, "all batches acknowledged", func() bool {
				info := e.consumerInfo(t, "parts")
				return info.NumAckPending == 0 && info.NumPending == 0
			})
			cs.stop(t)
			checkOrder(t, got)
			if diff := cmp.Diff(want, byKey(got)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			cfg := e.consumerInfo(t, "parts").Config
			filters := cfg.FilterSubjects
			if cfg.FilterSubject != "" {
				filters = []string{cfg.FilterSubject}
			}
			wantFilters := []string{tt.wantFilter}
			if tt.wantFilter == "" {
				wantFilters = []string{"gatehouse.ev.*.1.*", "gatehouse.ev.*.3.*"}
			}
			if diff := cmp.Diff(wantFilters, filters); diff != "" {
				t.Errorf("server filter (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPartitionTokens(t *testing.T) {
	tests := []struct {
		p, parts, gateway int
		want              []int
	}{
		{0, 0, 0, nil},
		{0, 1, 8, nil},
		{1, 4, 0, nil}, // gateway count unknown
		{1, 4, 1, nil}, // gateway does not partition
		{2, 4, 4, []int{2}},
		{1, 2, 4, []int{1, 3}},
		{5, 8, 4, []int{1}},
		{1, 3, 4, nil}, // coprime: any token can hold any partition
		{4, 6, 4, []int{0, 2}},
	}
	for _, tt := range tests {
		if got := partitionTokens(tt.p, tt.parts, tt.gateway); !slices.Equal(got, tt.want) {
			t.Errorf("partitionTokens(%d, %d, %d) = %v, want %v", tt.p, tt.parts, tt.gateway, got, tt.want)
		}
	}
	// Every guild of partition p of parts is published under one of the
	// tokens: check against broker.Partition directly.
	for _, tc := range [][3]int{{1, 2, 4}, {5, 8, 4}, {4, 6, 4}, {3, 12, 18}} {
		p, parts, gw := tc[0], tc[1], tc[2]
		toks := partitionTokens(p, parts, gw)
		for g := uint64(1); g < 5000; g++ {
			if broker.Partition(g, parts) == p && !slices.Contains(toks, broker.Partition(g, gw)) {
				t.Fatalf("guild %d: partition %d of %d, token %d of %d not in %v", g, p, parts, broker.Partition(g, gw), gw, toks)
			}
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	s := broker.Subjects{Prefix: "gh"}
	many := make([]int, 100)
	for i := range many {
		many[i] = i
	}
	tests := []struct {
		name   string
		shards []int
		toks   []int
		types  []string
		want   []string
	}{
		{"all", nil, nil, nil, []string{"gh.ev.>"}},
		{"shards×types", []int{1, 2}, nil, []string{"A", "B"}, []string{"gh.ev.1.*.A", "gh.ev.1.*.B", "gh.ev.2.*.A", "gh.ev.2.*.B"}},
		{"partition", nil, []int{3}, nil, []string{"gh.ev.*.3.*"}},
		{"too many shards: types only", many, nil, []string{"A", "B"}, []string{"gh.ev.*.*.A", "gh.ev.*.*.B"}},
		{"too many shards alone", many, nil, nil, []string{"gh.ev.>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := filterSubjects(s, tt.shards, tt.toks, tt.types)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("filterSubjects (-want +got):\n%s", diff)
			}
		})
	}
	// 10 shards × 10 types is 100 subjects: one dimension goes.
	ten := many[:10]
	types := []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"}
	if got := filterSubjects(s, ten, nil, types); len(got) != 10 {
		t.Errorf("filterSubjects(10 shards, 10 types) = %d subjects, want 10", len(got))
	}
}

func TestConsumeRetriesFailedEventInOrder(t *testing.T) {
	e := newEnv(t)
	mk := func(seq int64) testEvent { return newTestEvent("MESSAGE_CREATE", seq, guildOn(0, 2, int(seq))) }
	e.publish(t, testBatch{shard: 0, numShards: 2, session: "s0", events: []testEvent{mk(1), mk(2), mk(3)}})
	e.publish(t, testBatch{shard: 0, numShards: 2, session: "s0", events: []testEvent{mk(4)}})
	other := func(seq int64) testEvent { return newTestEvent("MESSAGE_CREATE", seq, guildOn(1, 2, int(seq))) }
	e.publish(t, testBatch{shard: 1, numShards: 2, session: "s1", events: []testEvent{other(1), other(2)}})
	e.publish(t, testBatch{shard: 1, numShards: 2, session: "s1", events: []testEvent{other(3)}})

	c := e.connect(t, Config{Consumer: "retry"})
	var (
		mu        sync.Mutex
		calls     []gotEvent
		failures  int
		shard1Got int
	)
	shard1Done := make(chan struct{})
	done := make(chan struct{})
	errBoom := errors.New("boom")
	cs := startConsume(t, c, func(ctx context.Context, ev *Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.Shard == 1 {
			shard1Got++
			if shard1Got == 3 {
				close(shard1Done)
			}
			return nil
		}
		calls = append(calls, copyEvent(ev))
		if ev.Seq == 2 {
			// Fail until shard 1 is through and at least twice: shard 1
			// must not wait for shard 0.
			select {
			case <-shard1Done:
				if failures >= 2 {
					break
				}
				failures++
				return errBoom
			default:
				failures++
				return errBoom
			}
		}
		if ev.Seq == 4 {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("shard 0 did not get past the failing event")
	}
	cs.stop(t)

	type call struct {
		Key         string
		Redelivered bool
	}
	var got []call
	for _, g := range calls {
		got = append(got, call{g.Key, g.Redelivered})
	}
	want := []call{{"0:s0:1", false}}
	for range failures {
		want = append(want, call{"0:s0:2", len(want) > 1})
	}
	want = append(want, call{"0:s0:2", true}, call{"0:s0:3", false}, call{"0:s0:4", false})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handler calls for shard 0 (-want +got):\n%s", diff)
	}
	if failures < 2 {
		t.Errorf("failed %d times, want at least 2", failures)
	}
	waitFor(t, "all batches acknowledged", func() bool {
		info := e.consumerInfo(t, "retry")
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

func TestConsumeRestartResumesAfterAck(t *testing.T) {
	e := newEnv(t)
	var batches []testBatch
	for shard := range 2 {
		for first := int64(1); first <= 40; first += 4 {
			b := testBatch{shard: shard, numShards: 2, session: "r" + string(rune('0'+shard))}
			for seq := first; seq < first+4; seq++ {
				b.events = append(b.events, newTestEvent("MESSAGE_CREATE", seq, guildOn(shard, 2, int(seq))))
			}
			batches = append(batches, b)
		}
	}
	// Interleave the shards' batches.
	slices.SortStableFunc(batches, func(a, b testBatch) int { return int(a.events[0].seq - b.events[0].seq) })
	e.publishAll(t, batches)
	all := expected(batches, nil)
	batchOf := map[string]int{}
	for i, b := range batches {
		for _, ev := range b.events {
			batchOf[ev.key(b.shard, b.session)] = i
		}
	}

	// First run: stop in the middle. AckWait is long, so anything the
	// second run gets quickly was released by the first, not timed out.
	cfg := Config{Consumer: "restart", AckWait: time.Minute}
	c1 := e.connect(t, cfg)
	var (
		mu    sync.Mutex
		first []gotEvent
	)
	stopped := make(chan struct{})
	ctx1, cancel1 := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- c1.Consume(ctx1, func(ctx context.Context, ev *Event) error {
			mu.Lock()
			defer mu.Unlock()
			first = append(first, copyEvent(ev))
			if len(first) == 30 {
				cancel1()
				close(stopped)
			}
			return nil
		})
	}()
	select {
	case <-stopped:
	case <-time.After(testTimeout):
		t.Fatal("first run did not get 30 events")
	}
	if err := <-errc; err != nil {
		t.Fatalf("first Consume = %v", err)
	}
	c1.Close()
	mu.Lock()
	firstRun := slices.Clone(first)
	mu.Unlock()

	// The second run must see every event the first did not.
	seen1 := byKey(firstRun)
	rec := newRecorder(len(all) - len(seen1))
	c2 := e.connect(t, cfg)
	cs := startConsume(t, c2, func(ctx context.Context, ev *Event) error {
		if _, dup := seen1[ev.Key()]; dup {
			mu.Lock()
			first = append(first, copyEvent(ev)) // duplicates, checked below
			mu.Unlock()
			return nil
		}
		return rec.handle(ctx, ev)
	})
	second := rec.wait(t)
	cs.stop(t)
	checkOrder(t, second)

	got := byKey(second)
	for k, v := range seen1 {
		got[k] = v
	}
	if diff := cmp.Diff(all, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Redelivered" }, cmp.Ignore())); diff != "" {
		t.Errorf("events over both runs (-want +got):\n%s", diff)
	}
	// Duplicates come only from batches the first run did not finish.
	mu.Lock()
	dups := first[len(firstRun):]
	mu.Unlock()
	complete := map[int]bool{}
	for i, b := range batches {
		n := 0
		for _, ev := range b.events {
			if _, ok := seen1[ev.key(b.shard, b.session)]; ok {
				n++
			}
		}
		complete[i] = n == len(b.events)
	}
	for _, d := range dups {
		if complete[batchOf[d.Key]] {
			t.Errorf("event %s delivered again although its batch was handled in full", d.Key)
		}
		if !d.Redelivered {
			t.Errorf("duplicate %s not marked redelivered", d.Key)
		}
	}
	t.Logf("first run: %d events, second: %d new, %d again", len(firstRun), len(second), len(dups))
	if t.Failed() {
		for _, g := range firstRun {
			t.Logf("run1 %s", g.Key)
		}
		for _, g := range second {
			t.Logf("run2 %s %v", g.Key, g.Redelivered)
		}
	}
}

func TestConsumeEphemeralDeliverNew(t *testing.T) {
	e := newEnv(t)
	old := workload(1, 5, 1, 4)
	e.publishAll(t, old)

	c := e.connect(t, Config{DeliverNew: true})
	rec := newRecorder(3)
	cs := startConsume(t, c, rec.handle)
	waitFor(t, "the consumer", func() bool {
		info, err := e.stream.Info(t.Context())
		return err == nil && info.State.Consumers == 1
	})
	var fresh []testEvent
	for seq := int64(6); seq <= 8; seq++ {
		fresh = append(fresh, newTestEvent("MESSAGE_CREATE", seq, guildOn(0, 1, 1)))
	}
	b := testBatch{shard: 0, numShards: 1, session: old[0].session, events: fresh}
	e.publish(t, b)
	got := rec.wait(t)
	if err := cs.stop(t); err != nil {
		t.Errorf("Consume = %v", err)
	}
	if diff := cmp.Diff(expected([]testBatch{b}, nil), byKey(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	info, err := e.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left after Consume returned, want the ephemeral one deleted", info.State.Consumers)
	}
}

func TestConsumeSkipsMalformed(t *testing.T) {
	e := newEnv(t)
	good := newTestEvent("MESSAGE_CREATE", 1, guildOn(0, 1, 1))
	hdr := func(shard, session string) nats.Header {
		return nats.Header{broker.HeaderShard: {shard}, broker.HeaderSession: {session}, broker.HeaderSeq: {"1-1"}}
	}
	body := broker.AppendRecord(broker.NewBody(nil), good.raw)
	subject := "gatehouse.ev.0.0.MESSAGE_CREATE"
	e.publishRaw(t, subject, body, hdr("", "s"))               // no shard header
	e.publishRaw(t, subject, body, hdr("1/2", "s"))            // shard differs from subject
	e.publishRaw(t, "gatehouse.ev.x", body, hdr("0/1", "s"))   // bad subject
	e.publishRaw(t, subject, []byte{9, 1, 2}, hdr("0/1", "s")) // unknown format
	e.publishRaw(t, subject, body[:len(body)-3], hdr("0/1", "s"))
	e.publishRaw(t, subject, []byte{broker.FormatZstd, 1, 2, 3}, hdr("0/1", "s"))

	second := newTestEvent("MESSAGE_CREATE", 2, guildOn(0, 1, 2))
	third := newTestEvent("MESSAGE_CREATE", 3, guildOn(0, 1, 3))
	mixed := broker.NewBody(nil)
	mixed = broker.AppendRecord(mixed, second.raw)
	mixed = broker.AppendRecord(mixed, []byte(`{"op":0,"t":"MESSAGE_CREATE","s":`)) // malformed
	mixed = broker.AppendRecord(mixed, []byte(`{"op":11,"d":null}`))                // not a dispatch
	mixed = broker.AppendRecord(mixed, third.raw)
	e.publishRaw(t, subject, mixed, hdr("0/1", "s"))
	// Compressed batches are read too.
	zbody, err := broker.Compress(nil, broker.AppendRecord(broker.NewBody(nil), newTestEvent("MESSAGE_CREATE", 4, 0).raw))
	if err != nil {
		t.Fatal(err)
	}
	e.publishRaw(t, subject, zbody, hdr("0/1", "s"))
	s2body, err := broker.CompressS2(nil, broker.AppendRecord(broker.NewBody(nil), newTestEvent("MESSAGE_CREATE", 5, 0).raw))
	if err != nil {
		t.Fatal(err)
	}
	e.publishRaw(t, subject, s2body, hdr("0/1", "s"))
	e.publishRaw(t, subject, []byte{broker.FormatS2, 0xff, 0xff, 0x7f, 1}, hdr("0/1", "s")) // bad S2
	// The shard's last event: once it is handled, so is everything before.
	e.publishRaw(t, subject, broker.AppendRecord(broker.NewBody(nil), newTestEvent("MESSAGE_CREATE", 6, 0).raw), hdr("0/1", "s"))

	c := e.connect(t, Config{Consumer: "malformed"})
	rec := newRecorder(5)
	cs := startConsume(t, c, rec.handle)
	got := rec.wait(t)
	cs.stop(t)
	var keys []string
	for _, g := range got {
		keys = append(keys, g.Key)
	}
	if diff := cmp.Diff([]string{"0:s:2", "0:s:3", "0:s:4", "0:s:5", "0:s:6"}, keys); diff != "" {
		t.Errorf("handled (-want +got):\n%s", diff)
	}
	waitFor(t, "nothing left pending", func() bool {
		info := e.consumerInfo(t, "malformed")
		return info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
}

func TestConsumeCustomPrefixAndStream(t *testing.T) {
	e := newEnvPrefix(t, "gh.prod", "EVENTS2")
	b := testBatch{shard: 0, numShards: 1, session: "p", events: []testEvent{newTestEvent("MESSAGE_CREATE", 1, 0)}}
	e.publish(t, b)
	c := e.connect(t, Config{Consumer: "p", Prefix: "gh.prod", Stream: "EVENTS2", Types: []string{"MESSAGE_CREATE"}})
	rec := newRecorder(1)
	cs := startConsume(t, c, rec.handle)
	got := rec.wait(t)
	cs.stop(t)
	if got[0].Key != "0:p:1" {
		t.Errorf("got %+v", got[0])
	}
}

func TestConsumeErrors(t *testing.T) {
	e := newEnv(t)
	c := e.connect(t, Config{Consumer: "errs", Stream: "NOPE"})
	if err := c.Consume(t.Context(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Consume(nil handler) = %v, want ErrInvalidConfig", err)
	}
	nop := func(context.Context, *Event) error { return nil }
	if err := c.Consume(t.Context(), nop); !errors.Is(err, ErrNoStream) {
		t.Errorf("Consume(missing stream) = %v, want ErrNoStream", err)
	}

	c2 := e.connect(t, Config{Consumer: "busy"})
	cs := startConsume(t, c2, nop)
	waitFor(t, "the consumer", func() bool { return c2.consuming.Load() })
	if err := c2.Consume(t.Context(), nop); !errors.Is(err, ErrConsuming) {
		t.Errorf("second Consume = %v, want ErrConsuming", err)
	}
	// Closing the client ends Consume with ErrClosed.
	waitFor(t, "the durable consumer", func() bool {
		_, err := e.stream.Consumer(t.Context(), "busy")
		return err == nil
	})
	c2.Close()
	select {
	case err := <-cs.done:
		close(cs.done)
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Consume after Close = %v, want ErrClosed", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Consume did not return after Close")
	}
	if err := c2.Consume(t.Context(), nop); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume on a closed client = %v, want ErrClosed", err)
	}
}

func TestConsumeExistingDurableKeepsPosition(t *testing.T) {
	// A durable consumer created with DeliverNew keeps its start policy when
	// a later run asks for everything: the server refuses to change it.
	e := newEnv(t)
	e.publishAll(t, workload(1, 3, 1, 5))
	c := e.connect(t, Config{Consumer: "keep", DeliverNew: true})
	cs := startConsume(t, c, func(context.Context, *Event) error { return nil })
	waitFor(t, "the durable consumer", func() bool {
		_, err := e.stream.Consumer(t.Context(), "keep")
		return err == nil
	})
	cs.stop(t)
	c.Close()

	c2 := e.connect(t, Config{Consumer: "keep", Types: []string{"TYPING_START"}})
	b := testBatch{shard: 0, numShards: 1, session: "k", events: []testEvent{newTestEvent("TYPING_START", 9, 0)}}
	e.publish(t, b)
	rec := newRecorder(1)
	cs2 := startConsume(t, c2, rec.handle)
	got := rec.wait(t)
	if err := cs2.stop(t); err != nil {
		t.Fatalf("Consume = %v", err)
	}
	if got[0].Key != "0:k:9" {
		t.Errorf("first event after reopening = %s, want 0:k:9 (the old events are before the consumer)", got[0].Key)
	}
	if f := e.consumerInfo(t, "keep").Config.FilterSubject; f != "gatehouse.ev.*.*.TYPING_START" {
		t.Errorf("filter after update = %q", f)
	}
}

// BenchmarkConsume measures delivery through Consume: batches of 32 events
// of about 1 KiB on 4 shards, a handler that does nothing, over loopback TCP
// to an embedded server.
func BenchmarkConsume(b *testing.B) {
	e := newEnv(b)
	const perBatch, shards = 32, 4
	filler := strings.Repeat("x", 900)
	nBatches := b.N/perBatch + 1
	var seq [shards]int64
	for i := range nBatches {
		shard := i % shards
		bt := testBatch{shard: shard, numShards: shards, session: "bench"}
		for range perBatch {
			seq[shard]++
			ev := newTestEvent("MESSAGE_CREATE", seq[shard], guildOn(shard, shards, int(seq[shard]%100)))
			ev.raw = discord.AppendFrame(nil, "MESSAGE_CREATE", seq[shard], discord.OpDispatch,
				fmt.Appendf(nil, `{"content":%q,"guild_id":"%d"}`, filler, ev.guild))
			bt.events = append(bt.events, ev)
		}
		e.publish(b, bt)
	}
	total := nBatches * perBatch
	c := e.connect(b, Config{Consumer: "bench"})
	var n atomic.Int64
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	cs := startConsume(b, c, func(context.Context, *Event) error {
		if n.Add(1) == int64(total) {
			close(done)
		}
		return nil
	})
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	cs.stop(b)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
}

// TestConsumeExclusiveAfterCrash: a worker dies holding batches it never
// acknowledged nor gave back (its connection just ends, as with kill -9).
// Restarted with Exclusive, it gets them at once, not after the minute of
// AckWait, and every event arrives at least once, with its key.
func TestConsumeExclusiveAfterCrash(t *testing.T) {
	e := newEnv(t)
	batches := workload(2, 40, 1, 7)
	e.publishAll(t, batches)
	all := expected(batches, nil)
	cfg := Config{Consumer: "crash", AckWait: time.Minute, Exclusive: true}

	// First run: its handler blocks after 10 events; then its connection is
	// cut without Consume's graceful give-back.
	nc, err := nats.Connect(e.url)
	if err != nil {
		t.Fatal(err)
	}
	first := e.connect(t, Config{Conn: nc, Consumer: cfg.Consumer, AckWait: cfg.AckWait, Exclusive: true})
	var (
		mu       sync.Mutex
		seen     = map[string]bool{}
		finished = map[string]bool{} // handled without blocking: maybe acknowledged
	)
	block := make(chan struct{})
	ten := make(chan struct{})
	ctx1, cancel1 := context.WithCancel(t.Context())
	done1 := make(chan struct{})
	go func() {
		defer close(done1)
		first.Consume(ctx1, func(ctx context.Context, ev *Event) error {
			mu.Lock()
			seen[ev.Key()] = true
			n := len(seen)
			mu.Unlock()
			if n == 10 {
				close(ten)
			}
			if n >= 10 {
				<-block
				return nil // the connection is gone: this cannot be acknowledged
			}
			mu.Lock()
			finished[ev.Key()] = true
			mu.Unlock()
			return nil
		})
	}()
	select {
	case <-ten:
	case <-time.After(testTimeout):
		t.Fatal("first run got no 10 events")
	}
	nc.Close() // the crash: nothing more reaches the server
	cancel1()
	close(block)
	<-done1
	if info := e.consumerInfo(t, cfg.Consumer); info.NumAckPending == 0 {
		t.Fatal("the crashed run left nothing pending; the test proves nothing")
	}

	// The restart must get every event the first run did not finish
	// (those it finished may or may not have been acknowledged before the
	// crash), and every event must have been handled at least once.
	need := map[string]bool{}
	for k := range all {
		if !finished[k] {
			need[k] = true
		}
	}
	rec := newRecorder(-1)
	second := e.connect(t, cfg)
	start := time.Now()
	cs := startConsume(t, second, rec.handle)
	var took time.Duration
	waitFor(t, "every unfinished event at the restarted consumer", func() bool {
		keys := byKey(rec.snapshot())
		for k := range need {
			if _, ok := keys[k]; !ok {
				return false
			}
		}
		took = time.Since(start)
		return true
	})
	cs.stop(t)
	got := rec.snapshot()
	if took > 5*time.Second {
		t.Errorf("the restarted exclusive consumer took %v for every event, want well under AckWait (%v)", took, cfg.AckWait)
	}
	missing := 0
	keys := byKey(got)
	for k := range all {
		if _, ok := keys[k]; !ok && !finished[k] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never reached either run", missing, len(all))
	}
	checkOrder(t, got)
	t.Logf("restarted consumer had the %d unfinished events after %v", len(need), took.Round(time.Millisecond))
}
