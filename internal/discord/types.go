package discord

import "encoding/json"

// Payload is the gateway envelope {op, d, s, t} with d kept raw. S is 0 and
// T is "" when the JSON carries null (every op but 0).
type Payload struct {
	Op Opcode          `json:"op"`
	D  json.RawMessage `json:"d"`
	S  int64           `json:"s,omitempty"`
	T  string          `json:"t,omitempty"`
}

// MaxClientPayload is the largest payload a client may send, in bytes; a
// larger one is closed with 4002.
const MaxClientPayload = 4096

// Hello is the d of op 10.
type Hello struct {
	HeartbeatInterval int64    `json:"heartbeat_interval"` // milliseconds
	Trace             []string `json:"_trace,omitempty"`
}

// IdentifyProperties describes the connecting client.
type IdentifyProperties struct {
	OS      string `json:"os"`
	Browser string `json:"browser"`
	Device  string `json:"device"`
}

// Identify is the d of op 2.
type Identify struct {
	Token          string             `json:"token"`
	Properties     IdentifyProperties `json:"properties"`
	Compress       bool               `json:"compress,omitempty"`
	LargeThreshold int                `json:"large_threshold,omitempty"`
	Shard          *[2]int            `json:"shard,omitempty"` // [shard_id, num_shards]
	Presence       json.RawMessage    `json:"presence,omitempty"`
	Intents        *Intents           `json:"intents"`
}

// Resume is the d of op 6.
type Resume struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

// UnavailableGuild is a guild stub in READY or a GUILD_DELETE.
type UnavailableGuild struct {
	ID          Snowflake `json:"id"`
	Unavailable bool      `json:"unavailable,omitempty"`
}

// User is the subset of a user object the gateway layer needs.
type User struct {
	ID            Snowflake `json:"id"`
	Username      string    `json:"username"`
	Discriminator string    `json:"discriminator"`
	GlobalName    *string   `json:"global_name"`
	Avatar        *string   `json:"avatar"`
	Bot           bool      `json:"bot,omitempty"`
}

// Application is READY's partial application object.
type Application struct {
	ID    Snowflake `json:"id"`
	Flags int64     `json:"flags"`
}

// Ready is the d of the READY dispatch.
type Ready struct {
	V                int                `json:"v"`
	User             User               `json:"user"`
	Guilds           []UnavailableGuild `json:"guilds"`
	SessionID        string             `json:"session_id"`
	ResumeGatewayURL string             `json:"resume_gateway_url"`
	Shard            *[2]int            `json:"shard,omitempty"`
	Application      Application        `json:"application"`
}

// SessionStartLimit is the session_start_limit of GET /gateway/bot.
type SessionStartLimit struct {
	Total          int   `json:"total"`
	Remaining      int   `json:"remaining"`
	ResetAfter     int64 `json:"reset_after"` // milliseconds
	MaxConcurrency int   `json:"max_concurrency"`
}

// GatewayBot is the response of GET /gateway/bot.
type GatewayBot struct {
	URL               string            `json:"url"`
	Shards            int               `json:"shards"`
	SessionStartLimit SessionStartLimit `json:"session_start_limit"`
}

// Gateway is the response of GET /gateway.
type Gateway struct {
	URL string `json:"url"`
}

// APIError is the JSON body of a REST error ({"message": "401: Unauthorized", "code": 0}).
type APIError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// APIVersion is the gateway and REST version Gatehouse speaks.
const APIVersion = 10
