// Package client is what a bot worker uses to receive Gatehouse events and to
// send gateway commands.
//
// Gateway nodes hold the Discord shard sessions and publish every dispatch to
// a NATS JetStream stream; a worker connects to the same NATS server or
// cluster, consumes with acknowledgements and never talks to Discord's
// gateway itself.
//
//	c, err := client.Connect(ctx, client.Config{
//		URL:      "nats://127.0.0.1:4222",
//		Consumer: "my-bot",
//		Types:    []string{"MESSAGE_CREATE", "INTERACTION_CREATE"},
//	})
//	if err != nil { … }
//	defer c.Close()
//	err = c.Consume(ctx, func(ctx context.Context, ev *client.Event) error {
//		// ev.Data is the raw JSON of the dispatch's d.
//		return nil
//	})
//
// # Delivery contract
//
// Delivery is at least once. Events travel in batches (one JetStream message
// holds consecutive dispatches of one shard with the same subject); a batch is
// acknowledged only after the handler returned nil for each of its events.
// Whatever was handled but not acknowledged — the start of a batch cut short
// by the end of Consume or by a crash — is delivered again, so the same
// event can reach the handler more than once. [Event.Key] is unique per
// Discord dispatch and stable across redeliveries: handlers with side effects
// deduplicate on it.
//
// Within one Consume call, the events of one shard reach the handler one at a
// time, in the order the gateway received them; different shards are handled
// concurrently, each by its own goroutine. When the handler returns an error
// the shard stops where it is: after [Config.RetryDelay] (doubling up to 32
// times that on each further failure) the failed event is handed to the
// handler again, with Redelivered set, and the shard continues only once it
// succeeds. The shard's later events wait meanwhile and other shards carry
// on, so a failing handler never reorders a shard. While a shard waits, the
// client keeps the batch's acknowledgement deadline alive; if Consume ends
// first, the batch is released to the server at once (negative
// acknowledgement), and the next consumer receives it in full.
//
// When Consume ends it releases every batch it holds, in stream order, so
// that the server delivers them again before newer ones: a worker restarted
// with the same durable Consumer continues each shard where it stopped, in
// order, without waiting for AckWait. A worker that crashes leaves its
// batches to AckWait instead; they then come after the events the server
// delivered in the meantime.
//
// Several processes may share one durable consumer to spread the load; the
// server then hands each batch to one of them, and the order of a shard holds
// only within each process. To keep per-shard order across processes, give
// each its own consumer and its own Shards (or Partition) instead.
//
// A batch that cannot be decoded (a corrupt body or missing headers) is
// logged and terminated: it is never delivered again. A single malformed
// payload inside a good batch is logged and skipped.
//
// # Filtering
//
// Types, Shards and Partition select events. The server filters by subject
// (gatehouse.ev.<shard>.<partition>.<type>) wherever the product of the lists
// stays small (up to 64 filter subjects; beyond that the coarser dimensions
// are left to the client), and the client skips what the server could not
// exclude, so the handler only ever sees selected events.
//
// # Commands
//
// [Client.Send] and [Client.SendShard] send a raw gateway payload, such as a
// presence update (op 3), a voice state update (op 4) or a guild member
// request (op 8), to the gateway node that holds the shard, and wait for its
// answer.
package client
