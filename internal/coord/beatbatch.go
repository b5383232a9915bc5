package coord

import "time"

// beatBatch is the pure core of a follower's Shardman beats. A beat is a
// refresh: only a session's latest one matters, and the leader records it
// at its own clock. So a follower answers the beats of sessions the leader
// has lately accepted itself, keeps the latest of each, and hands them to
// the leader in one batch every beatFlushEvery: forwarding each beat on its
// own costs the follower twice the leader's CPU per beat, which 10,000
// workers beating once a second do not leave on a small machine.
//
// A beat is answered here only while the leader is known to answer: the
// session was accepted by the leader (unbatched, or in a batch) within the
// beat timeout, and the last batch or unbatched beat was answered within
// beatStale. Otherwise it goes to the leader unbatched, and the worker
// hears the leader's answer (404 for an unknown session, 503 while none
// leads), as it would without a follower in between.
type beatBatch struct {
	timeout time.Duration // the leader's beat timeout
	known   map[string]time.Time
	pending map[string]takenBeat
	okAt    time.Time // the leader last answered a beat or a batch
}

// beatFlushEvery is how often a follower hands its beats to the leader;
// beatStale is how long after the leader's last answer it still answers
// beats itself.
const (
	beatFlushEvery = 100 * time.Millisecond
	beatStale      = time.Second
)

func newBeatBatch(timeout time.Duration) *beatBatch {
	return &beatBatch{timeout: timeout, known: map[string]time.Time{}, pending: map[string]takenBeat{}}
}

// offer takes b for the next batch and reports true, or reports false:
// the beat must go to the leader unbatched.
func (q *beatBatch) offer(now time.Time, b shardmanBeat) bool {
	at, ok := q.known[b.SessionID]
	if !ok || now.Sub(at) >= q.timeout || now.Sub(q.okAt) >= beatStale {
		return false
	}
	q.pending[b.SessionID] = takenBeat{b, now}
	return true
}

// accepted records that the leader answered an unbatched beat of id with
// success.
func (q *beatBatch) accepted(now time.Time, id string) {
	q.known[id] = now
	q.okAt = now
}

// takenBeat is a beat and when this replica answered it.
type takenBeat struct {
	shardmanBeat
	at time.Time
}

// take returns the beats to send and empties the batch (nil when empty).
func (q *beatBatch) take() []takenBeat {
	if len(q.pending) == 0 {
		return nil
	}
	out := make([]takenBeat, 0, len(q.pending))
	for _, b := range q.pending {
		out = append(out, b)
	}
	clear(q.pending)
	return out
}

// answered records the leader's answer to a batch sent: the sessions it
// does not know are forgotten (their next beat goes unbatched), the others
// are known afresh. Sessions silent for the timeout are forgotten too, so
// the table is bounded by the live sessions.
func (q *beatBatch) answered(now time.Time, sent []takenBeat, unknown []string) {
	for _, b := range sent {
		q.known[b.SessionID] = now
	}
	for _, id := range unknown {
		delete(q.known, id)
		delete(q.pending, id)
	}
	q.okAt = now
	q.forgetSilent(now)
}

// failed puts back the beats of a batch the leader did not answer, unless
// a newer beat of the same session is already waiting or the beat is
// beatStale old: the leader records a beat at its own clock, and a late
// one would keep alive a session whose worker stopped.
func (q *beatBatch) failed(now time.Time, sent []takenBeat) {
	for _, b := range sent {
		if _, newer := q.pending[b.SessionID]; !newer && now.Sub(b.at) < beatStale {
			q.pending[b.SessionID] = b
		}
	}
}

// reset forgets everything: the leader changed, and what the old one
// accepted says nothing about the new one. The waiting beats are kept;
// the new leader answers which sessions it knows.
func (q *beatBatch) reset() {
	clear(q.known)
	q.okAt = time.Time{}
}

func (q *beatBatch) forgetSilent(now time.Time) {
	for id, at := range q.known {
		if now.Sub(at) >= q.timeout {
			delete(q.known, id)
		}
	}
}
