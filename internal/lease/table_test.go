package lease

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Unix(1_700_000_000, 0)

func newTable(t *testing.T, ttl time.Duration) *Table {
	t.Helper()
	tb, err := New(Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// errName names the sentinel err wraps, for transcripts.
func errName(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{ErrHeld, "held"}, {ErrNoneFree, "none free"}, {ErrNotHolder, "not holder"},
		{ErrExpired, "expired"}, {ErrStale, "stale"}, {ErrInvalid, "invalid"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return err.Error()
}

// show writes a lease with times relative to t0.
func show(l Lease) string {
	return fmt.Sprintf("%d:%s#%d[+%s,+%s)", l.Shard, l.Holder, l.Token, l.Granted.Sub(t0), l.Expires.Sub(t0))
}

func showAll(ls []Lease) string {
	if len(ls) == 0 {
		return "-"
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = show(l)
	}
	return strings.Join(parts, " ")
}

// runTranscript drives a Table with steps written as text and returns
// one line per step that is not a clock move:
//
//	acquire <shard> <holder>           Acquire
//	any <holder> <total>               AcquireAny (no filter)
//	renew <shard> <holder> <token>     Renew
//	release <shard> <holder> <token>   Release
//	drop <holder>                      ReleaseHolder
//	expire                             Expire
//	check <shard> <token>              Check
//	leases                             Leases
//	+<duration>                        advance the clock
func runTranscript(t *testing.T, tb *Table, steps []string) []string {
	t.Helper()
	now := t0
	var got []string
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("bad number %q", s)
		}
		return n
	}
	for _, step := range steps {
		if d, ok := strings.CutPrefix(step, "+"); ok {
			dd, err := time.ParseDuration(d)
			if err != nil {
				t.Fatal(err)
			}
			now = now.Add(dd)
			continue
		}
		f := strings.Fields(step)
		var (
			l   Lease
			ls  []Lease
			err error
			out string
		)
		switch f[0] {
		case "acquire":
			l, err = tb.Acquire(now, atoi(f[1]), f[2])
			out = show(l)
		case "any":
			l, err = tb.AcquireAny(now, f[1], atoi(f[2]), nil)
			out = show(l)
		case "renew":
			l, err = tb.Renew(now, atoi(f[1]), f[2], uint64(atoi(f[3])))
			out = show(l)
		case "release":
			err = tb.Release(atoi(f[1]), f[2], uint64(atoi(f[3])))
			out = "ok"
		case "drop":
			ls = tb.ReleaseHolder(f[1])
			out = showAll(ls)
		case "expire":
			ls = tb.Expire(now)
			out = showAll(ls)
		case "check":
			err = tb.Check(now, atoi(f[1]), uint64(atoi(f[2])))
			out = "ok"
		case "leases":
			out = showAll(tb.Leases())
		default:
			t.Fatalf("unknown step %q", step)
		}
		if err != nil {
			out = "err " + errName(err)
		}
		got = append(got, fmt.Sprintf("+%s %s: %s", now.Sub(t0), step, out))
	}
	return got
}

func TestTableTranscripts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []string
		want  []string
	}{
		{
			name: "acquire, renew, expire, acquire again with a new token",
			steps: []string{
				"acquire 3 a", "+5s", "acquire 3 b", "renew 3 a 1", "acquire 3 a",
				"+9s", "check 3 1", "+1s", "check 3 1", "renew 3 a 1", "acquire 3 a", "check 3 1", "check 3 2",
			},
			want: []string{
				"+0s acquire 3 a: 3:a#1[+0s,+10s)",
				"+5s acquire 3 b: err held",
				"+5s renew 3 a 1: 3:a#1[+0s,+15s)",
				"+5s acquire 3 a: 3:a#1[+0s,+15s)", // the holder acquiring again renews
				"+14s check 3 1: ok",
				"+15s check 3 1: err stale", // expired at +15s exactly
				"+15s renew 3 a 1: err expired",
				"+15s acquire 3 a: 3:a#2[+15s,+25s)",
				"+15s check 3 1: err stale",
				"+15s check 3 2: ok",
			},
		},
		{
			name: "a stale owner is fenced off when another holder takes over",
			steps: []string{
				"acquire 0 a", "+10s", "acquire 0 b", "check 0 1", "check 0 2",
				"renew 0 a 1", "release 0 a 1", "leases", "release 0 b 2", "leases", "release 0 b 2",
			},
			want: []string{
				"+0s acquire 0 a: 0:a#1[+0s,+10s)",
				"+10s acquire 0 b: 0:b#2[+10s,+20s)",
				"+10s check 0 1: err stale",
				"+10s check 0 2: ok",
				"+10s renew 0 a 1: err not holder",
				"+10s release 0 a 1: err not holder",
				"+10s leases: 0:b#2[+10s,+20s)",
				"+10s release 0 b 2: ok",
				"+10s leases: -",
				"+10s release 0 b 2: err not holder",
			},
		},
		{
			name: "expire returns only expired leases, in shard order",
			steps: []string{
				"acquire 5 a", "+2s", "acquire 1 b", "acquire 3 a", "+3s", "renew 3 a 3", "+5s",
				"expire", "leases", "expire", "+4s", "check 3 3", "+1s", "expire", "leases",
			},
			want: []string{
				"+0s acquire 5 a: 5:a#1[+0s,+10s)",
				"+2s acquire 1 b: 1:b#2[+2s,+12s)",
				"+2s acquire 3 a: 3:a#3[+2s,+12s)",
				"+5s renew 3 a 3: 3:a#3[+2s,+15s)",
				"+10s expire: 5:a#1[+0s,+10s)",
				"+10s leases: 1:b#2[+2s,+12s) 3:a#3[+2s,+15s)",
				"+10s expire: -",
				"+14s check 3 3: ok",
				"+15s expire: 1:b#2[+2s,+12s) 3:a#3[+2s,+15s)",
				"+15s leases: -",
			},
		},
		{
			name: "any takes the lowest free shard; drop frees a holder's shards",
			steps: []string{
				"acquire 1 b", "any a 4", "any a 4", "any a 4", "any a 4", "any c 4",
				"drop a", "any c 4", "+10s", "any c 4", "leases",
			},
			want: []string{
				"+0s acquire 1 b: 1:b#1[+0s,+10s)",
				"+0s any a 4: 0:a#2[+0s,+10s)",
				"+0s any a 4: 2:a#3[+0s,+10s)",
				"+0s any a 4: 3:a#4[+0s,+10s)",
				"+0s any a 4: err none free",
				"+0s any c 4: err none free",
				"+0s drop a: 0:a#2[+0s,+10s) 2:a#3[+0s,+10s) 3:a#4[+0s,+10s)",
				"+0s any c 4: 0:c#5[+0s,+10s)",
				"+10s any c 4: 0:c#6[+10s,+20s)", // shard 0's lease expired, so it is free again
				"+10s leases: 0:c#6[+10s,+20s) 1:b#1[+0s,+10s)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runTranscript(t, newTable(t, 10*time.Second), tc.steps)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transcript mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tb, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tb.TTL() != DefaultTTL || tb.NextToken() != 1 {
		t.Errorf("New(Config{}): TTL %s, next token %d; want %s, 1", tb.TTL(), tb.NextToken(), DefaultTTL)
	}
	if _, err := New(Config{TTL: -time.Second}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New(TTL -1s) = %v, want ErrInvalid", err)
	}
}

func TestAcquireExpiryBoundary(t *testing.T) {
	tb := newTable(t, 15*time.Second)
	l, err := tb.Acquire(t0, 0, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(15 * time.Second); !l.Expires.Equal(want) || !l.Granted.Equal(t0) {
		t.Errorf("Acquire = %+v, want granted %s expiring %s", l, t0, want)
	}
	if _, err := tb.Acquire(l.Expires.Add(-time.Nanosecond), 0, "b"); !errors.Is(err, ErrHeld) {
		t.Errorf("Acquire by b 1ns before expiry = %v, want ErrHeld", err)
	}
	got, err := tb.Acquire(l.Expires, 0, "b")
	if err != nil {
		t.Fatalf("Acquire by b at expiry: %v", err)
	}
	if got.Token != l.Token+1 || got.Holder != "b" {
		t.Errorf("Acquire by b at expiry = %+v, want token %d for b", got, l.Token+1)
	}
}

func TestErrHeldNamesHolderAndExpiry(t *testing.T) {
	tb := newTable(t, 15*time.Second)
	if _, err := tb.Acquire(t0, 7, "node-a"); err != nil {
		t.Fatal(err)
	}
	_, err := tb.Acquire(t0.Add(5*time.Second), 7, "node-b")
	if !errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire = %v, want ErrHeld", err)
	}
	for _, want := range []string{"shard 7", `"node-a"`, "2023-11-14T22:13:35Z", "in 10s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestRenewAfterExpireRemoved(t *testing.T) {
	tb := newTable(t, time.Second)
	l, _ := tb.Acquire(t0, 0, "a")
	if got := tb.Expire(t0.Add(time.Second)); len(got) != 1 {
		t.Fatalf("Expire = %v, want the lease", got)
	}
	if _, err := tb.Renew(t0.Add(time.Second), 0, "a", l.Token); !errors.Is(err, ErrNotHolder) {
		t.Errorf("Renew after Expire = %v, want ErrNotHolder", err)
	}
	if err := tb.Check(t0, 0, l.Token); !errors.Is(err, ErrStale) {
		t.Errorf("Check after Expire = %v, want ErrStale", err)
	}
}

func TestRenewWrongToken(t *testing.T) {
	tb := newTable(t, time.Minute)
	l, _ := tb.Acquire(t0, 0, "a")
	for _, tc := range []struct {
		holder string
		token  uint64
	}{{"a", l.Token + 1}, {"b", l.Token}, {"a", 0}} {
		if _, err := tb.Renew(t0, 0, tc.holder, tc.token); !errors.Is(err, ErrNotHolder) {
			t.Errorf("Renew(%q, %d) = %v, want ErrNotHolder", tc.holder, tc.token, err)
		}
		if err := tb.Release(0, tc.holder, tc.token); !errors.Is(err, ErrNotHolder) {
			t.Errorf("Release(%q, %d) = %v, want ErrNotHolder", tc.holder, tc.token, err)
		}
	}
	if got, _ := tb.Get(0); got != l {
		t.Errorf("Get(0) = %+v after refused calls, want %+v", got, l)
	}
}

func TestReleaseExpired(t *testing.T) {
	tb := newTable(t, time.Second)
	l, _ := tb.Acquire(t0, 4, "a")
	if err := tb.Release(4, "a", l.Token); err != nil {
		t.Errorf("Release of an expired own lease = %v, want nil", err)
	}
	if _, ok := tb.Get(4); ok {
		t.Error("the lease is still there after Release")
	}
}

func TestTokensStrictlyIncrease(t *testing.T) {
	tb := newTable(t, time.Second)
	var last uint64
	now := t0
	grant := func(l Lease, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if l.Token <= last {
			t.Fatalf("token %d after %d", l.Token, last)
		}
		last = l.Token
	}
	for round := range 5 {
		for shard := range 3 {
			grant(tb.Acquire(now, shard, fmt.Sprint("h", round%2)))
		}
		// A renewal keeps the token.
		l, err := tb.Renew(now, 1, fmt.Sprint("h", round%2), last-1)
		if err != nil || l.Token != last-1 {
			t.Fatalf("Renew = %+v, %v; want token %d", l, err, last-1)
		}
		now = now.Add(2 * time.Second) // everything expires
	}

	// A table restored from a snapshot carries on after the last token.
	saved, next := tb.Leases(), tb.NextToken()
	if next != last+1 {
		t.Errorf("NextToken = %d, want %d", next, last+1)
	}
	restored := newTable(t, time.Second)
	if err := restored.Restore(saved, next); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(saved, restored.Leases()); diff != "" {
		t.Errorf("restored leases (-want +got):\n%s", diff)
	}
	tb = restored
	grant(tb.Acquire(now, 9, "h9"))
	grant(tb.AcquireAny(now, "h9", 20, nil))

	// Restoring an older snapshot never moves the next token back.
	before := tb.NextToken()
	if err := tb.Restore(saved, next); err != nil {
		t.Fatal(err)
	}
	if tb.NextToken() != before {
		t.Errorf("NextToken after restoring an older snapshot = %d, want %d", tb.NextToken(), before)
	}
	grant(tb.Acquire(now, 0, "h9"))
}

func TestRestoreRejects(t *testing.T) {
	l := func(shard int, holder string, token uint64) Lease {
		return Lease{Shard: shard, Holder: holder, Token: token, Granted: t0, Expires: t0.Add(time.Minute)}
	}
	for _, tc := range []struct {
		name   string
		leases []Lease
		next   uint64
	}{
		{"duplicate shard", []Lease{l(1, "a", 1), l(1, "b", 2)}, 3},
		{"duplicate token", []Lease{l(1, "a", 2), l(2, "b", 2)}, 3},
		{"token equal to next", []Lease{l(1, "a", 3)}, 3},
		{"token above next", []Lease{l(1, "a", 9)}, 3},
		{"zero token", []Lease{l(1, "a", 0)}, 3},
		{"zero next", nil, 0},
		{"negative shard", []Lease{l(-1, "a", 1)}, 3},
		{"empty holder", []Lease{l(1, "", 1)}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(t, time.Minute)
			kept, _ := tb.Acquire(t0, 5, "x")
			if err := tb.Restore(tc.leases, tc.next); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Restore = %v, want ErrInvalid", err)
			}
			if diff := cmp.Diff([]Lease{kept}, tb.Leases()); diff != "" {
				t.Errorf("a refused Restore changed the table (-want +got):\n%s", diff)
			}
			if tb.NextToken() != 2 {
				t.Errorf("NextToken = %d after a refused Restore, want 2", tb.NextToken())
			}
		})
	}
}

func TestAcquireAnyFilter(t *testing.T) {
	tb := newTable(t, time.Minute)
	even := func(shard int) bool { return shard%2 == 0 }
	var got []int
	for {
		l, err := tb.AcquireAny(t0, "w", 7, even)
		if errors.Is(err, ErrNoneFree) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.Shard)
	}
	if diff := cmp.Diff([]int{0, 2, 4, 6}, got); diff != "" {
		t.Errorf("AcquireAny order (-want +got):\n%s", diff)
	}
	// Odd shards are still free for a caller without the filter.
	if l, err := tb.AcquireAny(t0, "w", 7, nil); err != nil || l.Shard != 1 {
		t.Errorf("AcquireAny(nil filter) = %+v, %v; want shard 1", l, err)
	}
}

func TestHeldAndReleaseHolder(t *testing.T) {
	tb := newTable(t, time.Minute)
	for _, s := range []int{9, 2, 5} {
		tb.Acquire(t0, s, "a")
	}
	tb.Acquire(t0, 3, "b")
	shards := func(ls []Lease) []int {
		var out []int
		for _, l := range ls {
			out = append(out, l.Shard)
		}
		return out
	}
	if diff := cmp.Diff([]int{2, 5, 9}, shards(tb.Held("a"))); diff != "" {
		t.Errorf("Held(a) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{2, 5, 9}, shards(tb.ReleaseHolder("a"))); diff != "" {
		t.Errorf("ReleaseHolder(a) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{3}, shards(tb.Leases())); diff != "" {
		t.Errorf("Leases after ReleaseHolder (-want +got):\n%s", diff)
	}
	if got := tb.ReleaseHolder("nobody"); got != nil {
		t.Errorf("ReleaseHolder(nobody) = %v, want nil", got)
	}
}

func TestInvalidArguments(t *testing.T) {
	tb := newTable(t, time.Minute)
	for name, err := range map[string]error{
		"Acquire negative shard": func() error { _, err := tb.Acquire(t0, -1, "a"); return err }(),
		"Acquire empty holder":   func() error { _, err := tb.Acquire(t0, 0, ""); return err }(),
		"AcquireAny empty":       func() error { _, err := tb.AcquireAny(t0, "", 4, nil); return err }(),
		"AcquireAny no shards":   func() error { _, err := tb.AcquireAny(t0, "a", 0, nil); return err }(),
		"Renew negative shard":   func() error { _, err := tb.Renew(t0, -3, "a", 1); return err }(),
		"Renew empty holder":     func() error { _, err := tb.Renew(t0, 0, "", 1); return err }(),
		"Release negative shard": tb.Release(-1, "a", 1),
		"Release empty holder":   tb.Release(0, "", 1),
		"Check negative shard":   tb.Check(t0, -1, 1),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s = %v, want ErrInvalid", name, err)
		}
	}
	if len(tb.Leases()) != 0 || tb.NextToken() != 1 {
		t.Errorf("invalid calls changed the table: %v, next token %d", tb.Leases(), tb.NextToken())
	}
}

func TestTokensExhausted(t *testing.T) {
	tb := newTable(t, time.Minute)
	if err := tb.Restore(nil, ^uint64(0)-1); err != nil {
		t.Fatal(err)
	}
	l, err := tb.Acquire(t0, 0, "a")
	if err != nil || l.Token != ^uint64(0)-1 {
		t.Fatalf("Acquire = %+v, %v; want the last token", l, err)
	}
	if _, err := tb.Acquire(t0, 1, "a"); err == nil {
		t.Error("Acquire with no token left succeeded")
	}
	if _, err := tb.Renew(t0, 0, "a", l.Token); err != nil {
		t.Errorf("Renew with no token left = %v, want nil", err)
	}
}

// TestUntilReleased: leases that last until released never expire, and
// tokens an authority assigns (Reissue, Put) keep the table's next token
// above them.
func TestUntilReleased(t *testing.T) {
	t0 := time.Unix(0, 0)
	tb, err := New(Config{UntilReleased: true, FirstToken: 10})
	if err != nil {
		t.Fatal(err)
	}
	l, err := tb.Acquire(t0, 1, "a")
	if err != nil || l.Token != 10 || !l.Expires.IsZero() {
		t.Fatalf("acquire: %+v %v", l, err)
	}
	far := t0.Add(100 * 24 * time.Hour)
	if gone := tb.Expire(far); len(gone) != 0 {
		t.Errorf("Expire dropped %v", gone)
	}
	if err := tb.Check(far, 1, 10); err != nil {
		t.Errorf("check much later: %v", err)
	}
	if _, err := tb.Reissue(1, "a", 10, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("reissue with token 0: %v, want ErrInvalid", err)
	}
	if _, err := tb.Reissue(1, "b", 10, 50); !errors.Is(err, ErrNotHolder) {
		t.Errorf("reissue by another holder: %v, want ErrNotHolder", err)
	}
	if l, err = tb.Reissue(1, "a", 10, 50); err != nil || l.Token != 50 || tb.NextToken() != 51 {
		t.Errorf("reissue: %+v %v next %d", l, err, tb.NextToken())
	}
	if l, err = tb.Put(t0, 2, "b", 70); err != nil || tb.NextToken() != 71 {
		t.Errorf("put: %+v %v next %d", l, err, tb.NextToken())
	}
	if l, _ := tb.Acquire(t0, 3, "c"); l.Token != 71 {
		t.Errorf("the next grant after Put got token %d, want 71", l.Token)
	}
}
