package sim

import (
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the simulator's counters (GET /sim/stats).
type Stats struct {
	Connections      int64 `json:"connections"`       // gateway connections open now
	ConnectionsTotal int64 `json:"connections_total"` // gateway connections accepted
	// Identifies counts IDENTIFY payloads received before a session, whatever
	// their outcome.
	Identifies int64 `json:"identifies"`
	// IdentifyViolations counts IDENTIFYs refused for the identify rate
	// limit (also in Violations["identify_rate"]).
	IdentifyViolations int64 `json:"identify_violations"`
	Readies            int64 `json:"readies"`         // READYs sent: sessions started
	Resumes            int64 `json:"resumes"`         // successful RESUMEs
	ResumeFailures     int64 `json:"resume_failures"` // RESUMEs answered op 9 or closed 4007
	// Events counts generated dispatches delivered to sessions (each
	// delivery to each session once), including those queued for a
	// disconnected session.
	Events int64 `json:"events"`
	// EventIDs is the last sim_event_id generated: ids run from 1 to it.
	EventIDs   int64 `json:"event_ids"`
	Heartbeats int64 `json:"heartbeats"` // heartbeats received
	Closes     int64 `json:"closes"`     // connections the server closed (close frame or cut)
	// SessionStartsRemaining and SessionStartsTotal are the session-start
	// budget now.
	SessionStartsRemaining int  `json:"session_starts_remaining"`
	SessionStartsTotal     int  `json:"session_starts_total"`
	TokenReset             bool `json:"token_reset"` // the token was reset (ExhaustResetToken) and not rotated since
	Sessions               int  `json:"sessions"`    // live sessions, connected or resumable
	// Violations counts rule violations by rule name; every known rule is
	// present, at 0 when never violated.
	Violations map[string]int64 `json:"violations"`
	// Shards has one entry per (shard, num_shards) with live sessions,
	// ordered by num_shards then shard.
	Shards []ShardStats `json:"shards"`
}

// ShardStats are the counters of one (shard, num_shards).
type ShardStats struct {
	Shard       int   `json:"shard"`
	NumShards   int   `json:"num_shards"`
	Guilds      int   `json:"guilds"`      // guilds routed to it now
	Connections int64 `json:"connections"` // connections attached to its sessions now
	Identifies  int64 `json:"identifies"`  // sessions started on it
	Resumes     int64 `json:"resumes"`     // successful RESUMEs
	Events      int64 `json:"events"`      // generated dispatches delivered to its sessions
}

// rule is a violation rule.
type rule uint8

// The rules counted in Stats.Violations.
const (
	ruleIdentifyRate rule = iota
	ruleSendRate
	rulePayloadTooLarge
	ruleDecodeError
	ruleUnknownOpcode
	ruleNotAuthenticated
	ruleAlreadyAuthenticated
	ruleAuthenticationFailed
	ruleInvalidShard
	ruleShardingRequired
	ruleInvalidAPIVersion
	ruleInvalidIntents
	ruleDisallowedIntents
	ruleHeartbeatTimeout
	ruleSessionStartExhausted
	ruleInvalidSeq
	ruleInvalidResume
	ruleResumeOnBaseURL
	ruleSlowConsumer
	ruleProtocolError
	ruleUnknownCompress
	ruleHeartbeatSeq
	numRules
)

var ruleNames = [numRules]string{
	ruleIdentifyRate:          "identify_rate",
	ruleSendRate:              "send_rate",
	rulePayloadTooLarge:       "payload_too_large",
	ruleDecodeError:           "decode_error",
	ruleUnknownOpcode:         "unknown_opcode",
	ruleNotAuthenticated:      "not_authenticated",
	ruleAlreadyAuthenticated:  "already_authenticated",
	ruleAuthenticationFailed:  "authentication_failed",
	ruleInvalidShard:          "invalid_shard",
	ruleShardingRequired:      "sharding_required",
	ruleInvalidAPIVersion:     "invalid_api_version",
	ruleInvalidIntents:        "invalid_intents",
	ruleDisallowedIntents:     "disallowed_intents",
	ruleHeartbeatTimeout:      "heartbeat_timeout",
	ruleSessionStartExhausted: "session_start_exhausted",
	ruleInvalidSeq:            "invalid_seq",
	ruleInvalidResume:         "invalid_resume",
	ruleResumeOnBaseURL:       "resume_on_base_url",
	// slow_consumer: a client that did not read fast enough and was cut.
	ruleSlowConsumer: "slow_consumer",
	// websocket_protocol: a frame breaking RFC 6455 (unmasked, reserved
	// bits, bad control frame), closed with 1002.
	ruleProtocolError: "websocket_protocol",
	// unknown_compress: a compress= value other than zlib-stream and
	// zstd-stream; the connection continues without compression.
	ruleUnknownCompress: "unknown_compress",
	// heartbeat_seq: a heartbeat whose d is above the last s sent on the
	// connection. Counted only; Discord does not close for it.
	ruleHeartbeatSeq: "heartbeat_seq",
}

// counters are the server-wide counters, updated without locks.
type counters struct {
	connections, connectionsTotal, identifies, identifyViolations atomic.Int64
	readies, resumes, resumeFailures, events, heartbeats, closes  atomic.Int64
	eventIDs                                                      atomic.Int64
	violations                                                    [numRules]atomic.Int64
}

// shardKey names a (num_shards, shard).
type shardKey struct{ n, shard int }

// shardStat holds one shard's counters. sessions is guarded by the server
// mutex; the rest are atomic.
type shardStat struct {
	sessions                                 int
	connections, identifies, resumes, events atomic.Int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.ctr
	st := Stats{
		Connections: c.connections.Load(), ConnectionsTotal: c.connectionsTotal.Load(),
		Identifies: c.identifies.Load(), IdentifyViolations: c.identifyViolations.Load(),
		Readies: c.readies.Load(), Resumes: c.resumes.Load(), ResumeFailures: c.resumeFailures.Load(),
		Events: c.events.Load(), EventIDs: c.eventIDs.Load(), Heartbeats: c.heartbeats.Load(), Closes: c.closes.Load(),
		Violations: make(map[string]int64, numRules),
		Shards:     []ShardStats{},
	}
	for r := range numRules {
		st.Violations[ruleNames[r]] = c.violations[r].Load()
	}
	s.mu.Lock()
	st.SessionStartsRemaining, _, _ = s.budget.state(time.Now())
	st.SessionStartsTotal = s.cfg.SessionStartTotal
	st.TokenReset = s.tokenReset
	st.Sessions = len(s.sessions)
	for k, ss := range s.shardStats {
		if ss.sessions == 0 {
			continue
		}
		guilds := 0
		if r := s.world.route[k.n]; r != nil {
			guilds = len(r.shards[k.shard])
		}
		st.Shards = append(st.Shards, ShardStats{
			Shard: k.shard, NumShards: k.n, Guilds: guilds, Connections: ss.connections.Load(),
			Identifies: ss.identifies.Load(), Resumes: ss.resumes.Load(), Events: ss.events.Load(),
		})
	}
	s.mu.Unlock()
	slices.SortFunc(st.Shards, func(a, b ShardStats) int {
		if a.NumShards != b.NumShards {
			return a.NumShards - b.NumShards
		}
		return a.Shard - b.Shard
	})
	return st
}

// violation counts one violation of r.
func (s *Server) violation(r rule) { s.ctr.violations[r].Add(1) }
