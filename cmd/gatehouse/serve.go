package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
)

const serveSummary = `Run the whole stack in one process against Discord: embedded NATS JetStream, the
coordinator's API, and a gateway node that runs every shard, identifying through the
coordinator's queue. Bot workers consume from the embedded NATS; tools use the API. When
one machine is outgrown, run gatehouse coordinator, gatehouse broker (or a NATS cluster)
and several gatehouse gateway -shards assigned instead. The bot token comes from -token or
$GATEHOUSE_TOKEN; the API's role tokens from GATEHOUSE_ADMIN_TOKEN (required),
GATEHOUSE_NODE_TOKEN, GATEHOUSE_WORKER_TOKEN and GATEHOUSE_STATUS_TOKEN.`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", serveSummary, stderr)
	var (
		api        = fs.String("api", gateway.DefaultAPI, "Discord REST base `URL` (a gatehouse sim: http://127.0.0.1:8787/api/v10)")
		token      = fs.String("token", "", "bot `token` without \"Bot \" (default $GATEHOUSE_TOKEN)")
		shardCount = fs.String("shard-count", "auto", "total shard count: a number, or auto (Discord's recommendation)")
		compress   = fs.String("compress", "zlib-stream", "transport compression: zlib-stream, zstd-stream or none")
		intents    = fs.String("intents", "", "intents, comma-separated names (GUILDS,GUILD_MESSAGES,…) or a number (default: every non-privileged intent)")
		interval   = fs.Duration("identify-interval", 5*time.Second, "identify window per bucket (Discord: 5s; shorter only against a simulator configured the same)")
		listen     = fs.String("listen", "127.0.0.1:8080", "coordinator API `HOST:PORT`")
		natsListen = fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS `HOST:PORT` for bot workers and gatehouse tail")
		dataDir    = fs.String("data-dir", "gatehouse-data", "JetStream store `directory`: events and session state, so a restart RESUMEs")
		every      = fs.Duration("report-every", 10*time.Second, "how often to print a status line (0 = never)")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn, error")
		natsSrv    = addNATSServerFlags(fs)
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger("serve", *logLevel, stderr)
	if err != nil {
		return err
	}
	bot := botToken(*token)
	if bot == "" {
		return usageError{"serve: no token: pass -token or set GATEHOUSE_TOKEN (or try gatehouse demo, which needs none)"}
	}
	tokens := coord.Tokens{Admin: os.Getenv("GATEHOUSE_ADMIN_TOKEN"), Node: os.Getenv("GATEHOUSE_NODE_TOKEN"),
		Worker: os.Getenv("GATEHOUSE_WORKER_TOKEN"), Status: os.Getenv("GATEHOUSE_STATUS_TOKEN")}
	if tokens.Admin == "" {
		return usageError{"serve: set GATEHOUSE_ADMIN_TOKEN (and the worker and status tokens your tools use)"}
	}
	count, err := parseShardCount(*shardCount)
	if err != nil {
		return usageError{"serve: -shard-count: " + err.Error()}
	}
	comp, err := codec.ParseCompression(*compress)
	if err != nil {
		return usageError{"serve: -compress: " + err.Error()}
	}
	in, err := parseIntentsFlag("serve", *intents)
	if err != nil {
		return err
	}
	if *interval <= 0 || *every < 0 {
		return usageError{"serve: -identify-interval must be positive and -report-every not negative"}
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("serve: -data-dir: %w", err)
	}
	sc := stackConfig{name: "serve", api: strings.TrimRight(*api, "/"), botToken: bot, shardCount: count, tokens: tokens,
		identifyInterval: *interval, intents: in, listen: *listen, natsListen: *natsListen,
		dataDir: *dataDir, every: *every, log: log, users: *natsSrv.users, tlsCert: *natsSrv.cert, tlsKey: *natsSrv.key}
	sc.compression, sc.noCompression = comp, comp == codec.None
	return runStack(ctx, sc, stdout)
}
