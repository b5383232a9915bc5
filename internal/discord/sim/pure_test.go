package sim

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 8, 6, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestIdentifyLimiterSlack(t *testing.T) {
	l := newIdentifyLimiter(5*time.Second, 100*time.Millisecond)
	l.accept(0, at(0))
	if l.allow(0, at(4899*time.Millisecond)) {
		t.Error("allowed 101ms early with 100ms of slack")
	}
	if !l.allow(0, at(4900*time.Millisecond)) {
		t.Error("refused 100ms early with 100ms of slack")
	}
}

func TestIdentifyLimiter(t *testing.T) {
	l := newIdentifyLimiter(5*time.Second, 0)
	steps := []struct {
		bucket int
		at     time.Duration
		accept bool // accept the IDENTIFY when allowed
		want   bool
	}{
		{0, 0, true, true},
		{1, 0, true, true},                        // another bucket is independent
		{0, 4999 * time.Millisecond, true, false}, // inside bucket 0's window
		{0, 5 * time.Second, false, true},         // window over; allowed but not accepted (e.g. budget refused)
		{0, 5*time.Second + 1, true, true},        // still allowed: nothing recorded
		{0, 9 * time.Second, true, false},         // window restarted at 5s+1
		{0, 10*time.Second + 1, true, true},
	}
	for i, st := range steps {
		got := l.allow(st.bucket, at(st.at))
		if got != st.want {
			t.Errorf("step %d: allow(%d, +%v) = %v, want %v", i, st.bucket, st.at, got, st.want)
		}
		if got && st.accept {
			l.accept(st.bucket, at(st.at))
		}
	}
}

func TestSessionBudget(t *testing.T) {
	b := newSessionBudget(2, time.Hour)
	check := func(step string, now time.Time, wantRem int, wantAfter time.Duration, wantRunning bool) {
		t.Helper()
		rem, after, running := b.state(now)
		if rem != wantRem || after != wantAfter || running != wantRunning {
			t.Errorf("%s: state() = %d, %v, %v; want %d, %v, %v", step, rem, after, running, wantRem, wantAfter, wantRunning)
		}
	}
	check("fresh", at(0), 2, 0, false)
	if !b.spend(at(10 * time.Minute)) {
		t.Fatal("first spend = false")
	}
	check("after one start", at(20*time.Minute), 1, 50*time.Minute, true)
	if !b.spend(at(30*time.Minute)) || b.spend(at(40*time.Minute)) {
		t.Fatal("spends 2 and 3 = want true, false")
	}
	check("exhausted", at(40*time.Minute), 0, 30*time.Minute, true)
	check("window over", at(70*time.Minute), 2, 0, false)
	if !b.spend(at(80 * time.Minute)) {
		t.Fatal("spend after the reset = false")
	}
	check("new window from the first start after the reset", at(80*time.Minute), 1, time.Hour, true)
}

func TestSendWindow(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		times []time.Duration
		want  []bool
	}{
		{"under the limit", 3, []time.Duration{0, 1, 2}, []bool{true, true, true}},
		{"fourth inside the window", 3, []time.Duration{0, 1, 2, 3}, []bool{true, true, true, false}},
		{"sliding, not fixed", 3, []time.Duration{0, 30 * time.Second, 59 * time.Second, 60 * time.Second, 61 * time.Second, 89 * time.Second},
			[]bool{true, true, true, true, false, false}},
		{"boundary: exactly one window later", 2, []time.Duration{0, time.Second, 60 * time.Second, 61 * time.Second},
			[]bool{true, true, true, true}},
		{"zero limit refuses everything", 0, []time.Duration{0}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newSendWindow(tt.limit, time.Minute)
			for i, d := range tt.times {
				if got := w.allow(at(d)); got != tt.want[i] {
					t.Errorf("payload %d at +%v: allow = %v, want %v", i, d, got, tt.want[i])
				}
			}
		})
	}
}

func TestRESTLimiter(t *testing.T) {
	l := newRESTLimiter(2, time.Second)
	steps := []struct {
		key     string
		at      time.Duration
		ok      bool
		rem     int
		resetIn time.Duration
	}{
		{"a", 0, true, 1, time.Second},
		{"a", 100 * time.Millisecond, true, 0, 900 * time.Millisecond},
		{"a", 200 * time.Millisecond, false, 0, 800 * time.Millisecond},
		{"b", 200 * time.Millisecond, true, 1, time.Second},
		{"a", time.Second, true, 1, time.Second},
	}
	for i, st := range steps {
		ok, rem, reset := l.take(st.key, at(st.at))
		if ok != st.ok || rem != st.rem || reset != st.resetIn {
			t.Errorf("step %d: take(%q, +%v) = %v, %d, %v; want %v, %d, %v", i, st.key, st.at, ok, rem, reset, st.ok, st.rem, st.resetIn)
		}
	}
}

func TestRESTLimiterBoundsKeys(t *testing.T) {
	l := newRESTLimiter(1, time.Second)
	for i := range restMaxKeys * 3 {
		l.take(string(rune(i)), at(0))
	}
	if n := len(l.windows); n > restMaxKeys {
		t.Errorf("limiter holds %d keys, want at most %d", n, restMaxKeys)
	}
}

func TestEntryPacking(t *testing.T) {
	e := makeEntry(kindEvent, 13, 3, 1<<47+5, 123456, 1<<39+7)
	if e.kind() != kindEvent || e.typ() != 13 || e.variant() != 3 || e.id() != 1<<47+5 || e.guild() != 123456 || e.ms() != 1<<39+7 {
		t.Errorf("entry round trip = kind %d typ %d variant %d id %d guild %d ms %d", e.kind(), e.typ(), e.variant(), e.id(), e.guild(), e.ms())
	}
	if g := makeEntry(kindEvent, 0, 0, 1, noGuild, 0).guild(); g != noGuild {
		t.Errorf("noGuild round trip = %d", g)
	}
}

func TestReplayRing(t *testing.T) {
	r := newReplayRing(100)
	r.max = 100 // no backlog room, to see the ring wrap
	for i := 1; i <= 250; i++ {
		s, old, evicted := r.push(makeEntry(kindEvent, 0, 0, uint64(i), 0, 0))
		if s != int64(i) {
			t.Fatalf("push %d: s = %d", i, s)
		}
		if wantEvicted := i > 100; evicted != wantEvicted || (evicted && old.id() != uint64(i-100)) {
			t.Fatalf("push %d: evicted %v old %d", i, evicted, old.id())
		}
	}
	if r.first != 151 || r.last() != 250 {
		t.Errorf("first, last = %d, %d; want 151, 250", r.first, r.last())
	}
	for s := int64(151); s <= 250; s++ {
		if e, ok := r.get(s); !ok || e.id() != uint64(s) {
			t.Fatalf("get(%d) = %d, %v", s, e.id(), ok)
		}
	}
	for _, s := range []int64{0, 150, 251} {
		if _, ok := r.get(s); ok {
			t.Errorf("get(%d) = ok, want missing", s)
		}
	}
	tests := []struct {
		seq  int64
		want bool
	}{{150, true}, {200, true}, {250, true}, {149, false}, {251, false}}
	for _, tt := range tests {
		if got := r.holdsAfter(tt.seq); got != tt.want {
			t.Errorf("holdsAfter(%d) = %v, want %v", tt.seq, got, tt.want)
		}
	}
	r.keep = 20
	if !r.holdsAfter(230) || r.holdsAfter(229) {
		t.Errorf("keep 20: holdsAfter(230), holdsAfter(229) = %v, %v; want true, false", r.holdsAfter(230), r.holdsAfter(229))
	}
	empty := newReplayRing(10)
	if !empty.holdsAfter(0) || empty.holdsAfter(1) {
		t.Errorf("empty ring: holdsAfter(0), holdsAfter(1) = %v, %v; want true, false", empty.holdsAfter(0), empty.holdsAfter(1))
	}
}

// TestStreamStepUnderSteadyEvents: the READY stream goes on while events
// keep arriving faster than the writer empties the backlog. It used to wait
// for an empty backlog, and starved for good whenever each writer round
// took longer than an event tick.
func TestStreamStepUnderSteadyEvents(t *testing.T) {
	s, err := newServer(Config{Guilds: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer s.cancel()
	ss := &session{ring: newReplayRing(100), unavail: map[int32]uint8{}}
	for gi := range int32(40) {
		ss.stream = append(ss.stream, gi)
		ss.unavail[gi] = unavailStream
	}
	ss.cursor = ss.ring.next
	guildCreates := func(from, to int64) (n int) {
		for s := from; s < to; s++ {
			if e, _ := ss.ring.get(s); e.kind() == kindGuildCreate {
				n++
			}
		}
		return n
	}
	const perRound = 3 // events sequenced while the writer sends a round
	for round := 0; ss.pendingStream(); round++ {
		if round > 100 {
			t.Fatalf("stream stuck at %d of %d after %d rounds", ss.streamPos, len(ss.stream), round)
		}
		before := ss.ring.next
		ss.streamStep(s, t0, streamBurst)
		if n := guildCreates(before, ss.ring.next); n == 0 || n > streamBurst {
			t.Fatalf("round %d sequenced %d GUILD_CREATEs, want 1..%d", round, n, streamBurst)
		}
		// Before the writer took this round, the stream does not step
		// again.
		before = ss.ring.next
		if ss.streamStep(s, t0, streamBurst); ss.ring.next != before {
			t.Fatalf("round %d: stepped again before the last GUILD_CREATE was handed out", round)
		}
		// The writer hands out everything sequenced so far; meanwhile the
		// generator sequences more events.
		ss.cursor = ss.ring.next
		for range perRound {
			ss.push(makeEntry(kindEvent, 0, 0, 1, 0, 0), nil)
		}
	}
	if len(ss.unavail) != 0 {
		t.Errorf("%d guilds still unavailable after the stream", len(ss.unavail))
	}
}
