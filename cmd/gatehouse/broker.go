package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/broker/natsbroker"
)

const brokerSummary = `Run only the NATS JetStream server that gateway nodes embed, in its own process (or
machine), with Gatehouse's event stream and buckets created, admitting only the identities
of its credentials (made in DATA-DIR/credentials on the first start). Gateway nodes and bot
workers connect with -nats nats://HOST:PORT and -nats-nkey. Three of them with -cluster and
-routes form a NATS cluster; with -replicas 3 every stream and bucket survives the loss of
one node.`

func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("broker", brokerSummary, stderr)
	var (
		listen   = fs.String("listen", "127.0.0.1:4222", "TCP `HOST:PORT` to listen on (port 0 picks a free port)")
		dataDir  = fs.String("data-dir", "gatehouse-data", "JetStream store `directory`")
		prefix   = fs.String("prefix", broker.DefaultPrefix, "subject prefix of the event stream")
		maxAge   = fs.Duration("retention", 24*time.Hour, "how long the stream keeps events")
		logLevel = fs.String("log-level", "info", "log level: debug, info, warn, error")
		natsSrv  = addNATSServerFlags(fs)
		cluster  = fs.String("cluster", "", "form a NATS cluster: this node's route listener `HOST:PORT` (the routes authenticate with the cluster secret of the credentials directory, which every node must share)")
		routes   = fs.String("routes", "", "with -cluster: the other nodes' route `URLs`, comma-separated (nats://HOST:PORT,…)")
		clName   = fs.String("cluster-name", "gatehouse", "with -cluster: the cluster's name, the same on every node")
		srvName  = fs.String("server-name", "", "this server's name, unique in the cluster (default gatehouse-<route port>)")
		replicas = fs.Int("replicas", 0, "replicas of the event stream and every bucket (3 on a 3-node cluster); 0 keeps what exists and creates with 1. Lowering an existing stream's replicas is refused")
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
	bcfg := natsbroker.Config{DataDir: *dataDir, Listen: *listen, Prefix: *prefix, MaxAge: *maxAge, Name: "gatehouse-broker", Logger: log}
	creds, err := natsSrv.embedded(&bcfg, *dataDir, "coordinator")
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	bcfg.Replicas, bcfg.ServerName = *replicas, *srvName
	if *cluster != "" {
		bcfg.Cluster, bcfg.ClusterName = *cluster, *clName
		for r := range strings.SplitSeq(*routes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				bcfg.Routes = append(bcfg.Routes, r)
			}
		}
		if bcfg.ClusterSecret, err = creds.ClusterSecret(); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		fmt.Fprintf(stdout, "gatehouse broker: joining cluster %s through %d routes; waiting for a majority of its nodes\n", *clName, len(bcfg.Routes))
	} else if *routes != "" {
		return usageError{"broker: -routes goes with -cluster"}
	}
	b, err := natsbroker.Open(ctx, bcfg)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	fmt.Fprintf(stdout, "gatehouse broker: NATS at %s, events on %s, stream %s\n", b.ClientURL(), b.Subjects().Events(), b.StreamName())
	printCredentials(stdout, "broker", creds, b.ClientURL())
	<-ctx.Done()
	return b.Close()
}
