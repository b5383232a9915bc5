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
// slot is Interval+Margin after the later of the grant and the READY: a
// delay anywhere on the way (this process sending late, the server reading
// late) pushes the next slot back instead of making it a violation.
type Scheduler struct {
	MaxConcurrency int
	Interval       time.Duration // default 5s
	Margin         time.Duration // added to Interval
	buckets        map[int]*bucketState
	remaining      int
	resetAt        time.Time
}

type bucketState struct {
	free    time.Time       // the earliest next grant
	tickets uint64          // tickets handed out
	serving uint64          // the ticket allowed to go next
	gone    map[uint64]bool // tickets given up before their turn
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
	return &Scheduler{MaxConcurrency: maxConcurrency, Interval: interval, Margin: margin, buckets: map[int]*bucketState{}, remaining: remaining, resetAt: resetAt}
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
	if now.Before(b.free) {
		return false, b.free, nil
	}
	if s.remaining >= 0 {
		if !s.resetAt.IsZero() && !now.Before(s.resetAt) {
			// The window has reset by now; Discord gives the budget back, which
			// we learn from /gateway/bot. Keep counting down until told.
			s.resetAt = time.Time{}
		}
		if s.remaining == 0 {
			b.advance()
			return false, time.Time{}, fmt.Errorf("%w: resets at %s (in %s)", ErrBudgetExhausted,
				s.resetAt.UTC().Format(time.RFC3339), s.resetAt.Sub(now).Round(time.Second))
		}
		s.remaining--
	}
	b.advance()
	b.free = now.Add(s.Interval + s.Margin)
	return true, time.Time{}, nil
}

// Cancel gives up ticket t of shard (its waiter left). Tickets behind it
// move up.
func (s *Scheduler) Cancel(shard int, t uint64) {
	b := s.bucket(shard)
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

// Identified moves the bucket's next slot to Interval+Margin after at, when
// that is later than the slot the grant set.
func (s *Scheduler) Identified(shard int, at time.Time) {
	b := s.bucket(shard)
	if next := at.Add(s.Interval + s.Margin); next.After(b.free) {
		b.free = next
	}
}

// SetBudget replaces the session-start budget with what Discord reported
// (GET /gateway/bot): remaining starts that reset at resetAt. remaining < 0
// turns budget tracking off.
func (s *Scheduler) SetBudget(remaining int, resetAt time.Time) {
	s.remaining, s.resetAt = remaining, resetAt
}

// Snapshot is the scheduler's state for status pages.
type Snapshot struct {
	MaxConcurrency int
	Interval       time.Duration // between grants in one bucket, margin included
	Remaining      int           // session starts left; -1 when not tracked
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
	snap := Snapshot{MaxConcurrency: s.MaxConcurrency, Interval: s.Interval + s.Margin, Remaining: s.remaining, ResetAt: s.resetAt}
	for b := range s.MaxConcurrency {
		st := s.buckets[b]
		if st == nil {
			continue
		}
		snap.Buckets = append(snap.Buckets, BucketSnapshot{Bucket: b, Waiting: int(st.tickets-st.serving) - len(st.gone), NextFree: st.free})
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
// time) means the shard must not identify.
func (g *LocalGate) Wait(ctx context.Context, shard int) error {
	g.mu.Lock()
	t := g.sched.Ticket(shard)
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
func (g *LocalGate) SetBudget(remaining int, resetAt time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sched.SetBudget(remaining, resetAt)
	g.broadcast()
}

// Snapshot returns the scheduler's state.
func (g *LocalGate) Snapshot() Snapshot {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sched.Snapshot()
}
