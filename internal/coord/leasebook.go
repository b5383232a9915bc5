package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// KV is a bucket of the control plane (natsbroker.KV): every write a
// compare-and-set, errors broker's (ErrConflict, ErrNotFound).
type KV interface {
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	Delete(ctx context.Context, key string, rev uint64) error
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Watch sends the current entries of the keys matching pattern, an
	// Entry with an empty Key, then every change, until ctx ends.
	Watch(ctx context.Context, pattern string) (<-chan broker.Entry, error)
	// List returns the live entries whose keys start with prefix.
	List(ctx context.Context, prefix string) ([]broker.Entry, error)
}

// leaseRecord is a shard's lease in the control bucket, under
// "lease.<count>.<shard>": its holder and the epoch of the holder's
// liveness record when it was granted; Holder "" when free. The token of
// a lease is the token base plus the revision of the write that granted
// it, so tokens grow with every grant whichever coordinator makes it.
type leaseRecord struct {
	Holder string `json:"holder,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
	rev    uint64
}

func leaseKey(count, shard int) string {
	return "lease." + strconv.Itoa(count) + "." + strconv.Itoa(shard)
}

// parseLeaseKey reads "lease.<count>.<shard>".
func parseLeaseKey(key string) (count, shard int, ok bool) {
	rest, ok := strings.CutPrefix(key, "lease.")
	if !ok {
		return 0, 0, false
	}
	c, s, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, 0, false
	}
	count, err1 := strconv.Atoi(c)
	shard, err2 := strconv.Atoi(s)
	return count, shard, err1 == nil && err2 == nil && count > 0 && shard >= 0 && shard < count
}

// tokensKey holds the token base: {"base": N}, created once, at the time
// in microseconds (and above every token an older coordinator issued), so
// that tokens stay above those of any earlier deployment.
const tokensKey = "tokens"

// leaseBook is the shell that writes the fleet's journal to the lease
// authority: it caches every lease record with its revision, so each
// write is one compare-and-set, and it refuses a grant the authority
// would contradict (a live node holds the shard).
type leaseBook struct {
	kv   KV
	base uint64

	mu   sync.Mutex
	recs map[string]leaseRecord
}

// loadLeaseBook reads the token base (making it if it is missing) and
// every lease record.
func loadLeaseBook(ctx context.Context, kv KV, floor uint64) (*leaseBook, error) {
	b := &leaseBook{kv: kv, recs: map[string]leaseRecord{}}
	val, _, err := kv.Get(ctx, tokensKey)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		base := max(uint64(time.Now().UnixMicro()), floor)
		data, _ := json.Marshal(struct {
			Base uint64 `json:"base"`
		}{base})
		if _, err := kv.Create(ctx, tokensKey, data); err != nil && !errors.Is(err, broker.ErrConflict) {
			return nil, fmt.Errorf("coord: token base: %w", err)
		}
		if val, _, err = kv.Get(ctx, tokensKey); err != nil { // ours, or another's made first
			return nil, fmt.Errorf("coord: token base: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("coord: token base: %w", err)
	}
	var tb struct {
		Base uint64 `json:"base"`
	}
	if err := json.Unmarshal(val, &tb); err != nil || tb.Base == 0 {
		return nil, fmt.Errorf("coord: token base %q is unreadable", val)
	}
	b.base = tb.Base
	entries, err := kv.List(ctx, "lease")
	if err != nil {
		return nil, fmt.Errorf("coord: lease records: %w", err)
	}
	for _, e := range entries {
		var r leaseRecord
		if json.Unmarshal(e.Value, &r) != nil {
			continue
		}
		r.rev = e.Revision
		b.recs[e.Key] = r
	}
	return b, nil
}

// record is the cached record of shard of count, and its token.
func (b *leaseBook) record(count, shard int) (leaseRecord, uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.recs[leaseKey(count, shard)]
	return r, b.base + r.rev, ok
}

// records calls fn for every cached record of count.
func (b *leaseBook) records(count int, fn func(shard int, r leaseRecord, token uint64)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, r := range b.recs {
		if c, s, ok := parseLeaseKey(k); ok && c == count {
			fn(s, r, b.base+r.rev)
		}
	}
}

// errAuthority means a write found a record changed by someone else:
// another coordinator writes the leases, so this one must not.
var errAuthority = errors.New("coord: the lease records changed under this coordinator: another one leads")

// write carries out ws by compare-and-set, several at once, and returns
// how each went. live says a node's liveness epoch. It returns
// errAuthority, with the results so far, when a record had changed under
// this coordinator.
func (b *leaseBook) write(ctx context.Context, ws []leaseWrite, live map[string]uint64) ([]writeResult, error) {
	out := make([]writeResult, len(ws))
	// Writes of one key go in order, one after the other; keys in
	// parallel, a bounded number at once.
	byKey := map[string][]int{}
	var keys []string
	for i, w := range ws {
		out[i].leaseWrite = w
		k := leaseKey(w.count, w.shard)
		if byKey[k] == nil {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 32)
		cmu      sync.Mutex
		conflict error
	)
	for _, k := range keys {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, i := range byKey[k] {
				ok, tok, err := b.writeOne(ctx, ws[i], live)
				out[i].ok, out[i].token = ok, tok
				if err != nil {
					cmu.Lock()
					conflict = err
					cmu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return out, conflict
}

// writeOne writes one grant or release.
func (b *leaseBook) writeOne(ctx context.Context, w leaseWrite, live map[string]uint64) (ok bool, token uint64, err error) {
	key := leaseKey(w.count, w.shard)
	b.mu.Lock()
	cur, known := b.recs[key]
	b.mu.Unlock()
	next, put, ok := decideWrite(cur, known, w, live)
	if !put {
		return ok, 0, nil
	}
	data, _ := json.Marshal(next)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rev uint64
	if known {
		rev, err = b.kv.Update(wctx, key, data, cur.rev)
	} else {
		rev, err = b.kv.Create(wctx, key, data)
	}
	switch {
	case err == nil:
		next.rev = rev
		b.mu.Lock()
		b.recs[key] = next
		b.mu.Unlock()
		return true, b.base + rev, nil
	case errors.Is(err, broker.ErrConflict):
		b.reread(ctx, key)
		return false, 0, fmt.Errorf("%w (%s)", errAuthority, key)
	}
	// The outcome is unknown: read the record back from the leader of
	// the bucket and take what it says.
	got := b.reread(ctx, key)
	if got.Holder == next.Holder && got.Epoch == next.Epoch && got.rev != 0 && got.rev != cur.rev {
		return true, b.base + got.rev, nil
	}
	return false, 0, nil
}

// decideWrite is the lease invariant, pure: whether a grant or a
// release may be written over cur (known: the record exists), and what
// to write. A shard is granted only to a node whose liveness record
// exists, and only when its record is free, names that node, or names a
// holder whose liveness record is gone or has another epoch (it
// restarted, so it holds nothing). A release is written only over the
// record it releases. put false: nothing to write, and ok says whether
// that is success (a release with nothing to release) or a refusal.
func decideWrite(cur leaseRecord, known bool, w leaseWrite, live map[string]uint64) (next leaseRecord, put, ok bool) {
	if w.node == "" {
		if !known || cur.Holder != w.prev {
			return leaseRecord{}, false, true
		}
		return leaseRecord{}, true, true
	}
	epoch, isLive := live[w.node]
	if !isLive {
		return leaseRecord{}, false, false // no liveness record: it could not keep a shard
	}
	if cur.Holder != "" && cur.Holder != w.node {
		if e, l := live[cur.Holder]; l && e == cur.Epoch {
			return leaseRecord{}, false, false // a live node holds it
		}
	}
	return leaseRecord{Holder: w.node, Epoch: epoch}, true, true
}

// reread reads key back from the bucket's leader (a watch, in order, not
// a read any replica may answer) into the cache.
func (b *leaseBook) reread(ctx context.Context, key string) leaseRecord {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ch, err := b.kv.Watch(rctx, key)
	if err != nil {
		return leaseRecord{}
	}
	var r leaseRecord
	found := false
	for e := range ch {
		if e.Key == "" {
			break
		}
		if !e.Deleted && json.Unmarshal(e.Value, &r) == nil {
			r.rev, found = e.Revision, true
		}
	}
	cancel()
	for range ch {
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if found {
		b.recs[key] = r
	} else {
		delete(b.recs, key)
	}
	return r
}

// clear frees every record of count that names a holder: the records of
// a generation a reshard replaced, or stale ones of a count a new reshard
// moves to. A record changed by someone else is errAuthority.
func (b *leaseBook) clear(ctx context.Context, count int) error {
	var ws []leaseWrite
	b.records(count, func(shard int, r leaseRecord, _ uint64) {
		if r.Holder != "" {
			ws = append(ws, leaseWrite{count: count, shard: shard, prev: r.Holder})
		}
	})
	_, err := b.write(ctx, ws, nil)
	return err
}
