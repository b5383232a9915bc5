package identify

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSchedulerBuckets(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewScheduler(2, 5*time.Second, 10*time.Millisecond, 3, t0.Add(time.Hour))
	t0a, t1, t2, t3 := s.Ticket(0), s.Ticket(1), s.Ticket(2), s.Ticket(3)
	step := func(at time.Duration, shard int, tk uint64) string {
		ok, retry, err := s.Grant(t0.Add(at), shard, tk)
		switch {
		case err != nil:
			return fmt.Sprintf("shard %d: budget exhausted %v", shard, errors.Is(err, ErrBudgetExhausted))
		case ok:
			return fmt.Sprintf("shard %d: granted", shard)
		case retry.IsZero():
			return fmt.Sprintf("shard %d: queued", shard)
		}
		return fmt.Sprintf("shard %d: retry at +%s", shard, retry.Sub(t0))
	}
	got := []string{
		step(0, 0, t0a), step(0, 1, t1), step(0, 2, t2),
		// READY for shard 0 came 300ms after its grant: the bucket's
		// next slot moves to 5.01s after the READY.
		func() string { s.Identified(0, t0.Add(300*time.Millisecond)); return "ready 0 at +300ms" }(),
		step(5010*time.Millisecond, 2, t2), step(5310*time.Millisecond, 2, t2),
		// Shard 1's READY never came: its bucket waits for it up to the
		// ready timeout (2 × 5s) after the grant.
		step(6*time.Second, 3, t3), step(10*time.Second, 3, t3),
	}
	want := []string{
		"shard 0: granted", "shard 1: granted", "shard 2: retry at +10s", // waits for shard 0's READY
		"ready 0 at +300ms",
		"shard 2: retry at +5.31s", "shard 2: granted",
		"shard 3: retry at +10s", "shard 3: budget exhausted true",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSchedulerFIFOAndCancel(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewScheduler(1, time.Second, 0, -1, time.Time{})
	a, b, c := s.Ticket(0), s.Ticket(1), s.Ticket(2)
	if ok, _, _ := s.Grant(t0, 2, c); ok {
		t.Fatal("the third ticket went first")
	}
	if ok, _, _ := s.Grant(t0, 0, a); !ok {
		t.Fatal("the first ticket was refused")
	}
	s.Identified(0, t0)
	s.Cancel(1, b)
	if ok, retry, _ := s.Grant(t0.Add(time.Second), 2, c); !ok {
		t.Fatalf("after a cancel the third ticket should go at +1s, got retry %v", retry)
	}
	// A ticket given up while others are ahead of it is skipped later.
	d, e, f := s.Ticket(0), s.Ticket(1), s.Ticket(2)
	s.Cancel(1, e)
	s.Identified(2, t0.Add(time.Second))
	if ok, _, _ := s.Grant(t0.Add(2*time.Second), 0, d); !ok {
		t.Fatal("ticket d refused")
	}
	s.Identified(0, t0.Add(2*time.Second))
	if ok, retry, _ := s.Grant(t0.Add(3*time.Second), 2, f); !ok {
		t.Fatalf("ticket f should go after the cancelled e, got retry %v", retry)
	}
}

func TestSnapshotAndSetBudget(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewScheduler(2, 5*time.Second, 100*time.Millisecond, 1, t0.Add(time.Hour))
	a, b, c := s.Ticket(0), s.Ticket(2), s.Ticket(4)
	if ok, _, err := s.Grant(t0, 0, a); !ok || err != nil {
		t.Fatalf("first grant: %v %v", ok, err)
	}
	s.Cancel(4, c)
	s.Identified(0, t0)
	want := Snapshot{MaxConcurrency: 2, Interval: 5100 * time.Millisecond, Remaining: 0, ResetAt: t0.Add(time.Hour),
		Buckets: []BucketSnapshot{{Bucket: 0, Waiting: 1, NextFree: t0.Add(5100 * time.Millisecond)}}}
	if diff := cmp.Diff(want, s.Snapshot()); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	// Discord reports a fresh budget: the waiting shard may go at its slot.
	s.SetBudget(Budget{Remaining: 999, Total: 1000, ResetAt: t0.Add(24 * time.Hour)})
	if ok, _, err := s.Grant(t0.Add(5100*time.Millisecond), 2, b); !ok || err != nil {
		t.Fatalf("grant after SetBudget: %v %v", ok, err)
	}
	if got := s.Snapshot(); got.Remaining != 998 || got.Buckets[0].Waiting != 0 {
		t.Errorf("after the grant: remaining %d, waiting %d; want 998, 0", got.Remaining, got.Buckets[0].Waiting)
	}
}

// TestLocalGate runs waiters on the wall clock of a synctest bubble: a
// bucket's second shard waits one interval; a waiter that leaves gives its
// place up.
func TestLocalGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewLocalGate(NewScheduler(1, 5*time.Second, 0, -1, time.Time{}))
		start := time.Now()
		if err := g.Wait(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		g.Identified(0, time.Now()) // READY at once
		ctx, cancel := context.WithCancel(t.Context())
		left := make(chan error)
		go func() { left <- g.Wait(ctx, 1) }()
		synctest.Wait()
		cancel()
		if err := <-left; !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled waiter returned %v", err)
		}
		if err := g.Wait(t.Context(), 2); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("second grant after %v, want 5s", d)
		}
		g.Identified(2, time.Now().Add(time.Second)) // READY a second later
		if err := g.Wait(t.Context(), 3); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 11*time.Second {
			t.Errorf("third grant after %v, want 11s (5s after the READY)", d)
		}
	})
}

// TestSchedulerLateIdentify: an IDENTIFY sent late (a starved process)
// cannot land less than a window before the bucket's next one, because
// the next grant waits for the first's READY.
func TestSchedulerLateIdentify(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := NewScheduler(1, 5*time.Second, 25*time.Millisecond, -1, time.Time{})
	a, b := s.Ticket(0), s.Ticket(1)
	if ok, _, _ := s.Grant(at(0), 0, a); !ok {
		t.Fatal("first grant refused")
	}
	// The first process sends its IDENTIFY 3s late; Discord answers READY
	// at 3.1s. Without the READY the bucket would open at 5.025s, 2s after
	// Discord counted the first IDENTIFY.
	if ok, retry, _ := s.Grant(at(5025), 1, b); ok || !retry.Equal(at(10000)) {
		t.Fatalf("second grant at 5.025s without the first READY: ok %v retry %v, want a wait to the ready timeout", ok, retry)
	}
	s.Identified(0, at(3100))
	if ok, retry, _ := s.Grant(at(5025), 1, b); ok || !retry.Equal(at(8125)) {
		t.Fatalf("after READY at 3.1s: ok %v retry %v, want 8.125s", ok, retry)
	}
	if ok, _, _ := s.Grant(at(8125), 1, b); !ok {
		t.Fatal("grant at 8.125s refused")
	}
}

// TestSchedulerHold: a new leader grants nothing before its hold ends.
func TestSchedulerHold(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewScheduler(2, 5*time.Second, 0, -1, time.Time{})
	s.HoldUntil(t0.Add(10 * time.Second))
	a := s.Ticket(1)
	if ok, retry, _ := s.Grant(t0, 1, a); ok || !retry.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("grant during the hold: %v %v", ok, retry)
	}
	if ok, _, _ := s.Grant(t0.Add(10*time.Second), 1, a); !ok {
		t.Fatal("grant after the hold refused")
	}
}

func TestObserveBudget(t *testing.T) {
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		name      string
		cur, seen Budget
		want      Budget
	}{
		{"untracked takes it", Budget{Remaining: -1}, Budget{Remaining: 900, Total: 1000, ResetAt: t0}, Budget{Remaining: 900, Total: 1000, ResetAt: t0}},
		{"same window, lower", Budget{Remaining: 800, Total: 1000, ResetAt: t0}, Budget{Remaining: 700, Total: 1000, ResetAt: t0.Add(time.Second)}, Budget{Remaining: 700, Total: 1000, ResetAt: t0}},
		{"same window, higher (stale)", Budget{Remaining: 700, Total: 1000, ResetAt: t0}, Budget{Remaining: 800, Total: 1000, ResetAt: t0}, Budget{Remaining: 700, Total: 1000, ResetAt: t0}},
		{"a new window", Budget{Remaining: 3, Total: 1000, ResetAt: t0}, Budget{Remaining: 1000, Total: 1000, ResetAt: t0.Add(24 * time.Hour)}, Budget{Remaining: 1000, Total: 1000, ResetAt: t0.Add(24 * time.Hour)}},
		{"untracked report", Budget{Remaining: 5, ResetAt: t0}, Budget{Remaining: -1}, Budget{Remaining: 5, ResetAt: t0}},
	} {
		s := NewScheduler(1, time.Second, 0, -1, time.Time{})
		s.SetBudget(tc.cur)
		s.ObserveBudget(tc.seen)
		if diff := cmp.Diff(tc.want, s.Budget()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
