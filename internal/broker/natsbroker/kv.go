package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// KV is one of the control plane's key-value buckets: every write a
// compare-and-set on the key's revision, every error one of broker's
// (ErrConflict for a compare-and-set that lost, ErrNotFound for an absent
// key). It satisfies kvlease.Store.
type KV struct {
	kv   jetstream.KeyValue
	name string
}

// Name is the bucket's name.
func (k *KV) Name() string { return k.name }

// Create writes key when it is absent (never written, deleted or
// expired) and returns its revision.
func (k *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Create(ctx, key, value)
	return rev, k.wrap("create", key, err)
}

// Update writes key when it is at rev and returns the new revision.
func (k *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	rev, err := k.kv.Update(ctx, key, value, rev)
	return rev, k.wrap("update", key, err)
}

// Delete deletes key when it is at rev.
func (k *KV) Delete(ctx context.Context, key string, rev uint64) error {
	return k.wrap("delete", key, k.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
}

// Get reads key. With a replicated bucket the answer may come from any
// replica and lag the latest write: decisions that must not act on a
// stale answer use Watch, whose entries come in order from the leader.
func (k *KV) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	ent, err := k.kv.Get(ctx, key)
	if err != nil {
		return nil, 0, k.wrap("get", key, err)
	}
	return ent.Value(), ent.Revision(), nil
}

// Watch sends the current entry of every key matching pattern (a key or
// a subject wildcard such as "node.>"), then an Entry with an empty Key
// meaning "that was all of them", then every change in order, deletions
// and expiries included, until ctx ends; then it closes the channel.
func (k *KV) Watch(ctx context.Context, pattern string) (<-chan broker.Entry, error) {
	w, err := k.kv.Watch(ctx, pattern)
	if err != nil {
		return nil, k.wrap("watch", pattern, err)
	}
	out := make(chan broker.Entry, 64)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				var ev broker.Entry
				if e != nil {
					ev = broker.Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(),
						Deleted: e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge}
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// List returns every live entry whose key starts with prefix, read in
// order from the bucket's leader.
func (k *KV) List(ctx context.Context, prefix string) ([]broker.Entry, error) {
	pattern := ">"
	if prefix != "" {
		pattern = strings.TrimSuffix(prefix, ".") + ".>"
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := k.Watch(wctx, pattern)
	if err != nil {
		return nil, err
	}
	var out []broker.Entry
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-ch:
			if !ok {
				return nil, fmt.Errorf("natsbroker: list %s %s: the watch ended", k.name, prefix)
			}
			if e.Key == "" {
				return out, nil
			}
			if !e.Deleted {
				out = append(out, e)
			}
		}
	}
}

// TTL is how long the bucket keeps a key after its last write (0: for
// ever).
func (k *KV) TTL(ctx context.Context) (time.Duration, error) {
	st, err := k.kv.Status(ctx)
	if err != nil {
		return 0, k.wrap("status", "", err)
	}
	return st.TTL(), nil
}

// wrap maps jetstream's errors to broker's.
func (k *KV) wrap(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case casConflict(err):
		return fmt.Errorf("natsbroker: %s %s/%s: %w", op, k.name, key, broker.ErrConflict)
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("natsbroker: %s %s/%s: %w", op, k.name, key, broker.ErrNotFound)
	}
	return fmt.Errorf("natsbroker: %s %s/%s: %w", op, k.name, key, err)
}
