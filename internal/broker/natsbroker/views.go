package natsbroker

import (
	"context"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
)

// PublishView publishes the leading coordinator's read model for the
// other replicas on <prefix>.ctl.view, S2-compressed: core NATS, not
// stored, since only the latest matters.
func (b *Broker) PublishView(ctx context.Context, data []byte) error {
	if b.isClosed() {
		return errClosedView
	}
	enc := s2.Encode(nil, data)
	if len(enc) > int(b.conn.MaxPayload()) {
		return fmt.Errorf("natsbroker: the view is %d bytes compressed, over the server's max payload %d", len(enc), b.conn.MaxPayload())
	}
	return b.conn.Publish(b.subj.View(), enc)
}

var errClosedView = fmt.Errorf("natsbroker: closed")

// Views sends every view published on <prefix>.ctl.view, decompressed,
// until ctx ends; then it closes the channel. A receiver that falls
// behind misses views, never blocks the connection: only the latest
// matters.
func (b *Broker) Views(ctx context.Context) (<-chan []byte, error) {
	in := make(chan *nats.Msg, 4)
	sub, err := b.conn.ChanSubscribe(b.subj.View(), in)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: subscribe views: %w", err)
	}
	_ = sub.SetPendingLimits(16, 256<<20)
	out := make(chan []byte, 1)
	go func() {
		defer close(out)
		defer sub.Unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case <-b.connClosed:
				return
			case m := <-in:
				data, err := s2.Decode(nil, m.Data)
				if err != nil {
					b.log.Warn("unreadable view", "err", err)
					continue
				}
				select {
				case out <- data:
				default: // the receiver is busy: it gets the next one
				}
			}
		}
	}()
	return out, nil
}
