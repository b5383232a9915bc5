package lease

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// DefaultTTL is the lease TTL when Config.TTL is zero.
const DefaultTTL = 15 * time.Second

// Errors the table and Assign return, wrapped with what the call was
// about (the shard, the holders, the times); test with errors.Is.
var (
	// ErrHeld means the shard's lease is live and belongs to another
	// holder. The error names the holder and when the lease expires.
	ErrHeld = errors.New("lease: shard is held")
	// ErrNoneFree means AcquireAny found no free shard.
	ErrNoneFree = errors.New("lease: no shard is free")
	// ErrNotHolder means the caller does not hold the lease it names: the
	// shard has no lease, or its lease has another holder or token.
	ErrNotHolder = errors.New("lease: not the holder")
	// ErrExpired means the caller's lease has expired. It cannot be
	// renewed; the holder must Acquire again and gets a new token.
	ErrExpired = errors.New("lease: lease expired")
	// ErrStale means a fencing token is not the current live token of its
	// shard: its lease expired, was released or was granted again since.
	ErrStale = errors.New("lease: stale token")
	// ErrInvalid means an argument is out of range: a negative shard, an
	// empty holder, a bad configuration or a snapshot that breaks the
	// table's invariants.
	ErrInvalid = errors.New("lease: invalid argument")
)

// Config configures a Table.
type Config struct {
	// TTL is how long a lease lives after it is granted or renewed, and so
	// how long a silent holder keeps its shards. Zero means DefaultTTL.
	TTL time.Duration
	// FirstToken is the token of the first grant; zero means 1. A service
	// that may lose its saved state seeds it from a clock (microseconds
	// since the epoch, say), so tokens stay above those it issued before.
	FirstToken uint64
	// UntilReleased makes leases last until released, whatever the time:
	// when something else decides that a holder is gone (its liveness
	// record expired in a replicated store), the table is only a record
	// of who holds what. TTL is then unused.
	UntilReleased bool
}

// Lease is one shard's lease.
type Lease struct {
	Shard  int
	Holder string
	// Token is the fencing token: nonzero, and greater than the token of
	// every lease granted before this one.
	Token uint64
	// Granted is when the lease was granted; renewing does not change it.
	Granted time.Time
	// Expires is when the lease stops being live unless renewed; zero
	// when it lasts until released (Config.UntilReleased).
	Expires time.Time
}

// Live reports whether l is live at now: now is before l.Expires, or the
// lease lasts until released.
func (l Lease) Live(now time.Time) bool { return l.Expires.IsZero() || now.Before(l.Expires) }

// Table holds at most one lease per shard. It is a pure state machine: no
// goroutines, no clock, no I/O; it is not safe for concurrent use.
type Table struct {
	ttl      time.Duration
	released bool // leases last until released
	leases   map[int]Lease
	next     uint64 // the token of the next grant; never zero
}

// New returns an empty Table. A negative TTL is an error.
func New(cfg Config) (*Table, error) {
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("%w: negative TTL %s", ErrInvalid, cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	return &Table{ttl: cfg.TTL, released: cfg.UntilReleased, leases: map[int]Lease{}, next: max(cfg.FirstToken, 1)}, nil
}

// expiry is when a lease granted or renewed at now expires.
func (t *Table) expiry(now time.Time) time.Time {
	if t.released {
		return time.Time{}
	}
	return now.Add(t.ttl)
}

// Reissue gives holder's lease on shard the token a lease authority
// assigned when it recorded the grant (its revision), and returns the
// lease. The authority orders its tokens; the table only keeps its next
// token above every one it holds.
func (t *Table) Reissue(shard int, holder string, old, token uint64) (Lease, error) {
	l, err := t.owned(shard, holder, old)
	if err != nil {
		return Lease{}, err
	}
	if token == 0 || token == math.MaxUint64 {
		return Lease{}, fmt.Errorf("%w: shard %d: reissued token %d", ErrInvalid, shard, token)
	}
	l.Token = token
	t.leases[shard] = l
	t.next = max(t.next, token+1)
	return l, nil
}

// Put records a lease as a lease authority holds it (a restart reading
// the authority back): shard held by holder under token. The next token
// moves above it.
func (t *Table) Put(now time.Time, shard int, holder string, token uint64) (Lease, error) {
	if err := checkArgs(shard, holder); err != nil {
		return Lease{}, err
	}
	if token == 0 || token == math.MaxUint64 {
		return Lease{}, fmt.Errorf("%w: shard %d: token %d", ErrInvalid, shard, token)
	}
	l := Lease{Shard: shard, Holder: holder, Token: token, Granted: now, Expires: t.expiry(now)}
	t.leases[shard] = l
	t.next = max(t.next, token+1)
	return l, nil
}

// TTL returns the lease TTL in effect.
func (t *Table) TTL() time.Duration { return t.ttl }

// NextToken returns the token the next grant will get. It is greater than
// every token the table has issued; persist it with the leases and pass it
// to Restore.
func (t *Table) NextToken() uint64 { return t.next }

// Acquire grants shard to holder when the shard has no live lease. When
// holder already holds it live, Acquire renews the lease and keeps its
// token. When another holder does, it returns ErrHeld.
func (t *Table) Acquire(now time.Time, shard int, holder string) (Lease, error) {
	if err := checkArgs(shard, holder); err != nil {
		return Lease{}, err
	}
	if l, ok := t.leases[shard]; ok && l.Live(now) {
		if l.Holder != holder {
			return Lease{}, heldError(now, l)
		}
		l.Expires = t.expiry(now)
		t.leases[shard] = l
		return l, nil
	}
	return t.grant(now, shard, holder)
}

// AcquireAny grants holder the lowest shard below total that has no live
// lease and that filter accepts (a nil filter accepts every shard). A
// shard holder already holds live counts as taken, so every call that
// succeeds hands out another shard. It returns ErrNoneFree when no shard
// qualifies.
func (t *Table) AcquireAny(now time.Time, holder string, total int, filter func(shard int) bool) (Lease, error) {
	if holder == "" {
		return Lease{}, fmt.Errorf("%w: empty holder", ErrInvalid)
	}
	if total < 1 {
		return Lease{}, fmt.Errorf("%w: shard total %d", ErrInvalid, total)
	}
	for shard := range total {
		if l, ok := t.leases[shard]; ok && l.Live(now) {
			continue
		}
		if filter != nil && !filter(shard) {
			continue
		}
		return t.grant(now, shard, holder)
	}
	return Lease{}, fmt.Errorf("%w: all %d shards are held or excluded", ErrNoneFree, total)
}

// grant replaces shard's lease, if any, with a new one for holder under
// the next token.
func (t *Table) grant(now time.Time, shard int, holder string) (Lease, error) {
	if t.next == math.MaxUint64 {
		// The next token would have no successor to move NextToken to.
		return Lease{}, fmt.Errorf("lease: fencing tokens exhausted granting shard %d", shard)
	}
	l := Lease{Shard: shard, Holder: holder, Token: t.next, Granted: now, Expires: t.expiry(now)}
	t.next++
	t.leases[shard] = l
	return l, nil
}

// Renew extends holder's lease on shard to now plus the TTL. The lease
// must be live and carry token: an expired lease returns ErrExpired (the
// holder must Acquire again), and a lease that is gone or belongs to
// another holder or token returns ErrNotHolder.
func (t *Table) Renew(now time.Time, shard int, holder string, token uint64) (Lease, error) {
	if err := checkArgs(shard, holder); err != nil {
		return Lease{}, err
	}
	l, err := t.owned(shard, holder, token)
	if err != nil {
		return Lease{}, err
	}
	if !l.Live(now) {
		return Lease{}, fmt.Errorf("%w: shard %d token %d expired at %s", ErrExpired, shard, token, stamp(l.Expires))
	}
	l.Expires = t.expiry(now)
	t.leases[shard] = l
	return l, nil
}

// Release ends holder's lease on shard, live or expired. A lease that is
// gone or belongs to another holder or token returns ErrNotHolder and is
// left alone; a caller that releases on a best-effort basis can ignore it.
func (t *Table) Release(shard int, holder string, token uint64) error {
	if err := checkArgs(shard, holder); err != nil {
		return err
	}
	if _, err := t.owned(shard, holder, token); err != nil {
		return err
	}
	delete(t.leases, shard)
	return nil
}

// owned returns shard's lease if it belongs to holder under token, live
// or not, and ErrNotHolder otherwise.
func (t *Table) owned(shard int, holder string, token uint64) (Lease, error) {
	l, ok := t.leases[shard]
	if !ok {
		return Lease{}, fmt.Errorf("%w: shard %d has no lease", ErrNotHolder, shard)
	}
	if l.Holder != holder || l.Token != token {
		return Lease{}, fmt.Errorf("%w: shard %d is leased to %q with token %d, not %q with token %d",
			ErrNotHolder, shard, l.Holder, l.Token, holder, token)
	}
	return l, nil
}

// ReleaseHolder ends every lease of holder, live or expired, and returns
// them in shard order: the holder deregistered or finished draining.
func (t *Table) ReleaseHolder(holder string) []Lease {
	gone := t.Held(holder)
	for _, l := range gone {
		delete(t.leases, l.Shard)
	}
	return gone
}

// Expire removes the leases expired at now and returns them in shard
// order, for the caller to log and hand on.
func (t *Table) Expire(now time.Time) []Lease {
	var gone []Lease
	for _, l := range t.leases {
		if !l.Live(now) {
			gone = append(gone, l)
		}
	}
	sortByShard(gone)
	for _, l := range gone {
		delete(t.leases, l.Shard)
	}
	return gone
}

// Check returns nil when token is the token of shard's lease and the lease
// is live at now, and ErrStale otherwise. Whoever acts for a shard checks
// its token first, so a holder that lost the shard cannot act next to the
// new one.
func (t *Table) Check(now time.Time, shard int, token uint64) error {
	if shard < 0 {
		return fmt.Errorf("%w: negative shard %d", ErrInvalid, shard)
	}
	l, ok := t.leases[shard]
	switch {
	case !ok:
		return fmt.Errorf("%w: shard %d token %d: the shard has no lease", ErrStale, shard, token)
	case l.Token != token:
		return fmt.Errorf("%w: shard %d token %d: the current token is %d", ErrStale, shard, token, l.Token)
	case !l.Live(now):
		return fmt.Errorf("%w: shard %d token %d expired at %s", ErrStale, shard, token, stamp(l.Expires))
	}
	return nil
}

// Get returns shard's lease, live or expired but not yet removed by
// Expire, and whether there is one.
func (t *Table) Get(shard int) (Lease, bool) {
	l, ok := t.leases[shard]
	return l, ok
}

// Leases returns every lease in shard order. It includes leases that have
// expired but were not yet removed by Expire; Lease.Live tells them apart.
func (t *Table) Leases() []Lease {
	all := make([]Lease, 0, len(t.leases))
	for _, l := range t.leases {
		all = append(all, l)
	}
	sortByShard(all)
	return all
}

// Held returns holder's leases in shard order, including expired ones not
// yet removed by Expire.
func (t *Table) Held(holder string) []Lease {
	var held []Lease
	for _, l := range t.leases {
		if l.Holder == holder {
			held = append(held, l)
		}
	}
	sortByShard(held)
	return held
}

// Restore replaces the table's leases with leases, as saved from Leases,
// and makes the next token at least nextToken, as saved from NextToken. It
// never moves the next token backwards, so restoring an older snapshot
// cannot make the table issue a token twice. It returns an error wrapping
// ErrInvalid, and leaves the table as it was, when a lease has a negative
// shard, an empty holder or a zero token, when two leases share a shard or
// a token, or when a token is not below nextToken.
func (t *Table) Restore(leases []Lease, nextToken uint64) error {
	if nextToken == 0 {
		return fmt.Errorf("%w: restore: next token 0", ErrInvalid)
	}
	m := make(map[int]Lease, len(leases))
	tokens := make(map[uint64]int, len(leases))
	for _, l := range leases {
		if err := checkArgs(l.Shard, l.Holder); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if _, dup := m[l.Shard]; dup {
			return fmt.Errorf("%w: restore: two leases for shard %d", ErrInvalid, l.Shard)
		}
		if l.Token == 0 || l.Token >= nextToken {
			return fmt.Errorf("%w: restore: shard %d token %d is not in [1, next token %d)", ErrInvalid, l.Shard, l.Token, nextToken)
		}
		if other, dup := tokens[l.Token]; dup {
			return fmt.Errorf("%w: restore: shards %d and %d share token %d", ErrInvalid, other, l.Shard, l.Token)
		}
		m[l.Shard] = l
		tokens[l.Token] = l.Shard
	}
	t.leases = m
	t.next = max(t.next, nextToken)
	return nil
}

// checkArgs validates a shard and a holder.
func checkArgs(shard int, holder string) error {
	switch {
	case shard < 0:
		return fmt.Errorf("%w: negative shard %d", ErrInvalid, shard)
	case holder == "":
		return fmt.Errorf("%w: shard %d: empty holder", ErrInvalid, shard)
	}
	return nil
}

func heldError(now time.Time, l Lease) error {
	return fmt.Errorf("%w: shard %d by %q until %s (in %s)", ErrHeld, l.Shard, l.Holder, stamp(l.Expires), l.Expires.Sub(now))
}

// stamp formats a time for error messages.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func sortByShard(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int { return cmp.Compare(a.Shard, b.Shard) })
}
