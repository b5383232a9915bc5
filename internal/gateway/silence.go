package gateway

import (
	"time"
)

// A silent shard is one whose connection stays healthy (heartbeats are
// acknowledged, so zombie detection never fires) while Discord stops
// sending it some event types. silenceWatch finds it from the shard's own
// baseline: a type that has been flowing at rate λ and has then been absent
// for max(SilenceAfter, SilenceEvents/λ) is silent. The shard is then cycled
// by RESUME, which is free and replays nothing it already has.
//
// silenceWatch is pure: events and checks come in with the time.

// silenceWatch follows one shard's event rate per type.
type silenceWatch struct {
	after  time.Duration // the shortest silence that counts
	events float64       // events a silence must have missed to count
	types  map[string]*typeRate
	last   time.Time // the previous check
	heldAt time.Time // the last check the broker held the shard back at
}

// typeRate is one event type's rate on a shard.
type typeRate struct {
	count    int       // events since the previous check
	total    int       // events since the type was first seen (or last reset)
	first    time.Time // when it was first seen (or last reset)
	lastSeen time.Time // the last check interval that had events
	rate     float64   // events per second, a moving average over intervals
	seenRate float64   // rate as of lastSeen: the baseline a silence is judged by
}

// silenceAlpha weighs each check interval in the moving average.
const silenceAlpha = 0.2

func newSilenceWatch(after time.Duration, events float64) *silenceWatch {
	return &silenceWatch{after: after, events: events, types: map[string]*typeRate{}}
}

// observe counts n events of type t.
func (w *silenceWatch) observe(t string, n int) {
	tr := w.types[t]
	if tr == nil {
		tr = &typeRate{}
		w.types[t] = tr
	}
	tr.count += n
}

// check folds the counts since the previous check into the rates and
// returns the type that has gone silent, if any ("" otherwise). A type
// counts only after a baseline is established: at least SilenceEvents
// events, flowing for at least SilenceAfter.
//
// held says that the broker held the shard's publishing back (see
// publishStalled): nothing it read could be counted, so the time since the
// last check is not silence: absence counts from the last held check on,
// and nothing is reported while held.
func (w *silenceWatch) check(now time.Time, held bool) (silent string, missed float64) {
	dt := now.Sub(w.last).Seconds()
	first := w.last.IsZero()
	w.last = now
	if held {
		w.heldAt = now
	}
	if first || dt <= 0 {
		for _, tr := range w.types {
			tr.count = 0
		}
		return "", 0
	}
	for t, tr := range w.types {
		if tr.first.IsZero() {
			tr.first, tr.lastSeen = now, now
		}
		r := float64(tr.count) / dt
		if tr.total == 0 {
			tr.rate = r
		} else {
			tr.rate += silenceAlpha * (r - tr.rate)
		}
		if tr.count > 0 {
			tr.lastSeen, tr.seenRate = now, tr.rate
		}
		tr.total += tr.count
		tr.count = 0
		if held {
			continue
		}
		if float64(tr.total) < w.events || tr.lastSeen.Sub(tr.first) < w.after || tr.seenRate <= 0 {
			continue // no baseline yet
		}
		gap := now.Sub(tr.lastSeen)
		if !w.heldAt.IsZero() {
			gap = min(gap, now.Sub(w.heldAt)) // absence counts from the hold's end
		}
		need := max(w.after, time.Duration(w.events/tr.seenRate*float64(time.Second)))
		if gap >= need {
			if m := gap.Seconds() * tr.seenRate; m > missed {
				silent, missed = t, m
			}
		}
	}
	return silent, missed
}

// stallAfter is how long the publish path may go without an answer,
// while batches are outstanding, before the shard counts as held back.
// Acknowledgements normally take milliseconds.
const stallAfter = 500 * time.Millisecond

// publishStalled is whether a shard with unanswered batches outstanding,
// whose publish path last moved at progressAt, is held back by the broker
// at now.
func publishStalled(unanswered int, progressAt, now time.Time) bool {
	return unanswered > 0 && now.Sub(progressAt) >= stallAfter
}

// reset forgets every baseline, after the shard was cycled: a type that
// stays absent must then build a baseline again before it counts, so a
// type that really ended costs one cycle, not one per check.
func (w *silenceWatch) reset() {
	clear(w.types)
}
