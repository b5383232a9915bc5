package sim

import (
	"net"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// addTestSession registers a session on (shard, n) without a connection, as
// IDENTIFY would, with its GUILD_CREATE stream done.
func addTestSession(s *Server, shard, n int, intents discord.Intents) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.world.routeFor(n)
	ss := &session{id: s.newSessionIDLocked(), shard: shard, n: n, view: sessView{intents: intents, largeThreshold: 50},
		route: r, stat: s.shardStatLocked(n, shard), ring: newReplayRing(s.cfg.ReplayBuffer)}
	s.registerLocked(ss)
	return ss
}

// fanoutServer is a server with sessions on every shard of n and no event
// loop running, so a benchmark drives ticks by hand.
func fanoutServer(tb testing.TB, shards int, rate float64) (*Server, *genState) {
	tb.Helper()
	s, err := newServer(Config{Guilds: 20 * shards, EventRate: rate, ReplayBuffer: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	for k := range shards {
		addTestSession(s, k, shards, discord.IntentsNonPrivileged)
	}
	return s, s.newGenState()
}

// BenchmarkFanout measures the generator's per-event path: picking the
// events of a tick and sequencing them into 1,000 sessions' rings (2,000
// events per 20 ms tick = 100,000 events/s).
func BenchmarkFanout(b *testing.B) {
	s, g := fanoutServer(b, 1000, 100)
	now := time.Now()
	for range 100 { // fill the rings to their steady size
		now = now.Add(20 * time.Millisecond)
		s.tick(g, now, 20*time.Millisecond)
	}
	before := s.ctr.events.Load()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(20 * time.Millisecond)
		s.tick(g, now, 20*time.Millisecond)
	}
	events := s.ctr.events.Load() - before
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
	b.ReportMetric(float64(events)/float64(b.N), "events/tick")
}

// TestFanoutAllocs guards the generator's steady state: no allocation per
// tick once rings and batches have grown.
func TestFanoutAllocs(t *testing.T) {
	s, g := fanoutServer(t, 200, 100)
	now := time.Now()
	for range 200 {
		now = now.Add(20 * time.Millisecond)
		s.tick(g, now, 20*time.Millisecond)
	}
	allocs := testing.AllocsPerRun(50, func() {
		now = now.Add(20 * time.Millisecond)
		s.tick(g, now, 20*time.Millisecond)
	})
	if allocs > 0 {
		t.Errorf("a tick of 400 events allocates %.1f times, want 0", allocs)
	}
}

// BenchmarkRender measures rendering one dispatch from its ring entry into
// a WebSocket frame.
func BenchmarkRender(b *testing.B) {
	r := testRenderer(b, 1000)
	view := sessView{intents: discord.IntentsAll}
	for _, typ := range []uint8{evMessageCreate, evPresenceUpdate, evTypingStart} {
		b.Run(evTypes[typ].name, func(b *testing.B) {
			buf := make([]byte, 0, 64<<10)
			i := uint64(0)
			var n int
			b.ReportAllocs()
			for b.Loop() {
				i++
				e := makeEntry(kindEvent, typ, pickVariant(typ, mix64(i)), i, int32(i%1000), int64(i))
				bb, start := frameStart(buf[:0])
				bb = r.appendDispatch(bb, e, int64(i), &view, nil, nil)
				bb = frameEnd(bb, start, wsText)
				n += len(bb)
			}
			b.SetBytes(int64(n / b.N))
		})
	}
}

// discardConn is a net.Conn whose writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) Read(p []byte) (n int, err error) { select {} }
func (discardConn) SetDeadline(t time.Time) error    { return nil }

// BenchmarkWriterRound measures a connection's writer: taking a tick's
// dispatches (5 at 250 events/s per shard) from the ring, rendering them
// into one buffer and writing it.
func BenchmarkWriterRound(b *testing.B) {
	s, err := newServer(Config{Guilds: 100, ReplayBuffer: 1000})
	if err != nil {
		b.Fatal(err)
	}
	ss := addTestSession(s, 0, 1, discord.IntentsNonPrivileged)
	c := &conn{s: s, nc: discardConn{}, wake: make(chan struct{}, 1), done: make(chan struct{}), writerDone: make(chan struct{})}
	s.mu.Lock()
	s.attachLocked(c, ss, 1)
	s.mu.Unlock()
	w := &writer{c: c}
	mixAll := newMix(discord.IntentsNonPrivileged, nil)
	id := uint64(0)
	const perRound = 5
	b.ReportAllocs()
	for b.Loop() {
		ss.mu.Lock()
		for range perRound {
			id++
			h := mix64(id)
			typ, _ := mixAll.pick(h, false)
			ss.push(makeEntry(kindEvent, typ, pickVariant(typ, h>>20), id, int32(h>>32%100), 0), nil)
		}
		ss.mu.Unlock()
		w.round()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perRound), "ns/event")
}

// TestWriterRoundAllocs guards the writer's steady state: taking, rendering
// and writing dispatches allocates nothing.
func TestWriterRoundAllocs(t *testing.T) {
	s, err := newServer(Config{Guilds: 100, ReplayBuffer: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ss := addTestSession(s, 0, 1, discord.IntentsNonPrivileged)
	c := &conn{s: s, nc: discardConn{}, wake: make(chan struct{}, 1), done: make(chan struct{}), writerDone: make(chan struct{})}
	s.mu.Lock()
	s.attachLocked(c, ss, 1)
	s.mu.Unlock()
	w := &writer{c: c}
	id := uint64(0)
	round := func() {
		ss.mu.Lock()
		for range 5 {
			id++
			ss.push(makeEntry(kindEvent, evMessageCreate, uint8(id%5), id, int32(id%100), 0), nil)
		}
		ss.mu.Unlock()
		w.round()
	}
	for range 2000 { // grow the ring and buffers
		round()
	}
	if allocs := testing.AllocsPerRun(100, round); allocs > 0 {
		t.Errorf("a writer round of 5 dispatches allocates %.1f times, want 0", allocs)
	}
}
