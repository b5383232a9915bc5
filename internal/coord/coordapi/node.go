package coordapi

import (
	"strings"
	"time"
)

// HeldShard is a shard a node runs, with the token of its lease.
type HeldShard struct {
	Shard int    `json:"shard"`
	Token uint64 `json:"token"`
}

// NodeBeat is a node's heartbeat: POST /v1/nodes/{node}/heartbeat.
type NodeBeat struct {
	// Capacity is the most shards the node will run; 0 means no limit.
	Capacity int `json:"capacity"`
	// Draining asks for no new shards and for the held ones to move away.
	Draining bool `json:"draining"`
	GenBeat
	// Next is the node's part in a reshard's new generation.
	Next *GenBeat `json:"next,omitempty"`
	// Epoch is the epoch of the node's liveness record, when it keeps
	// one (see NodeOrders.Liveness).
	Epoch uint64 `json:"epoch,omitempty"`
	// Budget is the session-start budget the node last read from
	// Discord, for a coordinator that has no bot token to read it itself.
	Budget *SessionBudget `json:"budget,omitempty"`
}

// SessionBudget is Discord's session_start_limit as a node read it,
// AgeMS milliseconds before the heartbeat (so no clocks are compared).
type SessionBudget struct {
	Total        int   `json:"total"`
	Remaining    int   `json:"remaining"`
	ResetAfterMS int64 `json:"reset_after_ms"`
	AgeMS        int64 `json:"age_ms"`
}

// GenBeat is what a heartbeat says about the shards of one count.
type GenBeat struct {
	// ShardCount is the count of these shards; 0 means the coordinator's.
	ShardCount int `json:"shard_count"`
	// Shards are the shards the node runs, with their lease tokens.
	Shards []HeldShard `json:"shards"`
	// Released are shards the node stopped (after a revoke) and saved.
	Released []HeldShard `json:"released"`
	// Reports describe the shards the node runs (optional).
	Reports []ShardReport `json:"reports,omitempty"`
}

// ShardReport is what a node says about one shard it runs, with each
// heartbeat.
type ShardReport struct {
	Shard int `json:"shard"`
	// NumShards is the shard's count (0: the section's).
	NumShards int `json:"num_shards,omitempty"`
	// State is the session's state: waiting (for its identify turn),
	// connecting, identifying, resuming, ready, stopped…
	State string `json:"state"`
	// Mode is the shard's publish mode during a reshard (hold, dedup,
	// handover; empty: publish); HandedOver says, in handover, that every
	// new shard it feeds took over.
	Mode       string `json:"mode,omitempty"`
	HandedOver bool   `json:"handed_over,omitempty"`
	// Guilds is how many guilds the session holds; absent until known.
	// GuildsPending is how many of them have not arrived yet.
	Guilds        *int    `json:"guilds,omitempty"`
	GuildsPending int     `json:"guilds_pending,omitempty"`
	LatencyMS     float64 `json:"latency_ms"`
	ShardCounters
	Error string `json:"error,omitempty"`
}

// MaxReportError is the longest Error a report may carry.
const MaxReportError = 1024

// ShardCounters are a node's counters on one shard, in its reports and in
// GET /v1/shards: Events counts the dispatches received since the shard
// started on the node; Identifies, Resumes, Reconnects and Zombies its
// sessions; ReadyAt is when the session last became ready.
type ShardCounters struct {
	Events     int64     `json:"events"`
	Identifies int64     `json:"identifies"`
	Resumes    int64     `json:"resumes"`
	Reconnects int64     `json:"reconnects"`
	Zombies    int64     `json:"zombies"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
}

// NodeOrders is the answer to a heartbeat.
type NodeOrders struct {
	GenOrders
	LeaseTTLMS int64 `json:"lease_ttl_ms"`
	// Drained says an operator drained the node: it gets no shards, and
	// gives its own up one by one as other nodes can take them.
	Drained bool `json:"drained,omitempty"`
	// Next are the orders for a reshard's new generation. A node whose
	// current count differs from ShardCount retires its shards of other
	// counts (after a reshard switched, or one it missed).
	Next *GenOrders `json:"next,omitempty"`
	// Liveness is LivenessKV when the node's leases last as long as its
	// liveness record in the control plane's KV (a replicated
	// coordinator): the node then keeps its shards through any outage of
	// the coordinators and stops them only when it cannot renew that
	// record. Empty: the leases last LeaseTTLMS past each answered
	// heartbeat.
	Liveness string `json:"liveness,omitempty"`
}

// LivenessKV is NodeOrders.Liveness for leases held by a liveness record.
const LivenessKV = "kv"

// LivenessKey is the key of node id's liveness record in the live
// bucket; the leader's is LeaderKey.
func LivenessKey(id string) string { return "node." + id }

// LeaderKey is the live bucket's key of the coordinators' leadership.
const LeaderKey = "leader"

// GenOrders are the orders for the shards of one count.
type GenOrders struct {
	ShardCount int `json:"shard_count"`
	// Mode is the publish mode of these shards (see ShardReport.Mode).
	Mode string `json:"mode,omitempty"`
	// Assign are shards to start now, each with its new lease token.
	Assign []HeldShard `json:"assign"`
	// Renewed are the held shards whose leases were renewed, with tokens
	// (a coordinator that restarted issues new ones).
	Renewed []HeldShard `json:"renewed"`
	// Revoke are shards to stop, save and report released: moved to
	// another node, or no longer leased to this one.
	Revoke []int `json:"revoke"`
}

// Publish modes of a shard generation during a reshard, in orders and
// reports. The empty mode is ModePublish.
const (
	ModePublish  = "publish"  // batches, as outside a reshard
	ModeHold     = "hold"     // read, publish nothing: the new generation while it starts
	ModeDedup    = "dedup"    // one message per event under a content ID
	ModeHandover = "handover" // dedup, and stop each new shard's events once it took over
)

// ValidNodeID reports whether id can name a node: 1 to 128 letters,
// digits, '-', '_' and '.', not starting or ending with '.' nor holding
// "..", since it is a key of the control plane's KV.
func ValidNodeID(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
