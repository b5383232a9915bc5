package coordapi

import (
	"encoding/json"
	"time"
)

// Status is the coordinator's state as GET /v1/status shows it.
type Status struct {
	ShardCount     int               `json:"shard_count"`
	MaxConcurrency int               `json:"max_concurrency"`
	Identify       IdentifyQueue     `json:"identify"`
	Nodes          []NodeInfo        `json:"nodes"`
	Leases         []ShardLease      `json:"leases"`
	Shardman       []ShardmanSession `json:"shardman_sessions"`
	Glance         []GlanceShard     `json:"glance_shards"`
	// Reshard is the reshard under way or the last one; nil when there
	// was none.
	Reshard *Reshard `json:"reshard"`
	// Replica is the replica that answered; Leader the one that leads
	// (absent while none does). ViewAge is how old the leader's view a
	// follower answered from is, in milliseconds.
	Replica *ReplicaInfo `json:"replica,omitempty"`
	Leader  *ReplicaInfo `json:"leader,omitempty"`
	ViewAge int64        `json:"view_age_ms,omitempty"`
}

// NodeInfo is a node as the status API shows it.
type NodeInfo struct {
	ID       string    `json:"id"`
	Capacity int       `json:"capacity"`
	Draining bool      `json:"draining"`
	LastSeen time.Time `json:"last_seen"`
	Shards   []int     `json:"shards"`
}

// ShardLease is a lease as the status API shows it.
type ShardLease struct {
	Shard   int       `json:"shard"`
	Node    string    `json:"node"`
	Token   uint64    `json:"token"`
	Expires time.Time `json:"expires"`
}

// ShardmanSession is a Shardman worker's session; its ID, a secret of the
// worker, is not shown.
type ShardmanSession struct {
	Shard      int             `json:"shard_id"`
	Connected  time.Time       `json:"connected"`
	LastBeat   time.Time       `json:"last_beat"`
	GuildCount *int            `json:"guild_count"`
	Latency    *float64        `json:"latency"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

// GlanceShard is a shard glance clients report on.
type GlanceShard struct {
	Cluster    string     `json:"cluster"`
	ID         int        `json:"id"`
	State      int        `json:"state"`
	StateName  string     `json:"state_name"`
	LastHealth *time.Time `json:"last_health,omitempty"`
	Changed    time.Time  `json:"changed"`
}

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

// GuildAnswer is GET /v1/guilds/{guild_id}.
type GuildAnswer struct {
	GuildID    string `json:"guild_id"`
	Shard      int    `json:"shard"`
	ShardCount int    `json:"shard_count"`
	// Node is the gateway node holding the shard's lease, if any.
	Node string `json:"node,omitempty"`
	// Worker is "shardman" when a Shardman worker holds the shard.
	Worker string `json:"worker,omitempty"`
	// State is the shard's state as GET /v1/shards shows it.
	State string `json:"state"`
	// Guilds is how many guilds the shard holds, when reported.
	Guilds *int `json:"guilds,omitempty"`
}

// PlannerState is the shard-count planner's view, as GET /v1/planner shows
// it: what the reported guild counts call for.
type PlannerState struct {
	Current        int    `json:"current_shards"`
	Recommended    int    `json:"recommended_shards"`
	MaxConcurrency int    `json:"max_concurrency"`
	Reported       int    `json:"shards_reporting"`
	Guilds         int64  `json:"guilds"`
	Action         string `json:"action"`
	Target         int    `json:"target_shards"`
	Needed         int    `json:"needed_shards"`
	Reason         string `json:"reason"`
	Reshard        bool   `json:"reshard_advised"`
}
