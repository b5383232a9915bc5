package probe

import (
	"context"
	"log/slog"
)

// WatchHandler is a slog.Handler that passes records on to next and calls
// on for each record whose message is one of msgs, with the shard_id
// attribute found on the record or on the logger (-1 when absent) and the
// record's other attributes. It lets a program learn from a client's own logs
// what the client saw (for example "received invalid session").
type WatchHandler struct {
	next  slog.Handler
	msgs  map[string]bool
	on    func(msg string, shard int, attrs map[string]slog.Value)
	shard int
}

// NewWatchHandler returns a WatchHandler; see the type.
func NewWatchHandler(next slog.Handler, on func(msg string, shard int, attrs map[string]slog.Value), msgs ...string) *WatchHandler {
	m := map[string]bool{}
	for _, s := range msgs {
		m[s] = true
	}
	return &WatchHandler{next: next, msgs: m, on: on, shard: -1}
}

// Enabled reports true for watched levels too, so watched records are seen
// even when next would drop them.
func (h *WatchHandler) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (h *WatchHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.msgs[r.Message] {
		shard := h.shard
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "shard_id" && a.Value.Kind() == slog.KindInt64 {
				shard = int(a.Value.Int64())
			}
			attrs[a.Key] = a.Value
			return true
		})
		h.on(r.Message, shard, attrs)
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *WatchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	for _, a := range as {
		if a.Key == "shard_id" && a.Value.Kind() == slog.KindInt64 {
			c.shard = int(a.Value.Int64())
		}
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *WatchHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
