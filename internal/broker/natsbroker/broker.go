package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// Broker is a JetStream-backed broker.Publisher and broker.Store. It is safe
// for concurrent use. Close releases it: it drains in-flight batches, closes
// the connection and stops the embedded server.
type Broker struct {
	cfg      Config
	log      *slog.Logger
	subj     broker.Subjects
	evPrefix string // subj.EventPrefix(), computed once for the publish path

	ns         *server.Server // nil with an external URL
	clientURL  string
	conn       *nats.Conn
	connClosed chan struct{} // closed by the connection's closed handler
	js         jetstream.JetStream
	stream     jetstream.Stream
	kv         jetstream.KeyValue // sessions
	ctl, live  *KV                // the control plane's buckets
	maxBody    int

	// revs caches the session bucket revision this broker last read or
	// wrote per key, so a fenced save costs one compare-and-set.
	revMu sync.Mutex
	revs  map[string]uint64

	// Publishing: see publish.go.
	sem       chan struct{} // one token per batch in flight
	queue     chan *entry   // published batches, in publish order, to the ack goroutine
	closing   chan struct{} // closed when Close starts
	ackerDone chan struct{} // closed when the ack goroutine returns
	mu        sync.RWMutex  // guards closed and sending on queue
	closed    bool
	closeOnce sync.Once

	// onCommandsSubscribed, when set by tests, runs once ServeCommands'
	// subscription is active.
	onCommandsSubscribed func()
}

var (
	_ broker.Publisher = (*Broker)(nil)
	_ broker.Store     = (*Broker)(nil)
)

// Open starts the embedded server when cfg.URL is empty, connects, and
// creates or updates the event stream and the session bucket. ctx bounds
// the start-up only.
func Open(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:        cfg,
		log:        cfg.Logger,
		subj:       broker.Subjects{Prefix: cfg.Prefix},
		evPrefix:   broker.Subjects{Prefix: cfg.Prefix}.EventPrefix(),
		connClosed: make(chan struct{}),
		sem:        make(chan struct{}, cfg.MaxPending),
		queue:      make(chan *entry, cfg.MaxPending),
		closing:    make(chan struct{}),
		ackerDone:  make(chan struct{}),
		revs:       map[string]uint64{},
	}
	if err := b.open(ctx); err != nil {
		b.shutdown()
		return nil, err
	}
	go b.runAcker()
	return b, nil
}

func (b *Broker) open(ctx context.Context) error {
	cfg := b.cfg
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ClosedHandler(func(*nats.Conn) { close(b.connClosed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Warn("nats async error", "subject", subject, "err", err)
		}),
	}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			opts = append(opts, nats.Timeout(d))
		}
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return fmt.Errorf("%w: the nkey seed %s: %v", ErrAuth, cfg.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	var (
		conn *nats.Conn
		err  error
	)
	if cfg.URL == "" {
		if err := b.startServer(ctx); err != nil {
			return err
		}
		conn, err = nats.Connect("", append(opts, nats.InProcessServer(b.ns))...)
	} else {
		conn, err = nats.Connect(cfg.URL, opts...)
	}
	if err != nil {
		return fmt.Errorf("natsbroker: connect: %w", ExplainAuth(err))
	}
	b.conn = conn

	b.js, err = jetstream.New(conn,
		// Publish keeps at most MaxPending in flight itself; JetStream's own
		// limit only has to stay out of the way (ErrTooManyStalledMsgs).
		jetstream.WithPublishAsyncMaxPending(2*cfg.MaxPending+16),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
	)
	if err != nil {
		return fmt.Errorf("natsbroker: jetstream: %w", err)
	}

	if cfg.Cluster != "" {
		// JetStream in a cluster answers once a quorum of its nodes has
		// elected a leader: wait for the others.
		b.log.Info("waiting for the cluster's other nodes", "routes", cfg.Routes)
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := b.js.AccountInfo(actx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("natsbroker: the cluster did not form (is a majority of its nodes up?): %w", err)
			}
		}
	}
	maxPayload := int(conn.MaxPayload())
	margin := min(headerMargin, maxPayload/2)
	b.maxBody = maxPayload - margin

	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	b.stream, err = b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Gatehouse gateway events",
		Subjects:    []string{b.subj.Events()},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		MaxMsgSize:  int32(min(maxPayload, 1<<31-1)),
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return err
	}
	b.kv, err = b.ensureBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.SessionBucket,
		Description: "Gatehouse shard sessions",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return err
	}
	if err := b.openControl(ctx); err != nil {
		return err
	}
	b.log.Debug("broker open", "stream", cfg.Stream, "bucket", cfg.SessionBucket,
		"max_body", b.maxBody, "embedded", b.ns != nil, "client_url", b.clientURL)
	return nil
}

// startServer starts the embedded nats-server and waits until it accepts
// connections.
func (b *Broker) startServer(ctx context.Context) error {
	cfg := b.cfg
	debug := b.log.Enabled(ctx, slog.LevelDebug)
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		JetStream:    true,
		StoreDir:     cfg.DataDir,
		SyncInterval: cfg.SyncInterval,
		SyncAlways:   cfg.SyncAlways,
		MaxPayload:   int32(cfg.MaxPayload),
		NoSigs:       true,
		NoLog:        !debug,
	}
	if len(cfg.Users) > 0 {
		opts.Nkeys = cfg.serverUsers()
	}
	if cfg.Cluster != "" {
		host, port, _ := splitListen(cfg.Cluster)
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port, Username: clusterUser, Password: cfg.ClusterSecret,
			ConnectRetries: -1}
		for _, r := range cfg.Routes {
			u, _ := url.Parse(r)
			u.User = url.UserPassword(clusterUser, cfg.ClusterSecret)
			opts.Routes = append(opts.Routes, u)
		}
	}
	if cfg.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
		if err != nil {
			return fmt.Errorf("%w: TLS: %v", ErrConfig, err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if cfg.NoListen {
		opts.DontListen = true
	} else {
		host, port, err := splitListen(cfg.Listen)
		if err != nil {
			return fmt.Errorf("%w: Listen: %v", ErrConfig, err)
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natsbroker: embedded server: %w", err)
	}
	if debug {
		ns.SetLoggerV2(serverLogger{b.log.With("component", "nats-server")}, true, false, false)
	}
	b.ns = ns
	ns.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = max(time.Until(dl), time.Millisecond)
	}
	if !ns.ReadyForConnections(wait) {
		return errors.New("natsbroker: embedded server not ready")
	}
	if !ns.JetStreamEnabled() {
		return fmt.Errorf("natsbroker: embedded server: JetStream did not start (store dir %s)", cfg.DataDir)
	}

	if addr, ok := ns.Addr().(*net.TCPAddr); ok && !cfg.NoListen {
		ip := addr.IP
		if ip == nil || ip.IsUnspecified() {
			ip = net.IPv4(127, 0, 0, 1)
		}
		scheme := "nats"
		if cfg.TLSCert != "" {
			scheme = "tls"
		}
		u := url.URL{Scheme: scheme, Host: net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))}
		b.clientURL = u.String()
	}
	return nil
}

// Close stops accepting batches, waits up to Config.DrainTimeout for the
// batches in flight (their done callbacks run, with an error for those
// not stored), closes the connection and shuts the embedded server down. It
// waits for everything it started and is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closing)
		b.mu.Lock()
		b.closed = true
		close(b.queue)
		b.mu.Unlock()
		<-b.ackerDone
		b.shutdown()
	})
	return nil
}

// shutdown closes the connection, waits for it, and stops the embedded
// server. It tolerates a partly opened Broker.
func (b *Broker) shutdown() {
	if b.conn != nil {
		b.conn.Close()
		select {
		case <-b.connClosed:
		case <-time.After(b.cfg.DrainTimeout):
			b.log.Warn("nats connection close timed out")
		}
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

func (b *Broker) isClosed() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

// ClientURL is the URL other processes connect to: the embedded server's
// listener (nats://127.0.0.1:<port> for a loopback or wildcard listener), or
// Config.URL for an external server. It is "" for an embedded server with
// NoListen.
func (b *Broker) ClientURL() string {
	if b.ns == nil {
		return b.cfg.URL
	}
	return b.clientURL
}

// Conn is the broker's NATS connection. Callers must not close it.
func (b *Broker) Conn() *nats.Conn { return b.conn }

// JetStream is the broker's JetStream context.
func (b *Broker) JetStream() jetstream.JetStream { return b.js }

// Subjects is the subject scheme for the configured prefix.
func (b *Broker) Subjects() broker.Subjects { return b.subj }

// StreamName is the event stream's name.
func (b *Broker) StreamName() string { return b.cfg.Stream }

// serverLogger passes the embedded server's logs to slog at Debug level.
type serverLogger struct{ log *slog.Logger }

func (l serverLogger) logf(level, format string, v []any) {
	l.log.Debug(fmt.Sprintf(format, v...), "server_level", level)
}

func (l serverLogger) Noticef(format string, v ...any) { l.logf("notice", format, v) }
func (l serverLogger) Warnf(format string, v ...any)   { l.logf("warn", format, v) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.logf("fatal", format, v) }
func (l serverLogger) Errorf(format string, v ...any)  { l.logf("error", format, v) }
func (l serverLogger) Debugf(format string, v ...any)  { l.logf("debug", format, v) }
func (l serverLogger) Tracef(format string, v ...any)  { l.logf("trace", format, v) }
