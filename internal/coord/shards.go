package coord

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// Shards returns every shard's holder and last report.
func (c *Coordinator) Shards() coordapi.ShardList {
	if v, _, ok := c.followerView(); ok {
		return v.Shards
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := coordapi.ShardList{ShardCount: c.shardCount(), Shards: make([]coordapi.ShardInfo, c.shardCount())}
	for s := range out.Shards {
		out.Shards[s] = c.shardInfoLocked(now, s)
	}
	return out
}

func (c *Coordinator) shardInfoLocked(now time.Time, s int) coordapi.ShardInfo {
	info := coordapi.ShardInfo{Shard: s, State: "unassigned"}
	if l, ok := c.fleet.leases.Get(s); ok && l.Live(now) {
		info.Holder, info.Node, info.State = "node", l.Holder, "unknown"
		if r, ok := c.fleet.shardReport(now, s); ok {
			info.State, info.Guilds, info.Error, info.ReportedAt = r.State, r.Guilds, r.Error, r.at
			lat := r.LatencyMS
			info.LatencyMS = &lat
			info.ShardCounters, info.StateSince, info.EventsPerSec = r.ShardCounters, r.since, r.rate
		}
		return info
	}
	if sm := c.shardman.byShard[s]; sm != nil {
		info.Holder, info.State, info.Guilds, info.ReportedAt, info.StateSince = "shardman", "online", sm.guildCount, sm.lastBeat, sm.connected
		if sm.latency != nil {
			ms := *sm.latency * 1000 // Shardman reports seconds
			info.LatencyMS = &ms
		}
	}
	return info
}

// Shard returns one shard's holder and last report, or ErrBadRequest for a
// shard out of range.
func (c *Coordinator) Shard(shard int) (coordapi.ShardInfo, error) {
	if v, _, ok := c.followerView(); ok {
		if shard < 0 || shard >= len(v.Shards.Shards) {
			return coordapi.ShardInfo{}, fmt.Errorf("%w: shard %d is outside 0..%d", ErrBadRequest, shard, len(v.Shards.Shards)-1)
		}
		return v.Shards.Shards[shard], nil
	}
	if shard < 0 || shard >= c.shardCount() {
		return coordapi.ShardInfo{}, fmt.Errorf("%w: shard %d is outside 0..%d", ErrBadRequest, shard, c.shardCount()-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shardInfoLocked(time.Now(), shard), nil
}

func (c *Coordinator) shardGet(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(r.PathValue("shard"))
	if err != nil {
		return fmt.Errorf("%w: shard %q is not a number", ErrBadRequest, r.PathValue("shard"))
	}
	info, err := c.Shard(n)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (c *Coordinator) shardList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, c.Shards())
	return nil
}

// reportedGuilds returns the guild count each shard's runner last reported
// (nodes and Shardman workers). The caller holds c.mu.
func (c *Coordinator) reportedGuildsLocked(now time.Time) map[int]int {
	guilds := map[int]int{}
	for _, s := range c.shardman.byShard {
		if s != nil && s.guildCount != nil {
			guilds[s.shard] = *s.guildCount
		}
	}
	for s := range c.fleet.reports {
		if r, ok := c.fleet.shardReport(now, s); ok && r.Guilds != nil {
			guilds[s] = *r.Guilds
		}
	}
	return guilds
}
