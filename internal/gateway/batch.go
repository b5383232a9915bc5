package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// batcher collects one shard's consecutive dispatches with the same subject
// into a broker.Batch and hands full or old batches to the publisher. It
// has its own lock, so a publisher that pushes back blocks the reader but
// never the heartbeat timer.
type batcher struct {
	shard     int
	numShards int
	n         *Node

	mu    sync.Mutex
	cur   *broker.Batch
	gen   uint64 // bumped per batch, so a late timer does not flush a newer one
	timer *time.Timer
	subj  []byte // scratch for the subject of the current event
	done  func(*broker.Batch, error)
	last  time.Time // when the previous event was added
	// pending counts this shard's batches handed to the broker and not yet
	// answered (the node's inflight counts every shard's).
	pending sync.WaitGroup
	// publishing counts Publish calls under way: while one blocks (the
	// broker pushes back) the shard reads nothing from its connection.
	publishing atomic.Int32
	// unanswered counts batches handed to the broker and not yet
	// answered; progressAt (unix nanoseconds) is when the publish path
	// last moved: the first of them handed over, or an answer came.
	unanswered atomic.Int32
	progressAt atomic.Int64
}

// publish hands c to the broker, counting the call as under way.
func (b *batcher) publish(ctx context.Context, c *broker.Batch) error {
	b.publishing.Add(1)
	defer b.publishing.Add(-1)
	if b.unanswered.Add(1) == 1 {
		b.progressAt.Store(time.Now().UnixNano())
	}
	err := b.n.pub.Publish(ctx, c, b.done)
	if err != nil {
		b.unanswered.Add(-1) // not handed over: no answer will come
	}
	return err
}

// answered records the broker's answer to one batch.
func (b *batcher) answered() {
	b.progressAt.Store(time.Now().UnixNano())
	b.unanswered.Add(-1)
}

// stalled reports whether the broker has held this shard's publishing
// back at now (see publishStalled).
func (b *batcher) stalled(now time.Time) bool {
	return publishStalled(int(b.unanswered.Load()), time.Unix(0, b.progressAt.Load()), now)
}

// blocked reports whether the shard is held in a Publish call now.
func (b *batcher) blocked() bool { return b.publishing.Load() > 0 }

func (b *batcher) init(n *Node, shard, numShards int, done func(*broker.Batch, error)) {
	b.n, b.shard, b.numShards, b.done = n, shard, numShards, done
	b.timer = time.AfterFunc(time.Hour, b.onTimer)
	b.timer.Stop()
}

// add appends one dispatch received at now. drained says that nothing more
// has arrived on the connection yet. It blocks while the publisher pushes
// back.
//
// A shard that trickles (drained, and its previous event more than
// BatchLinger ago) publishes at once: waiting would only delay the event,
// since nothing is likely to join it, and cost a timer wake-up.
func (b *batcher) add(ctx context.Context, now time.Time, drained bool, session string, h discord.Header, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	trickling := drained && now.Sub(b.last) > b.n.cfg.BatchLinger
	b.last = now
	part := broker.Partition(uint64(h.GuildID), b.n.cfg.Partitions)
	b.subj = b.n.subjects.AppendEvent(b.subj[:0], b.shard, part, h.T)
	maxBody := b.n.maxBody
	if c := b.cur; c != nil && (string(b.subj) != c.Subject || c.Session != session ||
		len(c.Body)+len(payload)+broker.RecordOverhead > maxBody || c.Count >= b.n.cfg.MaxBatchEvents) {
		if err := b.flushLocked(ctx); err != nil {
			return err
		}
	}
	if 1+len(payload)+broker.RecordOverhead > maxBody {
		return b.publishLarge(ctx, session, h, payload)
	}
	if b.cur == nil {
		c := b.n.getBatch()
		*c = broker.Batch{
			Subject:   b.n.intern(b.subj),
			Shard:     b.shard,
			NumShards: b.numShards,
			Session:   session,
			FirstSeq:  h.S,
			Body:      broker.NewBody(c.Body),
			Spare:     c.Spare,
		}
		b.cur = c
		b.gen++
		if b.n.cfg.BatchLinger > 0 && !trickling {
			b.timer.Reset(b.n.cfg.BatchLinger)
		}
	}
	c := b.cur
	c.Body = broker.AppendRecord(c.Body, payload)
	c.LastSeq = h.S
	c.Count++
	if trickling || b.n.cfg.BatchLinger <= 0 || len(c.Body) >= b.n.cfg.MaxBatchBytes || c.Count >= b.n.cfg.MaxBatchEvents {
		return b.flushLocked(ctx)
	}
	return nil
}

// addDedup publishes one dispatch on its own under the deduplication ID
// id (ModeDedup), after the batch being collected.
func (b *batcher) addDedup(ctx context.Context, session string, h discord.Header, payload []byte, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.flushLocked(ctx); err != nil {
		return err
	}
	part := broker.Partition(uint64(h.GuildID), b.n.cfg.Partitions)
	b.subj = b.n.subjects.AppendEvent(b.subj[:0], b.shard, part, h.T)
	if 1+len(payload)+broker.RecordOverhead > b.n.maxBody {
		return b.publishLarge(ctx, session, h, payload) // its own ID: too rare to matter
	}
	c := b.n.getBatch()
	*c = broker.Batch{
		Subject: b.n.intern(b.subj), Shard: b.shard, NumShards: b.numShards, Session: session,
		FirstSeq: h.S, LastSeq: h.S, Count: 1, Dedup: id, Body: broker.NewBody(c.Body), Spare: c.Spare,
	}
	c.Body = broker.AppendRecord(c.Body, payload)
	b.cur = c
	b.gen++
	return b.flushLocked(ctx)
}

// publishLarge publishes one payload too large for a plain batch, zstd
// compressed, on its own.
func (b *batcher) publishLarge(ctx context.Context, session string, h discord.Header, payload []byte) error {
	raw := broker.AppendRecord(broker.NewBody(make([]byte, 0, len(payload)+16)), payload)
	body, err := broker.Compress(nil, raw)
	if err != nil {
		return err
	}
	if len(body) > b.n.maxBody {
		b.n.log.Error("payload too large to publish even compressed; skipped", "shard", b.shard, "seq", h.S, "type", string(h.T), "bytes", len(payload))
		b.n.metrics.oversize.Add(1)
		return nil
	}
	tok, ok := b.n.lease(b.numShards, b.shard)
	if !ok {
		return ErrFenced
	}
	c := &broker.Batch{
		Subject: b.n.intern(b.subj), Shard: b.shard, NumShards: b.numShards, Session: session,
		FirstSeq: h.S, LastSeq: h.S, Count: 1, Lease: tok, Body: body, Start: time.Now(),
	}
	b.n.inflight.Add(1)
	b.pending.Add(1)
	if err := b.publish(ctx, c); err != nil {
		b.n.inflight.Done()
		b.pending.Done()
		return err
	}
	return nil
}

func (b *batcher) flushLocked(ctx context.Context) error {
	c := b.cur
	if c == nil {
		return nil
	}
	tok, ok := b.n.lease(b.numShards, b.shard)
	if !ok {
		// Kept unpublished: the saved sequence has not moved past it, so
		// the shard's next owner gets these events again when it resumes.
		return ErrFenced
	}
	c.Lease, c.Start = tok, time.Now()
	b.cur = nil
	b.timer.Stop()
	if b.n.cfg.BatchCompression == BatchS2 && c.Body[0] == broker.FormatRecords && len(c.Body) >= minCompress {
		if z, err := broker.CompressS2(c.Spare, c.Body); err == nil && len(z) < len(c.Body) {
			c.Spare, c.Body = c.Body, z
		}
	}
	b.n.inflight.Add(1)
	b.pending.Add(1)
	if err := b.publish(ctx, c); err != nil {
		// Not handed over: keep it for the shutdown's last flush. Its
		// events are not lost either way: the persisted seq only moves on
		// acknowledged batches.
		b.n.inflight.Done()
		b.pending.Done()
		b.cur = c
		return err
	}
	return nil
}

// flush publishes the current batch, if any.
func (b *batcher) flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(ctx)
}

func (b *batcher) onTimer() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil {
		return
	}
	if err := b.flushLocked(b.n.runCtx); err != nil {
		// The node is stopping; the shard's shutdown flushes what is left.
		b.n.log.Debug("linger flush", "shard", b.shard, "err", err)
	}
}

func (n *Node) getBatch() *broker.Batch {
	if c, ok := n.batches.Get().(*broker.Batch); ok {
		return c
	}
	// Start small: most batches of a trickling shard hold one or two events,
	// and a buffer grows (and stays grown in the pool) only where needed.
	return &broker.Batch{Body: make([]byte, 0, 8192)}
}

// minCompress is the smallest batch body worth compressing.
const minCompress = 512

// release returns a published batch, with its buffers, to the pool.
func (n *Node) release(c *broker.Batch) {
	compressed := len(c.Body) > 0 && c.Body[0] == broker.FormatS2
	body, spare := c.Body[:0], c.Spare[:0]
	if compressed {
		body, spare = spare, body // keep the records buffer as Body
	}
	limit := 2*n.cfg.MaxBatchBytes + 16384
	if cap(body) > limit {
		body = nil // a rare large one: do not keep it
	}
	if cap(spare) > limit {
		spare = nil
	}
	*c = broker.Batch{Body: body, Spare: spare}
	n.batches.Put(c)
}
