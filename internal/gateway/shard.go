package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// shardRunner is the I/O shell around one shard's Machine: one goroutine
// dials and reads; heartbeats and other timers run from a time.AfterFunc
// timer; IDENTIFY waits for the gate in a short-lived goroutine.
type shardRunner struct {
	n         *Node
	id        int
	numShards int

	mu      sync.Mutex // guards m, conn, limiter, dec
	m       *Machine
	conn    *wsConn
	limiter *SendLimiter
	dec     codec.Decoder
	timer   *time.Timer
	acts    []Action // scratch
	stopped error    // set once the machine stopped for good
	guilds  guildCount
	latency *Histogram // heartbeat round trips

	dialCh chan string // ActDial → the run goroutine
	batch  batcher
	more   bool // the run goroutine: bytes of the next message are already read
	gateWG sync.WaitGroup

	// Published state: the newest acknowledged batch. Guarded by pubMu.
	pubMu      sync.Mutex
	pubSession string
	pubSeq     int64
	saved      broker.SessionState // the last state stored, zero before
	savedAt    time.Time
	silence    *silenceWatch // nil when detection is off

	events atomic.Int64  // dispatches read
	done   chan struct{} // closed when run returns

	// mode is the PublishMode (see Node.SetMode); the rest is the
	// reshard's state, under dedupMu.
	mode    atomic.Int32
	dedupMu sync.Mutex
	dedup   dedupState
}

func newShardRunner(n *Node, id, numShards int, resume Session, guilds int, pending []uint64) *shardRunner {
	r := &shardRunner{n: n, id: id, numShards: numShards, limiter: NewSendLimiter(), dialCh: make(chan string, 1), done: make(chan struct{}),
		latency: newHistogram(heartbeatBuckets)}
	if resume.ID != "" {
		r.guilds.resumed(guilds, pending)
	}
	mc := n.machineConfig(id, numShards)
	r.m = NewMachine(mc, resume)
	if resume.ID != "" {
		r.pubSession, r.pubSeq = resume.ID, resume.Seq
	}
	if n.cfg.SilenceAfter > 0 {
		r.silence = newSilenceWatch(n.cfg.SilenceAfter, float64(n.cfg.SilenceEvents))
	}
	r.timer = time.AfterFunc(time.Hour, r.onTimer)
	r.timer.Stop()
	r.batch.init(n, id, numShards, r.onPublished)
	return r
}

// step runs f on the machine under the lock, re-arms the timer, then
// executes the actions outside the lock.
func (r *shardRunner) step(f func(now time.Time, dst []Action) []Action) {
	r.mu.Lock()
	acts := f(time.Now(), r.acts[:0])
	r.rearm()
	// Copy: acts may be executed while another step reuses the scratch.
	var local [4]Action
	out := append(local[:0], acts...)
	conn := r.conn
	r.mu.Unlock()
	r.exec(conn, out)
}

func (r *shardRunner) rearm() {
	next := r.m.Next()
	if next.IsZero() {
		r.timer.Stop()
		return
	}
	r.timer.Reset(time.Until(next))
}

func (r *shardRunner) onTimer() {
	if r.batch.blocked() {
		// The broker pushes back and the reader waits on it: an ACK may
		// sit unread in the socket. A connection is not judged by what
		// the shard itself did not read.
		r.step(r.m.ReaderPaused)
	}
	r.step(r.m.Tick)
}

func (r *shardRunner) exec(conn *wsConn, acts []Action) {
	for _, a := range acts {
		switch a.Kind {
		case ActDial:
			r.mu.Lock()
			if r.stopped == nil {
				select {
				case r.dialCh <- a.URL:
				default:
				}
			}
			r.mu.Unlock()
		case ActSend:
			if conn == nil {
				continue
			}
			r.mu.Lock()
			r.limiter.Allow(time.Now(), false)
			r.mu.Unlock()
			r.write(conn, a.Payload)
		case ActClose:
			if conn != nil {
				// The read loop keeps publishing what arrives before the
				// peer's close frame, for up to 5s.
				conn.closeWith(a.Code)
			}
		case ActIdentified:
			if o, ok := r.n.gate.(IdentifyObserver); ok {
				o.Identified(r.id, time.Now())
			}
		case ActRequestIdentify:
			r.gateWG.Add(1)
			go r.waitGate()
		case ActSessionChanged:
			// Saved by the node's next persist tick: a new session once its
			// first batch is acknowledged, a dropped one at once.
		case ActStop:
			r.mu.Lock()
			if r.stopped == nil {
				r.stopped = a.Err
				close(r.dialCh)
			}
			r.mu.Unlock()
			if !errors.Is(a.Err, ErrStopped) {
				r.n.log.Error("shard stopped", "shard", r.id, "err", a.Err)
			}
		}
	}
}

func (r *shardRunner) write(conn *wsConn, p []byte) {
	if err := conn.writeFrame(wsText, p, 10*time.Second); err != nil {
		r.n.log.Debug("write", "shard", r.id, "err", err)
	}
}

func (r *shardRunner) waitGate() {
	defer r.gateWG.Done()
	err := r.n.gate.Wait(r.n.runCtx, r.id)
	if err != nil {
		if r.n.runCtx.Err() == nil {
			r.n.log.Error("identify refused", "shard", r.id, "err", err)
			r.step(func(now time.Time, dst []Action) []Action {
				return r.m.Stop(now, dst)
			})
		}
		return
	}
	r.step(r.m.IdentifyGranted)
}

// fenced stops the shard because the node lost its lease: nothing more
// is published or saved for it, and its connection ends without a close
// frame, so the shard's new owner can RESUME the session.
func (r *shardRunner) fenced(err error) {
	r.mu.Lock()
	already := r.stopped != nil
	r.mu.Unlock()
	if already {
		return
	}
	r.n.log.Error("lease on the shard lost: stopping it without publishing further", "shard", r.id, "err", err)
	r.step(r.m.Stop)
	if r.n.cfg.Leases != nil {
		r.n.cfg.Leases.Lost(r.numShards, r.id)
	}
}

// onPublished runs when the broker stored (or gave up on) a batch.
func (r *shardRunner) onPublished(c *broker.Batch, err error) {
	if err == nil {
		r.n.events.add(c.Subject, c.Count)
		if !c.Start.IsZero() {
			r.n.publishHist.Observe(time.Since(c.Start))
		}
		r.pubMu.Lock()
		r.advanceLocked(c.Session, c.LastSeq)
		if r.silence != nil {
			r.silence.observe(subjectType(c.Subject), c.Count)
		}
		r.pubMu.Unlock()
		if c.Dedup != "" && c.Duplicate {
			r.tookOver(c.Dedup)
		}
		r.n.metrics.published.Add(int64(c.Count))
	}
	r.batch.answered()
	r.n.release(c)
	r.n.inflight.Done()
	r.batch.pending.Done()
}

// subjectType returns an event subject's last token, the event type.
func subjectType(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// checkSilence folds the published counts into the shard's baseline and
// cycles the shard by RESUME when an event type has gone silent.
func (r *shardRunner) checkSilence(now time.Time) {
	r.mu.Lock()
	ready := r.m.State() == StateReady
	r.mu.Unlock()
	r.pubMu.Lock()
	if !ready || PublishMode(r.mode.Load()) == ModeHold { // held events are not published, so not observed
		r.silence.reset() // a baseline spans one healthy session
		r.silence.check(now, false)
		r.pubMu.Unlock()
		return
	}
	// While the broker holds publishing back, the shard reads nothing:
	// the quiet is ours, not Discord's, and does not count.
	t, missed := r.silence.check(now, r.batch.stalled(now))
	if t != "" {
		r.silence.reset()
	}
	r.pubMu.Unlock()
	if t != "" {
		r.n.log.Warn("silent shard: cycling it by RESUME", "shard", r.id, "event_type", t, "events_missed", int(missed))
		r.step(r.m.Cycle)
	}
}

// run is the shard's goroutine: dial, read until the connection ends,
// repeat until the machine stops.
func (r *shardRunner) run() {
	defer close(r.done)
	r.step(r.m.Start)
	for u := range r.dialCh {
		conn, err := r.dial(u)
		if err != nil {
			r.n.log.Debug("dial", "shard", r.id, "url", u, "err", err)
			r.step(func(now time.Time, dst []Action) []Action { return r.m.DialFailed(now, err, dst) })
			continue
		}
		r.mu.Lock()
		r.conn = conn
		r.limiter.Reset()
		if r.dec != nil {
			r.dec.Reset()
		}
		r.m.Connected(time.Now())
		r.rearm()
		r.mu.Unlock()
		err = r.read(conn)
		conn.closeNow() // no close frame: the session stays resumable
		r.mu.Lock()
		r.conn = nil
		r.mu.Unlock()
		if errors.Is(err, ErrFenced) {
			r.fenced(err)
			continue
		}
		r.step(func(now time.Time, dst []Action) []Action { return r.m.Closed(now, err, dst) })
	}
	r.timer.Stop()
	r.gateWG.Wait()
	// Everything read has been handed to the batcher; publish the rest.
	if err := r.batch.flush(r.n.pubCtx); err != nil {
		r.n.log.Warn("final flush", "shard", r.id, "err", err)
	}
}

func (r *shardRunner) dial(u string) (*wsConn, error) {
	full, err := gatewayURL(u, r.n.cfg.Compression)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.n.runCtx, r.n.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dialWS(ctx, full, r.n.cfg.MaxPayload+1024)
	if err != nil {
		return nil, err
	}
	if r.dec == nil && r.n.cfg.Compression != codec.None {
		dec, err := codec.NewDecoder(r.n.cfg.Compression, codec.DecoderConfig{MaxWindow: r.n.cfg.ZstdMaxWindow, MaxPayload: r.n.cfg.MaxPayload})
		if err != nil {
			conn.closeNow()
			return nil, err
		}
		r.mu.Lock()
		r.dec = dec
		r.mu.Unlock()
	}
	return conn, nil
}

func gatewayURL(base string, c codec.Compression) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("gateway URL %q: %w", base, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("gateway URL %q: scheme must be ws or wss", base)
	}
	q := u.Query()
	q.Set("v", fmt.Sprint(discord.APIVersion))
	q.Set("encoding", "json")
	if c != codec.None {
		q.Set("compress", string(c))
	} else {
		q.Del("compress")
	}
	u.RawQuery = q.Encode()
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}

// read reads messages until the connection ends; it returns why.
func (r *shardRunner) read(conn *wsConn) error {
	conn.watchIdle(r.n.cfg.IdleAfter, r.quiet)
	defer func() {
		if conn.asleep {
			r.n.metrics.quiet.Add(-1)
		}
	}()
	for {
		// Wait for the next frame before taking a buffer: a goroutine
		// blocked on a quiet connection holds none.
		if err := conn.fill(2); err != nil {
			return err
		}
		mp := r.n.getBuf()
		isBinary, msg, err := conn.readMessage((*mp)[:0])
		*mp = msg[:0]
		if err == nil {
			r.more = len(conn.unread) > 0
			err = r.handle(isBinary, msg)
		}
		r.n.putBuf(mp)
		if err != nil {
			return err
		}
	}
}

// quiet runs on the read goroutine when the connection goes quiet (true)
// and when data arrives again (false).
func (r *shardRunner) quiet(asleep bool) {
	if !asleep {
		r.n.metrics.quiet.Add(-1)
		return
	}
	r.n.metrics.quiet.Add(1)
	if r.dec != nil {
		r.dec.Idle()
	}
}

func (r *shardRunner) handle(isBinary bool, msg []byte) error {
	payload := msg
	if r.dec != nil && isBinary {
		op := r.n.getBuf()
		defer r.n.putBuf(op)
		out, ok, err := r.dec.Decode((*op)[:0], msg)
		*op = out[:0]
		if err != nil {
			return fmt.Errorf("gateway: shard %d: %w", r.id, err)
		}
		if !ok {
			return nil // the payload continues in the next message
		}
		payload = out
	}
	h, err := discord.ScanHeader(payload)
	if err != nil {
		r.n.metrics.badPayloads.Add(1)
		r.n.log.Warn("unreadable payload skipped", "shard", r.id, "err", err, "bytes", len(payload))
		return nil
	}
	var session string
	if h.Op == discord.OpDispatch {
		r.events.Add(1)
	}
	r.mu.Lock()
	before := r.m.Session()
	now := time.Now()
	acts := r.m.Receive(now, h, payload, r.acts[:0])
	if h.Op == discord.OpHeartbeatACK {
		r.latency.Observe(r.m.Latency())
	}
	if h.Op == discord.OpDispatch {
		// Publish exactly the dispatches that advanced the session's seq:
		// what a RESUME would ask for again is never published twice.
		if after := r.m.Session(); after.ID != "" && after.Seq == h.S && (h.S > before.Seq || after.ID != before.ID) {
			session = after.ID
			r.guilds.dispatch(h)
		}
	}
	r.rearm()
	var local [4]Action
	out2 := append(local[:0], acts...)
	conn := r.conn
	r.mu.Unlock()
	if h.Op == discord.OpDispatch && session != "" {
		var err error
		switch PublishMode(r.mode.Load()) {
		case ModePublish:
			err = r.batch.add(r.n.pubCtx, now, !r.more, session, h, payload)
		case ModeHold:
			r.hold(session, h.S)
		case ModeDedup, ModeHandover:
			if id, ok := r.dedupID(h); ok {
				err = r.batch.addDedup(r.n.pubCtx, session, h, payload, id)
			} else {
				r.hold(session, h.S) // its new shard took over
			}
		}
		if err != nil {
			return err
		}
	}
	r.exec(conn, out2)
	return nil
}

// command sends a gateway command (op 3, 4, 8 or 31) on the shard's
// connection, waiting for the send limiter.
func (r *shardRunner) command(ctx context.Context, payload []byte) error {
	if len(payload) > discord.MaxClientPayload {
		return ErrPayloadTooLarge
	}
	var p struct {
		Op *int            `json:"op"`
		D  json.RawMessage `json:"d"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Op == nil || len(p.D) == 0 {
		return ErrBadCommand
	}
	switch discord.Opcode(*p.Op) {
	case discord.OpPresenceUpdate, discord.OpVoiceStateUpdate, discord.OpRequestGuildMembers, discord.OpRequestSoundboardSounds:
	default:
		return fmt.Errorf("%w: op %d may not be sent as a command", ErrBadCommand, *p.Op)
	}
	for {
		r.mu.Lock()
		conn := r.conn
		if conn == nil || r.m.State() != StateReady {
			r.mu.Unlock()
			return ErrNotConnected
		}
		ok, retry := r.limiter.Allow(time.Now(), true)
		r.mu.Unlock()
		if ok {
			return conn.writeText(ctx, payload)
		}
		t := time.NewTimer(time.Until(retry))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// status is a snapshot for the node's status API.
func (r *shardRunner) status() ShardStatus {
	r.mu.Lock()
	st := ShardStatus{
		Shard: r.id, NumShards: r.numShards, State: r.m.State().String(),
		Latency: r.m.Latency(), Session: r.m.Session().ID, Seq: r.m.Session().Seq,
		Counters: r.m.Counters(), IdentifiedAt: r.m.IdentifiedAt(), ReadyAt: r.m.ReadyAt(),
		Guilds: r.guilds.n, GuildsKnown: r.guilds.observed, GuildsPending: len(r.guilds.pending), Offline: r.m.Offline(),
		Mode: PublishMode(r.mode.Load()).String(), HandedOver: r.handedOver(),
	}
	if r.stopped != nil && !errors.Is(r.stopped, ErrStopped) {
		st.Error = r.stopped.Error()
	}
	r.mu.Unlock()
	st.Events = r.events.Load()
	r.pubMu.Lock()
	st.PublishedSeq = r.pubSeq
	r.pubMu.Unlock()
	return st
}

// persistState returns the state to save and whether it must be saved now:
// at once when the session changed (a new one published, or one dropped),
// and for a sequence that only moved, every seqEvery (or when force is set,
// at shutdown). The sequence need not be saved often: a restarted node
// reads the newest batch of the stream, which is exact.
func (r *shardRunner) persistState(now time.Time, seqEvery time.Duration, force bool) (broker.SessionState, bool) {
	r.mu.Lock()
	sess, guilds, pending := r.m.Session(), r.guilds.n, r.guilds.pendingIDs()
	r.mu.Unlock()
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	st := broker.SessionState{Shard: r.id, NumShards: r.numShards, Node: r.n.cfg.NodeID, Guilds: guilds, GuildsPending: pending, Updated: now.UTC()}
	if sess.ID != "" && sess.ID == r.pubSession {
		st.SessionID, st.Seq, st.ResumeGatewayURL = sess.ID, r.pubSeq, sess.ResumeURL
	} else if sess.ID != "" {
		// A new session whose first batch is not acknowledged yet: keep
		// what is saved until it is.
		return st, false
	}
	sv := r.saved
	switch {
	case st.SessionID != sv.SessionID || st.ResumeGatewayURL != sv.ResumeGatewayURL:
		if st.SessionID == "" && r.savedAt.IsZero() {
			return st, false // nothing saved, nothing to delete
		}
		return st, true
	case st.Seq != sv.Seq:
		return st, force || now.Sub(r.savedAt) >= seqEvery
	}
	return st, false
}

// markSaved records that st is stored.
func (r *shardRunner) markSaved(st broker.SessionState, now time.Time) {
	r.pubMu.Lock()
	r.saved, r.savedAt = st, now
	r.pubMu.Unlock()
}
