package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// DefaultStream is the JetStream stream the gateway nodes publish to unless
// configured otherwise.
const DefaultStream = "GATEHOUSE_EVENTS"

// Defaults for the zero values of Config.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 1000
	DefaultRetryDelay    = time.Second
	// DefaultSendTimeout bounds Send and SendShard when their context has no
	// deadline.
	DefaultSendTimeout = 5 * time.Second
)

// Errors.
var (
	// ErrInvalidConfig is returned (wrapped, with the reason) by Connect for
	// a Config it cannot use.
	ErrInvalidConfig = errors.New("client: invalid config")
	// ErrClosed is returned by a Client used after Close, and by Consume
	// when the client is closed while it runs.
	ErrClosed = errors.New("client: closed")
	// ErrConsuming is returned by Consume while another Consume call of the
	// same Client runs.
	ErrConsuming = errors.New("client: already consuming")
	// ErrNoStream means the event stream does not exist: no gateway has
	// created it yet, or Config.Stream or Config.URL is wrong.
	ErrNoStream = errors.New("client: event stream not found")
	// ErrNoGateway is returned by Send and SendShard when no gateway node
	// answered for the shard: none holds it, or none answered in time.
	ErrNoGateway = errors.New("client: no gateway node answered")
	// ErrUnknownShardCount is returned by Send when the shard count is
	// neither configured nor learnt from the stream.
	ErrUnknownShardCount = errors.New("client: shard count unknown")
	// ErrBadCommand is returned by Send and SendShard for a payload that is
	// not a gateway command a bot may send.
	ErrBadCommand = errors.New("client: not a sendable gateway command")
	// ErrBadReply means a gateway node answered a command with something
	// other than {"ok":…}.
	ErrBadReply = errors.New("client: malformed command reply")
	// ErrUnauthorized is returned by Connect when the broker refuses the
	// credentials (none, or a key it does not know).
	ErrUnauthorized = errors.New("client: the broker refused the credentials")
)

// Config configures a Client. The zero value of every field but URL (or
// Conn) is usable.
type Config struct {
	// URL is the NATS server, e.g. nats://127.0.0.1:4222; a comma-separated
	// list names several servers of one cluster. Required unless Conn is
	// set.
	URL string
	// Conn is an existing connection to use instead of dialling URL. Close
	// leaves it open.
	Conn *nats.Conn
	// Name is the connection name the NATS server reports. Default
	// "gatehouse-client". Unused with Conn.
	Name string
	// NKeyFile is the nkey seed file to authenticate with: a worker's (or,
	// for read-only tools, a tail's) from gatehouse credentials, or the
	// one gatehouse demo and serve print. Unused with Conn.
	NKeyFile string
	// CAFile is the certificate authority to trust for a broker that
	// speaks TLS (tls:// URLs); empty: the system's. Unused with Conn.
	CAFile string

	// Prefix is the subject prefix the gateways publish under. Default
	// "gatehouse".
	Prefix string
	// Stream is the JetStream stream holding the events. Default
	// "GATEHOUSE_EVENTS".
	Stream string

	// Consumer names the durable JetStream consumer Consume reads through.
	// The server remembers what it acknowledged, so a worker that restarts
	// with the same name resumes after the last acknowledged batch, and
	// processes that share the name share the work. Processes sharing a
	// name must use the same Types, Shards and Partition. Empty means an
	// ephemeral consumer, deleted when Consume returns: for tools that look
	// at the live stream, not for bots.
	Consumer string
	// Exclusive says this process is the only one reading through
	// Consumer, as with one durable consumer per worker or per partition.
	// Consume then starts by giving back what a previous run received and
	// did not acknowledge (a crashed or killed worker), so it is handled
	// again at once, in order, instead of after AckWait. Handlers see it
	// again with the same Event.Key; events acknowledged out of order after
	// the oldest unacknowledged one come again too. Do not set it when
	// processes share Consumer: it would hand their batches in progress out
	// again. Requires Consumer.
	Exclusive bool
	// DeliverNew makes a consumer that does not exist yet start with the
	// events published from now on instead of the oldest event the stream
	// still holds. An existing durable consumer always resumes where it
	// stopped.
	DeliverNew bool

	// Types lists the event types to receive, e.g. "MESSAGE_CREATE". Empty
	// means all.
	Types []string
	// Shards lists the shards to receive. Empty means all.
	Shards []int
	// Partitions, when above 1, splits the events by guild into that many
	// partitions (broker.Partition of the guild ID; events without a guild
	// are in partition 0), and the client receives only partition
	// Partition. This works whatever partition count the gateways publish
	// with; GatewayPartitions tells the server which subjects it can skip.
	Partitions int
	// Partition is the partition to receive, in [0, Partitions).
	Partition int
	// GatewayPartitions is the partition count the gateway nodes publish
	// with: the partition token of the event subjects. When set, the
	// server sends only subjects that can hold partition Partition;
	// otherwise (0) every subject is sent and the client skips what is not
	// in its partition. Setting it to a count the gateways do not use loses
	// events.
	GatewayPartitions int

	// AckWait is how long the server waits for the acknowledgement of a
	// delivered batch before delivering it again. The client extends it
	// while it works on a batch, but each handler call must take less than
	// a third of it. Default 30s. It applies when the consumer is created or
	// updated.
	AckWait time.Duration
	// MaxAckPending caps the batches delivered and not yet acknowledged;
	// the server stops delivering at the cap. Default 1000.
	MaxAckPending int
	// RetryDelay is the pause before an event whose handler failed is
	// handed to the handler again; it doubles with each further failure of
	// the same event, up to 32 times RetryDelay. Default 1s.
	RetryDelay time.Duration

	// NumShards is the bot's shard count, used by Send to find the shard of
	// a guild. Zero means the count the gateways report in the batches of
	// the stream.
	NumShards int

	// Logger receives the client's logs. Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with defaults filled in, or an error wrapping
// ErrInvalidConfig.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.Conn == nil && strings.TrimSpace(c.URL) == "" {
		return bad("URL or Conn is required")
	}
	if c.Name == "" {
		c.Name = "gatehouse-client"
	}
	if c.Prefix == "" {
		c.Prefix = broker.DefaultPrefix
	}
	if !validPrefix(c.Prefix) {
		return bad("Prefix %q is not a subject prefix (dot-separated tokens without spaces or wildcards)", c.Prefix)
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if !validName(c.Stream) {
		return bad("Stream %q is not a stream name", c.Stream)
	}
	if c.Consumer != "" && !validName(c.Consumer) {
		return bad("Consumer %q is not a consumer name (no spaces, dots, wildcards or slashes)", c.Consumer)
	}
	var types []string
	for _, t := range c.Types {
		if !validEventType(t) {
			return bad("event type %q is not an event name like MESSAGE_CREATE", t)
		}
		types = append(types, t)
	}
	slices.Sort(types)
	c.Types = slices.Compact(types)
	var shards []int
	for _, s := range c.Shards {
		if s < 0 {
			return bad("shard %d is negative", s)
		}
		shards = append(shards, s)
	}
	slices.Sort(shards)
	c.Shards = slices.Compact(shards)
	switch {
	case c.Partitions < 0:
		return bad("Partitions %d is negative", c.Partitions)
	case c.Partition < 0 || c.Partition >= max(c.Partitions, 1):
		return bad("Partition %d is not in [0, %d)", c.Partition, max(c.Partitions, 1))
	case c.GatewayPartitions < 0:
		return bad("GatewayPartitions %d is negative", c.GatewayPartitions)
	case c.AckWait < 0:
		return bad("AckWait %v is negative", c.AckWait)
	case c.MaxAckPending < 0:
		return bad("MaxAckPending %d is negative", c.MaxAckPending)
	case c.Exclusive && c.Consumer == "":
		return bad("Exclusive needs a durable Consumer name")
	case c.RetryDelay < 0:
		return bad("RetryDelay %v is negative", c.RetryDelay)
	case c.NumShards < 0:
		return bad("NumShards %d is negative", c.NumShards)
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validPrefix reports whether p is one or more literal subject tokens.
func validPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// validName reports whether s may name a JetStream stream or consumer.
func validName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r) {
			return false
		}
	}
	return true
}

// validEventType reports whether t has the form of a Discord event name,
// which is also what makes it safe as a subject token.
func validEventType(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Client consumes Gatehouse events and sends gateway commands. Its methods
// are safe for concurrent use, except that only one Consume may run at a
// time.
type Client struct {
	cfg      Config
	nc       *nats.Conn
	ownConn  bool
	js       jetstream.JetStream
	subjects broker.Subjects
	log      *slog.Logger

	closed    atomic.Bool
	consuming atomic.Bool

	shardsMu     sync.Mutex
	numShards    int    // newest shard count seen in a batch header
	numShardsSeq uint64 // stream sequence of that batch
}

// Connect validates cfg and connects to NATS (unless cfg.Conn is given). It
// does not wait for the stream to exist: Consume checks that. ctx bounds the
// connection attempt.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		subjects: broker.Subjects{Prefix: cfg.Prefix},
		log:      cfg.Logger,
	}
	if cfg.Conn != nil {
		if cfg.Conn.IsClosed() {
			return nil, fmt.Errorf("%w: Conn is closed", ErrInvalidConfig)
		}
		c.nc = cfg.Conn
	} else {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opts := []nats.Option{
			nats.Name(cfg.Name),
			nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					c.log.Warn("nats disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) {
				c.log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			}),
			nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
				// A permission the broker refused shows here, not as an
				// error of the call that caused it.
				if sub != nil {
					c.log.Warn("nats error", "subject", sub.Subject, "err", err)
					return
				}
				c.log.Warn("nats error", "err", err)
			}),
		}
		if d, ok := ctx.Deadline(); ok {
			opts = append(opts, nats.Timeout(max(time.Until(d), time.Millisecond)))
		}
		if cfg.NKeyFile != "" {
			o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
			if err != nil {
				return nil, fmt.Errorf("%w: NKeyFile %s: %v", ErrInvalidConfig, cfg.NKeyFile, err)
			}
			opts = append(opts, o)
		}
		if cfg.CAFile != "" {
			opts = append(opts, nats.RootCAs(cfg.CAFile))
		}
		nc, err := nats.Connect(cfg.URL, opts...)
		if err != nil {
			if strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
				return nil, fmt.Errorf("%w: the broker at %s refused these credentials (%v): set Config.NKeyFile to a worker's nkey seed (gatehouse credentials makes them; gatehouse demo prints where its own are)", ErrUnauthorized, cfg.URL, err)
			}
			return nil, fmt.Errorf("client: connecting to %s: %w", cfg.URL, err)
		}
		c.nc = nc
		c.ownConn = true
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		if c.ownConn {
			c.nc.Close()
		}
		return nil, fmt.Errorf("client: %w", err)
	}
	c.js = js
	return c, nil
}

// Close closes the connection if Connect opened it, after sending what is
// buffered (acknowledgements included). A Consume still running returns
// ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.ownConn {
		_ = c.nc.FlushTimeout(2 * time.Second)
		c.nc.Close()
	}
	return nil
}

// learnShards records the shard count of a batch, keeping the one of the
// newest batch seen.
func (c *Client) learnShards(numShards int, streamSeq uint64) {
	c.shardsMu.Lock()
	if streamSeq >= c.numShardsSeq {
		c.numShards, c.numShardsSeq = numShards, streamSeq
	}
	c.shardsMu.Unlock()
}
