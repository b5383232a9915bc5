package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// ErrClosed is returned by ApplyFault after Shutdown.
var ErrClosed = errors.New("sim: server closed")

// Server is a Discord simulator: the REST calls a sharded bot makes, the
// gateway WebSocket, an admin API for faults and stats. Create it with New,
// serve it with Serve or mount Handler, and stop it with Shutdown, which
// also stops the goroutines New starts.
type Server struct {
	cfg    Config
	log    *slog.Logger
	rend   *renderer
	epoch  time.Time
	mux    *http.ServeMux
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the server
	ctr    counters

	loopWake chan struct{}

	// delivered has bit id set for every sim_event_id sequenced to some
	// session (Config.RecordDeliveries). The loop goroutine writes it.
	deliveredMu sync.Mutex
	delivered   []uint64

	// faultSet is the snapshot of shard-level faults (latency, delay_acks,
	// silence), read without locks on hot paths.
	faultSet atomic.Pointer[faultSet]

	mu           sync.Mutex
	closed       bool
	token        string
	tokenReset   bool
	budget       *sessionBudget
	limiter      *identifyLimiter
	rest         *restLimiter
	world        *world
	sessions     map[string]*session
	disconnected map[*session]struct{}
	conns        map[*conn]struct{}
	shardStats   map[shardKey]*shardStat
	intentCount  [64]int // live sessions per intent bit, for the event mix
	mix          mix
	version      int64 // bumped when the set of live sessions changes
	sessionSeq   uint64
	httpServers  []*http.Server
	outages      []outage
	faults       []*activeFault
	faultSeq     int
	membersAt    map[int32]time.Time // last all-members request per guild
}

// New validates cfg, builds the world and starts the event loop.
func New(cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.loop()
	s.log.Debug("simulator created", "guilds", s.cfg.Guilds, "shards", s.cfg.Shards, "max_concurrency", s.cfg.MaxConcurrency)
	return s, nil
}

// newServer builds a Server without starting its event loop.
func newServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tmpls, err := parseEventTemplates()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: cfg.Logger, epoch: time.Now(), ctx: ctx, cancel: cancel,
		loopWake:     make(chan struct{}, 1),
		token:        cfg.Token,
		budget:       newSessionBudget(cfg.SessionStartTotal, cfg.SessionStartReset),
		limiter:      newIdentifyLimiter(cfg.IdentifyInterval, cfg.IdentifySlack),
		rest:         newRESTLimiter(restLimit, time.Second),
		world:        newWorld(cfg.Seed, cfg.Guilds),
		sessions:     map[string]*session{},
		disconnected: map[*session]struct{}{},
		conns:        map[*conn]struct{}{},
		shardStats:   map[shardKey]*shardStat{},
	}
	s.rend = &renderer{w: s.world, tmpls: tmpls, epochMS: s.epoch.UnixMilli(), noTrace: cfg.NoTrace}
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler: REST under /api/v10/ (and
// /api/v9/), the gateway WebSocket at / and /resume, the admin API under
// /sim/.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve accepts connections on ln until Shutdown, then returns nil (at once
// when Shutdown came first).
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.httpServers = append(s.httpServers, hs)
	s.mu.Unlock()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdownGrace is how long Shutdown waits for clients to answer the close
// frames before cutting their connections.
const shutdownGrace = time.Second

// Shutdown stops accepting connections, closes every gateway connection with
// 1012 (service restart: a code that keeps sessions resumable), stops every
// goroutine of the server and waits for them, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.wait(ctx)
	}
	s.closed = true
	servers := s.httpServers
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var firstErr error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, c := range conns {
		c.closeWith(wsCloseServiceRestart, "Service restart.", false)
	}
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	for _, c := range conns {
		select {
		case <-c.done:
		case <-grace.C:
		case <-ctx.Done():
		}
	}
	for _, c := range conns {
		c.kill()
	}
	s.cancel()
	if err := s.wait(ctx); err != nil && firstErr == nil {
		firstErr = err
	}
	s.log.Info("simulator stopped")
	return firstErr
}

// wait waits for every goroutine of the server, or for ctx.
func (s *Server) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RotateToken makes token the accepted bot token and clears a token reset.
// Sessions of the old token keep running; a RESUME must use the token its
// session was started with.
func (s *Server) RotateToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token, s.tokenReset = token, false
	s.log.Info("token rotated")
}

// tokenOK reports whether t is the accepted token. The caller holds mu.
func (s *Server) tokenOK(t string) bool { return !s.tokenReset && t == s.token }

// sinceEpoch is now in entry time (milliseconds since the server started).
func (s *Server) sinceEpoch(now time.Time) int64 { return now.UnixMilli() - s.epoch.UnixMilli() }

// wakeLoop makes the event loop look at its work now.
func (s *Server) wakeLoop() {
	select {
	case s.loopWake <- struct{}{}:
	default:
	}
}

// shardStat returns the counters of (n, shard). The caller holds mu.
func (s *Server) shardStatLocked(n, shard int) *shardStat {
	k := shardKey{n, shard}
	st := s.shardStats[k]
	if st == nil {
		st = &shardStat{}
		s.shardStats[k] = st
	}
	return st
}

// registerLocked makes a new session live: routed, counted and in the mix.
// The caller holds mu.
func (s *Server) registerLocked(ss *session) {
	s.sessions[ss.id] = ss
	r := ss.route
	r.sessions[ss.shard] = append(r.sessions[ss.shard], ss)
	r.live++
	ss.stat.sessions++
	s.addIntentsLocked(ss, 1)
	s.version++
	s.wakeLoop()
}

// endSessionLocked ends a session for good: it can no longer be resumed and
// receives nothing. The caller holds mu.
func (s *Server) endSessionLocked(ss *session) {
	if _, ok := s.sessions[ss.id]; !ok {
		return
	}
	delete(s.sessions, ss.id)
	delete(s.disconnected, ss)
	r := ss.route
	list := r.sessions[ss.shard]
	for i, x := range list {
		if x == ss {
			r.sessions[ss.shard] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	r.live--
	if r.live == 0 {
		r.idle = s.version
	}
	ss.stat.sessions--
	s.addIntentsLocked(ss, -1)
	s.version++
	s.world.dropIdleRoutes()
	ss.mu.Lock()
	ss.ended = true
	ss.ring, ss.raw, ss.unavail, ss.stream = newReplayRing(1), nil, nil, nil
	ss.mu.Unlock()
}

// addIntentsLocked counts a session's intents in or out of the union the
// event mix is built from.
func (s *Server) addIntentsLocked(ss *session, delta int) {
	changed := false
	for bit := range 64 {
		if ss.view.intents&(1<<bit) == 0 {
			continue
		}
		before := s.intentCount[bit]
		s.intentCount[bit] += delta
		if (before == 0) != (s.intentCount[bit] == 0) {
			changed = true
		}
	}
	if changed {
		var union uint64
		for bit, n := range s.intentCount {
			if n > 0 {
				union |= 1 << bit
			}
		}
		s.mix = newMix(discord.Intents(union), s.cfg.EventTypes)
	}
}

// detachLocked separates a connection from its session; the session becomes
// resumable for SessionTTL. The caller holds mu.
func (s *Server) detachLocked(c *conn, now time.Time) *session {
	c.mu.Lock()
	ss := c.sess
	c.sess = nil
	if c.phase == phaseActive {
		c.phase = phaseConnected
	}
	c.mu.Unlock()
	if ss == nil {
		return nil
	}
	ss.mu.Lock()
	if ss.conn == c {
		ss.conn = nil
		ss.disconnectedAt = now
		ss.stat.connections.Add(-1)
	}
	ended := ss.ended
	ss.mu.Unlock()
	if !ended {
		s.disconnected[ss] = struct{}{}
		s.wakeLoop()
	}
	return ss
}

// attachLocked attaches a connection to a session whose next s to send is
// cursor. The caller holds mu.
func (s *Server) attachLocked(c *conn, ss *session, cursor int64) {
	c.mu.Lock()
	c.sess, c.phase = ss, phaseActive
	c.mu.Unlock()
	ss.mu.Lock()
	ss.conn, ss.cursor, ss.attachedAt = c, cursor, time.Now()
	ss.mu.Unlock()
	ss.stat.connections.Add(1)
	delete(s.disconnected, ss)
}

// newSessionIDLocked returns a 32-hex session ID. IDs mix in the start time,
// so a restarted simulator does not hand out the IDs of its predecessor.
func (s *Server) newSessionIDLocked() string {
	s.sessionSeq++
	b := make([]byte, 0, 32)
	b = appendHex(b, hash2(s.world.seed^uint64(s.epoch.UnixNano()), s.sessionSeq))
	b = appendHex(b, hash2(s.world.seed^0x1d1d, s.sessionSeq^uint64(s.epoch.UnixNano())<<1))
	return string(b)
}
