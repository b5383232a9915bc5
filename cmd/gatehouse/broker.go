package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
)

const brokerSummary = `Run only the NATS JetStream server that gateway nodes embed, in its own process, with
Gatehouse's event stream and session bucket created. Gateway nodes and bot workers connect
to it with -nats nats://HOST:PORT. Use it to give the broker its own process (or machine)
before moving to an external NATS cluster.`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", brokerSummary, stderr)
	var (
		listen   = fs.String("listen", "127.0.0.1:4222", "TCP `HOST:PORT` to listen on (port 0 picks a free port)")
		dataDir  = fs.String("data-dir", "gatehouse-data", "JetStream store `directory`")
		prefix   = fs.String("prefix", broker.DefaultPrefix, "subject prefix of the event stream")
		maxAge   = fs.Duration("retention", 24*time.Hour, "how long the stream keeps events")
		logLevel = fs.String("log-level", "info", "log level: debug, info, warn, error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("broker", *logLevel, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("broker: -data-dir: %w", err)
	}
	b, err := natsbroker.Open(ctx, natsbroker.Config{DataDir: *dataDir, Listen: *listen, Prefix: *prefix, MaxAge: *maxAge, Name: "gatehouse-broker", Logger: log})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	fmt.Fprintf(stdout, "gatehouse broker: NATS at %s, events on %s, stream %s\n", b.ClientURL(), b.Subjects().Events(), b.StreamName())
	<-ctx.Done()
	return b.Close()
}
