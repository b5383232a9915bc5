package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// commandReply is the JSON answer to a command request.
type commandReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

var replyOK = []byte(`{"ok":true}`)

// ServeCommands answers gateway command requests on <prefix>.cmd.<shard>
// until ctx ends. For a request whose shard satisfies shards, it calls
// handle with the request payload and replies {"ok":true}, or
// {"ok":false,"error":"..."} when handle fails. Requests for other shards
// get no reply from this node, so the node owning the shard answers.
//
// shards and handle run in ServeCommands' goroutine, one request at a time.
// ServeCommands unsubscribes before it returns; it returns nil when ctx
// ends, broker.ErrClosed if the broker closes first, and the subscription
// error otherwise.
func (b *Broker) ServeCommands(ctx context.Context, shards func(shard int) bool, handle func(shard int, payload []byte) error) error {
	if shards == nil || handle == nil {
		return errors.New("natsbroker: ServeCommands needs shards and handle")
	}
	if b.isClosed() {
		return broker.ErrClosed
	}
	sub, err := b.conn.SubscribeSync(b.subj.Commands())
	if errors.Is(err, nats.ErrConnectionClosed) {
		return broker.ErrClosed
	}
	if err != nil {
		return fmt.Errorf("natsbroker: subscribe commands: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Make sure the server has the subscription before reporting it.
	if err := b.conn.FlushTimeout(b.cfg.AckTimeout); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return broker.ErrClosed
		}
		return fmt.Errorf("natsbroker: subscribe commands: %w", err)
	}
	if b.onCommandsSubscribed != nil {
		b.onCommandsSubscribed()
	}
	prefix := b.cfg.Prefix + ".cmd."
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubscription):
				return broker.ErrClosed
			}
			return fmt.Errorf("natsbroker: commands: %w", err)
		}
		tok, ok := strings.CutPrefix(m.Subject, prefix)
		if !ok {
			continue
		}
		shard, err := strconv.Atoi(tok)
		if err != nil || shard < 0 || !shards(shard) {
			continue
		}
		reply := replyOK
		if err := handle(shard, m.Data); err != nil {
			reply, _ = json.Marshal(commandReply{Error: err.Error()})
		}
		if m.Reply == "" {
			continue
		}
		if err := m.Respond(reply); err != nil {
			b.log.Warn("command reply failed", "subject", m.Subject, "err", err)
		}
	}
}
