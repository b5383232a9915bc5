package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/gateway"
	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

const planSummary = `Answer "how long, and how many identifies" from live /gateway/bot figures
(session starts left, max_concurrency, the recommended shard count), for a
full restart, a reshard to -to shards, and the recovery after a Discord
outage. Usage: gatehouse plan [restart|reshard|outage] (default: all that
apply; reshard needs -to).`

// planCase is one operation's cost.
type planCase struct {
	name       string
	identifies int
	rounds     int
	eta        time.Duration
	left       int // session starts left afterwards (budget - identifies)
	note       string
}

// planCases is the pure part of gatehouse plan: the cost of each operation
// for a bot running count shards, given /gateway/bot.
func planCases(gb discord.GatewayBot, count, to int, interval time.Duration, kinds []string) []planCase {
	mc := max(gb.SessionStartLimit.MaxConcurrency, 1)
	rem := gb.SessionStartLimit.Remaining
	mk := func(name string, n int, note string) planCase {
		return planCase{name: name, identifies: n, rounds: (n + mc - 1) / mc, eta: shard.StartTime(n, mc, interval), left: rem - n, note: note}
	}
	var out []planCase
	for _, k := range kinds {
		switch k {
		case "restart":
			out = append(out, mk(fmt.Sprintf("full restart of %d shards", count), count,
				"a restart within Discord's resume window RESUMEs the saved sessions instead: 0 identifies, back in about a second"))
		case "reshard":
			note := fmt.Sprintf("the %d old shards keep delivering until the new generation is ready", count)
			if to%mc != 0 && mc > 1 {
				note += fmt.Sprintf("; large-bot sharding needs a multiple of %d: try %d", mc, (to+mc-1)/mc*mc)
			}
			out = append(out, mk(fmt.Sprintf("reshard %d → %d shards", count, to), to, note))
		case "outage":
			out = append(out, mk(fmt.Sprintf("recovery after an outage, %d shards", count), count,
				"sessions Discord dropped during the outage identify again, bucket by bucket; those still resumable RESUME for free"))
		}
	}
	return out
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plan", planSummary, stderr)
	var (
		api      = fs.String("api", gateway.DefaultAPI, "Discord REST base `URL` (a gatehouse sim: http://127.0.0.1:8787/api/v10)")
		token    = fs.String("token", "", "bot `token` (default $GATEHOUSE_TOKEN)")
		shards   = fs.Int("shards", 0, "the shard count the bot runs now (0 = Discord's recommendation)")
		to       = fs.Int("to", 0, "reshard: the new shard `count`")
		interval = fs.Duration("identify-interval", 5*time.Second, "identify window per bucket (Discord: 5s)")
	)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	kinds := []string{"restart", "outage"}
	if *to > 0 {
		kinds = []string{"restart", "reshard", "outage"}
	}
	switch {
	case len(pos) > 1:
		return usageError{"usage: gatehouse plan [restart|reshard|outage] [flags]"}
	case len(pos) == 1:
		switch pos[0] {
		case "restart", "outage":
		case "reshard":
			if *to < 1 {
				return usageError{"plan reshard: -to N is required"}
			}
		default:
			return usageError{fmt.Sprintf("plan: %q: want restart, reshard or outage", pos[0])}
		}
		kinds = pos
	}
	if *shards < 0 || *to < 0 || *interval <= 0 {
		return usageError{"plan: -shards and -to must not be negative, -identify-interval must be positive"}
	}
	tok := botToken(*token)
	if tok == "" {
		return usageError{"plan: set -token or GATEHOUSE_TOKEN"}
	}
	gb, err := gateway.FetchGatewayBot(ctx, &http.Client{Timeout: 15 * time.Second}, *api, tok)
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	count := *shards
	if count == 0 {
		count = max(gb.Shards, 1)
	}
	sl := gb.SessionStartLimit
	reset := time.Duration(sl.ResetAfter) * time.Millisecond
	fmt.Fprintf(stdout, "/gateway/bot: %d shards recommended, max_concurrency %d, %d of %d session starts left (resets in %s)\n",
		gb.Shards, max(sl.MaxConcurrency, 1), sl.Remaining, sl.Total, reset.Round(time.Minute))
	for _, c := range planCases(gb, count, *to, *interval, kinds) {
		fit := fmt.Sprintf("%d session starts left afterwards", c.left)
		if c.left < 0 {
			fit = fmt.Sprintf("DOES NOT FIT: %d over the budget; wait for the reset in %s", -c.left, reset.Round(time.Minute))
		}
		fmt.Fprintf(stdout, "%s: %d identifies in %d rounds, about %s; %s\n  %s\n", c.name, c.identifies, c.rounds, c.eta.Round(time.Second), fit, c.note)
	}
	return nil
}
