package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// ExhaustedPolicy says what an IDENTIFY does when the session-start budget
// has no starts left.
type ExhaustedPolicy string

// The exhausted policies.
const (
	// ExhaustResetToken is Discord's behaviour: every session of the token is
	// closed with 4004, and the token is refused (close 4004, HTTP 401) until
	// RotateToken. Rotating does not refill the budget: that only happens when
	// the reset window ends, as on Discord.
	ExhaustResetToken ExhaustedPolicy = "reset-token"
	// ExhaustInvalidSession answers op 9 d:false and counts the violation.
	ExhaustInvalidSession ExhaustedPolicy = "invalid-session"
	// ExhaustAllow starts the session anyway and counts the violation.
	ExhaustAllow ExhaustedPolicy = "allow"
)

// Config configures a Server. The zero value of every field means the
// documented default.
type Config struct {
	// Token is the accepted bot token, without "Bot ". Default "sim-token".
	Token string
	// Guilds is the number of guilds the bot is in at start. Default 2500.
	Guilds int
	// Shards is the shard count /gateway/bot recommends. Default
	// ceil(Guilds/1000), rounded up to ShardMultiple when that is set.
	Shards int
	// ShardMultiple, when above 0, turns on large-bot sharding: num_shards
	// must be a multiple of it, else IDENTIFY is closed with 4010.
	ShardMultiple int
	// MaxConcurrency is the number of identify buckets (shard %
	// MaxConcurrency). Default 1.
	MaxConcurrency int
	// SessionStartTotal is the number of session starts per reset window.
	// Default 1000.
	SessionStartTotal int
	// SessionStartReset is the length of the session-start window, which
	// starts at the first accepted IDENTIFY after a reset. Default 24h.
	SessionStartReset time.Duration
	// Exhausted is what an IDENTIFY at zero remaining session starts does.
	// Default ExhaustResetToken.
	Exhausted ExhaustedPolicy
	// IdentifyInterval is the identify window: one IDENTIFY per bucket per
	// interval, the window starting when an IDENTIFY is accepted. Default 5s.
	IdentifyInterval time.Duration
	// IdentifySlack accepts an IDENTIFY up to this much earlier than one
	// IdentifyInterval after the bucket's last. Discord does not document
	// how strict its window is; the default, 0, is exact. A little slack
	// keeps tests of clients that pace exactly one interval apart from
	// failing when a loaded machine reads one IDENTIFY late.
	IdentifySlack time.Duration
	// IdentifyRejectDelay is how long a too-fast IDENTIFY waits for its op 9
	// d:false ("after a few seconds" on Discord). Default 2s.
	IdentifyRejectDelay time.Duration
	// HeartbeatInterval is HELLO's heartbeat_interval. Default 41250ms.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout closes a connection that sent no heartbeat for this
	// long (counted from HELLO, then from each heartbeat). Default 1.5 ×
	// HeartbeatInterval.
	HeartbeatTimeout time.Duration
	// HeartbeatTimeoutCode is the close code for a missed heartbeat; Discord
	// does not document it. The session stays resumable. Default 4009.
	HeartbeatTimeoutCode int
	// RequestHeartbeats, when above 0, makes the server send op 1 (heartbeat
	// request) on every connection this often.
	RequestHeartbeats time.Duration
	// SendLimit is the number of client payloads allowed per SendWindow
	// (every payload counts); one more closes the connection with 4008.
	// Default 120.
	SendLimit int
	// SendWindow is the sliding window of SendLimit. Default 60s.
	SendWindow time.Duration
	// ExemptRequestedHeartbeats, when set, does not count a heartbeat that
	// answers a server heartbeat request (op 1) against SendLimit. Discord
	// does not say whether it does; the default counts every payload.
	ExemptRequestedHeartbeats bool
	// SessionTTL is how long a disconnected session stays resumable.
	// Default 3m.
	SessionTTL time.Duration
	// ReplayBuffer is the number of dispatches kept per session for RESUME.
	// A RESUME that needs older ones gets op 9 d:false. It also bounds how
	// far a connection may fall behind its session before it is cut as a
	// slow consumer. Default 20000.
	ReplayBuffer int
	// EventRate is the number of generated events per second per shard of
	// the largest num_shards among live sessions, spread over the guilds
	// that some session holds. 0 means no generated events (the gatehouse
	// sim command defaults to 1).
	EventRate float64
	// EventTypes, when not empty, restricts generated events to these
	// dispatch types (names as in GeneratedEventTypes, e.g.
	// "MESSAGE_CREATE"), still only those some live session's intents
	// allow. A name covers the guild and the DM-like events of that type.
	// An unknown name is a config error. Default: the realistic mix of every
	// type.
	EventTypes []string
	// RecordDeliveries makes the server remember which sim_event_ids it
	// sequenced to at least one session (Delivered), so a test can tell an
	// event a client lost from one no session was due (an event of an
	// intent nobody has, or a silenced type). One bit per event.
	RecordDeliveries bool
	// EventTick is the generator's period: events are made and handed to the
	// connections in batches this often. Default 20ms.
	EventTick time.Duration
	// GuildCreateInterval is the pause between GUILD_CREATEs after READY.
	// Default 0: back to back, as fast as the client reads.
	GuildCreateInterval time.Duration
	// GuildJoinsPerMinute and GuildLeavesPerMinute grow and shrink the world
	// over time: a join sends GUILD_CREATE, a leave GUILD_DELETE (without
	// unavailable) to the sessions that hold the guild. Default 0.
	GuildJoinsPerMinute, GuildLeavesPerMinute float64
	// DisallowedIntents are privileged intents NOT enabled for the app; an
	// IDENTIFY asking for one is closed with 4014. Default none.
	DisallowedIntents discord.Intents
	// CompressDefault is the transport compression used when the URL has no
	// compress= parameter. Default none, like Discord.
	CompressDefault codec.Compression
	// NoTrace omits the _trace fields of HELLO, READY and RESUMED.
	NoTrace bool
	// IdleResetAfterZero makes /gateway/bot report reset_after 0 while no
	// session-start window runs. Default: the full window length (Discord's
	// behaviour here is not documented).
	IdleResetAfterZero bool
	// WriteTimeout cuts a connection whose socket write has been blocked
	// this long (a client that stopped reading), counted as the violation
	// slow_consumer; its session stays resumable. Default 30s.
	WriteTimeout time.Duration
	// Seed makes guild IDs, names, sizes, session IDs and the event mix
	// reproducible. Default 1.
	Seed int64
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	defaultToken             = "sim-token"
	defaultGuilds            = 2500
	defaultSessionStartTotal = 1000
	defaultSessionStartReset = 24 * time.Hour
	defaultIdentifyInterval  = discord.IdentifyIntervalMillis * time.Millisecond
	defaultIdentifyReject    = 2 * time.Second
	defaultHeartbeatInterval = 41250 * time.Millisecond
	defaultHeartbeatCode     = int(discord.CloseSessionTimedOut)
	defaultSendLimit         = 120
	defaultSendWindow        = 60 * time.Second
	defaultSessionTTL        = 3 * time.Minute
	defaultReplayBuffer      = 20000
	defaultEventTick         = 20 * time.Millisecond
	defaultWriteTimeout      = 30 * time.Second
	defaultSeed              = 1

	// maxGuilds bounds the world: guild indices are packed in 24 bits.
	maxGuilds = 1<<24 - 2
)

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("sim: invalid config")

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	neg := []struct {
		name string
		v    float64
	}{
		{"Guilds", float64(c.Guilds)}, {"Shards", float64(c.Shards)}, {"ShardMultiple", float64(c.ShardMultiple)},
		{"MaxConcurrency", float64(c.MaxConcurrency)}, {"SessionStartTotal", float64(c.SessionStartTotal)},
		{"SessionStartReset", float64(c.SessionStartReset)}, {"IdentifyInterval", float64(c.IdentifyInterval)}, {"IdentifySlack", float64(c.IdentifySlack)},
		{"IdentifyRejectDelay", float64(c.IdentifyRejectDelay)}, {"HeartbeatInterval", float64(c.HeartbeatInterval)},
		{"HeartbeatTimeout", float64(c.HeartbeatTimeout)}, {"HeartbeatTimeoutCode", float64(c.HeartbeatTimeoutCode)},
		{"RequestHeartbeats", float64(c.RequestHeartbeats)}, {"SendLimit", float64(c.SendLimit)},
		{"SendWindow", float64(c.SendWindow)}, {"SessionTTL", float64(c.SessionTTL)},
		{"ReplayBuffer", float64(c.ReplayBuffer)}, {"EventRate", c.EventRate}, {"EventTick", float64(c.EventTick)},
		{"GuildCreateInterval", float64(c.GuildCreateInterval)}, {"GuildJoinsPerMinute", c.GuildJoinsPerMinute},
		{"GuildLeavesPerMinute", c.GuildLeavesPerMinute}, {"WriteTimeout", float64(c.WriteTimeout)},
	}
	for _, f := range neg {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return c, configError("%s is %v, want a finite value >= 0", f.name, f.v)
		}
	}
	if c.Token == "" {
		c.Token = defaultToken
	}
	if c.Guilds == 0 {
		c.Guilds = defaultGuilds
	}
	if c.Guilds > maxGuilds {
		return c, configError("Guilds is %d, want at most %d", c.Guilds, maxGuilds)
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 1
	}
	if c.Shards == 0 {
		c.Shards = max(1, (c.Guilds+999)/1000)
		if m := c.ShardMultiple; m > 0 && c.Shards%m != 0 {
			c.Shards += m - c.Shards%m
		}
	}
	if c.SessionStartTotal == 0 {
		c.SessionStartTotal = defaultSessionStartTotal
	}
	if c.SessionStartReset == 0 {
		c.SessionStartReset = defaultSessionStartReset
	}
	switch c.Exhausted {
	case "":
		c.Exhausted = ExhaustResetToken
	case ExhaustResetToken, ExhaustInvalidSession, ExhaustAllow:
	default:
		return c, configError("Exhausted is %q, want %q, %q or %q", c.Exhausted, ExhaustResetToken, ExhaustInvalidSession, ExhaustAllow)
	}
	if c.IdentifyInterval == 0 {
		c.IdentifyInterval = defaultIdentifyInterval
	}
	if c.IdentifyRejectDelay == 0 {
		c.IdentifyRejectDelay = defaultIdentifyReject
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = defaultHeartbeatInterval
	}
	if c.HeartbeatInterval < time.Millisecond {
		return c, configError("HeartbeatInterval is %v, want at least 1ms", c.HeartbeatInterval)
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = c.HeartbeatInterval * 3 / 2
	}
	if c.HeartbeatTimeoutCode == 0 {
		c.HeartbeatTimeoutCode = defaultHeartbeatCode
	}
	if !validCloseCode(c.HeartbeatTimeoutCode) {
		return c, configError("HeartbeatTimeoutCode is %d, want a close code a server may send (1000-1003, 1007-1014, 3000-4999)", c.HeartbeatTimeoutCode)
	}
	if c.SendLimit == 0 {
		c.SendLimit = defaultSendLimit
	}
	if c.SendWindow == 0 {
		c.SendWindow = defaultSendWindow
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = defaultSessionTTL
	}
	if c.ReplayBuffer == 0 {
		c.ReplayBuffer = defaultReplayBuffer
	}
	if err := checkEventTypes(c.EventTypes); err != nil {
		return c, err
	}
	c.EventTypes = slices.Clone(c.EventTypes)
	if c.EventTick == 0 {
		c.EventTick = defaultEventTick
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.DisallowedIntents&^discord.IntentsPrivileged != 0 {
		return c, configError("DisallowedIntents is %v, want privileged intents only (%v)", c.DisallowedIntents, discord.IntentsPrivileged)
	}
	if _, err := codec.ParseCompression(string(c.CompressDefault)); err != nil {
		return c, configError("CompressDefault: %v", err)
	}
	if c.Seed == 0 {
		c.Seed = defaultSeed
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validCloseCode reports whether a server may send code in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}
