package lease

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzTable applies random sequences of operations to a Table, with the
// clock moving forward between them, and checks the invariants after every
// step: at most one lease per shard, tokens strictly increasing on every
// new grant and below NextToken, renewals keeping the token, Expire
// returning exactly the expired leases, and Check agreeing with the
// leases. Each operation takes three bytes: the operation, a shard and a
// holder, and an argument (a token offset or a clock step).
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 1, 1, 7, 0, 20, 3, 0, 0})
	f.Add([]byte{2, 0, 4, 2, 1, 4, 2, 2, 4, 7, 0, 11, 0, 2, 0, 5, 2, 0})
	f.Add([]byte{0, 0x11, 0, 8, 0, 0, 9, 0, 0, 0, 0x12, 0, 4, 0x11, 0, 6, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const (
			shards = 6
			ttl    = 10 * time.Second
		)
		holders := []string{"a", "b", "c"}
		tb, err := New(Config{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		// live is the definition of a live lease, written out here rather
		// than taken from Lease.Live.
		live := func(l Lease) bool { return l.Expires.After(now) }
		var last uint64 // the highest token granted so far
		// granted checks a lease the table says it granted or renewed,
		// given the shard's lease before the call.
		granted := func(step string, l Lease, before Lease, hadLive bool) {
			t.Helper()
			renewed := hadLive && before.Holder == l.Holder
			switch {
			case renewed && l.Token != before.Token:
				t.Fatalf("%s: renewal changed token %d to %d", step, before.Token, l.Token)
			case renewed && !l.Granted.Equal(before.Granted):
				t.Fatalf("%s: renewal changed Granted", step)
			case !renewed && l.Token <= last:
				t.Fatalf("%s: new token %d after %d", step, l.Token, last)
			case !l.Expires.Equal(now.Add(ttl)):
				t.Fatalf("%s: expires at %s, want now+TTL", step, l.Expires)
			}
			last = max(last, l.Token)
		}
		for i := 0; i+2 < len(ops); i += 3 {
			op, shard, holder := ops[i]%10, int(ops[i+1]&0x0f)%shards, holders[int(ops[i+1]>>4)%len(holders)]
			arg := ops[i+2]
			before, had := tb.Get(shard)
			hadLive := had && live(before)
			// A token that may or may not be the current one.
			token := before.Token + uint64(arg%3) - 1
			step := fmt.Sprintf("op %d at +%s (shard %d, holder %s, arg %d)", op, now.Sub(t0), shard, holder, arg)
			switch op {
			case 0:
				l, err := tb.Acquire(now, shard, holder)
				if hadLive && before.Holder != holder {
					if !errors.Is(err, ErrHeld) {
						t.Fatalf("%s: Acquire of a held shard = %+v, %v; want ErrHeld", step, l, err)
					}
					break
				}
				if err != nil {
					t.Fatalf("%s: Acquire: %v", step, err)
				}
				granted(step, l, before, hadLive)
			case 1:
				total, skip := 1+int(arg)%(shards+1), int(arg)%shards
				free := func(s int) bool {
					l, ok := tb.Get(s)
					return s != skip && (!ok || !live(l))
				}
				l, err := tb.AcquireAny(now, holder, total, func(s int) bool { return s != skip })
				if errors.Is(err, ErrNoneFree) {
					for s := range total {
						if free(s) {
							t.Fatalf("%s: ErrNoneFree with shard %d free", step, s)
						}
					}
					break
				}
				if err != nil {
					t.Fatalf("%s: AcquireAny: %v", step, err)
				}
				for s := range l.Shard {
					if free(s) {
						t.Fatalf("%s: AcquireAny took shard %d with %d free", step, l.Shard, s)
					}
				}
				granted(step, l, Lease{}, false)
			case 2:
				l, err := tb.Renew(now, shard, holder, token)
				switch {
				case !had || before.Holder != holder || before.Token != token:
					if !errors.Is(err, ErrNotHolder) {
						t.Fatalf("%s: Renew of another's lease = %v, want ErrNotHolder", step, err)
					}
				case !hadLive:
					if !errors.Is(err, ErrExpired) {
						t.Fatalf("%s: Renew of an expired lease = %v, want ErrExpired", step, err)
					}
				case err != nil:
					t.Fatalf("%s: Renew: %v", step, err)
				default:
					granted(step, l, before, true)
				}
			case 3:
				err := tb.Release(shard, holder, token)
				_, still := tb.Get(shard)
				if had && before.Holder == holder && before.Token == token {
					if err != nil || still {
						t.Fatalf("%s: Release of the holder's lease = %v, lease still there %v", step, err, still)
					}
				} else if !errors.Is(err, ErrNotHolder) || still != had {
					t.Fatalf("%s: Release of another's lease = %v, lease still there %v", step, err, still)
				}
			case 4:
				want := []Lease{}
				for _, l := range tb.Leases() {
					if !live(l) {
						want = append(want, l)
					}
				}
				got := tb.Expire(now)
				if diff := cmp.Diff(want, append([]Lease{}, got...)); diff != "" {
					t.Fatalf("%s: Expire (-want +got):\n%s", step, diff)
				}
				for _, l := range tb.Leases() {
					if !live(l) {
						t.Fatalf("%s: %+v left after Expire", step, l)
					}
				}
			case 5:
				err := tb.Check(now, shard, token)
				if ok := hadLive && before.Token == token; ok != (err == nil) || err != nil && !errors.Is(err, ErrStale) {
					t.Fatalf("%s: Check(%d) = %v with lease %+v", step, token, err, before)
				}
			case 6:
				got := tb.ReleaseHolder(holder)
				if slices.ContainsFunc(tb.Leases(), func(l Lease) bool { return l.Holder == holder }) {
					t.Fatalf("%s: ReleaseHolder left leases: %v", step, tb.Leases())
				}
				for _, l := range got {
					if l.Holder != holder {
						t.Fatalf("%s: ReleaseHolder returned %+v", step, l)
					}
				}
			case 7:
				// Restart from a snapshot.
				saved, next := tb.Leases(), tb.NextToken()
				tb, err = New(Config{TTL: ttl})
				if err != nil {
					t.Fatal(err)
				}
				if err := tb.Restore(saved, next); err != nil {
					t.Fatalf("%s: Restore of a snapshot: %v", step, err)
				}
				if diff := cmp.Diff(saved, tb.Leases()); diff != "" {
					t.Fatalf("%s: restored leases (-want +got):\n%s", step, diff)
				}
			default:
				now = now.Add(time.Duration(arg) * 250 * time.Millisecond)
			}
			checkTable(t, step, tb, last)
		}
	})
}

// checkTable checks the invariants that hold at every step.
func checkTable(t *testing.T, step string, tb *Table, last uint64) {
	t.Helper()
	ls := tb.Leases()
	tokens := map[uint64]bool{}
	for i, l := range ls {
		if i > 0 && ls[i-1].Shard >= l.Shard {
			t.Fatalf("%s: leases not in shard order or shard twice: %v", step, ls)
		}
		if l.Token == 0 || l.Token >= tb.NextToken() || tokens[l.Token] {
			t.Fatalf("%s: token %d repeated or not in [1, %d)", step, l.Token, tb.NextToken())
		}
		tokens[l.Token] = true
		if got, ok := tb.Get(l.Shard); !ok || got != l {
			t.Fatalf("%s: Get(%d) = %+v, want %+v", step, l.Shard, got, l)
		}
	}
	if tb.NextToken() != last+1 {
		t.Fatalf("%s: NextToken %d after granting up to %d", step, tb.NextToken(), last)
	}
}
