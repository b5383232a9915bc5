package coordapi

import "time"

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
