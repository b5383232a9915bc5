package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// Fault kinds.
const (
	FaultReconnect        = "reconnect"         // op 7; with Delay, a close with Code (default 4000) that long after
	FaultInvalidSession   = "invalid_session"   // op 9 with d = Resumable; when false the session is gone
	FaultClose            = "close"             // a close frame with Code (default 4000)
	FaultZombie           = "zombie"            // no ACKs and nothing sent, socket open, for Duration
	FaultDrop             = "drop"              // cut TCP without a close frame
	FaultDelayAcks        = "delay_acks"        // ACKs sent Delay late, for Duration
	FaultGuildOutage      = "guild_outage"      // GUILD_DELETE unavailable, GUILD_CREATE after Duration (default 5s)
	FaultSplitPayload     = "split_payload"     // the next zlib-stream payload split over two messages
	FaultSilence          = "silence"           // EventType not sent on the shards, for Duration
	FaultLatency          = "latency"           // every outbound frame Delay late, for Duration
	FaultRequestHeartbeat = "request_heartbeat" // op 1 now
	FaultOutage           = "outage"            // connections cut, and RESUME/IDENTIFY closed with Code (default 4000), for Duration
)

var faultKinds = []string{FaultReconnect, FaultInvalidSession, FaultClose, FaultZombie, FaultDrop, FaultDelayAcks,
	FaultGuildOutage, FaultSplitPayload, FaultSilence, FaultLatency, FaultRequestHeartbeat, FaultOutage}

// Fault is a fault to inject (POST /sim/faults takes it as JSON).
//
// Connection faults (reconnect, invalid_session, close, zombie, drop,
// split_payload, request_heartbeat) act on the matching connections open
// now. Shard conditions (delay_acks, latency, silence) hold for Duration (0:
// until cleared) on the matching shards, connections opened later included.
// guild_outage makes Guilds guilds of each matching shard unavailable.
type Fault struct {
	Kind      string   `json:"kind"`
	Shards    []int    `json:"shards,omitempty"`     // shard ids; empty = all
	NumShards int      `json:"num_shards,omitempty"` // only sessions of this shard count; 0 = any
	Code      int      `json:"code,omitempty"`       // close (and reconnect with Delay): the close code; default 4000
	Resumable bool     `json:"resumable,omitempty"`  // invalid_session: op 9's d
	Duration  Duration `json:"duration,omitempty"`   // zombie, delay_acks, latency, silence, guild_outage; 0 = until cleared (guild_outage: 5s)
	Delay     Duration `json:"delay,omitempty"`      // delay_acks, latency: the delay; reconnect: close this long after op 7 (0 = leave open)
	EventType string   `json:"event_type,omitempty"` // silence: the dispatch type not to send
	Guilds    int      `json:"guilds,omitempty"`     // guild_outage: guilds per shard; default 1
	// UntilResume limits a silence to the connections open now: a session
	// that reconnects (by RESUME or IDENTIFY) gets the type again, as when
	// Discord's side of one connection breaks.
	UntilResume bool `json:"until_resume,omitempty"`
}

// FaultResult says what a fault hit: the connections it applied to (for
// guild_outage, the shards).
type FaultResult struct {
	Applied int `json:"applied"`
}

// ActiveFault is a fault that still holds (GET /sim/faults).
type ActiveFault struct {
	Fault
	ID      int        `json:"id"`
	Applied int        `json:"applied"`
	Started time.Time  `json:"started"`
	Until   *time.Time `json:"until,omitempty"` // nil: until cleared
}

// Duration is a time.Duration that marshals as a Go duration string
// ("1.5s") and unmarshals from one or from a number of milliseconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("bad duration %q: want a Go duration such as \"1.5s\" or a number of milliseconds", s)
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("bad duration %s: want a Go duration such as \"1.5s\" or a number of milliseconds", b)
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// ErrBadFault is wrapped by the errors ParseFault and Validate return.
var ErrBadFault = errors.New("sim: invalid fault")

func badFault(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadFault, fmt.Sprintf(format, args...))
}

// ParseFault decodes a fault from JSON, rejecting unknown fields, and
// validates it.
func ParseFault(data []byte) (Fault, error) {
	var f Fault
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, badFault("%v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return f, badFault("trailing data after the JSON object")
	}
	return f, f.Validate()
}

// Validate checks a fault and says what is wrong.
func (f Fault) Validate() error {
	if !slices.Contains(faultKinds, f.Kind) {
		return badFault("kind %q is unknown; want one of %s", f.Kind, strings.Join(faultKinds, ", "))
	}
	if f.NumShards < 0 {
		return badFault("num_shards is %d, want >= 0", f.NumShards)
	}
	for _, k := range f.Shards {
		if k < 0 || f.NumShards > 0 && k >= f.NumShards {
			return badFault("shard %d is out of range (num_shards %d)", k, f.NumShards)
		}
	}
	if f.Duration < 0 || f.Delay < 0 {
		return badFault("duration and delay must not be negative")
	}
	if f.Guilds < 0 {
		return badFault("guilds is %d, want >= 0", f.Guilds)
	}
	if f.UntilResume && f.Kind != FaultSilence {
		return badFault("until_resume applies to silence only, not %s", f.Kind)
	}
	if f.Code != 0 && !validCloseCode(f.Code) {
		return badFault("code %d is not a close code a server may send (1000-1003, 1007-1014, 3000-4999)", f.Code)
	}
	switch f.Kind {
	case FaultDelayAcks, FaultLatency:
		if f.Delay <= 0 {
			return badFault("%s needs a positive delay", f.Kind)
		}
	case FaultSilence:
		if f.EventType == "" || strings.TrimLeft(f.EventType, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
			return badFault("silence needs event_type, a dispatch name such as MESSAGE_CREATE (got %q)", f.EventType)
		}
	}
	return nil
}

// shardFault is a shard condition in force.
type shardFault struct {
	kind      string
	code      int   // outage: the close code
	shards    []int // empty: all
	numShards int
	eventType string
	delay     time.Duration
	until     time.Time // zero: until cleared
	before    time.Time // silence with until_resume: only connections attached before this
}

func (f *shardFault) active(now time.Time) bool { return f.until.IsZero() || now.Before(f.until) }

// matches reports whether the fault covers shard of n (shard -1: a
// connection without a session, covered only by a fault on all shards).
func (f *shardFault) matches(shard, n int) bool {
	if shard < 0 {
		return len(f.shards) == 0 && f.numShards == 0
	}
	if f.numShards > 0 && n != f.numShards {
		return false
	}
	return len(f.shards) == 0 || slices.Contains(f.shards, shard)
}

// faultSet is an immutable snapshot of the shard conditions.
type faultSet struct{ items []shardFault }

// activeFault is an applied fault with a duration.
type activeFault struct {
	id      int
	f       Fault
	applied int
	started time.Time
	until   time.Time
}

// connFaults are the shard conditions covering one connection now.
type connFaults struct {
	latency, delayAcks time.Duration
}

func (c *conn) connFaults(now time.Time) connFaults {
	fs := c.s.faultSet.Load()
	if fs == nil {
		return connFaults{}
	}
	shard, n := c.shardOf()
	var out connFaults
	for i := range fs.items {
		f := &fs.items[i]
		if !f.active(now) || !f.matches(shard, n) {
			continue
		}
		switch f.kind {
		case FaultLatency:
			out.latency = max(out.latency, f.delay)
		case FaultDelayAcks:
			out.delayAcks = max(out.delayAcks, f.delay)
		}
	}
	return out
}

// outage returns the close code of an outage fault covering shard/n now,
// or 0.
func (s *Server) outage(shard, n int, now time.Time) int {
	fs := s.faultSet.Load()
	if fs == nil {
		return 0
	}
	for i := range fs.items {
		f := &fs.items[i]
		if f.kind == FaultOutage && f.active(now) && f.matches(shard, n) {
			if f.code != 0 {
				return f.code
			}
			return int(discord.CloseUnknownError)
		}
	}
	return 0
}

// shardOf returns the connection's session's shard, or -1.
func (c *conn) shardOf() (shard, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return -1, 0
	}
	return c.sess.shard, c.sess.n
}

// silenced reports whether a silence fault covers dispatch t of session ss.
func (s *Server) silenced(ss *session, t string) bool {
	fs := s.faultSet.Load()
	if fs == nil {
		return false
	}
	now := time.Time{}
	for i := range fs.items {
		f := &fs.items[i]
		if f.kind != FaultSilence || f.eventType != t || !f.matches(ss.shard, ss.n) {
			continue
		}
		if !f.before.IsZero() && !ss.attachedAt.Before(f.before) {
			continue // the session reconnected since
		}
		if now.IsZero() {
			now = time.Now()
		}
		if f.active(now) {
			return true
		}
	}
	return false
}

// outage is a guild made unavailable by a fault.
type outage struct {
	guild int32
	until time.Time
}

// ApplyFault injects f. It returns how many connections (for guild_outage,
// shards) it applied to.
func (s *Server) ApplyFault(f Fault) (FaultResult, error) {
	if err := f.Validate(); err != nil {
		return FaultResult{}, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return FaultResult{}, ErrClosed
	}
	match := &shardFault{kind: f.Kind, shards: f.Shards, numShards: f.NumShards, eventType: f.EventType, delay: time.Duration(f.Delay)}
	var conns []*conn
	for c := range s.conns {
		if c.currentPhase() == phaseClosing || c.killed.Load() {
			continue
		}
		if shard, n := c.shardOf(); match.matches(shard, n) {
			conns = append(conns, c)
		}
	}
	slices.SortFunc(conns, func(a, b *conn) int { return strings.Compare(a.nc.RemoteAddr().String(), b.nc.RemoteAddr().String()) })
	code := f.Code
	if code == 0 {
		code = int(discord.CloseUnknownError)
	}
	applied := 0
	switch f.Kind {
	case FaultReconnect:
		for _, c := range conns {
			c.enqueue(ctlPayload, reconnectFrame)
			if f.Delay > 0 {
				c.addTask(task{at: now.Add(time.Duration(f.Delay)), kind: taskClose, code: code})
			}
		}
		applied = len(conns)
	case FaultInvalidSession:
		for _, c := range conns {
			ss := s.detachLocked(c, now)
			if ss == nil {
				continue
			}
			if !f.Resumable {
				s.endSessionLocked(ss)
			}
			c.enqueue(ctlPayload, invalidSessionFrame(f.Resumable))
			applied++
		}
	case FaultClose:
		for _, c := range conns {
			c.closeWith(code, discord.CloseCode(code).Reason(), false)
		}
		applied = len(conns)
	case FaultZombie:
		var until time.Time
		if f.Duration > 0 {
			until = now.Add(time.Duration(f.Duration))
		}
		for _, c := range conns {
			c.out.mu.Lock()
			c.out.zombie, c.out.zombieUntil = true, until
			c.out.mu.Unlock()
			c.wakeWriter()
		}
		applied = len(conns)
		s.addActiveLocked(f, applied, now, until)
	case FaultDrop:
		for _, c := range conns {
			s.ctr.closes.Add(1)
			c.kill()
		}
		applied = len(conns)
	case FaultSplitPayload:
		for _, c := range conns {
			if c.comp != codec.ZlibStream {
				continue
			}
			c.out.mu.Lock()
			c.out.split = true
			c.out.mu.Unlock()
			applied++
		}
	case FaultRequestHeartbeat:
		for _, c := range conns {
			c.addTask(task{at: now, kind: taskHeartbeatRequest})
		}
		applied = len(conns)
	case FaultOutage:
		// The gateway is down for these shards: the connections go without
		// a close frame and new ones are closed at RESUME or IDENTIFY
		// until it is over. Sessions stay resumable (within SessionTTL).
		for _, c := range conns {
			s.ctr.closes.Add(1)
			c.kill()
		}
		applied = len(conns)
		fallthrough
	case FaultDelayAcks, FaultLatency, FaultSilence:
		if f.Kind != FaultOutage {
			applied = len(conns)
		}
		if f.Kind == FaultSilence {
			applied = 0
			for _, ss := range s.sessions {
				if match.matches(ss.shard, ss.n) {
					applied++
				}
			}
		}
		if f.Duration > 0 {
			match.until = now.Add(time.Duration(f.Duration))
		}
		s.addActiveLocked(f, applied, now, match.until)
		s.rebuildFaultSetLocked(now)
		for _, c := range conns {
			c.wakeWriter()
		}
	case FaultGuildOutage:
		dur := time.Duration(f.Duration)
		if dur == 0 {
			dur = 5 * time.Second
		}
		per := max(f.Guilds, 1)
		until := now.Add(dur)
		for _, r := range s.world.route {
			for k, list := range r.sessions {
				if len(list) == 0 || !match.matches(k, r.n) {
					continue
				}
				hit := 0
				for _, gi := range r.shards[k] {
					if hit == per {
						break
					}
					if s.world.table.get(gi).state.Load() != 0 {
						continue
					}
					s.startOutageLocked(gi, until, now)
					hit++
				}
				if hit > 0 {
					applied++
				}
			}
		}
		s.addActiveLocked(f, applied, now, until)
		s.wakeLoop()
	}
	s.log.Info("fault applied", "kind", f.Kind, "applied", applied)
	return FaultResult{Applied: applied}, nil
}

func (s *Server) addActiveLocked(f Fault, applied int, now, until time.Time) {
	s.faultSeq++
	s.faults = append(s.faults, &activeFault{id: s.faultSeq, f: f, applied: applied, started: now, until: until})
}

// rebuildFaultSetLocked publishes the shard conditions still in force.
func (s *Server) rebuildFaultSetLocked(now time.Time) {
	kept := s.faults[:0]
	var items []shardFault
	for _, af := range s.faults {
		if !af.until.IsZero() && !now.Before(af.until) {
			continue
		}
		kept = append(kept, af)
		switch af.f.Kind {
		case FaultDelayAcks, FaultLatency, FaultSilence, FaultOutage:
			items = append(items, shardFault{kind: af.f.Kind, shards: af.f.Shards, numShards: af.f.NumShards,
				eventType: af.f.EventType, delay: time.Duration(af.f.Delay), until: af.until, code: af.f.Code})
			if af.f.UntilResume {
				items[len(items)-1].before = af.started
			}
		}
	}
	clear(s.faults[len(kept):])
	s.faults = kept
	if len(items) == 0 {
		s.faultSet.Store(nil)
		return
	}
	s.faultSet.Store(&faultSet{items: items})
}

// forEachHolderLocked calls fn for every live session holding guild gi, with
// the session locked.
func (s *Server) forEachHolderLocked(gi int32, fn func(ss *session)) {
	id := s.world.table.get(gi).id
	for _, r := range s.world.route {
		if r.live == 0 {
			continue
		}
		for _, ss := range r.sessions[discord.ShardForGuild(id, r.n)] {
			ss.mu.Lock()
			if !ss.ended {
				fn(ss)
				ss.wakeLocked()
			}
			ss.mu.Unlock()
		}
	}
}

// startOutageLocked makes guild gi unavailable until until: sessions that
// hold it get GUILD_DELETE with unavailable:true.
func (s *Server) startOutageLocked(gi int32, until, now time.Time) {
	s.world.table.get(gi).state.Or(guildOutage)
	s.outages = append(s.outages, outage{guild: gi, until: until})
	ms := s.sinceEpoch(now)
	s.forEachHolderLocked(gi, func(ss *session) {
		if !ss.wants("GUILD_DELETE") || ss.unavail[gi]&unavailStream != 0 {
			return // no GUILDS intent, or still waiting for its GUILD_CREATE
		}
		if ss.unavail == nil {
			ss.unavail = map[int32]uint8{}
		}
		ss.unavail[gi] = unavailOutage
		if !s.silenced(ss, "GUILD_DELETE") {
			ss.push(makeEntry(kindGuildDelete, 0, 1, 0, gi, ms), nil)
		}
	})
}

// endOutageLocked makes guild gi available again: sessions that were told
// it is unavailable get its GUILD_CREATE.
func (s *Server) endOutageLocked(gi int32, now time.Time) {
	g := s.world.table.get(gi)
	g.state.And(^uint32(guildOutage))
	if g.state.Load()&guildLeft != 0 {
		return
	}
	ms := s.sinceEpoch(now)
	s.forEachHolderLocked(gi, func(ss *session) {
		switch ss.unavail[gi] {
		case unavailOutage:
			delete(ss.unavail, gi)
			if !s.silenced(ss, "GUILD_CREATE") {
				ss.push(makeEntry(kindGuildCreate, 0, 0, 0, gi, ms), nil)
			}
		case unavailOutage | unavailStream:
			ss.unavail[gi] = unavailStream
		}
	})
}

// ClearFaults ends every fault in force: zombies wake up, shard conditions
// stop and unavailable guilds come back.
func (s *Server) ClearFaults() {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.out.mu.Lock()
		c.out.zombie, c.out.split = false, false
		c.out.mu.Unlock()
		c.wakeWriter()
	}
	for _, o := range s.outages {
		s.endOutageLocked(o.guild, now)
	}
	s.outages = nil
	clear(s.faults)
	s.faults = s.faults[:0]
	s.faultSet.Store(nil)
	s.log.Info("faults cleared")
}

// Faults returns the faults in force.
func (s *Server) Faults() []ActiveFault {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []ActiveFault{}
	for _, af := range s.faults {
		if !af.until.IsZero() && !now.Before(af.until) {
			continue
		}
		a := ActiveFault{Fault: af.f, ID: af.id, Applied: af.applied, Started: af.started}
		if !af.until.IsZero() {
			u := af.until
			a.Until = &u
		}
		out = append(out, a)
	}
	return out
}
