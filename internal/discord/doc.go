// Package discord describes Discord's gateway protocol (API v10) and the REST
// calls a sharded bot makes, using only the standard library.
//
// It holds the wire vocabulary shared by the gateway node, the coordinator and
// the simulator: opcodes, the payload envelope, the close-code table and what a
// client must do after each code, snowflakes, the shard and identify-bucket
// formulas, intents, the typed payloads of the handshake, and a hot-path
// scanner that reads op, s, t and d.guild_id without decoding d.
//
// # Protocol flow
//
// A client calls GET /gateway/bot, opens a WebSocket to the returned URL with
// ?v=10&encoding=json and optionally compress=zlib-stream or zstd-stream, and
// receives HELLO (op 10) carrying heartbeat_interval. It heartbeats (op 1) every
// interval, the first beat after interval × random[0,1), and expects a
// HEARTBEAT ACK (op 11) for each. It then sends IDENTIFY (op 2) for a new
// session, answered by a READY dispatch (op 0) and one GUILD_CREATE per guild
// of its shard, or RESUME (op 6) for an existing session, answered by a replay
// of the missed dispatches with their original sequence numbers and a RESUMED
// dispatch. Every dispatch carries a sequence number s, counting from 1 at READY
// and continuing across resumes.
//
// IDENTIFYs are limited per bucket ShardBucket(shard, max_concurrency) to one
// per five seconds, and to a daily budget of session starts. RESUMEs are free.
// Each connection may send at most 120 payloads per 60 seconds, each at most
// 4096 bytes.
//
// Server frames are JSON objects whose keys come in the order t, s, op, d.
// [AppendFrame] writes that order; [ScanHeader] reads any order.
package discord
