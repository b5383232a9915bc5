package sim

import (
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// Bits of session.unavail: why the client believes a guild unavailable.
const (
	unavailStream = 1 << 0 // its GUILD_CREATE after READY has not been sequenced yet
	unavailOutage = 1 << 1 // it was (or is) in an outage; GUILD_CREATE follows recovery
)

// session is a gateway session: its dispatches, kept in a replay ring, and
// the connection it is attached to, if any.
//
// Locking: the fields above mu are set at creation and never change. conn
// and the attachment of a connection change only under the server mutex and
// mu. Everything else below mu is guarded by mu.
type session struct {
	id         string
	token      string
	shard, n   int
	shardGiven bool
	view       sessView
	route      *route
	stat       *shardStat

	// batch is the generator's scratch list of events for this session in
	// the current tick; only the generator goroutine touches it.
	batch []entry

	mu             sync.Mutex
	ring           *replayRing
	raw            map[int64]*rawDispatch // kindRaw entries by s
	conn           *conn                  // attached connection; nil when disconnected
	cursor         int64                  // next s to hand to conn's writer
	ended          bool
	disconnectedAt time.Time
	attachedAt     time.Time       // when conn was attached
	unavail        map[int32]uint8 // guild → unavail* bits
	stream         []int32         // guilds whose GUILD_CREATE follows READY
	streamPos      int
	streamMark     int64 // ring.next after the last GUILD_CREATE sequenced
	nextStreamAt   time.Time
	chunks         map[uint32]*chunkReq // member requests whose chunks are in the ring
	chunkSeq       uint32
}

// push sequences a dispatch and returns its s. The caller holds mu. It cuts
// the attached connection when it falls behind what the ring holds.
func (ss *session) push(e entry, raw *rawDispatch) int64 {
	oldest := ss.ring.first
	s, old, evicted := ss.ring.push(e)
	if raw != nil {
		if ss.raw == nil {
			ss.raw = map[int64]*rawDispatch{}
		}
		ss.raw[s] = raw
	}
	if evicted {
		switch old.kind() {
		case kindRaw:
			delete(ss.raw, oldest)
		case kindChunk:
			if req := ss.chunks[uint32(old.id()>>24)]; req != nil && int(old.id()&0xffffff) == req.chunks-1 {
				delete(ss.chunks, uint32(old.id()>>24))
			}
		}
	}
	if c := ss.conn; c != nil && ss.cursor < ss.ring.first {
		c.cutSlow()
	}
	return s
}

// pushRaw sequences a dispatch rendered once.
func (ss *session) pushRaw(t string, d []byte) int64 {
	return ss.push(makeEntry(kindRaw, 0, 0, 0, 0, 0), &rawDispatch{t: t, d: d})
}

// wants reports whether the session receives dispatch t.
func (ss *session) wants(t string) bool {
	need, ok := discord.IntentForEvent(t)
	return !ok || ss.view.intents.Has(need)
}

// wakeLocked wakes the attached connection's writer. The caller holds mu.
func (ss *session) wakeLocked() {
	if ss.conn != nil {
		ss.conn.wakeWriter()
	}
}

// pendingStream reports whether GUILD_CREATEs are still due after READY.
func (ss *session) pendingStream() bool { return ss.streamPos < len(ss.stream) }

// streamStep sequences the next GUILD_CREATEs of the READY stream, at most
// burst of them, when the connection has been handed the ones sequenced
// before (so the stream goes at the client's reading pace) and the pacing
// allows. Events sequenced meanwhile do not hold it back: waiting for an
// empty backlog starved the stream whenever events arrived faster than one
// writer round. It returns when the next one is due, or the zero time. The
// caller holds mu.
func (ss *session) streamStep(s *Server, now time.Time, burst int) (next time.Time) {
	if !ss.pendingStream() || ss.cursor < ss.streamMark {
		return time.Time{}
	}
	interval := s.cfg.GuildCreateInterval
	if interval > 0 && now.Before(ss.nextStreamAt) {
		return ss.nextStreamAt
	}
	sent := 0
	// Never push out what was not sent.
	if burst = min(burst, backlogRoom-int(ss.ring.next-ss.cursor)); burst <= 0 {
		return time.Time{}
	}
	for ss.streamPos < len(ss.stream) && sent < burst {
		gi := ss.stream[ss.streamPos]
		ss.streamPos++
		state := s.world.table.get(gi).state.Load()
		switch {
		case state&guildLeft != 0:
			delete(ss.unavail, gi)
			continue
		case state&guildOutage != 0:
			ss.unavail[gi] = unavailOutage
			continue
		}
		delete(ss.unavail, gi)
		if s.silenced(ss, "GUILD_CREATE") {
			continue
		}
		ss.push(makeEntry(kindGuildCreate, 0, 0, 0, gi, s.sinceEpoch(now)), nil)
		sent++
		if interval > 0 {
			ss.nextStreamAt = now.Add(interval)
			break
		}
	}
	ss.streamMark = ss.ring.next
	if !ss.pendingStream() {
		ss.stream = nil
		return time.Time{}
	}
	if interval > 0 {
		return ss.nextStreamAt
	}
	return time.Time{}
}

// guildUnavailable reports whether the client believes guild gi
// unavailable, so its events are held back. The caller holds mu.
func (ss *session) guildUnavailable(gi int32) bool {
	if len(ss.unavail) == 0 {
		return false
	}
	return ss.unavail[gi] != 0
}
