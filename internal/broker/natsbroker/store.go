package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// ErrBadShard means a shard number or shard count is out of range: shards
// count from 0 and a shard count is at least 1.
var ErrBadShard = errors.New("natsbroker: bad shard")

// sessionKey is the bucket key of a shard's session: "<num_shards>.<shard>".
func sessionKey(shard, numShards int) (string, error) {
	if shard < 0 || numShards < 1 || shard >= numShards {
		return "", fmt.Errorf("%w: shard %d of %d", ErrBadShard, shard, numShards)
	}
	return strconv.Itoa(numShards) + "." + strconv.Itoa(shard), nil
}

// SaveSession stores st under "<st.NumShards>.<st.Shard>" in the session
// bucket. With st.Lease set the write is fenced: it is a compare-and-set
// on the key's revision, and it fails with broker.ErrFenced when the state
// in the bucket was saved under a greater lease (the shard moved to another
// node). A save without a lease overwrites whatever is there.
func (b *Broker) SaveSession(ctx context.Context, st broker.SessionState) error {
	key, err := sessionKey(st.Shard, st.NumShards)
	if err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("natsbroker: save session %s: %w", key, err)
	}
	if st.Lease == 0 {
		rev, err := b.kv.Put(ctx, key, val)
		if err != nil {
			return fmt.Errorf("natsbroker: save session %s: %w", key, err)
		}
		b.setRev(key, rev)
		return nil
	}
	err = b.fenced(ctx, key, st.Lease, func(rev uint64) (uint64, error) {
		if rev == 0 {
			return b.kv.Create(ctx, key, val) // also over a delete marker
		}
		return b.kv.Update(ctx, key, val, rev)
	})
	if err != nil {
		return fmt.Errorf("natsbroker: save session %s: %w", key, err)
	}
	return nil
}

// maxFencedTries bounds the compare-and-set retries of one fenced write;
// each retry means another writer changed the key in between.
const maxFencedTries = 5

// fenced runs write, a compare-and-set against the key's revision (0: the
// key must not exist), until it succeeds, or fails with broker.ErrFenced
// once the key turns out to hold state saved under a lease greater than
// lease. The revision comes from the cache first, so an owner that is the
// key's only writer pays one request.
func (b *Broker) fenced(ctx context.Context, key string, lease uint64, write func(rev uint64) (uint64, error)) error {
	rev, known := b.rev(key)
	for range maxFencedTries {
		if !known {
			cur, r, err := b.current(ctx, key)
			if err != nil {
				return err
			}
			if cur > lease {
				b.dropRev(key)
				return fmt.Errorf("%w (saved under lease %d, ours is %d)", broker.ErrFenced, cur, lease)
			}
			rev, known = r, true
		}
		next, err := write(rev)
		if err == nil {
			b.setRev(key, next)
			return nil
		}
		if !casConflict(err) {
			return err
		}
		known = false // somebody else wrote: read who
	}
	b.dropRev(key)
	return fmt.Errorf("key changed under %d compare-and-set attempts", maxFencedTries)
}

// casConflict reports whether err says a compare-and-set lost: the key
// exists, or its revision moved (10071; 10164 on replicated streams).
func casConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// current returns the lease and revision of the state saved under key;
// both are 0 when there is none.
func (b *Broker) current(ctx context.Context, key string) (lease, rev uint64, err error) {
	ent, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var st struct {
		Lease uint64 `json:"lease"`
	}
	if err := json.Unmarshal(ent.Value(), &st); err != nil {
		// Not ours to judge: treat it as unleased state and overwrite it.
		b.log.Warn("unreadable session state; overwriting it", "key", key, "err", err)
	}
	return st.Lease, ent.Revision(), nil
}

func (b *Broker) rev(key string) (uint64, bool) {
	b.revMu.Lock()
	defer b.revMu.Unlock()
	r, ok := b.revs[key]
	return r, ok
}

func (b *Broker) setRev(key string, rev uint64) {
	b.revMu.Lock()
	b.revs[key] = rev
	b.revMu.Unlock()
}

func (b *Broker) dropRev(key string) {
	b.revMu.Lock()
	delete(b.revs, key)
	b.revMu.Unlock()
}

// LoadSession returns the saved session of shard/numShards, or an error
// matching broker.ErrNotFound when none is saved or it was deleted.
func (b *Broker) LoadSession(ctx context.Context, shard, numShards int) (broker.SessionState, error) {
	key, err := sessionKey(shard, numShards)
	if err != nil {
		return broker.SessionState{}, err
	}
	if b.isClosed() {
		return broker.SessionState{}, broker.ErrClosed
	}
	ent, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		b.dropRev(key)
		return broker.SessionState{}, fmt.Errorf("natsbroker: session %s: %w", key, broker.ErrNotFound)
	}
	if err != nil {
		return broker.SessionState{}, fmt.Errorf("natsbroker: load session %s: %w", key, err)
	}
	var st broker.SessionState
	if err := json.Unmarshal(ent.Value(), &st); err != nil {
		return broker.SessionState{}, fmt.Errorf("natsbroker: load session %s: %w", key, err)
	}
	b.setRev(key, ent.Revision())
	return st, nil
}

// DeleteSession forgets the session of shard/numShards. With lease set it
// is fenced like SaveSession: state saved under a greater lease stays, and
// the call fails with broker.ErrFenced. Deleting a missing session is not
// an error.
func (b *Broker) DeleteSession(ctx context.Context, shard, numShards int, lease uint64) error {
	key, err := sessionKey(shard, numShards)
	if err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if lease == 0 {
		err = b.kv.Delete(ctx, key)
	} else {
		err = b.fenced(ctx, key, lease, func(rev uint64) (uint64, error) {
			if rev == 0 {
				return 0, nil // nothing saved
			}
			return 0, b.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		})
	}
	b.dropRev(key) // the delete marker's revision is unknown: read it when needed
	if err != nil {
		return fmt.Errorf("natsbroker: delete session %s: %w", key, err)
	}
	return nil
}

// LastBatch returns the session and last sequence number of the newest
// batch stored for shard (any partition, any event type), or an error
// matching broker.ErrNotFound when the stream holds none. It costs one
// request: the server looks the newest message up by the wildcard subject
// <prefix>.ev.<shard>.>.
func (b *Broker) LastBatch(ctx context.Context, shard int) (broker.LastBatch, error) {
	if shard < 0 {
		return broker.LastBatch{}, fmt.Errorf("%w: shard %d", ErrBadShard, shard)
	}
	if b.isClosed() {
		return broker.LastBatch{}, broker.ErrClosed
	}
	subject := b.subj.ShardEvents(shard)
	msg, err := b.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return broker.LastBatch{}, fmt.Errorf("natsbroker: last batch of shard %d: %w", shard, broker.ErrNotFound)
	}
	if err != nil {
		return broker.LastBatch{}, fmt.Errorf("natsbroker: last batch of shard %d: %w", shard, err)
	}
	last, err := parseSeq(msg.Header.Get(broker.HeaderSeq))
	if err != nil {
		return broker.LastBatch{}, fmt.Errorf("natsbroker: last batch of shard %d (stream seq %d): %w", shard, msg.Sequence, err)
	}
	lb := broker.LastBatch{Session: msg.Header.Get(broker.HeaderSession), LastSeq: last}
	if _, n, ok := strings.Cut(msg.Header.Get(broker.HeaderShard), "/"); ok {
		lb.NumShards, _ = strconv.Atoi(n)
	}
	return lb, nil
}

// parseSeq returns the last sequence number of a "<first>-<last>" header.
func parseSeq(v string) (int64, error) {
	first, last, ok := strings.Cut(v, "-")
	if !ok {
		return 0, fmt.Errorf("%w: %s %q", broker.ErrBadBatch, broker.HeaderSeq, v)
	}
	if _, err := strconv.ParseInt(first, 10, 64); err != nil {
		return 0, fmt.Errorf("%w: %s %q", broker.ErrBadBatch, broker.HeaderSeq, v)
	}
	n, err := strconv.ParseInt(last, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q", broker.ErrBadBatch, broker.HeaderSeq, v)
	}
	return n, nil
}

// coordinatorKey is the session bucket's key where coordinators before
// the control bucket kept their state. Session keys are
// "<num_shards>.<shard>", so it cannot clash.
const coordinatorKey = "coordinator"

// LoadCoordinator returns the state an older coordinator saved in the
// session bucket, or nil when there is none: a coordinator reads it once,
// when the control bucket has no state yet.
func (b *Broker) LoadCoordinator(ctx context.Context) ([]byte, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	ent, err := b.kv.Get(ctx, coordinatorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natsbroker: load %s: %w", coordinatorKey, err)
	}
	return ent.Value(), nil
}

// ErrBadKey means a blob name is not a valid key of its own.
var ErrBadKey = errors.New("natsbroker: bad key")

// checkBlobKey allows names that start with a letter and hold letters,
// digits, '-' and '_' only: lease records and liveness keys have dots.
func checkBlobKey(key string) error {
	if key == "" || len(key) > 64 || !(key[0] >= 'a' && key[0] <= 'z' || key[0] >= 'A' && key[0] <= 'Z') {
		return fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q", ErrBadKey, key)
		}
	}
	return nil
}

// SaveBlob stores data, opaque to the broker, under key in the control
// bucket (the dashboard's history), overwriting what was there.
func (b *Broker) SaveBlob(ctx context.Context, key string, data []byte) error {
	if err := checkBlobKey(key); err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if _, err := b.ctl.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("natsbroker: save %s: %w", key, err)
	}
	return nil
}

// LoadBlob returns what SaveBlob stored under key, or nil when nothing was.
func (b *Broker) LoadBlob(ctx context.Context, key string) ([]byte, error) {
	if err := checkBlobKey(key); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	val, _, err := b.ctl.Get(ctx, key)
	if errors.Is(err, broker.ErrNotFound) {
		return nil, nil
	}
	return val, err
}

// Consumers lists the event stream's consumers with their lag, by name.
func (b *Broker) Consumers(ctx context.Context) ([]broker.ConsumerLag, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	var out []broker.ConsumerLag
	lister := b.stream.ListConsumers(ctx)
	for info := range lister.Info() {
		out = append(out, broker.ConsumerLag{Name: info.Name, Pending: info.NumPending, AckPending: info.NumAckPending})
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("natsbroker: list consumers: %w", err)
	}
	slices.SortFunc(out, func(x, y broker.ConsumerLag) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}
