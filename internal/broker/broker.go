package broker

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// DefaultPrefix is the subject prefix when none is configured.
const DefaultPrefix = "gatehouse"

// Headers set on every batch message.
const (
	// HeaderMsgID is JetStream's deduplication header: <shard>:<session>:<first seq>,
	// or Batch.Dedup when set.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderShard is "<shard>/<num_shards>".
	HeaderShard = "Gatehouse-Shard"
	// HeaderSession is the Discord session ID the batch was received on.
	HeaderSession = "Gatehouse-Session"
	// HeaderSeq is "<first>-<last>": the gateway sequence numbers of the
	// first and last dispatch in the batch.
	HeaderSeq = "Gatehouse-Seq"
	// HeaderLease is the fencing token of the node's lease on the shard
	// when the batch was published; "0" when no coordinator leases shards.
	// A shard that moved carries a greater token than before.
	HeaderLease = "Gatehouse-Lease"
)

// Errors.
var (
	// ErrClosed is returned by a Publisher or Store used after Close.
	ErrClosed = errors.New("broker: closed")
	// ErrNotFound is returned by Store.Load when no state is saved.
	ErrNotFound = errors.New("broker: not found")
	// ErrBadBatch means a batch body does not parse.
	ErrBadBatch = errors.New("broker: malformed batch")
	// ErrTooLarge means a payload cannot fit in one message even compressed.
	ErrTooLarge = errors.New("broker: payload too large")
	// ErrConflict is a compare-and-set that lost: the key exists (a
	// create) or is no longer at the expected revision (an update or a
	// delete).
	ErrConflict = errors.New("broker: compare-and-set conflict")
	// ErrFenced is returned by Store.SaveSession and DeleteSession when the
	// saved state belongs to a newer lease than the caller's: another node
	// holds the shard now, and the caller must stop it.
	ErrFenced = errors.New("broker: fenced: the shard is leased to another node")
)

// Batch is one message's worth of consecutive dispatches of one shard
// session, all with the same Subject.
type Batch struct {
	Subject   string
	Shard     int
	NumShards int
	Session   string
	FirstSeq  int64
	LastSeq   int64
	Count     int
	// Lease is the fencing token of the publishing node's lease on the
	// shard, 0 without a coordinator (see HeaderLease).
	Lease uint64
	// Body is the encoded batch (see NewBody, AppendRecord). The publisher
	// owns it from Publish until the done callback runs.
	Body []byte
	// Spare is memory the producer keeps with the batch (for example the
	// uncompressed body); publishers ignore it.
	Spare []byte
	// Start is when the producer handed the batch over (to measure the
	// publish latency); publishers ignore it.
	Start time.Time
	// Dedup, when set, replaces the batch's deduplication ID: during a
	// reshard's overlap both shard generations publish each event on its
	// own under an ID drawn from its content, so the broker keeps the
	// first copy and drops the other.
	Dedup string
	// Duplicate is set by the publisher, before done runs, when the broker
	// already held a message with the batch's ID and dropped this one.
	Duplicate bool
}

// MsgID is the batch's deduplication ID: <shard>:<session>:<first seq>,
// or Dedup when set.
func (b *Batch) MsgID() string {
	if b.Dedup != "" {
		return b.Dedup
	}
	return strconv.Itoa(b.Shard) + ":" + b.Session + ":" + strconv.FormatInt(b.FirstSeq, 10)
}

// Publisher publishes batches durably.
type Publisher interface {
	// Publish hands b to the broker. It blocks while the broker has too
	// many batches in flight (back-pressure) and returns an error only when
	// ctx ends or the publisher is closed; transient broker errors are
	// retried, never dropped. done runs exactly once, from another
	// goroutine, when the broker has stored b (err nil) or has given up on it
	// because the publisher is closing (err non-nil). Batches of one shard
	// are stored in the order they were published.
	Publish(ctx context.Context, b *Batch, done func(b *Batch, err error)) error
	// MaxBody is the largest Body Publish accepts.
	MaxBody() int
}

// SessionState is what a gateway node persists per shard so that a
// restarted node RESUMEs instead of identifying.
type SessionState struct {
	Shard            int    `json:"shard"`
	NumShards        int    `json:"num_shards"`
	SessionID        string `json:"session_id"`
	Seq              int64  `json:"seq"` // last sequence published durably
	ResumeGatewayURL string `json:"resume_gateway_url"`
	Node             string `json:"node,omitempty"`
	// Guilds is how many guilds the session held when it was saved, and
	// GuildsPending those of them still due a GUILD_CREATE (after READY,
	// or an outage), by ID.
	Guilds        int      `json:"guilds,omitempty"`
	GuildsPending []uint64 `json:"guilds_pending,omitempty"`
	// Lease is the fencing token of the lease the state was saved under, 0
	// without a coordinator. A store refuses to overwrite or delete state
	// saved under a greater token (ErrFenced).
	Lease   uint64    `json:"lease,omitempty"`
	Updated time.Time `json:"updated"`
}

// LastBatch describes the newest batch stored for a shard.
type LastBatch struct {
	Session string
	LastSeq int64
	// NumShards is the shard count the batch was published under (0 when
	// its header does not say): during and after a reshard the newest
	// batch on a shard's subjects may belong to the other generation.
	NumShards int
}

// Store keeps session state and answers what the stream already holds.
type Store interface {
	// LoadSession returns the saved state of shard/numShards, or ErrNotFound.
	LoadSession(ctx context.Context, shard, numShards int) (SessionState, error)
	// SaveSession stores st (keyed by st.Shard and st.NumShards). It
	// returns ErrFenced, and stores nothing, when the saved state has a
	// greater Lease than st.
	SaveSession(ctx context.Context, st SessionState) error
	// DeleteSession forgets the state of shard/numShards (a session that
	// can no longer be resumed), saved under lease or an older one; it
	// returns ErrFenced for state saved under a greater lease. Deleting a
	// missing key is not an error.
	DeleteSession(ctx context.Context, shard, numShards int, lease uint64) error
	// LastBatch returns the newest batch stored for shard, or ErrNotFound.
	LastBatch(ctx context.Context, shard int) (LastBatch, error)
}

// Entry is one key of a key-value bucket as a watch or a read sees it.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	// Deleted: the key was deleted, purged or expired (Value is empty);
	// Revision is the marker's.
	Deleted bool
}

// ConsumerLag is one durable consumer of the event stream and how far
// behind it is.
type ConsumerLag struct {
	Name string `json:"name"`
	// Pending is how many messages (batches) it has not been sent yet;
	// AckPending how many it was sent and has not acknowledged.
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
}

// Subjects builds subject names for one prefix.
type Subjects struct {
	Prefix string // DefaultPrefix when empty
}

func (s Subjects) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// EventPrefix is what every event subject starts with: <prefix>.ev.
func (s Subjects) EventPrefix() string { return s.prefix() + ".ev." }

// Events is the wildcard covering every event subject: <prefix>.ev.>.
func (s Subjects) Events() string { return s.EventPrefix() + ">" }

// Event appends the subject of a dispatch to dst.
func (s Subjects) AppendEvent(dst []byte, shard, partition int, eventType []byte) []byte {
	dst = append(dst, s.prefix()...)
	dst = append(dst, ".ev."...)
	dst = strconv.AppendInt(dst, int64(shard), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(partition), 10)
	dst = append(dst, '.')
	if len(eventType) == 0 {
		eventType = []byte("UNKNOWN")
	}
	return append(dst, eventType...)
}

// EventFilter builds a filter subject. shard < 0 or partition < 0 mean any;
// an empty eventType means any.
func (s Subjects) EventFilter(shard, partition int, eventType string) string {
	tok := func(n int) string {
		if n < 0 {
			return "*"
		}
		return strconv.Itoa(n)
	}
	if eventType == "" {
		eventType = "*"
	}
	return s.EventPrefix() + tok(shard) + "." + tok(partition) + "." + eventType
}

// ShardEvents is the filter for every event of one shard.
func (s Subjects) ShardEvents(shard int) string {
	return s.EventPrefix() + strconv.Itoa(shard) + ".>"
}

// Command is the request subject for gateway commands to shard.
func (s Subjects) Command(shard int) string {
	return s.prefix() + ".cmd." + strconv.Itoa(shard)
}

// Commands is the wildcard covering every command subject.
func (s Subjects) Commands() string { return s.prefix() + ".cmd.*" }

// View is the subject the leading coordinator publishes its read model on
// for the other replicas (core NATS, not stored).
func (s Subjects) View() string { return s.prefix() + ".ctl.view" }

// Partition maps a guild to one of n partitions (n < 1 counts as 1). Guild 0
// (no guild) is partition 0. The hash mixes all the ID's bits, so
// partitions stay even whatever the shard count.
func Partition(guild uint64, n int) int {
	if n <= 1 || guild == 0 {
		return 0
	}
	// splitmix64 finalizer
	x := guild
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x % uint64(n))
}
