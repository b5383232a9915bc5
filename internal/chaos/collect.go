package chaos

import (
	"github.com/gatehouse-dev/gatehouse/internal/discord"

	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// collector plays the bot's database: it receives what the consumer
// process handled (one JSON line per event, from gatehouse tail), applies
// the idempotency key the client exposes, and counts per simulator event.
type collector struct {
	mu          sync.Mutex
	keys        map[string]struct{} // idempotency keys handled
	ids         map[uint64]int32    // sim_event_id → distinct keys it arrived under
	redelivered int64               // lines whose key was handled before
	lastByShard map[int]time.Time   // arrival of the newest new event per shard
	maxGap      time.Duration       // longest wait between new events of one shard
	gapShard    int                 // the shard of maxGap
	measure     bool                // gaps count only while set
	// gapCount, when set, keys gaps by each event's shard in this count
	// (from its guild) instead of the shard that published it: across a
	// reshard, a gap is a new shard's guilds waiting.
	gapCount int
	firstAt  time.Time // the first line of process markGen after mark
	markAt   time.Time // set by mark
	markGen  int       // the consumer process mark waits for
	gen      int       // consumer processes started
	bad      int64     // lines that did not parse
	forged   int64     // lines carrying forgedMark: a publish the broker should have refused
}

// forgedMark is in every payload forged-publish tries to inject.
const forgedMark = "gatehouse-forged-event"

func newCollector() *collector {
	return &collector{keys: map[string]struct{}{}, ids: map[uint64]int32{}, lastByShard: map[int]time.Time{}}
}

// process returns the line handler of the next consumer process: lines
// still in the pipe of a killed one do not count as the new one's.
func (c *collector) process() func(string) {
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	return func(s string) { c.line(gen, s) }
}

// line takes one output line of consumer process gen.
func (c *collector) line(gen int, s string) {
	now := time.Now()
	b := []byte(s)
	key, ok1 := field(b, `"key":"`, '"')
	shardStr, ok2 := field(b, `{"shard":`, ',')
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Contains(b, []byte(forgedMark)) {
		c.forged++
	}
	if c.firstAt.IsZero() && !c.markAt.IsZero() && gen == c.markGen {
		c.firstAt = now
	}
	if !ok1 || !ok2 {
		c.bad++
		return
	}
	k := string(key)
	if _, seen := c.keys[k]; seen {
		c.redelivered++
		return
	}
	c.keys[k] = struct{}{}
	shard, _ := strconv.Atoi(string(shardStr))
	if c.gapCount > 0 {
		shard = 0 // DM-like events: shard 0 in every count
		if g, ok := field(b, `"guild_id":"`, '"'); ok {
			if id, err := strconv.ParseUint(string(g), 10, 64); err == nil {
				shard = discord.ShardForGuild(discord.Snowflake(id), c.gapCount)
			}
		}
	}
	if c.measure {
		if last, ok := c.lastByShard[shard]; ok && now.Sub(last) > c.maxGap {
			c.maxGap, c.gapShard = now.Sub(last), shard
		}
	}
	c.lastByShard[shard] = now
	if idb, ok := lastField(b, `"sim_event_id":`); ok {
		if id, err := strconv.ParseUint(string(idb), 10, 64); err == nil {
			c.ids[id]++
		}
	}
}

// field returns the bytes after the first prefix up to end.
func field(b []byte, prefix string, end byte) ([]byte, bool) {
	i := bytes.Index(b, []byte(prefix))
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(prefix):]
	j := bytes.IndexByte(rest, end)
	if j < 0 {
		return nil, false
	}
	return rest[:j], true
}

// lastField returns the number after the last prefix.
func lastField(b []byte, prefix string) ([]byte, bool) {
	i := bytes.LastIndex(b, []byte(prefix))
	if i < 0 {
		return nil, false
	}
	rest := b[i+len(prefix):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	return rest[:j], j > 0
}

// mark starts timing the first line of the next consumer process.
func (c *collector) mark() {
	c.mu.Lock()
	c.markAt, c.firstAt, c.markGen = time.Now(), time.Time{}, c.gen+1
	c.mu.Unlock()
}

// newSince reports whether an event not handled before arrived after t.
func (c *collector) newSince(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.lastByShard {
		if at.After(t) {
			return true
		}
	}
	return false
}

// sinceMark returns how long after mark the first line came (0: none yet).
func (c *collector) sinceMark() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.firstAt.IsZero() {
		return 0
	}
	return c.firstAt.Sub(c.markAt)
}

// gapsByShardOf keys gaps, from now on, by each event's shard in count
// (see gapCount).
func (c *collector) gapsByShardOf(count int) {
	c.mu.Lock()
	c.gapCount = count
	clear(c.lastByShard)
	c.mu.Unlock()
}

// startGaps starts measuring per-shard gaps.
func (c *collector) startGaps() {
	c.mu.Lock()
	c.measure = true
	for s := range c.lastByShard {
		c.lastByShard[s] = time.Now()
	}
	c.mu.Unlock()
}

// missing counts the ids up to upTo in want that were never handled.
func (c *collector) missing(want sim.DeliveredSet, upTo uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id := uint64(1); id <= upTo; id++ {
		if want.Has(id) && c.ids[id] == 0 {
			n++
		}
	}
	return n
}

// counts totals the events up to upTo that some session was due (want):
// produced, delivered (handled at least once), lost and duplicated (an
// event handled under more than one idempotency key: a copy the key
// cannot catch).
func (c *collector) counts(want sim.DeliveredSet, upTo uint64) (produced, delivered, lost, duplicated int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := uint64(1); id <= upTo; id++ {
		if !want.Has(id) {
			continue
		}
		produced++
		if n := c.ids[id]; n == 0 {
			lost++
		} else {
			delivered++
			duplicated += int64(n - 1)
		}
	}
	return produced, delivered, lost, duplicated
}
