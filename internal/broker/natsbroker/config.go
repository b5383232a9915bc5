package natsbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// Defaults for the zero values of Config.
const (
	DefaultListen        = "127.0.0.1:4222"
	DefaultSyncInterval  = time.Second
	DefaultMaxPayload    = 8 << 20
	DefaultStream        = "GATEHOUSE_EVENTS"
	DefaultMaxAge        = 24 * time.Hour
	DefaultDuplicates    = 2 * time.Minute
	DefaultSessionBucket = "gatehouse_sessions"
	DefaultControlBucket = "gatehouse_ctl"
	DefaultLiveBucket    = "gatehouse_live"
	DefaultLiveTTL       = 15 * time.Second
	DefaultMaxPending    = 1024
	DefaultAckTimeout    = 5 * time.Second
	DefaultDrainTimeout  = 5 * time.Second
)

// maxPayloadLimit is the largest max_payload nats-server accepts with its
// default client buffer (max_pending, 64 MiB).
const maxPayloadLimit = 64 << 20

// headerMargin is what MaxBody keeps free below the server's max payload
// for the message headers.
const headerMargin = 4 << 10

// ErrConfig means a Config field is invalid; the wrapped message names it.
var ErrConfig = errors.New("natsbroker: invalid config")

// Config configures a Broker. The zero value of every field means the
// documented default, so Config{DataDir: dir} runs an embedded server.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated URLs are
	// accepted). Empty runs an embedded nats-server with JetStream.
	URL string

	// DataDir is the embedded server's JetStream store directory. Required
	// when URL is empty; ignored otherwise.
	DataDir string
	// Listen is the embedded server's "host:port" TCP listener, through
	// which other processes connect. Port 0 picks a free port (see
	// ClientURL). Default DefaultListen ("127.0.0.1:4222").
	Listen string
	// NoListen runs the embedded server without a TCP listener: only this
	// process can reach it. Listen is ignored.
	NoListen bool
	// SyncInterval is how often the embedded server fsyncs its store.
	// Default 1s (nats-server's own default is 2 minutes).
	SyncInterval time.Duration
	// SyncAlways makes the embedded server fsync every write. Safest and
	// much slower.
	SyncAlways bool
	// Cluster, when set, makes the embedded server one node of a NATS
	// cluster: its route listener's "host:port". Routes are the other
	// nodes' route URLs (nats://host:port); ClusterSecret is the password
	// every node of the cluster shares (routes are refused without it).
	// JetStream then replicates across the cluster: use Replicas 3 on
	// three nodes.
	Cluster       string
	Routes        []string
	ClusterSecret string
	// ClusterName names the cluster. Default "gatehouse".
	ClusterName string
	// ServerName names the embedded server, unique within a cluster.
	// Default "gatehouse", or "gatehouse-<route port>" in a cluster.
	ServerName string
	// MaxPayload is the embedded server's max_payload in bytes, and so the
	// largest message. Default 8 MiB; at most 64 MiB. With URL set the
	// server's own setting applies.
	MaxPayload int

	// Prefix is the subject prefix. Default broker.DefaultPrefix.
	Prefix string
	// Stream is the event stream's name. Default "GATEHOUSE_EVENTS".
	Stream string
	// Replicas is the replica count of the stream and every bucket. 0
	// keeps what exists and creates with 1; use 3 on a 3-node cluster. A
	// count above an existing stream's raises it; one below is refused
	// (ErrConfig): lowering replicas is an operator's decision, made with
	// the nats tool, never a side effect of a start.
	Replicas int
	// MaxAge is how long the stream keeps an event. Default 24h; negative
	// means no age limit.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; the oldest events go first. Default
	// 0: no limit.
	MaxBytes int64
	// Duplicates is the deduplication window. Default 2m, and never longer
	// than MaxAge.
	Duplicates time.Duration
	// SessionBucket is the key-value bucket holding session state. Default
	// "gatehouse_sessions".
	SessionBucket string
	// ControlBucket holds the coordinators' state: shard leases, the
	// token base, the coordinator's saved state. Default "gatehouse_ctl".
	ControlBucket string
	// LiveBucket holds the records that expire: gateway nodes' liveness
	// and the coordinators' leadership. Default "gatehouse_live".
	LiveBucket string
	// LiveTTL is LiveBucket's TTL, the lease TTL: a record not rewritten
	// for this long expires. Only a Manage broker sets it (creating the
	// bucket, or changing an existing one's); 0 creates a missing bucket
	// with DefaultLiveTTL and leaves an existing one's alone.
	LiveTTL time.Duration

	// Manage creates the stream and buckets when missing and updates
	// their settings. Without it the broker binds to what exists and
	// fails with a clear error when something is missing: gateway nodes
	// and workers need no permission to change streams. An embedded
	// server always manages its own.
	Manage bool

	// MaxPending is the most batches in flight: published and not yet
	// acknowledged (done not yet returned). Publish blocks beyond it.
	// Default 1024.
	MaxPending int
	// AckTimeout is how long a publish waits for its acknowledgement before
	// it is retried. Default 5s.
	AckTimeout time.Duration
	// DrainTimeout bounds how long Close waits for in-flight batches.
	// Default 5s.
	DrainTimeout time.Duration

	// Users are the identities the embedded server admits, each with the
	// permissions of its roles (see Role). Empty: the server admits anyone,
	// for tests only; every command of the gatehouse binary sets them.
	Users []User
	// NKeyFile is the nkey seed file this process connects with (see
	// MakeCredentials); empty connects without credentials.
	NKeyFile string
	// TLSCert and TLSKey make the embedded server require TLS of every
	// client that connects over the network (in-process connections need
	// none). TLSCA is the certificate authority this process trusts for
	// the server's certificate (empty: the system's).
	TLSCert, TLSKey, TLSCA string

	// Name is the client connection's name, shown in server monitoring.
	Name string
	// Logger receives the broker's logs; nil discards them. The embedded
	// server's own logs are passed on at Debug level only.
	Logger *slog.Logger
}

// withDefaults returns c with defaults filled in, or an ErrConfig.
func (c Config) withDefaults() (Config, error) {
	bad := func(field string, v any) (Config, error) {
		return c, fmt.Errorf("%w: %s %v", ErrConfig, field, v)
	}
	if c.URL == "" {
		if c.DataDir == "" {
			return bad("DataDir", `"" (required without URL)`)
		}
		if c.Listen == "" {
			c.Listen = DefaultListen
		}
		if !c.NoListen {
			if _, _, err := splitListen(c.Listen); err != nil {
				return bad("Listen", err)
			}
		}
	}
	if c.Cluster != "" {
		if c.URL != "" {
			return bad("Cluster", "is for an embedded server (no URL)")
		}
		_, port, err := splitListen(c.Cluster)
		if err != nil || port <= 0 {
			return bad("Cluster", fmt.Sprintf("%q: want host:port with a port", c.Cluster))
		}
		if c.ClusterSecret == "" {
			return bad("ClusterSecret", `"" (a cluster's routes must authenticate)`)
		}
		if c.ClusterName == "" {
			c.ClusterName = "gatehouse"
		}
		if c.ServerName == "" {
			c.ServerName = "gatehouse-" + strconv.Itoa(port)
		}
		for _, r := range c.Routes {
			if u, err := url.Parse(r); err != nil || u.Host == "" {
				return bad("Routes", strconv.Quote(r))
			}
		}
	}
	if c.ServerName == "" {
		c.ServerName = "gatehouse"
	}
	switch {
	case c.SyncInterval < 0:
		return bad("SyncInterval", c.SyncInterval)
	case c.SyncInterval == 0:
		c.SyncInterval = DefaultSyncInterval
	}
	switch {
	case c.MaxPayload < 0 || c.MaxPayload > maxPayloadLimit:
		return bad("MaxPayload", c.MaxPayload)
	case c.MaxPayload == 0:
		c.MaxPayload = DefaultMaxPayload
	}
	if c.Prefix == "" {
		c.Prefix = broker.DefaultPrefix
	}
	if !validSubject(c.Prefix) {
		return bad("Prefix", strconv.Quote(c.Prefix))
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if !validName(c.Stream) {
		return bad("Stream", strconv.Quote(c.Stream))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return bad("Replicas", fmt.Sprintf("%d (want 1 to 5, or 0 to keep what exists)", c.Replicas))
	}
	switch {
	case c.MaxAge < 0:
		c.MaxAge = 0 // no limit in JetStream terms
	case c.MaxAge == 0:
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes < 0 {
		return bad("MaxBytes", c.MaxBytes)
	}
	switch {
	case c.Duplicates < 0:
		return bad("Duplicates", c.Duplicates)
	case c.Duplicates == 0:
		c.Duplicates = DefaultDuplicates
	}
	if c.MaxAge > 0 && c.Duplicates > c.MaxAge {
		c.Duplicates = c.MaxAge
	}
	if c.SessionBucket == "" {
		c.SessionBucket = DefaultSessionBucket
	}
	if c.ControlBucket == "" {
		c.ControlBucket = DefaultControlBucket
	}
	if c.LiveBucket == "" {
		c.LiveBucket = DefaultLiveBucket
	}
	for field, name := range map[string]string{"SessionBucket": c.SessionBucket, "ControlBucket": c.ControlBucket, "LiveBucket": c.LiveBucket} {
		if !validName(name) {
			return bad(field, strconv.Quote(name))
		}
	}
	switch {
	case c.LiveTTL < 0:
		return bad("LiveTTL", c.LiveTTL)
	case c.LiveTTL > 0 && c.LiveTTL < time.Second:
		return bad("LiveTTL", fmt.Sprintf("%s (at least 1s: the broker expires records with a second's precision)", c.LiveTTL))
	}
	if c.URL == "" {
		c.Manage = true // the embedded server's streams are its own
	}
	switch {
	case c.MaxPending < 0:
		return bad("MaxPending", c.MaxPending)
	case c.MaxPending == 0:
		c.MaxPending = DefaultMaxPending
	}
	switch {
	case c.AckTimeout < 0:
		return bad("AckTimeout", c.AckTimeout)
	case c.AckTimeout == 0:
		c.AckTimeout = DefaultAckTimeout
	}
	switch {
	case c.DrainTimeout < 0:
		return bad("DrainTimeout", c.DrainTimeout)
	case c.DrainTimeout == 0:
		c.DrainTimeout = DefaultDrainTimeout
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("TLSCert", "and TLSKey go together")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// splitListen parses "host:port" for the embedded server. Port 0 becomes
// nats-server's "random port" (-1).
func splitListen(s string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// validSubject reports whether s is a literal subject: dot-separated,
// non-empty tokens without wildcards or whitespace.
func validSubject(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	return !strings.ContainsAny(s, " \t\r\n*>")
}

// validName reports whether s is usable as a stream or bucket name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
