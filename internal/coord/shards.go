package coord

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ShardInfo is one shard as GET /v1/shards shows it: who runs it and what
// its runner last reported.
type ShardInfo struct {
	Shard int `json:"shard"`
	// Holder is "node" (a gateway node holds its lease), "shardman" (a
	// Shardman worker runs it) or "" (nobody).
	Holder string `json:"holder"`
	// Node is the holding node's ID.
	Node string `json:"node,omitempty"`
	// State is the runner's report: a node's session state (waiting,
	// connecting, identifying, resuming, ready, stopped…), "online" for a
	// beating Shardman worker, "unassigned" when nobody runs the shard, and
	// "unknown" when its holder has not reported it yet.
	State     string   `json:"state"`
	Guilds    *int     `json:"guilds,omitempty"`
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	// StateSince is when the shard entered State, as far as the
	// coordinator saw (reports come with heartbeats).
	StateSince time.Time `json:"state_since,omitzero"`
	// EventsPerSec is the dispatch rate between the node's last two
	// reports.
	EventsPerSec float64 `json:"events_per_sec"`
	// Counters from the node's report (zero for Shardman workers).
	ShardCounters
	Error string `json:"error,omitempty"`
	// ReportedAt is when the runner last reported (a node heartbeat, a
	// Shardman beat).
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// ShardList is GET /v1/shards.
type ShardList struct {
	ShardCount int         `json:"shard_count"`
	Shards     []ShardInfo `json:"shards"`
}

// Shards returns every shard's holder and last report.
func (c *Coordinator) Shards() ShardList {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := ShardList{ShardCount: c.shardCount(), Shards: make([]ShardInfo, c.shardCount())}
	for s := range out.Shards {
		out.Shards[s] = c.shardInfoLocked(now, s)
	}
	return out
}

func (c *Coordinator) shardInfoLocked(now time.Time, s int) ShardInfo {
	info := ShardInfo{Shard: s, State: "unassigned"}
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
func (c *Coordinator) Shard(shard int) (ShardInfo, error) {
	if shard < 0 || shard >= c.shardCount() {
		return ShardInfo{}, fmt.Errorf("%w: shard %d is outside 0..%d", ErrBadRequest, shard, c.shardCount()-1)
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
