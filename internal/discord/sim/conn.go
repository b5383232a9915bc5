package sim

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// closeGrace is how long the server waits for the client's answer to its
// close frame before cutting the connection.
const closeGrace = time.Second

// conn is one gateway connection. Its reader runs in the goroutine that
// accepted it and owns the protocol; its writer goroutine owns the socket's
// write side, the compression context and the timed tasks.
//
// Lock order: Server.mu, then conn.mu, then session.mu, then conn.out.mu.
type conn struct {
	s           *Server
	nc          net.Conn
	rd          wsReader
	host        string // for resume_gateway_url
	onResumeURL bool   // connected to the resume URL
	v           int    // API version
	comp        codec.Compression
	startErr    *closeErr // a bad query: closed right after HELLO
	send        *sendWindow
	hbDeadline  time.Time
	requested   atomic.Int32 // server heartbeat requests not yet answered

	wake       chan struct{} // the writer's doorbell
	done       chan struct{} // closed when the connection is over
	writerDone chan struct{}
	killed     atomic.Bool

	mu         sync.Mutex
	phase      phase
	sess       *session
	endSession bool // the session ends with the connection
	faultGen   int64
	faults     connFaults // shard-level faults matching this connection

	out struct {
		mu          sync.Mutex
		ctl         []byte // queued control payloads: kind, 4-byte length, bytes
		close       *closeFrame
		tasks       []task
		zombie      bool
		zombieUntil time.Time
		split       bool
	}
}

// closeFrame is a close the writer must send.
type closeFrame struct {
	code   int
	reason string
}

// Kinds of queued control entries.
const (
	ctlPayload = 1 // a gateway payload, framed like dispatches (compressed if the connection is)
	ctlPong    = 2 // a WebSocket pong
)

// serveGateway upgrades r to a gateway WebSocket and runs the connection in
// the calling goroutine until it ends.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request) {
	key, status, msg := checkUpgrade(r)
	if status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		writeError(w, status, msg)
		return
	}
	rc := http.NewResponseController(w)
	nc, brw, err := rc.Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot take over the connection")
		return
	}
	nc.SetDeadline(time.Time{})
	if _, err := nc.Write(upgradeResponse(key)); err != nil {
		nc.Close()
		return
	}
	s.serveConn(nc, brw.Reader, r.Host, r.URL.Path, r.URL.Query())
}

// serveConn runs a gateway connection whose handshake is done, until it
// ends. br holds what the client sent after the handshake; host and path are
// the request's; q is its query.
func (s *Server) serveConn(nc net.Conn, br *bufio.Reader, host, path string, q url.Values) {
	if c := s.newConn(nc, br, host, strings.HasPrefix(path, "/resume"), q); c != nil {
		c.run()
	}
}

// newConn registers a connection; nil after Shutdown (the socket is closed).
func (s *Server) newConn(nc net.Conn, br *bufio.Reader, host string, onResume bool, q url.Values) *conn {
	v, encoding := q.Get("v"), q.Get("encoding")
	compress, hasCompress := q.Get("compress"), q.Has("compress")
	c := &conn{
		s: s, nc: nc, host: host, onResumeURL: onResume,
		rd:         wsReader{br: br, limit: discord.MaxClientPayload},
		send:       newSendWindow(s.cfg.SendLimit, s.cfg.SendWindow),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
		faultGen:   -1,
	}
	var ok bool
	if c.v, ok = parseAPIVersion(v); !ok {
		c.startErr = errBadVersion
	}
	switch encoding {
	case "", "json":
	default:
		if c.startErr == nil {
			c.startErr = &closeErr{code: discord.CloseDecodeError, rule: ruleDecodeError, reason: "The simulator supports encoding=json only."}
		}
	}
	c.comp = s.cfg.CompressDefault
	if hasCompress {
		comp, err := codec.ParseCompression(compress)
		if err != nil {
			s.violation(ruleUnknownCompress)
			comp = codec.None
		}
		c.comp = comp
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.ctr.connections.Add(1)
	s.ctr.connectionsTotal.Add(1)
	return c
}

// run serves the connection: it starts the writer, sends HELLO and reads
// until the connection ends.
func (c *conn) run() {
	s := c.s
	defer s.wg.Done()
	defer c.finish()
	enc, err := codec.NewEncoder(c.comp, codec.EncoderConfig{})
	if err != nil {
		c.nc.Close()
		close(c.writerDone)
		return
	}
	if c.comp == codec.None {
		enc = nil
	}
	s.wg.Add(1)
	go c.writeLoop(enc)

	now := time.Now()
	c.enqueue(ctlPayload, s.rend.helloFrame(s.cfg.HeartbeatInterval.Milliseconds()))
	if s.cfg.RequestHeartbeats > 0 {
		c.addTask(task{at: now.Add(s.cfg.RequestHeartbeats), kind: taskRequestHeartbeat})
	}
	if c.startErr != nil {
		c.fail(c.startErr)
	}
	c.hbDeadline = now.Add(s.cfg.HeartbeatTimeout)
	c.setReadDeadline(c.hbDeadline)
	for {
		op, p, err := c.rd.next()
		if err != nil {
			if c.readError(err) {
				continue
			}
			return
		}
		switch op {
		case wsPing:
			c.enqueue(ctlPong, p)
		case wsPong:
		case wsClose:
			c.clientClose(p)
			return
		case wsText, wsBinary:
			if c.currentPhase() == phaseClosing {
				continue // after a close frame, data is discarded
			}
			c.handle(p, time.Now())
		}
	}
}

// readError handles a read error and reports whether reading goes on.
func (c *conn) readError(err error) bool {
	closing := c.currentPhase() == phaseClosing
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && !closing && !c.killed.Load():
		c.s.violation(ruleHeartbeatTimeout)
		c.closeWith(c.s.cfg.HeartbeatTimeoutCode, discord.CloseCode(c.s.cfg.HeartbeatTimeoutCode).Reason(), false)
		c.nc.SetReadDeadline(time.Now().Add(closeGrace))
		return true
	case errors.Is(err, errTooLarge) && !closing:
		c.fail(errTooBig)
		return true
	case errors.Is(err, errTooLarge):
		return true
	case errors.Is(err, errProtocol) && !closing:
		c.s.violation(ruleProtocolError)
		c.closeWith(wsCloseProtocolError, "", false)
		c.nc.SetReadDeadline(time.Now().Add(closeGrace))
		return false
	}
	return false
}

// clientClose answers a client's close frame. A client closing with 1000 or
// 1001 ends its session; any other code keeps it resumable.
func (c *conn) clientClose(p []byte) {
	code, ok := parseClose(p)
	c.mu.Lock()
	answered := c.phase == phaseClosing
	if !answered && ok {
		c.endSession = discord.CloseCode(code).EndsSession()
	}
	end := !answered && c.endSession
	c.mu.Unlock()
	if answered {
		return // the answer to our close frame
	}
	if end {
		// End the session before the echo: once the client has its close
		// answer it may RESUME at once, and that must be refused.
		c.s.mu.Lock()
		if ss := c.s.detachLocked(c, time.Now()); ss != nil {
			c.s.endSessionLocked(ss)
		}
		c.s.mu.Unlock()
	}
	switch {
	case !ok:
		c.closeWith(wsCloseProtocolError, "", false)
	case code == wsCloseNoStatus:
		c.closeWith(0, "", false)
	default:
		c.closeWith(code, "", false)
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.writerDone:
	case <-t.C:
	}
}

// finish ends the connection: the socket is closed, the writer stopped and
// the session detached (or ended).
func (c *conn) finish() {
	s := c.s
	c.nc.Close()
	close(c.done)
	<-c.writerDone
	s.mu.Lock()
	if ss := s.detachLocked(c, time.Now()); ss != nil && c.endSession {
		s.endSessionLocked(ss)
	}
	delete(s.conns, c)
	s.mu.Unlock()
	s.ctr.connections.Add(-1)
}

func (c *conn) currentPhase() phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.phase
}

// setReadDeadline sets the heartbeat deadline unless the connection is
// closing (whose grace deadline must stay).
func (c *conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	if c.phase != phaseClosing {
		c.nc.SetReadDeadline(t)
	}
	c.mu.Unlock()
}

// fail closes the connection for a client mistake and counts the rule.
func (c *conn) fail(ce *closeErr) {
	c.s.violation(ce.rule)
	reason := ce.reason
	if reason == "" {
		reason = ce.code.Reason()
	}
	c.closeWith(int(ce.code), reason, false)
}

// closeWith queues a close frame (code 0: an empty one) and stops the
// connection's dispatches. endSession ends the session with the connection.
func (c *conn) closeWith(code int, reason string, endSession bool) {
	c.mu.Lock()
	if c.phase == phaseClosing {
		c.mu.Unlock()
		return
	}
	c.phase = phaseClosing
	if endSession {
		c.endSession = true
	}
	c.mu.Unlock()
	c.out.mu.Lock()
	c.out.close = &closeFrame{code: code, reason: reason}
	c.out.mu.Unlock()
	c.s.ctr.closes.Add(1)
	c.wakeWriter()
}

// kill cuts the TCP connection without a close frame.
func (c *conn) kill() {
	if c.killed.CompareAndSwap(false, true) {
		c.nc.Close()
	}
}

// cutSlow cuts a client that fell too far behind its session.
func (c *conn) cutSlow() {
	if !c.killed.Load() {
		c.s.violation(ruleSlowConsumer)
		c.s.ctr.closes.Add(1)
		c.s.log.Warn("slow consumer cut", "remote", c.nc.RemoteAddr().String())
	}
	c.kill()
}

// wakeWriter rings the writer's doorbell.
func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// maxCtlBytes bounds the queued control payloads: a client that never reads
// while sending heartbeats is cut as a slow consumer.
const maxCtlBytes = 1 << 20

// enqueue queues a control payload or pong. It goes out after the
// session's dispatches sequenced so far (its watermark), so the wire order
// is the order in which the server decided things: a heartbeat ACK is a
// barrier for everything before it. The caller holds no lock.
func (c *conn) enqueue(kind byte, p []byte) {
	var wm int64
	c.mu.Lock()
	if ss := c.sess; ss != nil {
		ss.mu.Lock()
		if ss.conn == c {
			wm = ss.ring.next
		}
		ss.mu.Unlock()
	}
	c.mu.Unlock()
	c.out.mu.Lock()
	over := len(c.out.ctl) > maxCtlBytes
	if !over {
		n := len(p)
		c.out.ctl = append(c.out.ctl, kind,
			byte(wm>>56), byte(wm>>48), byte(wm>>40), byte(wm>>32), byte(wm>>24), byte(wm>>16), byte(wm>>8), byte(wm),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		c.out.ctl = append(c.out.ctl, p...)
	}
	c.out.mu.Unlock()
	if over {
		c.cutSlow()
		return
	}
	c.wakeWriter()
}

// ctlHeader is the size of a queued control entry's header: kind,
// watermark, length.
const ctlHeader = 13

var (
	ackFrame            = discord.AppendFrame(nil, "", 0, discord.OpHeartbeatACK, nil)
	heartbeatReqFrame   = discord.AppendFrame(nil, "", 0, discord.OpHeartbeat, nil)
	reconnectFrame      = discord.AppendFrame(nil, "", 0, discord.OpReconnect, nil)
	invalidSessionFalse = discord.AppendFrame(nil, "", 0, discord.OpInvalidSession, []byte("false"))
	invalidSessionTrue  = discord.AppendFrame(nil, "", 0, discord.OpInvalidSession, []byte("true"))
)

func invalidSessionFrame(resumable bool) []byte {
	if resumable {
		return invalidSessionTrue
	}
	return invalidSessionFalse
}

// handle processes one client payload.
func (c *conn) handle(p []byte, now time.Time) {
	s := c.s
	env, decodeErr := decodeEnvelope(p)
	exempt := decodeErr == nil && env.op == discord.OpHeartbeat && s.cfg.ExemptRequestedHeartbeats && c.takeRequested()
	if !exempt && !c.send.allow(now) {
		c.fail(errRateLimited)
		return
	}
	if decodeErr != nil {
		c.fail(decodeErr)
		return
	}
	if ce := admit(c.currentPhase(), env.op); ce != nil {
		c.fail(ce)
		return
	}
	switch env.op {
	case discord.OpHeartbeat:
		c.heartbeat(env.d, now)
	case discord.OpIdentify:
		c.identify(env.d, now)
	case discord.OpResume:
		c.resume(env.d, now)
	case discord.OpPresenceUpdate:
		if ce := checkPresence(env.d); ce != nil {
			c.fail(ce)
		}
	case discord.OpVoiceStateUpdate:
		req, ce := parseVoice(env.d)
		if ce != nil {
			c.fail(ce)
			return
		}
		c.voiceState(req, now)
	case discord.OpRequestGuildMembers:
		req, ce := parseMembers(env.d)
		if ce != nil {
			c.fail(ce)
			return
		}
		c.requestMembers(req, now)
	case discord.OpRequestSoundboardSounds:
		ids, ce := parseGuildIDs(env.d)
		if ce != nil {
			c.fail(ce)
			return
		}
		c.soundboardSounds(ids, now)
	case discord.OpRequestChannelInfo:
		req, ce := parseChannelInfo(env.d)
		if ce != nil {
			c.fail(ce)
			return
		}
		c.channelInfo(req, now)
	}
}

// zombie reports whether a zombie fault holds the connection at now.
func (c *conn) zombie(now time.Time) bool {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.out.zombie && !c.out.zombieUntil.IsZero() && !now.Before(c.out.zombieUntil) {
		c.out.zombie = false
	}
	return c.out.zombie
}

// takeRequested consumes one outstanding server heartbeat request.
func (c *conn) takeRequested() bool {
	for {
		n := c.requested.Load()
		if n <= 0 {
			return false
		}
		if c.requested.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// heartbeat answers op 1 with op 11 (unless a fault says otherwise) and
// pushes the heartbeat deadline.
func (c *conn) heartbeat(d []byte, now time.Time) {
	s := c.s
	seq, ce := parseHeartbeat(d)
	if ce != nil {
		c.fail(ce)
		return
	}
	s.ctr.heartbeats.Add(1)
	c.hbDeadline = now.Add(s.cfg.HeartbeatTimeout)
	c.setReadDeadline(c.hbDeadline)
	c.mu.Lock()
	ss := c.sess
	c.mu.Unlock()
	if ss != nil && seq > 0 {
		ss.mu.Lock()
		sent := ss.cursor - 1
		attached := ss.conn == c
		ss.mu.Unlock()
		if attached && seq > sent {
			s.violation(ruleHeartbeatSeq)
		}
	}
	if c.zombie(now) {
		return
	}
	if delay := c.connFaults(now).delayAcks; delay > 0 {
		c.addTask(task{at: now.Add(delay), kind: taskAck})
		return
	}
	c.enqueue(ctlPayload, ackFrame)
}
