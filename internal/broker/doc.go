// Package broker defines how gateway nodes hand events to bot workers: the
// subject scheme, the batch wire format, and the small interfaces the gateway
// publishes and persists session state through. It imports nothing else from
// the module; the NATS JetStream implementation lives in broker/natsbroker.
//
// # Subjects
//
// With the default prefix "gatehouse":
//
//	gatehouse.ev.<shard>.<partition>.<event type>   dispatches (JetStream)
//	gatehouse.cmd.<shard>                           gateway commands (core NATS request/reply)
//
// A consumer filters by type with gatehouse.ev.*.*.MESSAGE_CREATE, by shard
// with gatehouse.ev.7.>, and by partition with gatehouse.ev.*.3.>. The
// partition is a stable hash of the guild ID modulo the configured partition
// count (1 by default, so it is always 0), so one guild's events always share
// a partition and a consumer per partition keeps per-guild order. Events
// without a guild use partition 0.
//
// # Batches
//
// One JetStream message carries a batch: consecutive dispatches of one shard
// session that share a subject, each kept byte for byte as Discord sent it.
// Batching is what brings durable delivery near the cost of reading the
// socket (one JetStream message per event costs about ten times the ingest
// floor). The message ID is <shard>:<session>:<first seq>, so a batch
// published twice, after a retry or a crash, is stored once. See
// AppendRecord and Records for the body and the Header constants for the
// headers.
package broker
