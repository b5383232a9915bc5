package lease

import (
	"fmt"
	"time"
)

// KeyLease is the pure core of holding a lease on one key of a store
// that deletes a key TTL after its last write and writes by
// compare-and-set (JetStream KV with a bucket TTL): a gateway node's
// liveness record, a coordinator replica's leadership.
//
// The store, not a clock of ours, decides when the lease ends for
// everyone else: the key is gone TTL after the holder's last successful
// write. The holder stops acting earlier, three quarters of the TTL after
// its last successful write was *sent* (it reached the store no earlier),
// so by the time anyone can take the key over the holder has stopped; the
// quarter left covers clocks running at slightly different rates. Safety
// rests on durations only, never on two clocks agreeing on the time.
//
// The caller runs it: it writes what Next says, reports the outcome with
// Done, and feeds what it sees of the key (a watch, a read) to Observe.
// Every write is a compare-and-set, so two holders can never both succeed.
// KeyLease reads no clock and does no I/O; it is not safe for concurrent
// use.
type KeyLease struct {
	owner    string
	ttl      time.Duration
	newEpoch func() uint64

	rec      KeyRecord // the key as last seen or written
	held     bool      // our write is the key's latest, as far as we know
	epoch    uint64    // of our current holding (0: none)
	lastOK   time.Time // when the last successful write was sent
	inFlight bool      // a write is outstanding
	retryAt  time.Time // after a failed write: not before
	released bool
	// pending is the epoch of a create whose answer was lost, sent at
	// pendingSent: if the key turns out to hold it, it is ours.
	pending     uint64
	pendingSent time.Time
	// verify: a renewal lost its compare-and-set, maybe to a retried
	// write of our own that did happen; the key must be read (Observe)
	// to know whether it is still ours.
	verify bool
}

// KeyRecord is what the store holds under the key.
type KeyRecord struct {
	// Present is false when the key is absent (never written, expired or
	// deleted).
	Present bool
	// Rev is the key's revision, for compare-and-set.
	Rev uint64
	// Owner and Epoch identify the holder and its holding: a holder that
	// loses the key and takes it again gets a new epoch.
	Owner string
	Epoch uint64
}

// KeyOpKind is a kind of write.
type KeyOpKind int

// Write kinds.
const (
	KeyNone   KeyOpKind = iota
	KeyCreate           // create the key; fails if it exists
	KeyRenew            // rewrite the key if it is still at Rev
	KeyDelete           // delete the key if it is still at Rev (give it up)
)

func (k KeyOpKind) String() string {
	return [...]string{"none", "create", "renew", "delete"}[k]
}

// KeyOp is a write for the caller to make: Kind with the record to write
// (Owner, Epoch) and, for KeyRenew and KeyDelete, the expected revision.
type KeyOp struct {
	Kind  KeyOpKind
	Rev   uint64
	Epoch uint64
}

// KeyOutcome is how a write ended.
type KeyOutcome int

// Write outcomes.
const (
	// KeyOK: the write took effect; Done's rev is the key's new revision.
	KeyOK KeyOutcome = iota
	// KeyConflict: the key was not as expected (created by someone else,
	// changed, or gone): the compare-and-set lost.
	KeyConflict
	// KeyFailed: the store could not be asked (timeout, no connection);
	// the write may or may not have happened.
	KeyFailed
)

// NewKeyLease returns the lease core of owner on a key with the store's
// ttl. newEpoch gives a fresh epoch, never 0, each time the lease is
// taken (a random number in production, a counter in tests).
func NewKeyLease(owner string, ttl time.Duration, newEpoch func() uint64) (*KeyLease, error) {
	if owner == "" {
		return nil, fmt.Errorf("%w: key lease without an owner", ErrInvalid)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: key lease TTL %s", ErrInvalid, ttl)
	}
	if newEpoch == nil {
		return nil, fmt.Errorf("%w: key lease without an epoch source", ErrInvalid)
	}
	return &KeyLease{owner: owner, ttl: ttl, newEpoch: newEpoch}, nil
}

// TTL is the store's TTL the lease was made with.
func (l *KeyLease) TTL() time.Duration { return l.ttl }

// Held reports whether the owner may act as the holder at now, and with
// which epoch: its write is the key's latest and was sent less than three
// quarters of the TTL ago.
func (l *KeyLease) Held(now time.Time) (epoch uint64, ok bool) {
	if !l.held || !now.Before(l.lastOK.Add(3*l.ttl/4)) {
		return 0, false
	}
	return l.epoch, true
}

// HeldUntil is when the current holding runs out unless renewed (zero
// when nothing is held).
func (l *KeyLease) HeldUntil() time.Time {
	if !l.held {
		return time.Time{}
	}
	return l.lastOK.Add(3 * l.ttl / 4)
}

// Record is the key as last seen or written.
func (l *KeyLease) Record() KeyRecord { return l.rec }

// Observe feeds what the store holds under the key, seen at now: from a
// watch (every change, in order, deletions and expiries with the revision
// of their marker) or from a read (an absent key then has Rev 0). A
// record older than what is known is ignored; a record that is not ours
// means we do not hold the key (any more).
func (l *KeyLease) Observe(now time.Time, r KeyRecord) {
	switch {
	case r.Rev != 0 && r.Rev < l.rec.Rev && !l.verify:
		return // older than what we know
	case r.Rev == 0 && !r.Present && l.held && !l.verify:
		return // a read that cannot be ordered against our last write
	}
	if l.verify && l.held && r.Present && r.Owner == l.owner && r.Epoch == l.epoch {
		l.retryAt = time.Time{} // still ours: renew at once if due
	}
	l.verify = false
	if r.Present && r.Owner == l.owner && l.pending != 0 && r.Epoch == l.pending && !l.held {
		// Our create whose answer was lost did happen.
		l.rec, l.held, l.epoch, l.lastOK, l.pending = r, true, r.Epoch, l.pendingSent, 0
		return
	}
	l.rec = r
	if l.held && (!r.Present || r.Owner != l.owner || r.Epoch != l.epoch) {
		l.held, l.epoch = false, 0 // taken over, expired or deleted
	}
	if !r.Present {
		l.retryAt = time.Time{} // free: try at once
	}
}

// Verifying reports whether the key must be read and the record fed to
// Observe before anything else is written (after a lost compare-and-set).
func (l *KeyLease) Verifying() bool { return l.verify }

// renewEvery is how often the holder rewrites the key: three writes per
// TTL, so that one or two lost ones cost nothing.
func (l *KeyLease) renewEvery() time.Duration { return l.ttl / 3 }

// Next returns the write to make at now, if any. Call Done with its
// outcome before asking again.
func (l *KeyLease) Next(now time.Time) KeyOp {
	switch {
	case l.inFlight, l.verify:
		return KeyOp{}
	case l.released:
		if l.held && l.rec.Present {
			l.inFlight = true
			return KeyOp{Kind: KeyDelete, Rev: l.rec.Rev, Epoch: l.epoch}
		}
		return KeyOp{}
	case now.Before(l.retryAt):
		return KeyOp{}
	case l.held:
		if now.Before(l.lastOK.Add(l.renewEvery())) {
			return KeyOp{}
		}
		l.inFlight = true
		return KeyOp{Kind: KeyRenew, Rev: l.rec.Rev, Epoch: l.epoch}
	case !l.rec.Present:
		l.inFlight = true
		return KeyOp{Kind: KeyCreate, Epoch: l.newEpoch()}
	}
	return KeyOp{} // another holder's: wait until it is gone
}

// NextAt is when Next may next have a write to make: a renewal, a retry,
// or, while another holds the key, the latest the key can be gone by if
// no watch says so first (a TTL after it was seen). Zero means now.
func (l *KeyLease) NextAt(now time.Time) time.Time {
	switch {
	case l.inFlight:
		return now.Add(l.ttl) // Done comes first
	case l.verify:
		return now // read the key
	case l.released:
		return now.Add(l.ttl)
	case now.Before(l.retryAt):
		return l.retryAt
	case l.held:
		return l.lastOK.Add(l.renewEvery())
	case !l.rec.Present:
		return now
	}
	return now.Add(l.ttl / 3) // read the key again: a watch may have missed its expiry
}

// Done reports how op, sent at sent, ended at now; rev is the key's
// revision after a KeyOK write.
func (l *KeyLease) Done(now, sent time.Time, op KeyOp, rev uint64, out KeyOutcome) {
	l.inFlight = false
	switch out {
	case KeyOK:
		switch op.Kind {
		case KeyCreate, KeyRenew:
			l.rec = KeyRecord{Present: true, Rev: rev, Owner: l.owner, Epoch: op.Epoch}
			l.held, l.epoch, l.lastOK, l.pending = true, op.Epoch, sent, 0
		case KeyDelete:
			l.rec = KeyRecord{}
			l.held, l.epoch = false, 0
		}
	case KeyConflict:
		l.retryAt = now.Add(l.ttl / 10)
		if op.Kind == KeyCreate {
			// Somebody else holds the key: wait for it to go. What it
			// holds comes with the next Observe.
			l.rec = KeyRecord{Present: true, Rev: l.rec.Rev}
			return
		}
		// Our record changed: expired, deleted, taken over, or rewritten
		// by a retry of ours whose answer was lost. Only a read tells;
		// until then Held keeps its deadline.
		l.verify = true
	case KeyFailed:
		// Unknown: maybe written, maybe not. A holder keeps holding until
		// Held's deadline and tries again soon. A create that may have
		// happened is remembered: if the key turns out to hold it
		// (Observe), it is ours; a retry would conflict with it.
		if op.Kind == KeyCreate {
			l.pending, l.pendingSent = op.Epoch, sent
		}
		l.retryAt = now.Add(min(l.ttl/10, time.Second))
	}
}

// Release asks for the key to be given up (a graceful shutdown): Next
// returns the delete, and nothing more is written.
func (l *KeyLease) Release() { l.released = true }

// Released reports whether Release was called.
func (l *KeyLease) Released() bool { return l.released }
