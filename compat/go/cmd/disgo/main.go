// Command disgo connects github.com/disgoorg/disgo's sharded bot client to a
// Discord gateway simulator and reports, as one JSON line, whether every
// shard reached READY and enough events arrived.
//
// Only public configuration is used: rest.WithURL points the REST client at
// the simulator; the gateway URL, shard count and max_concurrency then come
// from the simulator's GET /gateway/bot, exactly as they would from Discord.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/disgo/sharding"

	"github.com/gatehouse-dev/gatehouse/compat/go/internal/probe"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := probe.Parse("disgo", args, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rec := probe.NewRecorder("disgo", "github.com/disgoorg/disgo", o.Events)
	ctx, cancel := probe.Context(o.Timeout)
	defer cancel()

	var smOpts []sharding.ConfigOpt
	if o.ShardCount > 0 {
		smOpts = append(smOpts, sharding.WithShardCount(o.ShardCount))
	}
	if len(o.ShardIDs) > 0 {
		smOpts = append(smOpts, sharding.WithShardIDs(o.ShardIDs...))
	}
	smOpts = append(smOpts, sharding.WithGatewayConfigOpts(
		gateway.WithIntents(gateway.Intents(o.Intents)),
		gateway.WithEnableRawEvents(true),
	))
	fatal := make(chan error, 1)
	smOpts = append(smOpts, sharding.WithCloseHandler(func(g gateway.Gateway, err error, reconnect bool) {
		if !reconnect {
			select {
			case fatal <- fmt.Errorf("shard %d closed for good: %w", g.ShardID(), err):
			default:
			}
		}
	}))

	// disgo logs op 9 as "received invalid session" with the shard id
	// attached to its logger; count those lines. Its debug line "opening
	// gateway connection" names the transport compression.
	logger := slog.New(probe.NewWatchHandler(o.Handler(), func(msg string, shard int, attrs map[string]slog.Value) {
		switch msg {
		case "received invalid session":
			d := "unknown"
			if v, ok := attrs["can_resume"]; ok {
				d = v.String()
			}
			rec.InvalidSession(shard, d)
		case "opening gateway connection":
			if v, ok := attrs["compression"]; ok {
				rec.Note("compression", v.String())
			}
		}
	}, "received invalid session", "opening gateway connection"))
	client, err := disgo.New(o.Token,
		bot.WithLogger(logger),
		bot.WithRestClientConfigOpts(rest.WithURL(o.Base+"/api/v10")),
		bot.WithShardManagerConfigOpts(smOpts...),
		bot.WithEventListenerFunc(func(e *events.Ready) { rec.Ready(e.ShardID()) }),
		bot.WithEventListenerFunc(func(e *events.Raw) { rec.Event(e.ShardID(), string(e.EventType)) }),
	)
	if err != nil {
		return rec.Finish(fmt.Errorf("disgo.New: %w", err))
	}
	count, ids := o.ShardCount, o.ShardIDs
	if count == 0 || len(ids) == 0 {
		// disgo.New asked /gateway/bot already but keeps the answer private;
		// ask again to learn which shards it will run.
		gb, err := client.Rest.GetGatewayBot(rest.WithCtx(ctx))
		if err != nil {
			return rec.Finish(fmt.Errorf("GET /gateway/bot: %w", err))
		}
		count, ids = probe.Shards(count, ids, gb.Shards)
	}
	rec.Expect(count, ids)

	// OpenShardManager returns once every shard is open (READY), so run it
	// aside and wait with a deadline.
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		if err := client.OpenShardManager(ctx); err != nil {
			select {
			case fatal <- fmt.Errorf("open: %w", err):
			default:
			}
		}
	}()
	werr := rec.Wait(ctx, fatal)
	cancel()
	<-opened
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer closeCancel()
	client.Close(closeCtx)
	return rec.Finish(werr)
}
