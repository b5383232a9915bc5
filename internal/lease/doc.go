// Package lease is the coordinator's record of who holds each shard: a
// table of leases with fencing tokens, and a planner that decides which
// shards should move between nodes.
//
// # Leases
//
// A Table grants a shard (0..N-1) to one holder, a gateway node or a bot
// process, for a TTL. The holder renews before the lease expires; a
// holder that goes silent loses the shard when the TTL runs out, and the
// coordinator calls Expire to collect it and hand it on. Every newly
// granted lease carries a fencing token, and whoever acts for a shard
// (publishing its events, holding its session) presents the token, which
// Check compares with the current one, so an owner that lost its lease
// without noticing is refused instead of acting next to the new owner.
//
// Table is a pure state machine: it starts no goroutines, reads no clock
// and does no I/O. Every method that depends on time takes now, so the
// coordinator's shell decides what time it is and tests run without
// waiting. It is not safe for concurrent use; the coordinator serializes
// calls. A lease is live while now is before its Expires and expired from
// Expires on.
//
// The table keeps these invariants, whatever the sequence of calls:
//
//   - A shard has at most one lease, so at most one live holder.
//   - Tokens are never zero and strictly increase across the whole table
//     each time a lease is newly granted; renewing keeps the token. A
//     holder whose lease expired must acquire again and gets a new token.
//   - NextToken is greater than every token the table has issued. Saving
//     it with the leases and passing both to Restore after a restart keeps
//     the coordinator from ever issuing a token twice.
//
// Invalid arguments (a negative shard, an empty holder) are errors
// wrapping ErrInvalid, never panics.
//
// # Assignment
//
// Assign plans where shards should live given the nodes, their capacity
// and what they hold now. It places shards that have no usable owner,
// evens out the number of shards per node, and moves as few shards as it
// can to get there; see Assign for the rules. Like Table, it is pure and
// deterministic: the same input always gives the same plan.
package lease
