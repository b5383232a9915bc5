package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// bucket.
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
	if _, err := b.kv.Put(ctx, key, val); err != nil {
		return fmt.Errorf("natsbroker: save session %s: %w", key, err)
	}
	return nil
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
		return broker.SessionState{}, fmt.Errorf("natsbroker: session %s: %w", key, broker.ErrNotFound)
	}
	if err != nil {
		return broker.SessionState{}, fmt.Errorf("natsbroker: load session %s: %w", key, err)
	}
	var st broker.SessionState
	if err := json.Unmarshal(ent.Value(), &st); err != nil {
		return broker.SessionState{}, fmt.Errorf("natsbroker: load session %s: %w", key, err)
	}
	return st, nil
}

// DeleteSession forgets the session of shard/numShards. Deleting a missing
// session is not an error.
func (b *Broker) DeleteSession(ctx context.Context, shard, numShards int) error {
	key, err := sessionKey(shard, numShards)
	if err != nil {
		return err
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	if err := b.kv.Delete(ctx, key); err != nil {
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
	return broker.LastBatch{Session: msg.Header.Get(broker.HeaderSession), LastSeq: last}, nil
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

// coordinatorKey is the session bucket's key for the coordinator's state.
// Session keys are "<num_shards>.<shard>", so it cannot clash.
const coordinatorKey = "coordinator"

// SaveCoordinator stores the coordinator's state (opaque to the broker) in
// the session bucket.
func (b *Broker) SaveCoordinator(ctx context.Context, state []byte) error {
	if b.isClosed() {
		return broker.ErrClosed
	}
	if _, err := b.kv.Put(ctx, coordinatorKey, state); err != nil {
		return fmt.Errorf("natsbroker: save coordinator state: %w", err)
	}
	return nil
}

// LoadCoordinator returns the coordinator's saved state, or nil when none
// was saved.
func (b *Broker) LoadCoordinator(ctx context.Context) ([]byte, error) {
	if b.isClosed() {
		return nil, broker.ErrClosed
	}
	ent, err := b.kv.Get(ctx, coordinatorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("natsbroker: load coordinator state: %w", err)
	}
	return ent.Value(), nil
}
