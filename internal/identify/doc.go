// Package identify decides when a shard may send IDENTIFY under Discord's
// rules: one IDENTIFY per bucket (shard % max_concurrency) per 5 seconds,
// first come first served within a bucket, and a daily budget of session
// starts that must never be exceeded (going over resets the bot's token).
//
// Scheduler is the pure core: callers pass the time in and get decisions
// out, so every rule is tested without clocks. LocalGate wraps it with the
// wall clock and blocking waiters; a gateway node uses one for its own
// shards, and the coordinator serves the whole deployment's queue with one.
package identify
