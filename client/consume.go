package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// Tuning of Consume that is not worth a Config field.
const (
	// maxFilterSubjects caps the consumer's filter subjects; past it the
	// largest dimension is filtered on the client instead.
	maxFilterSubjects = 64
	// pullBatches bounds what the pull subscription buffers ahead of the
	// shards.
	pullBatches = 256
	// shardQueue is how many batches wait for each shard's goroutine.
	shardQueue = 32
	// maxRetryShift caps the retry delay at RetryDelay << maxRetryShift.
	maxRetryShift = 5
	// stopTimeout bounds each step of the shutdown: releasing buffered
	// batches, flushing acknowledgements, deleting an ephemeral consumer.
	stopTimeout = 2 * time.Second
	// ephemeralInactive is how long the server keeps an ephemeral consumer
	// whose client vanished without deleting it.
	ephemeralInactive = 5 * time.Minute
)

// selection is the Config's filter in the forms Consume needs: the filter
// subjects for the server, and sets for what the client checks itself (nil
// means any).
type selection struct {
	filters    []string
	shards     map[int]bool
	partTokens map[int]bool
	types      map[string]bool
	partitions int // > 1: check broker.Partition of each event
	partition  int
}

func (c *Client) selection() selection {
	cfg := &c.cfg
	sel := selection{}
	if len(cfg.Shards) > 0 {
		sel.shards = make(map[int]bool, len(cfg.Shards))
		for _, s := range cfg.Shards {
			sel.shards[s] = true
		}
	}
	if len(cfg.Types) > 0 {
		sel.types = make(map[string]bool, len(cfg.Types))
		for _, t := range cfg.Types {
			sel.types[t] = true
		}
	}
	toks := partitionTokens(cfg.Partition, cfg.Partitions, cfg.GatewayPartitions)
	if toks != nil {
		sel.partTokens = make(map[int]bool, len(toks))
		for _, t := range toks {
			sel.partTokens[t] = true
		}
	}
	if cfg.Partitions > 1 {
		sel.partitions, sel.partition = cfg.Partitions, cfg.Partition
	}
	sel.filters = filterSubjects(c.subjects, cfg.Shards, toks, cfg.Types)
	return sel
}

// wantBatch reports whether a batch's subject is selected.
func (s *selection) wantBatch(m *batchMeta) bool {
	return (s.shards == nil || s.shards[m.shard]) &&
		(s.partTokens == nil || s.partTokens[m.partition]) &&
		(s.types == nil || s.types[m.typ])
}

// wantEvent reports whether an event of a selected batch is selected.
func (s *selection) wantEvent(ev *Event) bool {
	return (s.types == nil || s.types[ev.Type]) &&
		(s.partitions == 0 || broker.Partition(ev.GuildID, s.partitions) == s.partition)
}

// partitionTokens returns the subject partition tokens, out of the
// gatewayParts the gateways publish with, that can hold guilds of partition p
// of parts: those congruent to p modulo gcd(gatewayParts, parts), since
// broker.Partition is one hash reduced modulo the count. Nil means every
// token, or an unknown gateway count.
func partitionTokens(p, parts, gatewayParts int) []int {
	if parts <= 1 || gatewayParts <= 1 {
		return nil
	}
	g := gcd(gatewayParts, parts)
	if g == 1 {
		return nil
	}
	var toks []int
	for t := p % g; t < gatewayParts; t += g {
		toks = append(toks, t)
	}
	return toks
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// filterSubjects returns the filter subjects selecting shards × partition
// tokens × types (a nil list means any). When the product exceeds
// maxFilterSubjects, the longest list is widened to any until it fits; the
// client filters those events itself.
func filterSubjects(subj broker.Subjects, shards, toks []int, types []string) []string {
	count := func() int { return max(len(shards), 1) * max(len(toks), 1) * max(len(types), 1) }
	for count() > maxFilterSubjects {
		switch max(len(shards), len(toks), len(types)) {
		case len(shards):
			shards = nil
		case len(types):
			types = nil
		default:
			toks = nil
		}
	}
	if len(shards) == 0 && len(toks) == 0 && len(types) == 0 {
		return []string{subj.Events()}
	}
	if len(shards) == 0 {
		shards = []int{-1}
	}
	if len(toks) == 0 {
		toks = []int{-1}
	}
	if len(types) == 0 {
		types = []string{""}
	}
	out := make([]string, 0, len(shards)*len(toks)*len(types))
	for _, s := range shards {
		for _, p := range toks {
			for _, t := range types {
				out = append(out, subj.EventFilter(s, p, t))
			}
		}
	}
	return out
}

// consumer creates or updates the JetStream consumer for filters.
func (c *Client) consumer(ctx context.Context, filters []string) (jetstream.Consumer, error) {
	stream, err := c.js.Stream(ctx, c.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNoStream, c.cfg.Stream)
	}
	if err != nil {
		return nil, fmt.Errorf("client: looking up stream %s: %w", c.cfg.Stream, err)
	}
	cc := jetstream.ConsumerConfig{
		Durable:       c.cfg.Consumer,
		Description:   "gatehouse client",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.cfg.MaxAckPending,
	}
	if c.cfg.DeliverNew {
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	if len(filters) == 1 {
		cc.FilterSubject = filters[0]
	} else {
		cc.FilterSubjects = filters
	}
	if c.cfg.Consumer == "" {
		cc.InactiveThreshold = ephemeralInactive
		cons, err := stream.CreateConsumer(ctx, cc)
		if err != nil {
			return nil, fmt.Errorf("client: creating consumer: %w", err)
		}
		return cons, nil
	}
	// Where to start is decided once, when the durable consumer is created;
	// the server refuses to change it later.
	old, err := stream.Consumer(ctx, c.cfg.Consumer)
	if err == nil {
		oc := old.CachedInfo().Config
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = oc.DeliverPolicy, oc.OptStartSeq, oc.OptStartTime
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("client: looking up consumer %s: %w", c.cfg.Consumer, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("client: creating consumer %s: %w", c.cfg.Consumer, err)
	}
	if c.cfg.Exclusive && old != nil {
		if info := cons.CachedInfo(); info != nil && info.NumAckPending > 0 {
			// A previous run died holding these: deliver again from the
			// oldest unacknowledged batch now rather than after AckWait.
			r, err := stream.ResetConsumer(ctx, c.cfg.Consumer)
			if err != nil {
				return nil, fmt.Errorf("client: resetting consumer %s to its acknowledgement floor: %w", c.cfg.Consumer, err)
			}
			c.log.Info("exclusive consumer: redelivering what the previous run did not acknowledge",
				"consumer", c.cfg.Consumer, "from_stream_seq", r.ResetSeq, "pending", info.NumAckPending)
		}
	}
	return cons, nil
}

// Consume receives the selected events and calls handler for each until ctx
// ends, then returns nil; it returns an error when it cannot start (no
// stream: ErrNoStream) or cannot go on (ErrClosed after Close, or the
// consumer was deleted). The package documentation describes the order and
// delivery guarantees. handler receives a context that ends when Consume
// is stopping; an Event is valid only until handler returns.
//
// Once ctx ends, Consume lets each shard finish the event it is on, gives
// every batch it holds but has not acknowledged back to the server, in
// order, so that the next consumer receives it at once, and returns; that
// takes about half a second plus the running handler calls.
//
// The events of one shard are handled one at a time and in order, by a
// goroutine of that shard; events of different shards are handled
// concurrently. A nil return acknowledges the event; an error makes the
// shard wait and hand the same event to the handler again.
func (c *Client) Consume(ctx context.Context, handler func(ctx context.Context, ev *Event) error) error {
	if handler == nil {
		return fmt.Errorf("%w: nil handler", ErrInvalidConfig)
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if !c.consuming.CompareAndSwap(false, true) {
		return ErrConsuming
	}
	defer c.consuming.Store(false)

	sel := c.selection()
	cons, err := c.consumer(ctx, sel.filters)
	if err != nil {
		switch {
		case c.closed.Load():
			return ErrClosed // Close raced with creating the consumer
		case ctx.Err() != nil:
			return nil
		}
		return err
	}
	name := cons.CachedInfo().Name
	log := c.log.With("consumer", name)
	log.Debug("consuming", "filters", sel.filters)
	defer func() {
		if c.cfg.Consumer != "" || c.closed.Load() {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		stream, err := c.js.Stream(dctx, c.cfg.Stream)
		if err == nil {
			err = stream.DeleteConsumer(dctx, name)
		}
		if err != nil {
			log.Debug("deleting ephemeral consumer", "err", err)
		}
	}()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pull := min(pullBatches, c.cfg.MaxAckPending)
	r := &consumeRun{
		c:          c,
		cons:       cons,
		log:        log,
		handler:    handler,
		sel:        sel,
		pull:       pull,
		evPrefix:   c.subjects.EventPrefix(),
		touchEvery: c.cfg.AckWait / 3,
		ackedRing:  pull + shardQueue + 32,
		workers:    map[int]*shardWorker{},
	}
	err = r.dispatch(wctx)

	// The last pull request has ended, so the server sends nothing more.
	// Let the shard goroutines finish the event they are on, then give back
	// what was not acknowledged.
	cancel()
	for _, w := range r.workers {
		close(w.ch)
	}
	r.wg.Wait()
	r.releaseAll()
	return err
}

// consumeRun is the state of one Consume call.
type consumeRun struct {
	c          *Client
	cons       jetstream.Consumer
	pull       int // batches per pull request
	log        *slog.Logger
	handler    func(context.Context, *Event) error
	sel        selection
	evPrefix   string
	touchEvery time.Duration // how often to extend the ack deadline of a batch in work
	ackedRing  int           // how many acknowledged batches each shard remembers

	workers map[int]*shardWorker // owned by dispatch
	wg      sync.WaitGroup

	releaseMu sync.Mutex
	released  []jetstream.Msg // batches to give back to the server at the end
}

// release keeps m, not acknowledged, to give it back when Consume ends.
func (r *consumeRun) release(m jetstream.Msg) {
	r.releaseMu.Lock()
	r.released = append(r.released, m)
	r.releaseMu.Unlock()
}

// releaseAll gives the released batches back to the server, in stream
// order, so that the next consumer receives them first and in order; then
// it flushes what the connection buffers, acknowledgements included.
func (r *consumeRun) releaseAll() {
	nc := r.c.nc
	if nc.IsClosed() {
		return // the server gives them out again after AckWait
	}
	// Asking for the consumer's info makes the server drop pull requests
	// nobody listens to any more, such as one whose end the client missed.
	// Were one still listed, the server would take the first released batch
	// for it, find nobody listening and queue that batch again behind the
	// others.
	_ = nc.FlushTimeout(stopTimeout)
	r.releaseMu.Lock()
	if len(r.released) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		_, _ = r.cons.Info(ctx)
		cancel()
	}
	defer r.releaseMu.Unlock()
	seq := func(m jetstream.Msg) uint64 {
		if md, err := m.Metadata(); err == nil {
			return md.Sequence.Stream
		}
		return 0
	}
	slices.SortFunc(r.released, func(a, b jetstream.Msg) int { return cmp.Compare(seq(a), seq(b)) })
	for _, m := range r.released {
		_ = m.Nak()
	}
	r.released = nil
	_ = nc.FlushTimeout(stopTimeout)
}

// dispatch pulls batches through one continuous pull subscription and
// hands each to its shard's goroutine until ctx ends (nil) or pulling
// fails for good. It returns only once nothing more can arrive.
//
// One subscription, not a pull request at a time: in a cluster, a
// consumer's leader can deliver to a request the client already gave up
// on, into an inbox nobody reads any more, and those batches then wait
// for AckWait, holding the acknowledgement floor (and, at MaxAckPending,
// every delivery) back.
func (r *consumeRun) dispatch(ctx context.Context) error {
	it, err := r.cons.Messages(jetstream.PullMaxMessages(r.pull),
		jetstream.PullExpiry(fetchExpiry), jetstream.PullHeartbeat(fetchExpiry/3))
	if err != nil {
		return fmt.Errorf("client: consuming: %w", err)
	}
	// Stopping drains: what the subscription already holds still comes
	// out of Next, to be given back with the rest.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	for {
		m, err := it.Next()
		if err == nil {
			r.routeOne(ctx, m)
			continue
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if r.c.closed.Load() {
				return ErrClosed
			}
			return nil
		case r.c.closed.Load():
			it.Stop()
			return ErrClosed
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
			errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionClosed):
			it.Stop()
			return fmt.Errorf("client: consuming: %w", err)
		}
		if ctx.Err() == nil {
			r.log.Warn("pulling events: a transient error; going on", "err", err)
		}
	}
}

// fetchExpiry bounds how long one pull request waits on the server.
const fetchExpiry = 5 * time.Second

// routeOne hands a batch to its shard, or keeps it to give back once ctx
// has ended.
func (r *consumeRun) routeOne(ctx context.Context, m jetstream.Msg) {
	if ctx.Err() != nil {
		r.release(m)
		return
	}
	shard, _, _, ok := parseSubject(m.Subject(), r.evPrefix)
	if !ok {
		r.log.Error("terminating batch with a malformed subject", "subject", m.Subject())
		_ = m.TermWithReason("gatehouse client: malformed subject")
		return
	}
	w := r.workers[shard]
	if w == nil {
		w = &shardWorker{
			r:     r,
			ch:    make(chan jetstream.Msg, shardQueue),
			acked: make([]uint64, r.ackedRing),
		}
		r.workers[shard] = w
		r.wg.Go(func() { w.run(ctx) })
	}
	select {
	case w.ch <- m:
	case <-ctx.Done():
		r.release(m)
	}
}

// shardWorker handles the batches of one shard, in order.
type shardWorker struct {
	r  *consumeRun
	ch chan jetstream.Msg // closed by Consume after dispatch returned
	ev Event              // reused for every event

	// acked remembers the stream sequences of the batches acknowledged
	// last, so that a batch the server delivered again while the first
	// copy waited in the queue is not handled twice.
	acked     []uint64
	ackedNext int
}

func (w *shardWorker) run(ctx context.Context) {
	for m := range w.ch {
		if ctx.Err() != nil {
			w.r.release(m)
			continue
		}
		w.handle(ctx, m)
	}
}

func (w *shardWorker) wasAcked(seq uint64) bool {
	return slices.Contains(w.acked, seq)
}

func (w *shardWorker) ack(m jetstream.Msg, seq uint64) {
	_ = m.Ack()
	w.acked[w.ackedNext] = seq
	w.ackedNext = (w.ackedNext + 1) % len(w.acked)
}

// errStopping ends a batch early when Consume is stopping.
var errStopping = errors.New("client: stopping")

// handlerError carries an error the handler returned.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// handle runs the handler over the selected events of one batch and
// acknowledges it, retrying the event that fails until it succeeds or ctx
// ends.
func (w *shardWorker) handle(ctx context.Context, m jetstream.Msg) {
	r := w.r
	log := r.log
	md, err := m.Metadata()
	if err != nil {
		log.Error("terminating a message that is not from JetStream", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	seq := md.Sequence.Stream
	redelivered := md.NumDelivered > 1
	if redelivered && w.wasAcked(seq) {
		_ = m.Ack()
		return
	}
	h := m.Headers()
	meta, err := parseBatchMeta(m.Subject(), r.evPrefix, h.Get(broker.HeaderShard), h.Get(broker.HeaderSession))
	if err != nil {
		log.Error("terminating malformed batch", "subject", m.Subject(), "stream_seq", seq,
			"shard_header", h.Get(broker.HeaderShard), "session", h.Get(broker.HeaderSession))
		_ = m.TermWithReason("gatehouse client: malformed headers")
		return
	}
	// A missing or unreadable lease header (an older node) reads as 0.
	meta.lease, _ = strconv.ParseUint(h.Get(broker.HeaderLease), 10, 64)
	r.c.learnShards(meta.numShards, seq)
	if !r.sel.wantBatch(&meta) {
		w.ack(m, seq)
		return
	}
	var (
		done      int // events handled by earlier attempts
		failed    int // the event that failed last, counting from 1
		idx       int
		lastTouch time.Time
	)
	fn := func(ev *Event) error {
		idx++
		if idx <= done || !r.sel.wantEvent(ev) {
			return nil
		}
		if ctx.Err() != nil {
			return errStopping
		}
		if now := time.Now(); now.Sub(lastTouch) >= r.touchEvery {
			_ = m.InProgress()
			lastTouch = now
		}
		ev.Redelivered = redelivered || idx == failed
		if err := r.handler(ctx, ev); err != nil {
			return &handlerError{err}
		}
		done = idx
		return nil
	}
	for attempt := 0; ; attempt++ {
		idx = 0
		lastTouch = time.Now()
		bad, err := eachEvent(m.Data(), &meta, &w.ev, fn)
		if bad > 0 && attempt == 0 {
			log.Warn("skipped malformed payloads", "shard", meta.shard, "stream_seq", seq, "count", bad)
		}
		var he *handlerError
		switch {
		case err == nil:
			w.ack(m, seq)
			return
		case ctx.Err() != nil:
			r.release(m)
			return
		case errors.As(err, &he):
			failed = done + 1
			delay := r.c.cfg.RetryDelay << min(attempt, maxRetryShift)
			log.Warn("handler failed; retrying", "shard", meta.shard, "key", w.ev.Key(),
				"type", w.ev.Type, "attempt", attempt+1, "retry_in", delay, "err", he.err)
			if !w.wait(ctx, m, delay) {
				r.release(m)
				return
			}
		default:
			log.Error("terminating malformed batch", "shard", meta.shard, "stream_seq", seq,
				"seq", h.Get(broker.HeaderSeq), "handled", done, "err", err)
			_ = m.TermWithReason("gatehouse client: malformed body")
			return
		}
	}
}

// wait waits d, or until ctx ends (false), extending m's ack deadline.
func (w *shardWorker) wait(ctx context.Context, m jetstream.Msg, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(w.r.touchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			_ = m.InProgress()
		}
	}
}
