package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// dedupHashLen is how many bytes of SHA-256 a content ID keeps: 120 bits,
// far from any collision among the events of one overlap.
const dedupHashLen = 15

// dedupState is a shard's part in a reshard's overlap.
type dedupState struct {
	newCount int
	// seen counts the occurrences of each content since the shard entered
	// ModeDedup.
	seen map[[dedupHashLen]byte]uint32
	// In ModeHandover: feeds are the new shards that hold guilds of this
	// one, took those that took over (the broker already had one of their
	// events when this shard published it).
	feeds []int
	took  map[int]bool
}

// feeds returns the shards of newCount that hold guilds of shard of
// count: a guild's shards in both counts agree modulo their greatest
// common divisor.
func feeds(shard, count, newCount int) []int {
	a, b := count, newCount
	for b != 0 {
		a, b = b, a%b
	}
	var out []int
	for j := shard % a; j < newCount; j += a {
		out = append(out, j)
	}
	return out
}

// setMode switches the shard's publish mode. Entering ModeDedup starts the
// occurrence counts afresh; ModeHandover keeps them; leaving both forgets
// them.
func (r *shardRunner) setMode(m PublishMode, newCount int) {
	r.dedupMu.Lock()
	defer r.dedupMu.Unlock()
	old := PublishMode(r.mode.Load())
	if old == m && r.dedup.newCount == newCount {
		return
	}
	r.dedup.newCount = newCount
	switch {
	case m == ModeDedup && old != ModeHandover, m == ModeHandover && old != ModeDedup:
		r.dedup.seen = map[[dedupHashLen]byte]uint32{}
	case m != ModeDedup && m != ModeHandover:
		r.dedup.seen = nil
	}
	if m == ModeHandover && newCount > 0 {
		r.dedup.feeds, r.dedup.took = feeds(r.id, r.numShards, newCount), map[int]bool{}
	} else {
		r.dedup.feeds, r.dedup.took = nil, nil
	}
	r.mode.Store(int32(m))
}

// dedupID is the deduplication ID of a dispatch in ModeDedup, the same for
// both shard generations of a reshard that receive it:
// "x:" + its shard in the new count + ":" + the hash of its type and data +
// ":" + which occurrence of that content this shard has seen since
// entering the mode. The sequence number, which differs between the two
// sessions, is left out; the data carries the guild (and Discord's IDs and
// timestamps), so two events with the same ID are the same event, except
// for byte-identical repeats within the overlap, which the occurrence
// count tells apart. ok is false in ModeHandover once the event's new
// shard took over: the event is not to be published.
func (r *shardRunner) dedupID(h discord.Header) (id string, ok bool) {
	d := sha256.New()
	d.Write(h.T)
	d.Write([]byte{0})
	d.Write(h.D)
	var sum [sha256.Size]byte
	d.Sum(sum[:0])
	var k [dedupHashLen]byte
	copy(k[:], sum[:])

	r.dedupMu.Lock()
	target := 0
	if r.dedup.newCount > 0 {
		target = discord.ShardForGuild(h.GuildID, r.dedup.newCount)
	}
	if r.dedup.took[target] {
		r.dedupMu.Unlock()
		return "", false
	}
	var n uint32
	if r.dedup.seen != nil {
		r.dedup.seen[k]++
		n = r.dedup.seen[k]
	}
	r.dedupMu.Unlock()
	buf := make([]byte, 0, 2+11+base64.RawURLEncoding.EncodedLen(dedupHashLen)+11)
	buf = append(buf, "x:"...)
	buf = strconv.AppendInt(buf, int64(target), 10)
	buf = append(buf, ':')
	buf = base64.RawURLEncoding.AppendEncode(buf, k[:])
	buf = append(buf, ':')
	buf = strconv.AppendUint(buf, uint64(n), 10)
	return string(buf), true
}

// tookOver notes that the broker already held the event published under
// content ID id: in ModeHandover, its new shard took over.
func (r *shardRunner) tookOver(id string) {
	rest, ok := strings.CutPrefix(id, "x:")
	if !ok {
		return
	}
	t, _, _ := strings.Cut(rest, ":")
	target, err := strconv.Atoi(t)
	if err != nil {
		return
	}
	r.dedupMu.Lock()
	if r.dedup.took != nil && PublishMode(r.mode.Load()) == ModeHandover {
		r.dedup.took[target] = true
	}
	r.dedupMu.Unlock()
}

// handedOver reports whether the shard is in ModeHandover and every new
// shard it feeds took over. A new shard that receives no event of this
// one's guilds never does: the coordinator's handover timeout covers it.
func (r *shardRunner) handedOver() bool {
	r.dedupMu.Lock()
	defer r.dedupMu.Unlock()
	if PublishMode(r.mode.Load()) != ModeHandover || r.dedup.feeds == nil {
		return false
	}
	for _, t := range r.dedup.feeds {
		if !r.dedup.took[t] {
			return false
		}
	}
	return true
}

// hold advances the published position without publishing (ModeHold): a
// RESUME then asks only for what came after.
func (r *shardRunner) hold(session string, seq int64) {
	r.pubMu.Lock()
	r.advanceLocked(session, seq)
	r.pubMu.Unlock()
}

// advanceLocked moves the published position to seq of session (a new
// session, or further in the same one); the caller holds pubMu.
func (r *shardRunner) advanceLocked(session string, seq int64) {
	if session != r.pubSession || seq > r.pubSeq {
		r.pubSession, r.pubSeq = session, seq
	}
}
