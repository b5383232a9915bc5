package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// State is where a shard session is in its life.
type State int

// States of a shard session.
const (
	StateIdle           State = iota // not started
	StateWaiting                     // waiting to (re)connect: backoff or op 9 delay
	StateConnecting                  // dialling; waiting for HELLO
	StateIdentifying                 // HELLO received, waiting for the identify gate
	StateAuthenticating              // IDENTIFY sent, waiting for READY
	StateResuming                    // RESUME sent, waiting for RESUMED
	StateReady                       // READY or RESUMED received: dispatches flow
	StateStopped                     // stopped for good (fatal close code or Stop)
)

var stateNames = [...]string{"idle", "waiting", "connecting", "identifying", "authenticating", "resuming", "ready", "stopped"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ActionKind says what the shell must do for an Action.
type ActionKind int

// Action kinds.
const (
	// ActDial: open a connection to URL (the shell adds the query string).
	ActDial ActionKind = iota + 1
	// ActSend: write Payload to the connection.
	ActSend
	// ActClose: close the connection with Code. The shell then reports
	// Closed; the machine already knows what comes next.
	ActClose
	// ActRequestIdentify: ask the identify gate for a slot; report
	// IdentifyGranted when it is given.
	ActRequestIdentify
	// ActSessionChanged: the resumable session changed (READY, a new seq
	// boundary is not reported) or ended (Session.ID empty): persist it.
	ActSessionChanged
	// ActStop: the shard stopped for good; Err says why.
	ActStop
	// ActIdentified: the IDENTIFY sent earlier was answered (READY) or its
	// connection ended first; tell the identify gate when.
	ActIdentified
)

// Action is one thing the shell must do.
type Action struct {
	Kind    ActionKind
	URL     string
	Payload []byte
	Code    int
	Err     error
}

// Session is the resumable part of a shard session.
type Session struct {
	ID        string
	Seq       int64
	ResumeURL string
}

// Resumable reports whether s can be resumed.
func (s Session) Resumable() bool { return s.ID != "" && s.ResumeURL != "" }

// MachineConfig configures a Machine.
type MachineConfig struct {
	Shard, NumShards int
	Token            string
	Intents          discord.Intents
	Properties       discord.IdentifyProperties
	LargeThreshold   int
	Presence         json.RawMessage // optional initial presence
	GatewayURL       string          // base URL for IDENTIFY; required

	HelloTimeout time.Duration // connect → HELLO; default 20s
	ReadyTimeout time.Duration // IDENTIFY/RESUME → READY/RESUMED; default 30s (plus the identify wait)
	BackoffMin   time.Duration // first reconnect delay; default 1s
	BackoffMax   time.Duration // cap; default 60s
	// InvalidSessionMin and Max bound the random wait after op 9; default 1s–5s.
	InvalidSessionMin, InvalidSessionMax time.Duration
	// Rand returns a float in [0,1). Default: math/rand/v2 (seeded per
	// process); tests pass a fixed sequence.
	Rand func() float64
}

func (c *MachineConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HelloTimeout, 20*time.Second)
	def(&c.ReadyTimeout, 30*time.Second)
	def(&c.BackoffMin, time.Second)
	def(&c.BackoffMax, 60*time.Second)
	def(&c.InvalidSessionMin, time.Second)
	def(&c.InvalidSessionMax, 5*time.Second)
	if c.InvalidSessionMax < c.InvalidSessionMin {
		c.InvalidSessionMax = c.InvalidSessionMin
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
}

// CloseZombie is the code the machine closes with when a heartbeat was not
// acknowledged, and for op 7 and timeouts: any code but 1000/1001 keeps the
// session resumable.
const CloseZombie = 4000

// ErrStopped is the error of an ActStop caused by Stop.
var ErrStopped = errors.New("gateway: shard stopped")

// Machine is the pure state machine of one shard session: inputs, with the
// current time, in; actions out. It has no goroutines, sockets or clocks,
// and is not safe for concurrent use.
type Machine struct {
	cfg   MachineConfig
	state State
	sess  Session

	connected  bool // a connection is open (between ActDial's success and Closed)
	closing    bool // ActClose issued on the current connection
	afterClose struct {
		identify bool          // reconnect with IDENTIFY (else RESUME when possible)
		delay    time.Duration // wait before dialling
	}

	interval   time.Duration
	nextBeat   time.Time // zero: no heartbeat scheduled
	beatSentAt time.Time
	ackPending bool
	heard      bool // a payload arrived since the last heartbeat
	latency    time.Duration

	deadline  time.Time // HELLO / READY timeout; zero when none
	dialAt    time.Time // StateWaiting: when to dial
	attempts  int       // consecutive failed connections, for backoff
	lost      int       // connections lost or failed since the last READY/RESUMED
	identWait bool      // ActRequestIdentify issued and not yet granted

	counters     Counters
	identifiedAt time.Time // the last IDENTIFY sent
	readyAt      time.Time // the last READY or RESUMED
}

// Counters counts what happened to a shard, for metrics.
type Counters struct {
	Connects, Identifies, Resumes, Reconnects, InvalidSessions, Zombies, Heartbeats, Acks int64
	// Silences counts the times the shard was cycled because an event
	// type went silent (Cycle).
	Silences int64
}

// NewMachine returns a machine in StateIdle. cfg.GatewayURL is required.
func NewMachine(cfg MachineConfig, resume Session) *Machine {
	cfg.defaults()
	return &Machine{cfg: cfg, sess: resume}
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Session returns the resumable session (empty ID when there is none).
func (m *Machine) Session() Session { return m.sess }

// Latency is the last heartbeat round trip.
func (m *Machine) Latency() time.Duration { return m.latency }

// IdentifiedAt is when the last IDENTIFY was sent (zero: never).
func (m *Machine) IdentifiedAt() time.Time { return m.identifiedAt }

// ReadyAt is when the last READY or RESUMED arrived (zero: never).
func (m *Machine) ReadyAt() time.Time { return m.readyAt }

// Counters returns the counters.
func (m *Machine) Counters() Counters { return m.counters }

// Offline reports whether a shard that was ready has lost its session's
// connection and failed at least once to get it back: it is down, not
// merely reconnecting. A first reconnect (after op 7, a zombie, a
// dropped socket) is not offline yet.
func (m *Machine) Offline() bool {
	return m.state != StateReady && m.state != StateStopped && !m.readyAt.IsZero() && m.lost >= 2
}

// Next returns when Tick must be called next; zero means no timer.
func (m *Machine) Next() time.Time {
	var t time.Time
	min := func(c time.Time) {
		if !c.IsZero() && (t.IsZero() || c.Before(t)) {
			t = c
		}
	}
	if m.connected && !m.closing {
		min(m.nextBeat)
		min(m.deadline)
	}
	if m.state == StateWaiting {
		min(m.dialAt)
	}
	return t
}

// Start begins the session: dial now.
func (m *Machine) Start(now time.Time, dst []Action) []Action {
	if m.state != StateIdle {
		return dst
	}
	return m.dial(now, dst)
}

// Stop ends the session for good, closing the connection with a resumable
// code so that another node (or this one, restarted) can RESUME.
func (m *Machine) Stop(now time.Time, dst []Action) []Action {
	if m.state == StateStopped {
		return dst
	}
	if m.connected && !m.closing {
		dst = m.close(CloseZombie, dst)
	}
	m.state = StateStopped
	return append(dst, Action{Kind: ActStop, Err: ErrStopped})
}

func (m *Machine) dial(now time.Time, dst []Action) []Action {
	url := m.cfg.GatewayURL
	if m.sess.Resumable() {
		url = m.sess.ResumeURL
	}
	m.state = StateConnecting
	m.dialAt = time.Time{}
	m.deadline = now.Add(m.cfg.HelloTimeout)
	m.counters.Connects++
	return append(dst, Action{Kind: ActDial, URL: url})
}

// Connected reports that the ActDial connection is open.
func (m *Machine) Connected(now time.Time) {
	if m.state != StateConnecting {
		return
	}
	m.connected = true
	m.closing = false
	m.nextBeat = time.Time{}
	m.ackPending = false
}

// DialFailed reports that ActDial failed.
func (m *Machine) DialFailed(now time.Time, err error, dst []Action) []Action {
	if m.state != StateConnecting || m.connected {
		return dst
	}
	m.lost++
	return m.wait(now, m.backoff(), dst)
}

func (m *Machine) backoff() time.Duration {
	d := m.cfg.BackoffMin << min(m.attempts, 16)
	if d > m.cfg.BackoffMax || d <= 0 {
		d = m.cfg.BackoffMax
	}
	m.attempts++
	// Full jitter over [d/2, d).
	return d/2 + time.Duration(m.cfg.Rand()*float64(d/2))
}

func (m *Machine) wait(now time.Time, d time.Duration, dst []Action) []Action {
	m.state = StateWaiting
	m.connected = false
	m.closing = false
	m.deadline = time.Time{}
	m.nextBeat = time.Time{}
	m.identWait = false
	m.dialAt = now.Add(d)
	return dst
}

// Closed reports that the connection ended with err (a *discord.CloseError
// when a close frame was seen; anything else counts as an abnormal 1006).
func (m *Machine) Closed(now time.Time, err error, dst []Action) []Action {
	if !m.connected {
		return dst
	}
	planned := m.closing
	m.connected = false
	m.closing = false
	m.identWait = false
	if m.state == StateAuthenticating {
		dst = append(dst, Action{Kind: ActIdentified})
	}
	if m.state == StateStopped {
		return dst
	}
	m.counters.Reconnects++
	m.lost++
	if planned {
		if m.afterClose.identify {
			dst = m.dropSession(dst)
		}
		return m.wait(now, m.afterClose.delay, dst)
	}
	code := discord.CloseAbnormal
	var ce *discord.CloseError
	if errors.As(err, &ce) {
		code = ce.Code
	}
	switch code.Action() {
	case discord.ActionStop:
		m.state = StateStopped
		m.deadline, m.nextBeat = time.Time{}, time.Time{}
		return append(dst, Action{Kind: ActStop, Code: int(code), Err: fmt.Errorf("gateway: shard %d stopped: %w", m.cfg.Shard, &discord.CloseError{Code: code, Reason: code.Reason()})})
	case discord.ActionReidentify:
		dst = m.dropSession(dst)
	}
	return m.wait(now, m.backoff(), dst)
}

func (m *Machine) dropSession(dst []Action) []Action {
	if m.sess.ID == "" {
		return dst
	}
	m.sess = Session{}
	return append(dst, Action{Kind: ActSessionChanged})
}

func (m *Machine) close(code int, dst []Action) []Action {
	m.closing = true
	m.deadline = time.Time{}
	m.nextBeat = time.Time{}
	return append(dst, Action{Kind: ActClose, Code: code})
}

// closeAndRetry closes the connection with a resumable code and plans the
// reconnect.
func (m *Machine) closeAndRetry(identify bool, delay time.Duration, dst []Action) []Action {
	m.afterClose.identify = identify
	m.afterClose.delay = delay
	return m.close(CloseZombie, dst)
}

// Cycle closes a ready connection with a resumable code and RESUMEs at
// once: for a session that looks broken on Discord's side although its
// heartbeats are answered (a silent shard). It does nothing in any other
// state.
func (m *Machine) Cycle(now time.Time, dst []Action) []Action {
	if m.state != StateReady || !m.connected || m.closing {
		return dst
	}
	m.counters.Silences++
	return m.closeAndRetry(false, 0, dst)
}

// IdentifyGranted reports that the identify gate gave this shard a slot.
func (m *Machine) IdentifyGranted(now time.Time, dst []Action) []Action {
	if m.state != StateIdentifying || !m.identWait || !m.connected || m.closing {
		return dst
	}
	m.identWait = false
	m.identifiedAt = now
	m.state = StateAuthenticating
	m.deadline = now.Add(m.cfg.ReadyTimeout)
	m.counters.Identifies++
	return append(dst, Action{Kind: ActSend, Payload: m.identifyPayload()})
}

func (m *Machine) identifyPayload() []byte {
	intents := m.cfg.Intents
	id := discord.Identify{
		Token:          m.cfg.Token,
		Properties:     m.cfg.Properties,
		LargeThreshold: m.cfg.LargeThreshold,
		Shard:          &[2]int{m.cfg.Shard, m.cfg.NumShards},
		Presence:       m.cfg.Presence,
		Intents:        &intents,
	}
	d, _ := json.Marshal(id) // cannot fail: fixed types
	return discord.AppendFrame(nil, "", 0, discord.OpIdentify, d)
}

func (m *Machine) resumePayload() []byte {
	d, _ := json.Marshal(discord.Resume{Token: m.cfg.Token, SessionID: m.sess.ID, Seq: m.sess.Seq})
	return discord.AppendFrame(nil, "", 0, discord.OpResume, d)
}

func (m *Machine) heartbeatPayload() []byte {
	d := []byte("null")
	if m.sess.Seq > 0 {
		d = strconv.AppendInt(nil, m.sess.Seq, 10)
	}
	return discord.AppendFrame(nil, "", 0, discord.OpHeartbeat, d)
}

// Receive feeds one payload read from the connection, scanned into h.
func (m *Machine) Receive(now time.Time, h discord.Header, payload []byte, dst []Action) []Action {
	if !m.connected || m.state == StateStopped {
		return dst
	}
	if m.closing {
		// Dispatches that arrive before the peer's close frame still count:
		// the shell publishes them, and the RESUME must start after them.
		if h.Op == discord.OpDispatch && h.S > m.sess.Seq && m.sess.ID != "" {
			m.sess.Seq = h.S
		}
		return dst
	}
	m.heard = true
	switch h.Op {
	case discord.OpHello:
		return m.hello(now, h, dst)
	case discord.OpHeartbeatACK:
		m.counters.Acks++
		if m.ackPending {
			m.latency = now.Sub(m.beatSentAt)
		}
		m.ackPending = false
		return dst
	case discord.OpHeartbeat:
		// Answer at once; this does not move the regular schedule.
		m.counters.Heartbeats++
		return append(dst, Action{Kind: ActSend, Payload: m.heartbeatPayload()})
	case discord.OpReconnect:
		return m.closeAndRetry(false, 0, dst)
	case discord.OpInvalidSession:
		m.counters.InvalidSessions++
		resumable := string(h.D) == "true"
		delay := m.cfg.InvalidSessionMin + time.Duration(m.cfg.Rand()*float64(m.cfg.InvalidSessionMax-m.cfg.InvalidSessionMin))
		return m.closeAndRetry(!resumable || !m.sess.Resumable(), delay, dst)
	case discord.OpDispatch:
		return m.dispatch(now, h, dst)
	}
	return dst
}

func (m *Machine) hello(now time.Time, h discord.Header, dst []Action) []Action {
	if m.state != StateConnecting {
		return dst
	}
	var hello discord.Hello
	if err := json.Unmarshal(h.D, &hello); err != nil || hello.HeartbeatInterval <= 0 {
		return m.closeAndRetry(false, m.backoff(), dst)
	}
	m.interval = time.Duration(hello.HeartbeatInterval) * time.Millisecond
	m.nextBeat = now.Add(time.Duration(m.cfg.Rand() * float64(m.interval)))
	m.ackPending = false
	if m.sess.Resumable() {
		m.state = StateResuming
		m.deadline = now.Add(m.cfg.ReadyTimeout)
		m.counters.Resumes++
		return append(dst, Action{Kind: ActSend, Payload: m.resumePayload()})
	}
	m.state = StateIdentifying
	m.deadline = time.Time{} // the identify wait may be long; READY's timeout starts at the grant
	m.identWait = true
	return append(dst, Action{Kind: ActRequestIdentify})
}

func (m *Machine) dispatch(now time.Time, h discord.Header, dst []Action) []Action {
	if h.S > m.sess.Seq {
		m.sess.Seq = h.S
	}
	switch {
	case h.TypeIs("READY"):
		var r struct {
			SessionID        string `json:"session_id"`
			ResumeGatewayURL string `json:"resume_gateway_url"`
		}
		if err := json.Unmarshal(h.D, &r); err != nil || r.SessionID == "" {
			return m.closeAndRetry(true, m.backoff(), dst)
		}
		m.sess = Session{ID: r.SessionID, Seq: h.S, ResumeURL: r.ResumeGatewayURL}
		if m.sess.ResumeURL == "" {
			m.sess.ResumeURL = m.cfg.GatewayURL
		}
		if m.state == StateAuthenticating {
			dst = append(dst, Action{Kind: ActIdentified})
		}
		m.ready(now)
		return append(dst, Action{Kind: ActSessionChanged})
	case h.TypeIs("RESUMED"):
		m.ready(now)
	}
	return dst
}

func (m *Machine) ready(now time.Time) {
	m.readyAt = now
	m.state = StateReady
	m.deadline = time.Time{}
	m.attempts, m.lost = 0, 0
}

// ReaderPaused reports that the shell has not been reading the connection
// (the broker pushes back): the next heartbeat does not judge it a zombie
// for an ACK that may be waiting unread.
func (m *Machine) ReaderPaused(now time.Time, dst []Action) []Action {
	m.heard = true
	return dst
}

// Tick fires the timers that are due at now.
func (m *Machine) Tick(now time.Time, dst []Action) []Action {
	switch {
	case m.state == StateWaiting:
		if !m.dialAt.IsZero() && !now.Before(m.dialAt) {
			return m.dial(now, dst)
		}
		return dst
	case !m.connected || m.closing:
		return dst
	}
	if !m.deadline.IsZero() && !now.Before(m.deadline) {
		// HELLO or READY/RESUMED did not come in time.
		return m.closeAndRetry(false, m.backoff(), dst)
	}
	if !m.nextBeat.IsZero() && !now.Before(m.nextBeat) {
		// A zombie: the last beat got no ACK and nothing else arrived
		// either. Anything read counts as liveness, because an ACK queued
		// behind a backlog of dispatches arrives late on a busy connection.
		if m.ackPending && !m.heard {
			m.counters.Zombies++
			return m.closeAndRetry(false, 0, dst)
		}
		m.heard = false
		m.ackPending = true
		m.beatSentAt = now
		m.nextBeat = now.Add(m.interval)
		m.counters.Heartbeats++
		return append(dst, Action{Kind: ActSend, Payload: m.heartbeatPayload()})
	}
	return dst
}
