package client

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// Event is one Discord dispatch (op 0) as a gateway node received it.
//
// An Event and its byte slices are valid only until the handler returns: the
// client reuses them for the next event. Copy what you keep (the Type,
// Session and numbers are plain values and may be kept as they are).
type Event struct {
	// Type is the dispatch's t, e.g. "MESSAGE_CREATE"; "" when t was null.
	Type string
	// Seq is the dispatch's s: its sequence number in the shard session.
	Seq int64
	// Shard and NumShards identify the session that received the event.
	Shard, NumShards int
	// Session is the Discord session ID the event was received on.
	Session string
	// Lease is the fencing token under which the gateway node held the
	// shard when it published the event; 0 without a coordinator. Within
	// one shard it only grows as the shard moves between nodes.
	Lease uint64
	// GuildID is d.guild_id, or d.id for GUILD_CREATE, GUILD_UPDATE and
	// GUILD_DELETE; 0 when the event has none.
	GuildID uint64
	// Raw is the whole gateway payload, {"t":…,"s":…,"op":0,"d":…}, byte
	// for byte as Discord sent it.
	Raw []byte
	// Data is the raw JSON value of d, a subslice of Raw.
	Data []byte
	// Redelivered reports that this event may have reached a handler
	// before: the server delivered its batch again, or the handler failed
	// on it and it is being retried.
	Redelivered bool
}

// Key returns "<shard>:<session>:<seq>", which identifies one Discord
// dispatch: it is the same on every redelivery, and different for every
// other event. Use it to make handlers idempotent.
func (e *Event) Key() string {
	return strconv.Itoa(e.Shard) + ":" + e.Session + ":" + strconv.FormatInt(e.Seq, 10)
}

// errBadMeta means a batch's subject or headers do not parse. It wraps
// broker.ErrBadBatch.
var errBadMeta = fmt.Errorf("%w: bad subject or headers", broker.ErrBadBatch)

// batchMeta is what the subject and headers of one batch say.
type batchMeta struct {
	shard     int    // from the subject, equal to the header's
	partition int    // the subject's partition token
	typ       string // the subject's event type token
	numShards int
	session   string
	lease     uint64
}

// parseSubject splits <evPrefix><shard>.<partition>.<type>, where evPrefix
// is "<prefix>.ev.".
func parseSubject(subject, evPrefix string) (shard, partition int, typ string, ok bool) {
	rest, ok := strings.CutPrefix(subject, evPrefix)
	if !ok {
		return 0, 0, "", false
	}
	s, rest, ok1 := strings.Cut(rest, ".")
	p, typ, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || typ == "" || strings.Contains(typ, ".") {
		return 0, 0, "", false
	}
	shard, ok1 = atoiNonNeg(s)
	partition, ok2 = atoiNonNeg(p)
	return shard, partition, typ, ok1 && ok2
}

// atoiNonNeg parses a non-negative decimal int of at most 9 digits, which is
// more than any shard or partition count Discord or Gatehouse allows.
func atoiNonNeg(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseBatchMeta reads a batch's subject and its shard and session headers.
func parseBatchMeta(subject, evPrefix, shardHeader, session string) (batchMeta, error) {
	var m batchMeta
	var ok bool
	m.shard, m.partition, m.typ, ok = parseSubject(subject, evPrefix)
	if !ok {
		return batchMeta{}, errBadMeta
	}
	s, n, ok := strings.Cut(shardHeader, "/")
	if !ok {
		return batchMeta{}, errBadMeta
	}
	shard, ok1 := atoiNonNeg(s)
	numShards, ok2 := atoiNonNeg(n)
	if !ok1 || !ok2 || shard != m.shard || shard >= numShards {
		return batchMeta{}, errBadMeta
	}
	m.numShards = numShards
	m.session = session
	return m, nil
}

// eachEvent decodes the dispatches of a batch body into ev, one after the
// other, and calls fn with each. Payloads that are not dispatches are
// skipped; bad counts those that do not parse, which are skipped too. It
// returns an error wrapping broker.ErrBadBatch for a body that does not
// parse, or the first error fn returns.
func eachEvent(body []byte, m *batchMeta, ev *Event, fn func(ev *Event) error) (bad int, err error) {
	var lastT []byte // the name of ev.Type, to reuse the string for a batch
	err = broker.Records(body, func(p []byte) error {
		h, err := discord.ScanHeader(p)
		if err != nil {
			bad++
			return nil
		}
		if !h.IsDispatch() {
			return nil
		}
		if lastT == nil || string(h.T) != string(lastT) {
			ev.Type = string(h.T)
			lastT = h.T
			if lastT == nil {
				lastT = []byte{}
			}
		}
		ev.Seq = h.S
		ev.Shard = m.shard
		ev.NumShards = m.numShards
		ev.Session = m.session
		ev.Lease = m.lease
		ev.GuildID = uint64(h.GuildID)
		ev.Raw = p[:len(p):len(p)]
		ev.Data = h.D
		return fn(ev)
	})
	return bad, err
}
