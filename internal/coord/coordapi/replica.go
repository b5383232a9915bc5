package coordapi

import (
	"encoding/json"
	"time"
)

// ReplicaInfo names one coordinator replica.
type ReplicaInfo struct {
	ID string `json:"id"`
	// URL is the replica's API base, where the others forward writes
	// while it leads.
	URL string `json:"url,omitempty"`
	// Role is "leader", "follower" or "standalone" (no control plane to
	// share: a coordinator without NATS).
	Role string `json:"role"`
}

// Replica roles.
const (
	RoleLeader     = "leader"
	RoleFollower   = "follower"
	RoleStandalone = "standalone"
)

// View is the leader's read model, which it publishes every second so
// that the other replicas answer reads (status, shards, lookups, the
// dashboard) without asking it.
type View struct {
	Leader  ReplicaInfo  `json:"leader"`
	At      time.Time    `json:"at"`
	Status  Status       `json:"status"`
	Shards  ShardList    `json:"shards"`
	Planner PlannerState `json:"planner"`
}

// ReplicaBeatsPath is where a follower hands the leader the Shardman
// beats it took (POST, ReplicaBeats in, ReplicaBeatsAnswer out). Only
// replicas call it: it needs the replicas' forward key.
const ReplicaBeatsPath = "/v1/replica/beats"

// ReplicaBeats is a batch of Shardman beats a follower answered itself,
// the latest of each session, for the leader to record.
type ReplicaBeats struct {
	Beats []ReplicaBeat `json:"beats"`
}

// ReplicaBeat is one worker's latest beat (the /beat body, parsed).
type ReplicaBeat struct {
	SessionID  string          `json:"session_id"`
	GuildCount *int            `json:"guild_count"`
	Latency    *float64        `json:"latency"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

// ReplicaBeatsAnswer names the sessions of a batch the leader does not
// know (expired or never connected); their next beat goes to the leader
// unbatched, so that their workers hear 404.
type ReplicaBeatsAnswer struct {
	Unknown []string `json:"unknown"`
}
