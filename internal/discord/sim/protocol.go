package sim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// This file holds the pure rules for what a client sends: decoding the
// envelope, which opcodes each connection phase accepts, and the shape of
// each payload. The functions return a *closeErr naming the close code and
// the violated rule, or nil.

// closeErr is a client mistake that closes the connection.
type closeErr struct {
	code   discord.CloseCode
	rule   rule
	reason string // close frame reason; Discord's text for the code when empty
}

func fail(code discord.CloseCode, r rule) *closeErr { return &closeErr{code: code, rule: r} }

var (
	errDecode       = fail(discord.CloseDecodeError, ruleDecodeError)
	errTooBig       = fail(discord.CloseDecodeError, rulePayloadTooLarge)
	errUnknownOp    = fail(discord.CloseUnknownOpcode, ruleUnknownOpcode)
	errNotAuth      = fail(discord.CloseNotAuthenticated, ruleNotAuthenticated)
	errAlreadyAuth  = fail(discord.CloseAlreadyAuthenticated, ruleAlreadyAuthenticated)
	errAuthFailed   = fail(discord.CloseAuthenticationFailed, ruleAuthenticationFailed)
	errInvalidShard = fail(discord.CloseInvalidShard, ruleInvalidShard)
	errShardingReq  = fail(discord.CloseShardingRequired, ruleShardingRequired)
	errBadVersion   = fail(discord.CloseInvalidAPIVersion, ruleInvalidAPIVersion)
	errBadIntents   = fail(discord.CloseInvalidIntents, ruleInvalidIntents)
	errDisallowed   = fail(discord.CloseDisallowedIntents, ruleDisallowedIntents)
	errRateLimited  = fail(discord.CloseRateLimited, ruleSendRate)
	errInvalidSeq   = fail(discord.CloseInvalidSeq, ruleInvalidSeq)
)

// phase is a connection's protocol state (reference §18).
type phase uint8

const (
	phaseConnected phase = iota // HELLO sent; no session
	phaseActive                 // a session is attached
	phaseClosing                // a close frame was sent or received
)

// envelope is a decoded client payload.
type envelope struct {
	op discord.Opcode
	d  json.RawMessage // nil when absent
}

// decodeEnvelope decodes a client payload. Malformed JSON, or JSON that is
// not an object, is a decode error (4002); a missing or non-integer op is an
// unknown opcode (4001).
func decodeEnvelope(b []byte) (envelope, *closeErr) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' || !json.Valid(b) {
		return envelope{}, errDecode
	}
	var raw struct {
		Op json.RawMessage `json:"op"`
		D  json.RawMessage `json:"d"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return envelope{}, errDecode
	}
	op, ok := jsonInt(raw.Op)
	if !ok || op < 0 || op > 1<<16 {
		return envelope{}, errUnknownOp
	}
	return envelope{op: discord.Opcode(op), d: raw.D}, nil
}

// admit applies the phase rules to an opcode: unknown opcodes (and ones only
// the server sends) close 4001 in any phase; before a session only 1, 2 and 6
// are accepted (4003); with one, a second 2 or a 6 closes 4005.
func admit(p phase, op discord.Opcode) *closeErr {
	if !op.ClientSendable() {
		return errUnknownOp
	}
	switch p {
	case phaseConnected:
		if op != discord.OpHeartbeat && op != discord.OpIdentify && op != discord.OpResume {
			return errNotAuth
		}
	case phaseActive:
		if op == discord.OpIdentify || op == discord.OpResume {
			return errAlreadyAuth
		}
	}
	return nil
}

// jsonInt parses a JSON integer.
func jsonInt(b json.RawMessage) (int64, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] == '"' {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}

func isNull(b json.RawMessage) bool { return string(bytes.TrimSpace(b)) == "null" }

func isKind(b json.RawMessage, open byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == open
}

// fields decodes a JSON object into its raw members; ok is false when d is
// not an object.
func fields(d json.RawMessage) (map[string]json.RawMessage, bool) {
	if !isKind(d, '{') {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(d, &m); err != nil {
		return nil, false
	}
	return m, true
}

// jsonString decodes a JSON string.
func jsonString(b json.RawMessage) (string, bool) {
	if !isKind(b, '"') {
		return "", false
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

func jsonBool(b json.RawMessage) (v, ok bool) {
	switch string(bytes.TrimSpace(b)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// jsonSnowflake accepts a snowflake as a JSON string or number.
func jsonSnowflake(b json.RawMessage) (discord.Snowflake, bool) {
	if s, ok := jsonString(b); ok {
		v, err := discord.ParseSnowflake(s)
		return v, err == nil
	}
	v, ok := jsonInt(b)
	return discord.Snowflake(v), ok && v >= 0
}

// parseHeartbeat validates op 1's d: null (or absent) or a non-negative
// integer. It returns the sequence number, -1 for null.
func parseHeartbeat(d json.RawMessage) (int64, *closeErr) {
	if d == nil || isNull(d) {
		return -1, nil
	}
	v, ok := jsonInt(d)
	if !ok || v < 0 {
		return 0, errUnknownOp
	}
	return v, nil
}

// identifyReq is a validated IDENTIFY.
type identifyReq struct {
	token          string
	intents        discord.Intents
	shard, n       int
	shardGiven     bool
	largeThreshold int
	compress       bool
}

// identifyRules is what IDENTIFY validation needs from the server.
type identifyRules struct {
	tokenOK       func(string) bool
	apiVersion    int
	disallowed    discord.Intents
	shardMultiple int
}

// parseIdentify validates IDENTIFY's d in Discord's order: shape (4001),
// token (4004), intents (4013), privileged intents (4014), shard (4010).
// The guild count (4011) and the rate limits depend on server state and are
// checked by the caller.
func parseIdentify(d json.RawMessage, rules identifyRules) (identifyReq, *closeErr) {
	var req identifyReq
	m, ok := fields(d)
	if !ok {
		return req, errUnknownOp
	}
	// Types of the optional members.
	if lt, ok := m["large_threshold"]; ok && !isNull(lt) {
		v, ok := jsonInt(lt)
		if !ok {
			return req, errUnknownOp
		}
		req.largeThreshold = int(min(max(v, 50), 250))
	} else {
		req.largeThreshold = 50
	}
	if c, ok := m["compress"]; ok && !isNull(c) {
		v, ok := jsonBool(c)
		if !ok {
			return req, errUnknownOp
		}
		req.compress = v
	}
	if p, ok := m["presence"]; ok && !isNull(p) && !isKind(p, '{') {
		return req, errUnknownOp
	}
	tok, ok := jsonString(m["token"])
	tok = gatewayToken(tok)
	if !ok || !rules.tokenOK(tok) {
		return req, errAuthFailed
	}
	req.token = tok
	if props, ok := m["properties"]; !ok || !isKind(props, '{') {
		return req, errUnknownOp
	}
	raw, given := m["intents"]
	switch {
	case !given || isNull(raw):
		if rules.apiVersion >= 8 {
			return req, errBadIntents
		}
		req.intents = discord.IntentsNonPrivileged
	default:
		v, ok := jsonInt(raw)
		if !ok || v < 0 || !discord.Intents(v).Valid() {
			return req, errBadIntents
		}
		req.intents = discord.Intents(v)
	}
	if req.intents&rules.disallowed != 0 {
		return req, errDisallowed
	}
	req.shard, req.n = 0, 1
	if raw, ok := m["shard"]; ok && !isNull(raw) {
		var pair []json.RawMessage
		if !isKind(raw, '[') || json.Unmarshal(raw, &pair) != nil || len(pair) != 2 {
			return req, errInvalidShard
		}
		id, ok1 := jsonInt(pair[0])
		n, ok2 := jsonInt(pair[1])
		if !ok1 || !ok2 || n < 1 || id < 0 || id >= n || n > 1<<20 {
			return req, errInvalidShard
		}
		if rules.shardMultiple > 0 && n%int64(rules.shardMultiple) != 0 {
			return req, errInvalidShard
		}
		req.shard, req.n, req.shardGiven = int(id), int(n), true
	}
	return req, nil
}

// resumeReq is a validated RESUME.
type resumeReq struct {
	token, sessionID string
	seq              int64
}

// gatewayToken strips an optional "Bot " prefix. Discord documents the
// gateway token without it, but accepts it: discordgo and arikawa send the
// same "Bot <token>" string they use for REST, and they work against Discord.
func gatewayToken(t string) string { return strings.TrimPrefix(t, "Bot ") }

// parseResume validates RESUME's d: token and session_id strings and seq an
// integer (null counts as 0).
func parseResume(d json.RawMessage) (resumeReq, *closeErr) {
	var req resumeReq
	m, ok := fields(d)
	if !ok {
		return req, errUnknownOp
	}
	var ok1, ok2 bool
	req.token, ok1 = jsonString(m["token"])
	req.sessionID, ok2 = jsonString(m["session_id"])
	if !ok1 || !ok2 {
		return req, errUnknownOp
	}
	req.token = gatewayToken(req.token)
	if raw, ok := m["seq"]; ok && !isNull(raw) {
		v, ok := jsonInt(raw)
		if !ok || v < 0 {
			return req, errUnknownOp
		}
		req.seq = v
	}
	return req, nil
}

var presenceStatuses = map[string]bool{"online": true, "dnd": true, "idle": true, "invisible": true, "offline": true}

// checkPresence validates op 3: since (number or null), activities (array),
// status and afk are all required.
func checkPresence(d json.RawMessage) *closeErr {
	m, ok := fields(d)
	if !ok {
		return errUnknownOp
	}
	since, ok := m["since"]
	if !ok || !(isNull(since) || json.Valid(since) && !isKind(since, '"') && !isKind(since, '{') && !isKind(since, '[')) {
		return errUnknownOp
	}
	if a, ok := m["activities"]; !ok || !isKind(a, '[') {
		return errUnknownOp
	}
	if st, ok := jsonString(m["status"]); !ok || !presenceStatuses[st] {
		return errUnknownOp
	}
	if _, ok := jsonBool(m["afk"]); !ok {
		return errUnknownOp
	}
	return nil
}

// voiceReq is a validated op 4.
type voiceReq struct {
	guild   discord.Snowflake
	channel discord.Snowflake // 0 to leave
	mute    bool
	deaf    bool
}

func parseVoice(d json.RawMessage) (voiceReq, *closeErr) {
	var req voiceReq
	m, ok := fields(d)
	if !ok {
		return req, errUnknownOp
	}
	if req.guild, ok = jsonSnowflake(m["guild_id"]); !ok {
		return req, errUnknownOp
	}
	ch, ok := m["channel_id"]
	if !ok {
		return req, errUnknownOp
	}
	if !isNull(ch) {
		if req.channel, ok = jsonSnowflake(ch); !ok {
			return req, errUnknownOp
		}
	}
	var ok1, ok2 bool
	req.mute, ok1 = jsonBool(m["self_mute"])
	req.deaf, ok2 = jsonBool(m["self_deaf"])
	if !ok1 || !ok2 {
		return req, errUnknownOp
	}
	return req, nil
}

// membersReq is a validated op 8.
type membersReq struct {
	guild     discord.Snowflake
	query     string
	hasQuery  bool
	limit     int
	userIDs   []discord.Snowflake
	presences bool
	nonce     string // "" when absent or invalid (over 32 bytes)
}

// parseMembers validates op 8: one guild_id; exactly one of query (with
// limit) and user_ids.
func parseMembers(d json.RawMessage) (membersReq, *closeErr) {
	var req membersReq
	m, ok := fields(d)
	if !ok {
		return req, errUnknownOp
	}
	if req.guild, ok = jsonSnowflake(m["guild_id"]); !ok {
		return req, errUnknownOp
	}
	q, hasQ := m["query"]
	ids, hasIDs := m["user_ids"]
	if hasQ && isNull(q) {
		hasQ = false
	}
	if hasIDs && isNull(ids) {
		hasIDs = false
	}
	if hasQ == hasIDs {
		return req, errUnknownOp
	}
	if hasQ {
		if req.query, ok = jsonString(q); !ok {
			return req, errUnknownOp
		}
		l, ok := jsonInt(m["limit"])
		if !ok || l < 0 {
			return req, errUnknownOp
		}
		req.hasQuery, req.limit = true, int(min(l, 100))
	} else {
		if one, ok := jsonSnowflake(ids); ok {
			req.userIDs = []discord.Snowflake{one}
		} else {
			var list []json.RawMessage
			if !isKind(ids, '[') || json.Unmarshal(ids, &list) != nil || len(list) > 100 {
				return req, errUnknownOp
			}
			for _, x := range list {
				id, ok := jsonSnowflake(x)
				if !ok {
					return req, errUnknownOp
				}
				req.userIDs = append(req.userIDs, id)
			}
		}
	}
	if p, ok := m["presences"]; ok && !isNull(p) {
		if req.presences, ok = jsonBool(p); !ok {
			return req, errUnknownOp
		}
	}
	if n, ok := jsonString(m["nonce"]); ok && len(n) <= 32 {
		req.nonce = n
	}
	return req, nil
}

// parseGuildIDs validates op 31: guild_ids, an array of snowflakes.
func parseGuildIDs(d json.RawMessage) ([]discord.Snowflake, *closeErr) {
	m, ok := fields(d)
	if !ok {
		return nil, errUnknownOp
	}
	var list []json.RawMessage
	raw := m["guild_ids"]
	if !isKind(raw, '[') || json.Unmarshal(raw, &list) != nil {
		return nil, errUnknownOp
	}
	out := make([]discord.Snowflake, 0, len(list))
	for _, x := range list {
		id, ok := jsonSnowflake(x)
		if !ok {
			return nil, errUnknownOp
		}
		out = append(out, id)
	}
	return out, nil
}

// channelInfoReq is a validated op 43.
type channelInfoReq struct {
	guild          discord.Snowflake
	status, vstart bool // which fields were asked for
}

func parseChannelInfo(d json.RawMessage) (channelInfoReq, *closeErr) {
	var req channelInfoReq
	m, ok := fields(d)
	if !ok {
		return req, errUnknownOp
	}
	if req.guild, ok = jsonSnowflake(m["guild_id"]); !ok {
		return req, errUnknownOp
	}
	var fs []string
	if !isKind(m["fields"], '[') || json.Unmarshal(m["fields"], &fs) != nil {
		return req, errUnknownOp
	}
	for _, f := range fs {
		switch f {
		case "status":
			req.status = true
		case "voice_start_time":
			req.vstart = true
		default:
			return req, errUnknownOp
		}
	}
	return req, nil
}

// parseQuery reads the gateway URL's v, encoding and compress parameters.
// A missing v means Discord's old default, 6. Versions 6-10 are accepted
// (6-8 are deprecated); others close 4012 after HELLO. Only JSON encoding is
// supported: etf (or anything else) closes 4002 after HELLO.
func parseAPIVersion(v string) (int, bool) {
	if v == "" {
		return 6, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 6 || n > 10 {
		return 0, false
	}
	return n, true
}
