package sim

import (
	"bytes"
	"compress/zlib"
	"errors"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// The writer goroutine of a connection drains, in order: due timed tasks,
// queued control payloads, then the session's dispatches from its replay
// ring, rendering them straight into one buffer that goes out in a single
// write. It also runs the connection's timed tasks, so a connection needs no
// other goroutine or timer.

// taskKind is a timed action of a connection.
type taskKind uint8

const (
	taskInvalidSession   taskKind = iota + 1 // op 9 (d: resumable)
	taskAck                                  // a delayed op 11
	taskClose                                // close with code
	taskRequestHeartbeat                     // periodic op 1
	taskHeartbeatRequest                     // one op 1 (fault)
)

type task struct {
	at        time.Time
	kind      taskKind
	code      int
	resumable bool
}

// addTask schedules t.
func (c *conn) addTask(t task) {
	c.out.mu.Lock()
	c.out.tasks = append(c.out.tasks, t)
	c.out.mu.Unlock()
	c.wakeWriter()
}

// Writer limits.
const (
	pullMax     = 128       // dispatches taken from the ring per round
	pullBytes   = 256 << 10 // stop taking dispatches once the buffer holds this much
	streamBurst = 16        // GUILD_CREATEs sequenced per round when unpaced
	maxBufKeep  = 4 << 20   // a larger buffer is dropped after use
)

// errSlow reports a connection that fell behind what its session's ring
// holds.
var errSlow = errors.New("slow consumer")

// writer is the writer goroutine's state.
type writer struct {
	c       *conn
	enc     codec.Encoder // nil without transport compression
	buf     []byte        // the bytes of this round
	spare   []byte        // the control queue's other buffer
	scratch []byte        // one payload, when it must be compressed
	cbuf    []byte        // compressed payload
	due     []task
	pulled  []pulled
	delayed []delayedWrite // latency fault: writes waiting for their time
	zw      *zlib.Writer   // payload compression (identify compress:true)
	zbuf    bytes.Buffer
	split   bool     // split the next compressed payload in two messages
	view    sessView // the session as rendering sees it, this round
}

type pulled struct {
	e     entry
	s     int64
	raw   *rawDispatch
	chunk *chunkReq
}

type delayedWrite struct {
	at   time.Time
	data []byte
}

func (c *conn) writeLoop(enc codec.Encoder) {
	defer c.s.wg.Done()
	defer close(c.writerDone)
	w := &writer{c: c, enc: enc}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		next, exit := w.round()
		if exit {
			return
		}
		var tc <-chan time.Time
		if !next.IsZero() {
			timer.Reset(time.Until(next))
			tc = timer.C
		}
		select {
		case <-c.wake:
		case <-tc:
		case <-c.done:
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

// round does all the work possible now. It returns when it next needs to
// run (zero: when woken), or exit when the writer is done.
func (w *writer) round() (next time.Time, exit bool) {
	c := w.c
	for {
		now := time.Now()
		w.runDue(now)

		c.out.mu.Lock()
		if c.out.zombie && !c.out.zombieUntil.IsZero() && !now.Before(c.out.zombieUntil) {
			c.out.zombie = false
		}
		zombie := c.out.zombie
		ctl := c.out.ctl
		c.out.ctl = w.spare[:0]
		w.spare = ctl
		cl := c.out.close
		if w.split = w.split || c.out.split; w.split {
			c.out.split = false
		}
		nextTask := earliestTask(c.out.tasks)
		if zombie && !c.out.zombieUntil.IsZero() {
			nextTask = earliest(nextTask, c.out.zombieUntil)
		}
		c.out.mu.Unlock()

		if zombie && cl == nil {
			// Black hole: nothing goes out, heartbeats are not answered.
			return nextTask, false
		}
		w.buf = w.buf[:0]
		more := false
		var streamAt time.Time
		err := w.appendControl(ctl, now, cl == nil)
		if err == nil && cl == nil {
			more, streamAt, err = w.pull(now, 0)
		}
		if err != nil {
			c.cutSlow()
			return time.Time{}, true
		}
		if cl != nil {
			payload := []byte(nil)
			if cl.code != 0 {
				payload = closePayload(cl.code, cl.reason)
			}
			w.buf = appendFrameHeader(w.buf, wsClose, len(payload))
			w.buf = append(w.buf, payload...)
		}
		if !w.send(now, cl != nil) {
			return time.Time{}, true
		}
		if cl != nil {
			c.mu.Lock() // orders the grace deadline after the reader's last heartbeat deadline
			c.nc.SetReadDeadline(time.Now().Add(closeGrace))
			c.mu.Unlock()
			return time.Time{}, true
		}
		if cap(w.buf) > maxBufKeep {
			w.buf = nil
		}
		if !more {
			next = earliest(nextTask, streamAt)
			if len(w.delayed) > 0 {
				next = earliest(next, w.delayed[0].at)
			}
			return next, false
		}
	}
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func earliestTask(ts []task) time.Time {
	var t time.Time
	for _, x := range ts {
		t = earliest(t, x.at)
	}
	return t
}

// runDue runs the tasks due at now.
func (w *writer) runDue(now time.Time) {
	c := w.c
	c.out.mu.Lock()
	w.due = w.due[:0]
	kept := c.out.tasks[:0]
	for _, t := range c.out.tasks {
		if !now.Before(t.at) {
			w.due = append(w.due, t)
		} else {
			kept = append(kept, t)
		}
	}
	c.out.tasks = kept
	c.out.mu.Unlock()
	for _, t := range w.due {
		switch t.kind {
		case taskInvalidSession:
			if c.currentPhase() != phaseClosing {
				c.enqueue(ctlPayload, invalidSessionFrame(t.resumable))
			}
		case taskAck:
			c.enqueue(ctlPayload, ackFrame)
		case taskClose:
			c.closeWith(t.code, discord.CloseCode(t.code).Reason(), false)
		case taskRequestHeartbeat:
			c.requestHeartbeat()
			c.addTask(task{at: t.at.Add(c.s.cfg.RequestHeartbeats), kind: taskRequestHeartbeat})
		case taskHeartbeatRequest:
			c.requestHeartbeat()
		}
	}
}

// requestHeartbeat sends op 1.
func (c *conn) requestHeartbeat() {
	if c.zombie(time.Now()) || c.currentPhase() == phaseClosing {
		return
	}
	c.requested.Add(1)
	c.enqueue(ctlPayload, heartbeatReqFrame)
}

// appendControl frames the queued control entries, each after the
// dispatches sequenced before it was queued (when dispatches still go out).
func (w *writer) appendControl(ctl []byte, now time.Time, dispatches bool) error {
	for len(ctl) >= ctlHeader {
		kind := ctl[0]
		var wm int64
		for _, b := range ctl[1:9] {
			wm = wm<<8 | int64(b)
		}
		n := int(ctl[9])<<24 | int(ctl[10])<<16 | int(ctl[11])<<8 | int(ctl[12])
		p := ctl[ctlHeader : ctlHeader+n]
		ctl = ctl[ctlHeader+n:]
		for dispatches && wm > 0 {
			more, _, err := w.pull(now, wm)
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
		if kind == ctlPong {
			w.buf = appendFrameHeader(w.buf, wsPong, len(p))
			w.buf = append(w.buf, p...)
			continue
		}
		w.appendPayload(p, false)
	}
	return nil
}

// appendPayload frames one gateway payload: a text frame, or a binary one
// carrying the next part of the compressed stream (or, with payload
// compression, a whole zlib stream).
func (w *writer) appendPayload(p []byte, zlibPayload bool) {
	switch {
	case w.enc != nil:
		var err error
		w.cbuf, err = w.enc.Encode(w.cbuf[:0], p)
		if err != nil {
			w.c.s.log.Error("compression failed", "err", err)
			w.c.kill()
			return
		}
		if w.split && len(w.cbuf) >= 2 {
			w.split = false
			half := len(w.cbuf) / 2
			w.buf = appendFrameHeader(w.buf, wsBinary, half)
			w.buf = append(w.buf, w.cbuf[:half]...)
			w.buf = appendFrameHeader(w.buf, wsBinary, len(w.cbuf)-half)
			w.buf = append(w.buf, w.cbuf[half:]...)
			return
		}
		w.buf = appendFrameHeader(w.buf, wsBinary, len(w.cbuf))
		w.buf = append(w.buf, w.cbuf...)
	case zlibPayload:
		w.zbuf.Reset()
		if w.zw == nil {
			w.zw = zlib.NewWriter(&w.zbuf)
		} else {
			w.zw.Reset(&w.zbuf)
		}
		w.zw.Write(p)
		w.zw.Close()
		w.buf = appendFrameHeader(w.buf, wsBinary, w.zbuf.Len())
		w.buf = append(w.buf, w.zbuf.Bytes()...)
	default:
		w.buf = appendFrameHeader(w.buf, wsText, len(p))
		w.buf = append(w.buf, p...)
	}
}

// pull takes the session's next dispatches from its ring, those below upTo
// when it is above 0, and renders them into the buffer. more reports that
// such dispatches remain; streamAt is when the next paced GUILD_CREATE is
// due.
func (w *writer) pull(now time.Time, upTo int64) (more bool, streamAt time.Time, err error) {
	c := w.c
	c.mu.Lock()
	ss, ph := c.sess, c.phase
	c.mu.Unlock()
	if ss == nil || ph != phaseActive {
		return false, time.Time{}, nil
	}
	ss.mu.Lock()
	if ss.conn != c || ss.ended {
		ss.mu.Unlock()
		return false, time.Time{}, nil
	}
	limit := ss.ring.next
	if upTo > 0 {
		limit = min(limit, upTo)
	} else {
		streamAt = ss.streamStep(c.s, now, streamBurst)
		limit = ss.ring.next
	}
	if ss.cursor < ss.ring.first {
		ss.mu.Unlock()
		return false, time.Time{}, errSlow
	}
	// Take dispatches up to a count and an estimated size.
	w.pulled = w.pulled[:0]
	budget := pullBytes
	s := ss.cursor
	for ; s < limit && len(w.pulled) < pullMax && budget > 0; s++ {
		e, _ := ss.ring.get(s)
		var raw *rawDispatch
		var chunk *chunkReq
		switch e.kind() {
		case kindRaw:
			raw = ss.raw[s]
			if raw != nil {
				budget -= len(raw.d)
			}
		case kindGuildCreate:
			budget -= 32 << 10
		case kindChunk:
			chunk = ss.chunks[uint32(e.id()>>24)]
			budget -= 256 << 10
		default:
			budget -= 2 << 10
		}
		w.pulled = append(w.pulled, pulled{e, s, raw, chunk})
	}
	n := s - ss.cursor
	ss.cursor += n
	more = ss.cursor < limit || upTo == 0 && ss.pendingStream() && streamAt.IsZero()
	w.view = ss.view
	ss.mu.Unlock()

	view := &w.view
	zlibOK := view.compress && w.enc == nil
	for _, p := range w.pulled {
		r := c.s.rend
		payloadZ := zlibOK && (p.e.kind() == kindGuildCreate || p.e.kind() == kindChunk || p.raw != nil && p.raw.t == "READY")
		if w.enc == nil && !payloadZ {
			var start int
			w.buf, start = frameStart(w.buf)
			w.buf = r.appendDispatch(w.buf, p.e, p.s, view, p.raw, p.chunk)
			w.buf = frameEnd(w.buf, start, wsText)
		} else {
			w.scratch = r.appendDispatch(w.scratch[:0], p.e, p.s, view, p.raw, p.chunk)
			w.appendPayload(w.scratch, payloadZ)
			if cap(w.scratch) > maxBufKeep {
				w.scratch = nil
			}
		}
	}
	return more, streamAt, nil
}

// send writes the round's buffer, or queues it behind a latency fault. It
// reports false when the connection is dead.
func (w *writer) send(now time.Time, closing bool) bool {
	c := w.c
	latency := c.connFaults(now).latency
	if (latency > 0 || len(w.delayed) > 0) && !closing {
		if len(w.buf) > 0 {
			w.delayed = append(w.delayed, delayedWrite{at: now.Add(latency), data: bytes.Clone(w.buf)})
		}
		for len(w.delayed) > 0 && !now.Before(w.delayed[0].at) {
			if !w.write(w.delayed[0].data) {
				return false
			}
			w.delayed[0].data = nil
			w.delayed = w.delayed[1:]
		}
		return true
	}
	for _, d := range w.delayed {
		if !w.write(d.data) {
			return false
		}
	}
	w.delayed = nil
	if len(w.buf) == 0 {
		return true
	}
	return w.write(w.buf)
}

// write puts b on the socket; a write blocked for WriteTimeout cuts the
// connection as a slow consumer.
func (w *writer) write(b []byte) bool {
	c := w.c
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if _, err := c.nc.Write(b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.cutSlow()
		} else {
			c.kill()
		}
		return false
	}
	return true
}
