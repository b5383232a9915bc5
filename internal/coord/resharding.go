package coord

import (
	"fmt"
	"strings"
	"time"
)

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
	// Trigger is manual (POST /v1/reshard), auto (the planner, with
	// Config.AutoReshard) or emergency (a shard closed with 4011).
	Trigger string `json:"trigger"`
	// Phase is starting, dedup, overlap, handover, done or cancelled.
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

// Publish modes in node orders (see the gateway's PublishMode).
const (
	modeHold     = "hold"
	modeDedup    = "dedup"
	modeHandover = "handover"
)

// Running reports whether the reshard is under way.
func (r *Reshard) Running() bool {
	return r != nil && r.Phase != PhaseDone && r.Phase != PhaseCancelled
}

// reshardTiming are the reshard's waits.
type reshardTiming struct {
	settle, handoverTimeout time.Duration
}

// startReshard starts the new generation of to shards.
func (f *fleet) startReshard(now time.Time, to int, trigger string, eta time.Duration) error {
	if f.reshard.Running() {
		return fmt.Errorf("%w: a reshard %d → %d is under way (%s)", ErrConflict, f.reshard.From, f.reshard.To, f.reshard.Phase)
	}
	// The new generation's tokens start above every token issued so far.
	nf, err := newFleet(to, f.ttl, f.bucketAligned, f.maxConc, f.leases.NextToken())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	nf.nodes, nf.drained, nf.mode = f.nodes, f.drained, modeHold
	f.next = nf
	f.reshard = &Reshard{From: f.count, To: to, Trigger: trigger, Phase: PhaseStarting, Started: now.UTC(), PhaseSince: now.UTC(),
		ETA: now.Add(eta).UTC(), Note: "the new generation identifies; the old one publishes"}
	f.dirty = true
	return nil
}

// cancelReshard calls off a reshard still starting: the new generation
// has published nothing, so the nodes just close it.
func (f *fleet) cancelReshard(now time.Time) error {
	r := f.reshard
	switch {
	case !r.Running():
		return fmt.Errorf("%w: no reshard is under way", ErrConflict)
	case r.Phase != PhaseStarting:
		return fmt.Errorf("%w: the reshard is past its starting phase (%s): publishing is moving to the new generation and finishes in seconds", ErrConflict, r.Phase)
	}
	f.next, f.mode = nil, ""
	r.Phase, r.PhaseSince, r.Finished, r.Note = PhaseCancelled, now.UTC(), now.UTC(), "cancelled"
	f.dirty = true
	return nil
}

// everyShard reports whether every shard of g has a live report for
// which ok holds, and how many do.
func (g *fleet) everyShard(now time.Time, ok func(reported) bool) (bool, int) {
	n := 0
	for s := range g.count {
		if r, live := g.shardReport(now, s); live && ok(r) {
			n++
		}
	}
	return n == g.count, n
}

// stepReshard moves the reshard on when its phase's condition holds. It
// returns whether the phase changed (the nodes should hear at once) and
// whether the count switched.
func (f *fleet) stepReshard(now time.Time, t reshardTiming) (changed, switched bool) {
	r, next := f.reshard, f.next
	if !r.Running() || next == nil {
		return false, false
	}
	since := now.Sub(r.PhaseSince)
	enter := func(phase, note string) {
		r.Phase, r.PhaseSince, r.Note = phase, now.UTC(), note
		f.dirty, changed = true, true
	}
	_, r.Identified = next.everyShard(now, func(x reported) bool { return !x.ReadyAt.IsZero() || x.State == "ready" })
	switch r.Phase {
	case PhaseStarting:
		all, n := next.everyShard(now, func(x reported) bool {
			return x.State == "ready" && x.Guilds != nil && x.GuildsPending == 0 && x.Mode == modeHold
		})
		r.Ready = n
		if all {
			r.ETA = time.Time{}
			f.mode = modeDedup
			enter(PhaseDedup, "the old generation publishes each event under a content ID")
		}
	case PhaseDedup:
		if all, _ := f.everyShard(now, func(x reported) bool { return x.Mode == modeDedup }); all && since >= t.settle {
			next.mode = modeDedup
			enter(PhaseOverlap, "both generations publish under content IDs; the broker keeps one copy")
		}
	case PhaseOverlap:
		if all, _ := next.everyShard(now, func(x reported) bool { return x.Mode == modeDedup }); all && since >= t.settle {
			f.mode = modeHandover
			enter(PhaseHandover, "each old shard stops as the new shards take over")
		}
	case PhaseHandover:
		all, n := f.everyShard(now, func(x reported) bool { return x.Mode == modeHandover && x.HandedOver })
		r.HandedOver = n
		timedOut := since >= t.handoverTimeout
		if (all && since >= t.settle) || timedOut {
			note := "every old shard handed over"
			if !all {
				note = fmt.Sprintf("the handover timeout passed with %d of %d old shards handed over (a new shard that receives no event of an old one's guilds never takes over)", n, f.count)
			}
			f.count, f.leases, f.reports, f.handoffs, f.mode, f.next = next.count, next.leases, next.reports, next.handoffs, "", nil
			r.Phase, r.PhaseSince, r.Finished, r.Note = PhaseDone, now.UTC(), now.UTC(), note
			f.dirty, changed, switched = true, true, true
		}
	}
	return changed, switched
}

// closedSharding reports whether a shard's report says Discord closed it
// with 4011 (sharding required): its guilds no longer fit the count.
func closedSharding(r ShardReport) bool {
	return strings.Contains(r.Error, "4011")
}
