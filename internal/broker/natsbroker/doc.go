// Package natsbroker implements the broker interfaces on NATS JetStream.
//
// A [Broker] either runs an embedded nats-server with JetStream in the same
// process (Config.URL empty: the default single-node deployment) or connects
// to an external NATS server or cluster (Config.URL set). Both modes use the
// same client code, stream and bucket. Open creates or updates:
//
//   - the event stream (Config.Stream, default "GATEHOUSE_EVENTS") on
//     <prefix>.ev.>, file storage, limits retention, discard old, bounded by
//     age and optionally bytes, with a deduplication window so that a batch
//     published twice under the same Nats-Msg-Id is stored once;
//   - the session bucket (Config.SessionBucket, default
//     "gatehouse_sessions"), a key-value bucket with history 1 keyed
//     "<num_shards>.<shard>" and holding broker.SessionState as JSON, plus
//     the key "coordinator" holding the coordinator's state (leases and the
//     fencing-token counter).
//
// # Publishing
//
// Broker implements broker.Publisher with JetStream asynchronous publishes.
// Publish sends the batch at once, in the caller's goroutine, so batches one
// goroutine publishes reach the server, and are stored, in that order. It
// then hands the pending acknowledgement to a single ack goroutine owned by
// the Broker, which waits for the acknowledgements in publish order and runs
// each batch's done callback. At most Config.MaxPending batches are in
// flight (published, done not yet returned); Publish blocks while the window
// is full, so a slow broker slows the gateway down instead of dropping
// events.
//
// A failed or timed-out acknowledgement is retried with the same
// Nats-Msg-Id, which the stream deduplicates, first at once and then with a
// growing backoff, until it succeeds or the Broker closes. While the ack
// goroutine retries a batch it holds back the done callbacks of the batches
// behind it, so done callbacks always run in publish order. A batch
// published after a failed one may be stored before the retry of the failed
// one; consumers see the gateway sequence numbers in the Gatehouse-Seq
// header.
//
// # Session state
//
// Broker implements broker.Store: SaveSession, LoadSession and
// DeleteSession use the session bucket, and LastBatch reads the newest
// message of a shard's subjects (<prefix>.ev.<shard>.>) from the stream in a
// single request.
//
// # Commands
//
// ServeCommands answers core NATS requests on <prefix>.cmd.<shard> for the
// shards a node owns, replying {"ok":true} or {"ok":false,"error":"..."}.
//
// # Durability
//
// JetStream acknowledges a write before it reaches the disk and fsyncs every
// sync interval (two minutes by default in nats-server). The embedded server
// here syncs every second by default (Config.SyncInterval), which bounds what
// an operating-system crash or power loss can lose; Config.SyncAlways syncs
// every write at a large cost in throughput. A crash of the process alone
// loses nothing acknowledged.
package natsbroker
