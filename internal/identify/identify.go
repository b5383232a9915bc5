package identify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// ErrBudgetExhausted means the daily session-start budget is spent; the
// error wrapping it says when it resets.
var ErrBudgetExhausted = errors.New("identify: session-start budget exhausted")

// Scheduler is the pure core of LocalGate: one IDENTIFY per bucket
// (shard % MaxConcurrency) per Interval, first come first served within a
// bucket, plus a session-start budget.
//
// Discord starts a bucket's window when it accepts an IDENTIFY, which a
// client cannot see; it sees the READY that follows. So a bucket's next
// slot is Interval+Margin after the later of the grant and the READY, and
// while a grant's READY (or its failure) is not in, the bucket waits for
// it, up to ReadyTimeout after the grant: an IDENTIFY that a starved
// process or a slow network sends late then cannot land less than a
// window before the next one. Only a grant whose outcome is never
// reported (its process died) costs the bucket the timeout.
type Scheduler struct {
	MaxConcurrency int
	Interval       time.Duration // default 5s
	Margin         time.Duration // added to Interval
	// ReadyTimeout bounds how long a bucket waits for a grant's READY
	// before its next slot; default 2 × Interval (an IDENTIFY sent within
	// an Interval of its grant, answered within another).
	ReadyTimeout time.Duration
	buckets      map[int]*bucketState
	budget       Budget
	hold         time.Time // no grant before (a new leader's wait)
}

// Budget is Discord's session-start budget (session_start_limit).
type Budget struct {
	// Remaining session starts; -1 when not tracked.
	Remaining int
	// Total is the daily total (1000 for most bots); 0 when unknown.
	Total int
	// ResetAt is when the budget resets; zero when unknown.
	ResetAt time.Time
}

type bucketState struct {
	free     time.Time       // the earliest next grant
	awaiting bool            // the last grant's READY is not in
	awaitTo  time.Time       // …and is waited for until then
	tickets  uint64          // tickets handed out
	serving  uint64          // the ticket allowed to go next
	gone     map[uint64]bool // tickets given up before their turn
	blind    map[uint64]bool // tickets whose READY will never be reported
}

// advance moves serving past t and past tickets already given up.
func (b *bucketState) advance() {
	b.serving++
	for b.gone[b.serving] {
		delete(b.gone, b.serving)
		b.serving++
	}
}

// NewScheduler returns a Scheduler with remaining session starts that reset
// at resetAt (remaining < 0: no budget tracking).
func NewScheduler(maxConcurrency int, interval, margin time.Duration, remaining int, resetAt time.Time) *Scheduler {
	if maxConcurrency < 1 {
		maxConcurrency = 1
	}
	if interval <= 0 {
		interval = discord.IdentifyIntervalMillis * time.Millisecond
	}
	return &Scheduler{MaxConcurrency: maxConcurrency, Interval: interval, Margin: margin, ReadyTimeout: 2 * interval,
		buckets: map[int]*bucketState{}, budget: Budget{Remaining: remaining, ResetAt: resetAt}}
}

func (s *Scheduler) bucket(shard int) *bucketState {
	b := discord.ShardBucket(shard, s.MaxConcurrency)
	st := s.buckets[b]
	if st == nil {
		st = &bucketState{}
		s.buckets[b] = st
	}
	return st
}

// Ticket queues shard in its bucket and returns its place.
func (s *Scheduler) Ticket(shard int) uint64 {
	b := s.bucket(shard)
	t := b.tickets
	b.tickets++
	return t
}

// BlindTicket queues shard for a client that never reports its READY
// (twilight's gateway-queue): its grant spaces the bucket by the interval
// alone.
func (s *Scheduler) BlindTicket(shard int) uint64 { return s.tagBlind(shard, s.Ticket(shard)) }

func (s *Scheduler) tagBlind(shard int, t uint64) uint64 {
	b := s.bucket(shard)
	if b.blind == nil {
		b.blind = map[uint64]bool{}
	}
	b.blind[t] = true
	return t
}

// Grant asks whether ticket t of shard may identify at now. ok means yes
// (the slot and a session start are taken); otherwise retry at retryAt, or,
// when retryAt is zero, when another ticket of the bucket moves (a call to
// Cancel or Identified). It returns ErrBudgetExhausted (wrapped, with the
// reset time) when no session start is left, cancelling the ticket.
func (s *Scheduler) Grant(now time.Time, shard int, t uint64) (ok bool, retryAt time.Time, err error) {
	b := s.bucket(shard)
	if b.serving != t {
		return false, time.Time{}, nil
	}
	next := b.free
	if b.awaiting {
		next = maxTime(next, b.awaitTo)
	}
	next = maxTime(next, s.hold)
	if now.Before(next) {
		return false, next, nil
	}
	if bd := &s.budget; bd.Remaining >= 0 {
		if !bd.ResetAt.IsZero() && !now.Before(bd.ResetAt) {
			// The window has reset by now; Discord gives the budget back, which
			// we learn from /gateway/bot. Keep counting down until told.
			bd.ResetAt = time.Time{}
		}
		if bd.Remaining == 0 {
			delete(b.blind, t)
			b.advance()
			return false, time.Time{}, fmt.Errorf("%w: resets at %s (in %s)", ErrBudgetExhausted,
				bd.ResetAt.UTC().Format(time.RFC3339), bd.ResetAt.Sub(now).Round(time.Second))
		}
		bd.Remaining--
	}
	b.advance()
	b.free = now.Add(s.Interval + s.Margin)
	b.awaiting, b.awaitTo = !b.blind[t], now.Add(s.ReadyTimeout)
	delete(b.blind, t)
	return true, time.Time{}, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Cancel gives up ticket t of shard (its waiter left). Tickets behind it
// move up.
func (s *Scheduler) Cancel(shard int, t uint64) {
	b := s.bucket(shard)
	delete(b.blind, t)
	switch {
	case b.serving == t:
		b.advance()
	case t > b.serving:
		if b.gone == nil {
			b.gone = map[uint64]bool{}
		}
		b.gone[t] = true
	}
}

// Identified reports the READY (or the failure) of shard's last grant at
// at: the bucket's next slot is Interval+Margin after it, when that is
// later than the slot the grant set, and the bucket no longer waits.
func (s *Scheduler) Identified(shard int, at time.Time) {
	b := s.bucket(shard)
	b.awaiting = false
	if next := at.Add(s.Interval + s.Margin); next.After(b.free) {
		b.free = next
	}
}

// HoldUntil grants nothing before t: a coordinator that takes over from
// another holds every bucket long enough that no grant of the old one can
// land less than a window before its own first.
func (s *Scheduler) HoldUntil(t time.Time) { s.hold = maxTime(s.hold, t) }

// SetBudget replaces the session-start budget with what Discord reported
// (GET /gateway/bot). Remaining < 0 turns budget tracking off.
func (s *Scheduler) SetBudget(b Budget) { s.budget = b }

// ObserveBudget merges a budget someone else read from Discord (a gateway
// node's /gateway/bot) into the tracked one: a later window (its reset a
// minute or more after ours, or ours unknown) replaces ours; within the
// same window only a lower count is taken, since starts only ever go down
// until the reset.
func (s *Scheduler) ObserveBudget(b Budget) {
	cur := &s.budget
	switch {
	case b.Remaining < 0:
	case cur.Remaining < 0, cur.ResetAt.IsZero() && !b.ResetAt.IsZero(), b.ResetAt.Sub(cur.ResetAt) >= time.Minute:
		*cur = b
	default:
		cur.Remaining = min(cur.Remaining, b.Remaining)
		if b.Total > 0 {
			cur.Total = b.Total
		}
	}
}

// Budget returns the tracked session-start budget.
func (s *Scheduler) Budget() Budget { return s.budget }

// Snapshot is the scheduler's state for status pages.
type Snapshot struct {
	MaxConcurrency int
	Interval       time.Duration // between grants in one bucket, margin included
	Remaining      int           // session starts left; -1 when not tracked
	Total          int           // the daily total; 0 when unknown
	ResetAt        time.Time     // when the budget resets; zero when unknown
	Buckets        []BucketSnapshot
}

// BucketSnapshot is one bucket's queue.
type BucketSnapshot struct {
	Bucket   int
	Waiting  int       // tickets not yet granted or given up
	NextFree time.Time // the earliest next grant; zero when never granted
}

// Snapshot returns the state of every bucket that has seen a ticket, in
// bucket order.
func (s *Scheduler) Snapshot() Snapshot {
	snap := Snapshot{MaxConcurrency: s.MaxConcurrency, Interval: s.Interval + s.Margin, Remaining: s.budget.Remaining, Total: s.budget.Total, ResetAt: s.budget.ResetAt}
	for b := range s.MaxConcurrency {
		st := s.buckets[b]
		if st == nil {
			continue
		}
		free := st.free
		if st.awaiting {
			free = maxTime(free, st.awaitTo)
		}
		snap.Buckets = append(snap.Buckets, BucketSnapshot{Bucket: b, Waiting: int(st.tickets-st.serving) - len(st.gone), NextFree: maxTime(free, s.hold)})
	}
	return snap
}

// LocalGate serves one process's identifies from a Scheduler with the wall
// clock. Its Wait and Identified methods fit gateway.IdentifyGate and
// gateway.IdentifyObserver; the coordinator serves its queue with one.
type LocalGate struct {
	mu    sync.Mutex
	sched *Scheduler
	now   func() time.Time
	wake  chan struct{} // closed and replaced whenever a bucket moves
}

// NewLocalGate wraps a Scheduler with the wall clock.
func NewLocalGate(s *Scheduler) *LocalGate {
	return &LocalGate{sched: s, now: time.Now, wake: make(chan struct{})}
}

func (g *LocalGate) broadcast() {
	close(g.wake)
	g.wake = make(chan struct{})
}

// Wait blocks until shard may identify now, or ctx ends: shards of a
// bucket go in arrival order. ErrBudgetExhausted (wrapped, with the reset
// time) means the shard must not identify. The caller reports the
// outcome with Identified.
func (g *LocalGate) Wait(ctx context.Context, shard int) error { return g.wait(ctx, shard, false) }

// WaitBlind is Wait for a client that never reports its outcome
// (twilight's gateway-queue).
func (g *LocalGate) WaitBlind(ctx context.Context, shard int) error { return g.wait(ctx, shard, true) }

func (g *LocalGate) wait(ctx context.Context, shard int, blind bool) error {
	g.mu.Lock()
	t := g.sched.Ticket(shard)
	if blind {
		t = g.sched.tagBlind(shard, t)
	}
	for {
		ok, retry, err := g.sched.Grant(g.now(), shard, t)
		if ok || err != nil {
			g.broadcast()
			g.mu.Unlock()
			return err
		}
		wake := g.wake
		g.mu.Unlock()
		var timer <-chan time.Time
		if !retry.IsZero() {
			tm := time.NewTimer(time.Until(retry))
			timer = tm.C
			defer tm.Stop()
		}
		select {
		case <-wake:
		case <-timer:
		case <-ctx.Done():
			g.mu.Lock()
			g.sched.Cancel(shard, t)
			g.broadcast()
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
}

// Identified reports that shard's IDENTIFY was answered (or given up) at at.
func (g *LocalGate) Identified(shard int, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched.Identified(shard, at)
	g.broadcast()
}

// SetBudget replaces the session-start budget (see Scheduler.SetBudget) and
// wakes waiters.
func (g *LocalGate) SetBudget(b Budget) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched.SetBudget(b)
	g.broadcast()
}

// ObserveBudget merges a budget read elsewhere (see
// Scheduler.ObserveBudget) and wakes waiters.
func (g *LocalGate) ObserveBudget(b Budget) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched.ObserveBudget(b)
	g.broadcast()
}

// HoldUntil grants nothing before t (see Scheduler.HoldUntil).
func (g *LocalGate) HoldUntil(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched.HoldUntil(t)
	g.broadcast()
}

// Budget returns the tracked session-start budget.
func (g *LocalGate) Budget() Budget {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sched.Budget()
}

// Snapshot returns the scheduler's state.
func (g *LocalGate) Snapshot() Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sched.Snapshot()
}
