// Package kvlease holds a lease on one key of a key-value store that
// deletes a key a TTL after its last write and writes by compare-and-set
// (JetStream KV with a bucket TTL, natsbroker.KV): a gateway node's
// liveness record, which the coordinator leases shards against, and a
// coordinator replica's leadership.
//
// A Keeper is the shell around lease.KeyLease, which makes every decision:
// Run writes what the core asks, watches the key and feeds the core what
// it sees, and Held answers from the core with the process's clock. The
// record it writes is JSON (Record): the owner, the epoch of the holding,
// and what the holder wants others to know (a leader's URL).
package kvlease

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/lease"
)

// Store is the key-value store a Keeper writes: every write a
// compare-and-set, every key gone TTL after its last write.
type Store interface {
	// Create writes key if it does not exist and returns its revision;
	// broker.ErrConflict if it does.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes key if it is at rev; broker.ErrConflict if not.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete deletes key if it is at rev; broker.ErrConflict if not.
	Delete(ctx context.Context, key string, rev uint64) error
	// Get reads key; broker.ErrNotFound when it is absent.
	Get(ctx context.Context, key string) (value []byte, rev uint64, err error)
	// Watch sends every change of the keys matching pattern (a key, or a
	// subject wildcard) to the channel, starting with their current
	// values, until ctx ends; then it closes the channel.
	Watch(ctx context.Context, pattern string) (<-chan broker.Entry, error)
}

// Record is what a Keeper writes under its key.
type Record struct {
	Owner string `json:"owner"`
	// Epoch names this holding: a holder that loses the key and takes it
	// again writes another.
	Epoch uint64 `json:"epoch"`
	// Info is the holder's own data (a leader's API URL).
	Info json.RawMessage `json:"info,omitempty"`
}

// Decode reads a record written by a Keeper.
func Decode(value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("kvlease: record: %w", err)
	}
	if r.Owner == "" || r.Epoch == 0 {
		return Record{}, errors.New("kvlease: record without owner or epoch")
	}
	return r, nil
}

// Config configures a Keeper.
type Config struct {
	Store Store
	// Key is the key to hold; Owner who holds it (a node ID, a replica ID).
	Key, Owner string
	// TTL is the store's: how long a key lives after its last write.
	TTL time.Duration
	// Info goes into the record for others to read.
	Info json.RawMessage
	// Logger receives changes of holding. Default: discard.
	Logger *slog.Logger
}

// Keeper holds a lease on one key (see the package comment). Create it
// with New, run it with Run; Held and Holder may be called from any
// goroutine.
type Keeper struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	core    *lease.KeyLease
	info    Record // the holder's record, as last seen (ours or another's)
	changed chan struct{}
	epoch   uint64 // of our holding as last signalled (0: none)
}

// New checks cfg and returns a Keeper.
func New(cfg Config) (*Keeper, error) {
	if cfg.Store == nil || cfg.Key == "" {
		return nil, errors.New("kvlease: Config needs a Store and a Key")
	}
	core, err := lease.NewKeyLease(cfg.Owner, cfg.TTL, randomEpoch)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Keeper{cfg: cfg, log: cfg.Logger, core: core, changed: make(chan struct{})}, nil
}

func randomEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.BigEndian.Uint64(b[:]) >> 1; e != 0 {
			return e
		}
	}
}

// Held reports whether this process holds the key now, and the epoch of
// its holding.
func (k *Keeper) Held() (epoch uint64, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.core.Held(time.Now())
}

// Holder returns the record of whoever holds the key, as last seen, and
// whether anybody does.
func (k *Keeper) Holder() (Record, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.core.Record().Present || k.info.Owner == "" {
		return Record{}, false
	}
	return k.info, true
}

// Changed returns a channel closed at the next change of holding or of
// the holder (ours gained or lost, another's seen or gone).
func (k *Keeper) Changed() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.changed
}

// notifyLocked wakes Changed's waiters.
func (k *Keeper) notifyLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// Run holds the key until ctx ends: it takes it when it is free, renews
// it, watches it, and gives it up (deletes it) at the end if it holds it.
func (k *Keeper) Run(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := k.cfg.Store.Watch(wctx, k.cfg.Key)
	if err != nil {
		return fmt.Errorf("kvlease: watch %s: %w", k.cfg.Key, err)
	}
	// A watch lost to a broken connection is made again; meanwhile the
	// core goes by its deadline and by reads.
	watch := func() {
		if ch, err := k.cfg.Store.Watch(wctx, k.cfg.Key); err == nil {
			events = ch
		}
	}
	defer func() {
		cancel()
		if events != nil {
			for range events { // the watch closes its channel once ctx ends
			}
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if events == nil {
			watch()
		}
		k.step(ctx)
		k.mu.Lock()
		k.settleLocked()
		now := time.Now()
		next := k.core.NextAt(now)
		if e, ok := k.core.Held(now); ok && e != 0 {
			// Wake at the holding's deadline too, to signal its end.
			next = minTime(next, k.deadlineLocked())
		}
		if events == nil {
			next = minTime(next, now.Add(time.Second))
		}
		wait := time.Until(next)
		k.mu.Unlock()
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			k.release(context.WithoutCancel(ctx))
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			k.observe(ev)
		case <-timer.C:
			k.read(ctx)
		}
	}
}

// step makes the writes the core asks for now.
func (k *Keeper) step(ctx context.Context) {
	for range 4 { // a create that conflicts is followed by nothing; bounded anyway
		now := time.Now()
		k.mu.Lock()
		op := k.core.Next(now)
		k.mu.Unlock()
		if op.Kind == lease.KeyNone {
			return
		}
		rev, out := k.write(ctx, op)
		k.mu.Lock()
		k.core.Done(time.Now(), now, op, rev, out)
		if out == lease.KeyOK && op.Kind != lease.KeyDelete {
			k.info = Record{Owner: k.cfg.Owner, Epoch: op.Epoch, Info: k.cfg.Info}
		}
		k.settleLocked()
		k.mu.Unlock()
	}
}

// write carries out op against the store.
func (k *Keeper) write(ctx context.Context, op lease.KeyOp) (uint64, lease.KeyOutcome) {
	wctx, cancel := context.WithTimeout(ctx, max(k.cfg.TTL/4, 100*time.Millisecond))
	defer cancel()
	val, err := json.Marshal(Record{Owner: k.cfg.Owner, Epoch: op.Epoch, Info: k.cfg.Info})
	if err != nil {
		return 0, lease.KeyFailed
	}
	var rev uint64
	switch op.Kind {
	case lease.KeyCreate:
		rev, err = k.cfg.Store.Create(wctx, k.cfg.Key, val)
	case lease.KeyRenew:
		rev, err = k.cfg.Store.Update(wctx, k.cfg.Key, val, op.Rev)
	case lease.KeyDelete:
		err = k.cfg.Store.Delete(wctx, k.cfg.Key, op.Rev)
	}
	switch {
	case err == nil:
		return rev, lease.KeyOK
	case errors.Is(err, broker.ErrConflict):
		return 0, lease.KeyConflict
	}
	if ctx.Err() == nil {
		k.log.Warn("lease write failed; retrying", "key", k.cfg.Key, "op", op.Kind.String(), "err", err)
	}
	return 0, lease.KeyFailed
}

// read reads the key when the core needs to know what it holds (a lost
// compare-and-set, a holder that may have expired unseen).
func (k *Keeper) read(ctx context.Context) {
	k.mu.Lock()
	_, held := k.core.Held(time.Now())
	need := k.core.Verifying() || !held
	k.mu.Unlock()
	if !need {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, max(k.cfg.TTL/4, 100*time.Millisecond))
	val, rev, err := k.cfg.Store.Get(rctx, k.cfg.Key)
	cancel()
	switch {
	case errors.Is(err, broker.ErrNotFound):
		k.observe(broker.Entry{Key: k.cfg.Key, Deleted: true})
	case err == nil:
		k.observe(broker.Entry{Key: k.cfg.Key, Value: val, Revision: rev})
	}
}

// observe feeds what the store holds to the core.
func (k *Keeper) observe(ev broker.Entry) {
	if ev.Key == "" {
		return // the end of a watch's initial values
	}
	r := lease.KeyRecord{Rev: ev.Revision}
	var rec Record
	if !ev.Deleted {
		var err error
		if rec, err = Decode(ev.Value); err != nil {
			k.log.Warn("unreadable lease record; treating it as another holder's", "key", k.cfg.Key, "err", err)
			rec = Record{Owner: "?"}
		}
		r.Present, r.Owner, r.Epoch = true, rec.Owner, rec.Epoch
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.info
	k.core.Observe(time.Now(), r)
	if cur := k.core.Record(); cur.Present && cur.Owner == rec.Owner && cur.Epoch == rec.Epoch {
		k.info = rec
	} else if !cur.Present {
		k.info = Record{}
	}
	if prev.Owner != k.info.Owner || prev.Epoch != k.info.Epoch {
		k.notifyLocked()
	}
	k.settleLocked()
}

// settleLocked logs and signals a change of our holding since the last
// one signalled: taken, lost, or run out.
func (k *Keeper) settleLocked() {
	after, _ := k.core.Held(time.Now())
	if after == k.epoch {
		return
	}
	switch {
	case after != 0:
		k.log.Info("lease taken", "key", k.cfg.Key, "owner", k.cfg.Owner, "epoch", after)
	case k.core.Released():
		k.log.Info("lease given up", "key", k.cfg.Key, "owner", k.cfg.Owner)
	default:
		k.log.Warn("lease lost", "key", k.cfg.Key, "owner", k.cfg.Owner)
	}
	k.epoch = after
	k.notifyLocked()
}

// deadlineLocked is when our holding runs out unless renewed.
func (k *Keeper) deadlineLocked() time.Time { return k.core.HeldUntil() }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// release gives the key up if it is held (a graceful shutdown), so that
// whoever waits for it need not wait for the TTL.
func (k *Keeper) release(ctx context.Context) {
	k.mu.Lock()
	k.core.Release()
	k.mu.Unlock()
	k.step(ctx)
}
