// Package sim is a Discord simulator: the REST calls a sharded bot makes and
// the gateway WebSocket, enforcing Discord's rules, with fault injection and
// statistics. Bot developers point their bots at it offline; Gatehouse's own
// tests use it as the referee.
//
// # Serving
//
// New builds a Server from a Config (zero values mean Discord's defaults) and
// starts its event loop; Serve serves it on a listener, or Handler mounts it.
// Shutdown closes every gateway connection with 1012 (sessions are not
// ended) and stops every goroutine.
//
//	REST    GET /api/v10/gateway, /gateway/bot, /users/@me, /applications/@me (also /api/v9)
//	gateway ws://HOST/?v=10&encoding=json[&compress=zlib-stream|zstd-stream]
//	resume  ws://HOST/resume (READY's resume_gateway_url)
//	admin   GET /sim/stats, GET|POST|DELETE /sim/faults, POST /sim/token
//
// URLs in responses are built from the request's Host header.
//
// # Rules enforced
//
// Before IDENTIFY or RESUME only heartbeats, IDENTIFY and RESUME are
// accepted (else 4003); afterwards ops 1, 3, 4, 8, 31 and 43 (a second
// IDENTIFY or a RESUME closes 4005). Unknown opcodes and payloads of the
// wrong shape close 4001, bad JSON and payloads over 4096 bytes 4002, more
// than SendLimit payloads in any SendWindow 4008. IDENTIFY is checked in
// Discord's order: token (4004), intents (4013), privileged intents (4014),
// shard (4010), guilds per shard (4011), then the identify rate limit per
// bucket (a too-fast IDENTIFY gets op 9 d:false after IdentifyRejectDelay)
// and the session-start budget (ExhaustedPolicy). A client that stops
// heartbeating is closed with HeartbeatTimeoutCode and can resume. Every
// violation is counted by rule in Stats.Violations.
//
// Choices where Discord's behaviour is not documented: a missing v means
// version 6; v outside 6-10 gets HELLO then close 4012; encoding other than
// json gets HELLO then close 4002 (ETF is not supported); an unknown
// compress= value is counted (unknown_compress) and ignored; large_threshold
// is clamped to 50-250; op 8 with a list of guild IDs closes 4001; a heartbeat
// whose d is above the last s sent is counted (heartbeat_seq), not closed;
// a RESUME for a session attached to another connection moves it and cuts
// the old connection. These and the other open questions of the protocol
// reference are Config fields where a test may want the other answer
// (HeartbeatTimeoutCode, ExemptRequestedHeartbeats, IdleResetAfterZero,
// SessionTTL, ReplayBuffer, the fault kinds).
//
// # World and events
//
// The bot's guilds are snowflakes created between 2016 and 2026, spread
// evenly over shards by (id >> 22) % num_shards; names, sizes (most guilds
// small, a few huge), channels, roles and members derive from Seed and the
// guild ID. The event generator makes EventRate events per second per shard
// of the largest num_shards among live sessions, only in guilds some session
// holds, from a realistic mix restricted to the intents live sessions have
// (and to Config.EventTypes when set, for a single-type workload).
// Each event has a unique sim_event_id (d's last key) and goes to every
// session holding its guild, so sessions of two shard counts during a
// reshard see the same events.
//
// # Design
//
// The rules are pure types that take the time as an argument: the identify
// limiter, the session-start budget, the sliding send window, the replay
// ring, the world and its routing index, the event mix and rate
// accumulators. The shell around them is small: one event-loop goroutine,
// and per connection a reader (the accepting goroutine) and a writer.
//
// A session's dispatches live in a replay ring of 16-byte entries, not
// frames: a dispatch is rendered from its entry, the seed and the guild
// when a connection sends it, from templates pre-encoded at start. A RESUME
// replays by moving the connection's cursor back; a replayed dispatch is byte
// for byte the original. The generator only sequences entries; each writer
// renders its own frames straight into one buffer and sends everything due
// in one write. A client that falls behind by more than ReplayBuffer
// dispatches, or whose socket stays blocked for WriteTimeout, is cut and
// counted as slow_consumer; its session stays resumable (from what the ring
// still holds).
//
// The WebSocket server side (RFC 6455) is implemented here on the hijacked
// connection rather than with a library, for the batched writes and for
// exact control of faults (a TCP cut, a payload split over two messages).
package sim
