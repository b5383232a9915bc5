package natsbroker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// Retry backoff after consecutive failures of the head batch: the first
// retry is immediate (a disconnect fails every batch in flight at once, and
// they are retried one after the other), later ones wait from
// retryMinBackoff doubling to retryMaxBackoff.
const (
	retryMinBackoff = 50 * time.Millisecond
	retryMaxBackoff = 2 * time.Second
)

// entry is one batch in flight. Entries are pooled with their message and
// header map, but only those stored at the first attempt: after a failure
// JetStream's own retry timers may still hold the message.
type entry struct {
	msg    nats.Msg
	batch  *broker.Batch
	done   func(*broker.Batch, error)
	fut    jetstream.PubAckFuture
	err    error // synchronous publish error, when fut is nil
	failed bool  // an attempt failed; do not reuse
}

var entryPool = sync.Pool{New: func() any {
	e := &entry{}
	e.msg.Header = nats.Header{
		broker.HeaderMsgID:   {""},
		broker.HeaderShard:   {""},
		broker.HeaderSession: {""},
		broker.HeaderSeq:     {""},
		broker.HeaderLease:   {""},
	}
	return e
}}

func noDone(*broker.Batch, error) {}

// MaxBody is the largest batch Body Publish accepts: the server's max
// payload less a margin for the headers.
func (b *Broker) MaxBody() int { return b.maxBody }

// Publish publishes batch to the stream asynchronously; see
// broker.Publisher for the contract. It blocks while Config.MaxPending
// batches are in flight and returns ctx's error if ctx ends first, or
// broker.ErrClosed once Close has started. It rejects a batch without a
// body or with a subject outside the stream (broker.ErrBadBatch) and a body
// longer than MaxBody (broker.ErrTooLarge). done is called only when
// Publish returns nil.
//
// done runs on the Broker's ack goroutine, in publish order, and the batch
// counts as in flight until it returns: it must be quick and must not call
// Publish. batch and its Body must not change until done runs.
func (b *Broker) Publish(ctx context.Context, batch *broker.Batch, done func(*broker.Batch, error)) error {
	if err := b.checkBatch(batch); err != nil {
		return err
	}
	if done == nil {
		done = noDone
	}
	select {
	case b.sem <- struct{}{}:
	default:
		select {
		case b.sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("natsbroker: publish: %w", context.Cause(ctx))
		case <-b.closing:
			return broker.ErrClosed
		}
	}

	e := entryPool.Get().(*entry)
	e.batch, e.done = batch, done
	e.msg.Subject = batch.Subject
	e.msg.Data = batch.Body
	h := e.msg.Header
	h[broker.HeaderMsgID][0] = batch.MsgID()
	h[broker.HeaderShard][0] = strconv.Itoa(batch.Shard) + "/" + strconv.Itoa(batch.NumShards)
	h[broker.HeaderSession][0] = batch.Session
	h[broker.HeaderSeq][0] = strconv.FormatInt(batch.FirstSeq, 10) + "-" + strconv.FormatInt(batch.LastSeq, 10)
	h[broker.HeaderLease][0] = strconv.FormatUint(batch.Lease, 10)

	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		<-b.sem
		e.release()
		return broker.ErrClosed
	}
	// A synchronous error (reconnect buffer full, connection closing) is
	// handled like a failed ack: the ack goroutine retries the batch.
	e.fut, e.err = b.js.PublishMsgAsync(&e.msg)
	// Never blocks: the queue holds at most one entry per token of sem.
	b.queue <- e
	b.mu.RUnlock()
	return nil
}

func (b *Broker) checkBatch(batch *broker.Batch) error {
	switch {
	case batch == nil:
		return fmt.Errorf("%w: nil batch", broker.ErrBadBatch)
	case len(batch.Body) == 0:
		return fmt.Errorf("%w: empty body", broker.ErrBadBatch)
	case len(batch.Body) > b.maxBody:
		return fmt.Errorf("%w: body of %d bytes, max %d", broker.ErrTooLarge, len(batch.Body), b.maxBody)
	case !b.inStream(batch.Subject):
		return fmt.Errorf("%w: subject %q is not an event subject", broker.ErrBadBatch, batch.Subject)
	}
	return nil
}

// inStream reports whether subject is a literal subject under
// <prefix>.ev.
func (b *Broker) inStream(subject string) bool {
	rest, ok := strings.CutPrefix(subject, b.evPrefix)
	if !ok || rest == "" {
		return false
	}
	return validSubject(subject)
}

// id is the batch's Nats-Msg-Id.
func (e *entry) id() string { return e.msg.Header[broker.HeaderMsgID][0] }

// release returns e to the pool when nothing else can hold its message.
func (e *entry) release() {
	if e.failed {
		return
	}
	e.batch, e.done, e.fut, e.err = nil, nil, nil, nil
	e.msg.Data = nil
	entryPool.Put(e)
}

// runAcker is the ack goroutine: it takes published batches in order,
// waits for each one's acknowledgement, retries failures and runs the done
// callbacks. It returns when Close has closed the queue and every entry is
// finished.
func (b *Broker) runAcker() {
	defer close(b.ackerDone)
	a := acker{b: b, closing: b.closing}
	for e := range b.queue {
		err := a.await(e)
		e.done(e.batch, err)
		e.release()
		<-b.sem
	}
	if a.drain != nil {
		a.drain.Stop()
	}
}

// errUnacked ends the batches still in flight when Close's drain time is up.
var errUnacked = fmt.Errorf("%w: batch not acknowledged before close", broker.ErrClosed)

// acker is the ack goroutine's state.
type acker struct {
	b       *Broker
	fails   int           // consecutive failures
	closing chan struct{} // b.closing until seen closed, then nil
	drain   *time.Timer   // started when closing is seen
	expired bool          // the drain time is up
}

// await returns nil once e is stored, or the error that ends it once the
// broker is closing.
func (a *acker) await(e *entry) error {
	for {
		err := e.err
		if e.fut != nil {
			ok, errc := e.fut.Ok(), e.fut.Err()
			var drained <-chan time.Time
			if a.drain != nil {
				drained = a.drain.C
			}
		wait:
			for {
				if a.expired {
					select {
					case pa := <-ok:
						e.batch.Duplicate = pa != nil && pa.Duplicate
						return nil
					case err = <-errc:
						break wait
					default:
						e.failed = true // JetStream still holds the message
						return errUnacked
					}
				}
				select {
				case pa := <-ok:
					a.fails = 0
					e.batch.Duplicate = pa != nil && pa.Duplicate
					return nil
				case err = <-errc:
					break wait
				case <-a.closing:
					a.startDrain()
					drained = a.drain.C
				case <-drained:
					a.expired = true
				}
			}
		}
		e.failed = true
		if a.closed() {
			return fmt.Errorf("natsbroker: publish %s: %w", e.id(), err)
		}
		a.fails++
		a.b.log.Warn("publish failed, retrying", "msg_id", e.id(),
			"subject", e.msg.Subject, "attempt", a.fails, "err", err)
		if wait := backoff(a.fails); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-a.closing:
				t.Stop()
				a.startDrain()
				return fmt.Errorf("natsbroker: publish %s: %w", e.id(), err)
			}
		}
		e.fut, e.err = a.b.js.PublishMsgAsync(&e.msg)
	}
}

// startDrain notes that Close has started and starts the drain timer.
func (a *acker) startDrain() {
	a.closing = nil
	a.drain = time.NewTimer(a.b.cfg.DrainTimeout)
}

// closed reports whether Close has started, noting it.
func (a *acker) closed() bool {
	if a.closing == nil {
		return true
	}
	select {
	case <-a.closing:
		a.startDrain()
		return true
	default:
		return false
	}
}

// backoff is the wait before retry number fails (1-based).
func backoff(fails int) time.Duration {
	if fails <= 1 {
		return 0
	}
	d := retryMinBackoff
	for i := 2; i < fails && d < retryMaxBackoff; i++ {
		d *= 2
	}
	return min(d, retryMaxBackoff)
}
