// Package gateway is Gatehouse's data plane: it holds a bot's shard
// sessions to Discord and publishes every dispatch to the broker.
//
// Each shard is a pure state machine (Machine: inputs with the time in,
// actions out) wrapped by a thin shell (one reading goroutine per
// connection, timers for heartbeats and deadlines). The hot path reads a
// frame, inflates it, scans op/s/t/d.guild_id without decoding d, and
// appends the raw payload to the shard's current batch; batches are
// published with a deduplication ID, and a shard's session state (session
// ID, the last sequence published, resume URL) is saved so a restarted node
// RESUMEs instead of identifying.
//
// IDENTIFY goes through an IdentifyGate (LocalGate in one process, the
// coordinator's queue in a fleet); RESUME never does. Commands from bot
// workers go through a per-connection send limiter that keeps slots for
// heartbeats.
package gateway
