package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

const simSummary = `Run a Discord simulator: the REST calls a sharded bot makes (under /api/v10) and the
gateway WebSocket, enforcing Discord's rules (identify buckets and budget, send limit,
heartbeats, payload validation) with faults and stats under /sim/. Point a bot or a
gateway library at http://ADDR/api/v10 instead of https://discord.com/api/v10.`

func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sim", simSummary, stderr)
	var (
		cfg      sim.Config
		addr     = fs.String("addr", "127.0.0.1:8787", "listen `HOST:PORT` (port 0 picks a free port)")
		compress = fs.String("compress-default", "none", "transport compression when the URL has no compress= parameter: none, zlib-stream or zstd-stream")
		exhaust  = fs.String("exhausted", string(sim.ExhaustResetToken), "what an IDENTIFY does when no session starts remain: reset-token (Discord: close all sessions with 4004, token refused until rotated), invalid-session, allow")
		disallow = fs.String("disallowed-intents", "", "privileged intents NOT enabled for the app, comma-separated (GUILD_MEMBERS,GUILD_PRESENCES,MESSAGE_CONTENT); IDENTIFY with them is closed 4014")
		logLevel = fs.String("log-level", "info", "log level: debug, info, warn, error")
		evTypes  = fs.String("event-types", "", "generate only these dispatch types, comma-separated, e.g. MESSAGE_CREATE for a benchmark workload (empty = the realistic mix); sessions still get only what their intents allow; types: "+strings.Join(sim.GeneratedEventTypes(), ","))
		faults   faultFlags
	)
	fs.StringVar(&cfg.Token, "token", "sim-token", "bot `token` the simulator accepts (clients send \"Bot <token>\")")
	fs.IntVar(&cfg.Guilds, "guilds", 2500, "number of guilds the bot is in")
	fs.IntVar(&cfg.Shards, "shards", 0, "recommended shard count in /gateway/bot (0 = ceil(guilds/1000))")
	fs.IntVar(&cfg.ShardMultiple, "shard-multiple", 0, "large-bot sharding: shard counts must be a multiple of this, else 4010 (0 = off)")
	fs.IntVar(&cfg.MaxConcurrency, "max-concurrency", 1, "identify buckets (shard % max_concurrency), each allowing one IDENTIFY per identify interval")
	fs.Float64Var(&cfg.EventRate, "rate", 1, "generated events per second per shard (0 = none)")
	fs.DurationVar(&cfg.IdentifyInterval, "identify-interval", 5*time.Second, "identify rate-limit window per bucket")
	fs.DurationVar(&cfg.IdentifySlack, "identify-slack", 0, "accept an IDENTIFY up to this much early (0 = exact; Discord's tolerance is undocumented)")
	fs.DurationVar(&cfg.IdentifyRejectDelay, "identify-reject-delay", 2*time.Second, "delay before a too-fast IDENTIFY gets op 9 (invalid session)")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 41250*time.Millisecond, "heartbeat_interval sent in HELLO")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 0, "close a connection that sent no heartbeat for this long (0 = 1.5 × heartbeat interval)")
	fs.IntVar(&cfg.HeartbeatTimeoutCode, "heartbeat-timeout-code", 4009, "close code for a missed heartbeat (undocumented on Discord); the session stays resumable")
	fs.DurationVar(&cfg.RequestHeartbeats, "request-heartbeats", 0, "send op 1 (heartbeat request) this often (0 = never)")
	fs.IntVar(&cfg.SendLimit, "send-limit", 120, "client payloads allowed per send window; more closes with 4008")
	fs.DurationVar(&cfg.SendWindow, "send-window", 60*time.Second, "sliding window of the send limit")
	fs.IntVar(&cfg.SessionStartTotal, "session-start-limit", 1000, "session starts (accepted IDENTIFYs) per reset window")
	fs.DurationVar(&cfg.SessionStartReset, "session-start-reset", 24*time.Hour, "session-start window, starting at the first IDENTIFY after a reset")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", 3*time.Minute, "how long a disconnected session can be resumed")
	fs.IntVar(&cfg.ReplayBuffer, "replay-buffer", 20000, "dispatches kept per session for RESUME replay")
	fs.DurationVar(&cfg.GuildCreateInterval, "guild-create-interval", 0, "pause between GUILD_CREATEs after READY")
	fs.Float64Var(&cfg.GuildJoinsPerMinute, "guild-joins", 0, "guilds joining per minute (GUILD_CREATE to the owning shard)")
	fs.Float64Var(&cfg.GuildLeavesPerMinute, "guild-leaves", 0, "guilds leaving per minute (GUILD_DELETE to the owning shard)")
	fs.BoolVar(&cfg.NoTrace, "no-trace", false, "omit the _trace fields Discord adds to HELLO, READY and RESUMED")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed for guild IDs, sizes and the event mix (same seed, same world)")
	fs.Var(&faults, "fault", "inject a fault: KIND[:key=value,...][@EVERY], repeatable; e.g. reconnect@60s, close:code=4000,shards=0-3@5m, latency:delay=200ms; keys: shards, num_shards, code, resumable, duration, delay, event_type, guilds")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var err error
	if cfg.CompressDefault, err = codec.ParseCompression(*compress); err != nil {
		return usageError{fmt.Sprintf("sim: -compress-default: %v", err)}
	}
	cfg.Exhausted = sim.ExhaustedPolicy(*exhaust)
	for name := range strings.SplitSeq(*evTypes, ",") {
		if name = strings.ToUpper(strings.TrimSpace(name)); name != "" {
			cfg.EventTypes = append(cfg.EventTypes, name)
		}
	}
	if cfg.DisallowedIntents, err = parseIntents(*disallow); err != nil {
		return usageError{fmt.Sprintf("sim: -disallowed-intents: %v", err)}
	}
	log, err := newLogger("sim", *logLevel, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log

	srv, err := sim.New(cfg)
	if err != nil {
		return usageError{fmt.Sprintf("sim: %v", err)}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "gatehouse sim listening on %s (REST %s/api/v10, gateway ws://%s/)\n", base, base, ln.Addr())
	cfg.Logger.Info("simulator started", "addr", ln.Addr().String(), "guilds", cfg.Guilds,
		"max_concurrency", cfg.MaxConcurrency, "rate", cfg.EventRate, "stats", base+"/sim/stats")

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	fctx, cancelFaults := context.WithCancel(ctx)
	for _, f := range faults {
		wg.Go(func() { f.run(fctx, srv, cfg.Logger) })
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	cancelFaults()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	cfg.Logger.Info("simulator stopped")
	return err
}

// parseIntents parses a comma-separated list of intent names or numbers.
func parseIntents(s string) (discord.Intents, error) {
	var out discord.Intents
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if v, err := strconv.ParseUint(part, 0, 64); err == nil {
			out |= discord.Intents(v)
			continue
		}
		bit, ok := discord.IntentByName(strings.ToUpper(part))
		if !ok {
			return 0, fmt.Errorf("unknown intent %q", part)
		}
		out |= bit
	}
	return out, nil
}

// scheduledFault is one -fault flag: a fault applied once at start, or every
// Every.
type scheduledFault struct {
	fault sim.Fault
	every time.Duration
}

func (f scheduledFault) run(ctx context.Context, srv *sim.Server, log *slog.Logger) {
	apply := func() {
		res, err := srv.ApplyFault(f.fault)
		if err != nil {
			log.Warn("fault not applied", "kind", f.fault.Kind, "err", err)
			return
		}
		log.Info("fault applied", "kind", f.fault.Kind, "applied", res.Applied)
	}
	if f.every <= 0 {
		apply()
		return
	}
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}

// faultFlags collects repeated -fault flags.
type faultFlags []scheduledFault

func (ff *faultFlags) String() string { return "" }

func (ff *faultFlags) Set(v string) error {
	f, err := parseFaultSpec(v)
	if err != nil {
		return err
	}
	*ff = append(*ff, f)
	return nil
}

// parseFaultSpec parses KIND[:key=value,...][@EVERY].
func parseFaultSpec(spec string) (scheduledFault, error) {
	var sf scheduledFault
	if i := strings.LastIndexByte(spec, '@'); i >= 0 {
		d, err := time.ParseDuration(spec[i+1:])
		if err != nil || d <= 0 {
			return sf, fmt.Errorf("fault %q: bad interval after @", spec)
		}
		sf.every = d
		spec = spec[:i]
	}
	kind, opts, _ := strings.Cut(spec, ":")
	sf.fault.Kind = kind
	if kind == "" {
		return sf, errors.New("fault: empty kind")
	}
	if opts == "" {
		return sf, nil
	}
	// Values may contain commas only inside shards= lists, so split on
	// commas and glue back pieces that have no '='.
	var pairs []string
	for p := range strings.SplitSeq(opts, ",") {
		if !strings.Contains(p, "=") && len(pairs) > 0 {
			pairs[len(pairs)-1] += "," + p
			continue
		}
		pairs = append(pairs, p)
	}
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		var err error
		switch k {
		case "shards":
			sf.fault.Shards, err = parseShardList(v)
		case "num_shards":
			sf.fault.NumShards, err = strconv.Atoi(v)
		case "code":
			sf.fault.Code, err = strconv.Atoi(v)
		case "resumable":
			sf.fault.Resumable, err = strconv.ParseBool(v)
		case "duration":
			var d time.Duration
			d, err = time.ParseDuration(v)
			sf.fault.Duration = sim.Duration(d)
		case "delay":
			var d time.Duration
			d, err = time.ParseDuration(v)
			sf.fault.Delay = sim.Duration(d)
		case "event_type":
			sf.fault.EventType = v
		case "guilds":
			sf.fault.Guilds, err = strconv.Atoi(v)
		default:
			return sf, fmt.Errorf("fault %q: unknown key %q", spec, k)
		}
		if err != nil {
			return sf, fmt.Errorf("fault %q: %s: %v", spec, k, err)
		}
	}
	return sf, nil
}

var _ flag.Value = (*faultFlags)(nil)
