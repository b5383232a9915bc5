package sim

// entry is one dispatch of a session, as kept in its replay ring. It does
// not hold the frame's bytes: a dispatch is re-rendered from its entry when a
// connection sends it, which keeps a full 20,000-entry ring at 320 KB and
// makes a replayed dispatch byte for byte the original. Layout:
//
//	a: kind (4 bits) | type (8) | variant (4) | id (48)   id: sim_event_id, or a kind-specific value
//	b: guild index (24 bits) | milliseconds since the world epoch (40)
type entry struct{ a, b uint64 }

// Entry kinds.
const (
	kindEvent       = 1 // a generated event; id is sim_event_id
	kindGuildCreate = 2 // GUILD_CREATE of the guild
	kindGuildDelete = 3 // GUILD_DELETE; variant 1 = unavailable (outage)
	kindRaw         = 4 // a frame stored in session.raw under its s
	kindChunk       = 5 // GUILD_MEMBERS_CHUNK; id is request << 24 | chunk index
)

// noGuild is the guild index of events without a guild (DM-like events).
const noGuild = 1<<24 - 1

func makeEntry(kind, typ, variant uint8, id uint64, guild int32, ms int64) entry {
	return entry{
		a: uint64(kind&0xf)<<60 | uint64(typ)<<52 | uint64(variant&0xf)<<48 | id&(1<<48-1),
		b: uint64(uint32(guild)&0xffffff)<<40 | uint64(ms)&(1<<40-1),
	}
}

func (e entry) kind() uint8    { return uint8(e.a >> 60) }
func (e entry) typ() uint8     { return uint8(e.a >> 52) }
func (e entry) variant() uint8 { return uint8(e.a>>48) & 0xf }
func (e entry) id() uint64     { return e.a & (1<<48 - 1) }
func (e entry) guild() int32   { return int32(e.b >> 40) }
func (e entry) ms() int64      { return int64(e.b & (1<<40 - 1)) }

// replayRing holds a session's most recent dispatches, whose sequence numbers
// are consecutive: the oldest held is first, the newest next-1. It grows on
// demand up to max entries, then overwrites the oldest. A RESUME may reach
// back only keep dispatches; the rest of the room is backlog for a
// connection that has not been sent everything yet.
type replayRing struct {
	buf   []entry
	head  int // index of the entry with s == first
	n     int
	max   int
	keep  int
	first int64 // s of the oldest entry held
	next  int64 // s the next pushed entry gets
}

// backlogRoom is how many dispatches beyond the replay buffer a connection
// may lag behind its session before it is cut as a slow consumer.
const backlogRoom = 4096

func newReplayRing(keep int) *replayRing {
	return &replayRing{max: keep + backlogRoom, keep: keep, first: 1, next: 1}
}

// push appends e as dispatch number next and returns that s, and the entry
// it pushed out (evicted reports whether one was).
func (r *replayRing) push(e entry) (s int64, old entry, evicted bool) {
	s = r.next
	r.next++
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
		return s, entry{}, false
	}
	if len(r.buf) < r.max {
		grown := make([]entry, min(max(2*len(r.buf), 64), r.max))
		for i := range r.n {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
		r.buf[r.n] = e
		r.n++
		return s, entry{}, false
	}
	old = r.buf[r.head]
	r.buf[r.head] = e
	r.head = (r.head + 1) % len(r.buf)
	r.first++
	return s, old, true
}

// last is the s of the newest dispatch, 0 when there is none.
func (r *replayRing) last() int64 { return r.next - 1 }

// get returns the entry with sequence number s, if it is held.
func (r *replayRing) get(s int64) (entry, bool) {
	if s < r.first || s >= r.next {
		return entry{}, false
	}
	return r.buf[(r.head+int(s-r.first))%len(r.buf)], true
}

// holdsAfter reports whether every dispatch after s may be replayed, so a
// client that has seen up to s can resume: they are held and at most keep
// of them.
func (r *replayRing) holdsAfter(s int64) bool {
	return s+1 >= r.first && r.last()-s <= int64(r.keep) && s <= r.last()
}
