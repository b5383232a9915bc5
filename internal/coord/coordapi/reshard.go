package coordapi

import "time"

// Reshard is a reshard's progress, as GET /v1/reshard and GET /v1/status
// show it.
//
// A reshard from N to M shards runs both generations at once and moves
// publishing from the old to the new without a gap or a duplicate:
//
//   - starting: the new generation is leased to the nodes and identifies
//     through the identify queue, reading but publishing nothing (hold),
//     while the old publishes as always;
//   - dedup: once every new shard is ready with all its guilds, the old
//     generation publishes each event on its own under an ID drawn from
//     its content, which the broker deduplicates;
//   - overlap: after the settle time, the new generation publishes the
//     same way, so each event either generation sees is stored once;
//   - handover: the old generation stops publishing, new shard by new
//     shard, as soon as the broker says the new shard published an event
//     first (it then has everything after it too);
//   - done: once every old shard handed over (or the handover timeout
//     passed), the count switches: the new generation publishes in batches
//     again and the nodes close the old.
type Reshard struct {
	From int `json:"from"`
	To   int `json:"to"`
	// Trigger is manual (POST /v1/reshard), auto (the planner) or
	// emergency (a shard closed with 4011).
	Trigger string `json:"trigger"`
	// Phase is one of the Phase constants.
	Phase      string    `json:"phase"`
	Started    time.Time `json:"started"`
	PhaseSince time.Time `json:"phase_since"`
	Finished   time.Time `json:"finished,omitzero"`
	// Ready is how many new shards are ready with all their guilds;
	// Identified how many have a session.
	Ready      int `json:"ready"`
	Identified int `json:"identified"`
	// HandedOver is how many old shards handed over (in handover).
	HandedOver int `json:"handed_over"`
	// ETA is when the new generation should be ready, from the identify
	// plan (zero once it is).
	ETA time.Time `json:"eta,omitzero"`
	// Note says what the reshard waits for, or how it ended.
	Note string `json:"note,omitempty"`
}

// Reshard phases.
const (
	PhaseStarting  = "starting"
	PhaseDedup     = "dedup"
	PhaseOverlap   = "overlap"
	PhaseHandover  = "handover"
	PhaseDone      = "done"
	PhaseCancelled = "cancelled"
)

// Running reports whether the reshard is under way.
func (r *Reshard) Running() bool {
	return r != nil && r.Phase != PhaseDone && r.Phase != PhaseCancelled
}

// ReshardRequest is the body of POST /v1/reshard.
type ReshardRequest struct {
	To int `json:"to"`
	// DryRun answers the plan without starting anything.
	DryRun bool `json:"dry_run,omitempty"`
	// SpendReserve lets the reshard use the session starts kept in
	// reserve: an operator's decision, never taken on its own.
	SpendReserve bool `json:"spend_reserve,omitempty"`
}

// ReshardPlan is what a reshard to another shard count would take.
type ReshardPlan struct {
	From           int `json:"from"`
	To             int `json:"to"`
	MaxConcurrency int `json:"max_concurrency"`
	// Identifies is how many session starts the new generation spends:
	// one per new shard. Rounds is how many identify rounds that takes,
	// one shard of every bucket per round; ETA is their length.
	Identifies int     `json:"identifies"`
	Rounds     int     `json:"rounds"`
	ETASeconds float64 `json:"eta_seconds"`
	// SessionStartsRemaining is the budget left now, Reserve what must stay
	// after the reshard (for reconnects that cannot resume; spent only with
	// SpendReserve), and Fits whether Identifies + Reserve fit.
	SessionStartsRemaining int        `json:"session_starts_remaining"`
	Reserve                int        `json:"reserve"`
	Fits                   bool       `json:"fits"`
	BudgetResetAt          *time.Time `json:"budget_reset_at,omitempty"`
	// GuildsPerShard is the mean after the reshard, from the reported
	// guild counts (0 when none are reported).
	GuildsPerShard float64 `json:"guilds_per_shard"`
	// Problems lists why the plan cannot run; empty when it can.
	Problems []string `json:"problems"`
	// Summary is the plan in one paragraph, for people.
	Summary string `json:"summary"`
}

// ReshardStarted is the answer of POST /v1/reshard that started one.
type ReshardStarted struct {
	Plan    ReshardPlan `json:"plan"`
	Reshard *Reshard    `json:"reshard"`
}

// ReshardState is GET /v1/reshard: the reshard under way or the last one,
// nil when there was none.
type ReshardState struct {
	Reshard *Reshard `json:"reshard"`
}
