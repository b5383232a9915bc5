package coordapi

import "time"

// IdentifyGrant is the answer to POST /v1/identify/{shard}: the shard may
// send its IDENTIFY now.
type IdentifyGrant struct {
	Shard     int       `json:"shard"`
	Bucket    int       `json:"bucket"`
	GrantedAt time.Time `json:"granted_at"`
}

// IdentifyQueue is the identify queue as GET /v1/identify shows it.
type IdentifyQueue struct {
	MaxConcurrency int           `json:"max_concurrency"`
	IntervalMS     int64         `json:"interval_ms"`
	Remaining      int           `json:"session_starts_remaining"`
	ResetAt        *time.Time    `json:"session_starts_reset_at,omitempty"`
	Buckets        []BucketState `json:"buckets"`
}

// BucketState is one identify bucket: requests waiting and the next slot.
type BucketState struct {
	Bucket   int        `json:"bucket"`
	Waiting  int        `json:"waiting"`
	NextFree *time.Time `json:"next_free,omitempty"`
}
