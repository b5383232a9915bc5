package coord

import (
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

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
	nf, err := newFleetMode(to, f.ttl, f.bucketAligned, f.maxConc, f.leases.NextToken(), f.journal)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	nf.nodes, nf.drained, nf.live, nf.mode = f.nodes, f.drained, f.live, coordapi.ModeHold
	f.next = nf
	f.reshard = &coordapi.Reshard{From: f.count, To: to, Trigger: trigger, Phase: coordapi.PhaseStarting, Started: now.UTC(), PhaseSince: now.UTC(),
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
	case r.Phase != coordapi.PhaseStarting:
		return fmt.Errorf("%w: the reshard is past its starting phase (%s): publishing is moving to the new generation and finishes in seconds", ErrConflict, r.Phase)
	}
	f.next, f.mode = nil, ""
	r.Phase, r.PhaseSince, r.Finished, r.Note = coordapi.PhaseCancelled, now.UTC(), now.UTC(), "cancelled"
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
	case coordapi.PhaseStarting:
		all, n := next.everyShard(now, func(x reported) bool {
			return x.State == "ready" && x.Guilds != nil && x.GuildsPending == 0 && x.Mode == coordapi.ModeHold
		})
		r.Ready = n
		if all {
			r.ETA = time.Time{}
			f.mode = coordapi.ModeDedup
			enter(coordapi.PhaseDedup, "the old generation publishes each event under a content ID")
		}
	case coordapi.PhaseDedup:
		if all, _ := f.everyShard(now, func(x reported) bool { return x.Mode == coordapi.ModeDedup }); all && since >= t.settle {
			next.mode = coordapi.ModeDedup
			enter(coordapi.PhaseOverlap, "both generations publish under content IDs; the broker keeps one copy")
		}
	case coordapi.PhaseOverlap:
		if all, _ := next.everyShard(now, func(x reported) bool { return x.Mode == coordapi.ModeDedup }); all && since >= t.settle {
			f.mode = coordapi.ModeHandover
			enter(coordapi.PhaseHandover, "each old shard stops as the new shards take over")
		}
	case coordapi.PhaseHandover:
		all, n := f.everyShard(now, func(x reported) bool { return x.Mode == coordapi.ModeHandover && x.HandedOver })
		r.HandedOver = n
		timedOut := since >= t.handoverTimeout
		if (all && since >= t.settle) || timedOut {
			note := "every old shard handed over"
			if !all {
				note = fmt.Sprintf("the handover timeout passed with %d of %d old shards handed over (a new shard that receives no event of an old one's guilds never takes over)", n, f.count)
			}
			f.count, f.leases, f.reports, f.handoffs, f.mode, f.next = next.count, next.leases, next.reports, next.handoffs, "", nil
			r.Phase, r.PhaseSince, r.Finished, r.Note = coordapi.PhaseDone, now.UTC(), now.UTC(), note
			f.dirty, changed, switched = true, true, true
		}
	}
	return changed, switched
}

// closedSharding reports whether a shard's report says Discord closed it
// with 4011 (sharding required): its guilds no longer fit the count.
func closedSharding(r coordapi.ShardReport) bool {
	return strings.Contains(r.Error, "4011")
}
