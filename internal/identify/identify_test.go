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
		step(6*time.Second, 3, t3),
	}
	want := []string{
		"shard 0: granted", "shard 1: granted", "shard 2: retry at +5.01s",
		"ready 0 at +300ms",
		"shard 2: retry at +5.31s", "shard 2: granted",
		"shard 3: budget exhausted true",
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
	s.Cancel(1, b)
	if ok, retry, _ := s.Grant(t0.Add(time.Second), 2, c); !ok {
		t.Fatalf("after a cancel the third ticket should go at +1s, got retry %v", retry)
	}
	// A ticket given up while others are ahead of it is skipped later.
	d, e, f := s.Ticket(0), s.Ticket(1), s.Ticket(2)
	s.Cancel(1, e)
	if ok, _, _ := s.Grant(t0.Add(2*time.Second), 0, d); !ok {
		t.Fatal("ticket d refused")
	}
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
	want := Snapshot{MaxConcurrency: 2, Interval: 5100 * time.Millisecond, Remaining: 0, ResetAt: t0.Add(time.Hour),
		Buckets: []BucketSnapshot{{Bucket: 0, Waiting: 1, NextFree: t0.Add(5100 * time.Millisecond)}}}
	if diff := cmp.Diff(want, s.Snapshot()); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	// Discord reports a fresh budget: the waiting shard may go at its slot.
	s.SetBudget(999, t0.Add(24*time.Hour))
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
