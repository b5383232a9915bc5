package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The stream and the buckets. With Config.Manage the broker creates what
// is missing and brings settings in line; without it, it binds to what
// exists. Either way it never lowers a stream's replicas.

// replicasFor returns the replica count to give a stream that has have
// replicas now (0: it does not exist), or an error when the configured
// count would lower it.
func (b *Broker) replicasFor(kind, name string, have int) (int, error) {
	want := b.cfg.Replicas
	switch {
	case want == 0 && have == 0:
		return 1, nil
	case want == 0:
		return have, nil
	case have > want:
		return 0, fmt.Errorf("%w: %s %s has %d replicas and this process was started with %d: refusing to lower them (start it with -replicas %d, or lower them yourself with the nats tool)",
			ErrConfig, kind, name, have, want, have)
	}
	return want, nil
}

// retried runs op with a bounded wait per attempt until it succeeds, fails
// for good, or ctx ends: in a cluster, a stream being created or electing
// its leader answers nothing for a while, and a request sent then is lost.
func retried[T any](ctx context.Context, op func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := op(actx)
		cancel()
		transient := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || strings.Contains(fmt.Sprint(err), "temporarily unavailable")
		if err == nil || !transient || ctx.Err() != nil {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ensureStream creates or updates the event stream (Manage), or binds to
// it.
func (b *Broker) ensureStream(ctx context.Context, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	return retried(ctx, func(ctx context.Context) (jetstream.Stream, error) { return b.ensureStreamOnce(ctx, sc) })
}

func (b *Broker) ensureStreamOnce(ctx context.Context, sc jetstream.StreamConfig) (jetstream.Stream, error) {
	have := 0
	st, err := b.js.Stream(ctx, sc.Name)
	switch {
	case err == nil:
		info, err := st.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsbroker: stream %s: %w", sc.Name, err)
		}
		have = info.Config.Replicas
		if !b.cfg.Manage {
			return st, nil
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !b.cfg.Manage {
			return nil, fmt.Errorf("natsbroker: the stream %s does not exist: start gatehouse broker or the coordinator first, which create it (%w)", sc.Name, err)
		}
	default:
		return nil, fmt.Errorf("natsbroker: stream %s: %w", sc.Name, err)
	}
	if sc.Replicas, err = b.replicasFor("stream", sc.Name, have); err != nil {
		return nil, err
	}
	st, err = b.js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: stream %s: %w", sc.Name, err)
	}
	return st, nil
}

// ensureBucket creates or updates a key-value bucket (Manage), or binds
// to it.
func (b *Broker) ensureBucket(ctx context.Context, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retried(ctx, func(ctx context.Context) (jetstream.KeyValue, error) { return b.ensureBucketOnce(ctx, kc) })
}

func (b *Broker) ensureBucketOnce(ctx context.Context, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	have := 0
	kv, err := b.js.KeyValue(ctx, kc.Bucket)
	switch {
	case err == nil:
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("natsbroker: bucket %s: %w", kc.Bucket, err)
		}
		have = st.Config().Replicas
		if !b.cfg.Manage {
			return kv, nil
		}
		if kc.TTL == 0 {
			kc.TTL = st.TTL() // leave an existing TTL alone
		}
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if !b.cfg.Manage {
			return nil, fmt.Errorf("natsbroker: the bucket %s does not exist: start gatehouse broker or the coordinator first, which create it (%w)", kc.Bucket, err)
		}
	default:
		return nil, fmt.Errorf("natsbroker: bucket %s: %w", kc.Bucket, err)
	}
	if kc.Replicas, err = b.replicasFor("bucket", kc.Bucket, have); err != nil {
		return nil, err
	}
	kv, err = b.js.CreateOrUpdateKeyValue(ctx, kc)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: bucket %s: %w", kc.Bucket, err)
	}
	return kv, nil
}

// openControl opens the control plane's buckets: the coordinators' state
// (no TTL) and the records that expire (the lease TTL).
func (b *Broker) openControl(ctx context.Context) error {
	ctl, err := b.ensureBucket(ctx, jetstream.KeyValueConfig{
		Bucket: b.cfg.ControlBucket, Description: "Gatehouse control plane: shard leases, coordinator state",
		History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return err
	}
	b.ctl = &KV{kv: ctl, name: b.cfg.ControlBucket}
	ttl := b.cfg.LiveTTL
	if ttl == 0 {
		if _, err := b.js.KeyValue(ctx, b.cfg.LiveBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
			ttl = DefaultLiveTTL
		}
	}
	live, err := b.ensureBucket(ctx, jetstream.KeyValueConfig{
		Bucket: b.cfg.LiveBucket, Description: "Gatehouse liveness: gateway nodes and the coordinator leader; records expire",
		History: 1, Storage: jetstream.FileStorage, TTL: ttl,
		// Expiries leave a marker that watchers see, kept this long. It
		// must be set when the bucket is created.
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return err
	}
	b.live = &KV{kv: live, name: b.cfg.LiveBucket}
	return nil
}

// Control is the bucket of the coordinators' state.
func (b *Broker) Control() *KV { return b.ctl }

// Live is the bucket of records that expire: liveness and leadership.
func (b *Broker) Live() *KV { return b.live }
