// Command arikawa connects github.com/diamondburned/arikawa/v3's shard
// manager to a Discord gateway simulator and reports, as one JSON line,
// whether every shard reached READY and enough events arrived.
//
// Only public configuration is used: arikawa's exported api.BaseEndpoint,
// api.Endpoint, api.EndpointGateway and api.EndpointGatewayBot variables are
// pointed at the simulator (they are computed once at init, so the derived
// ones are set too); the gateway URL comes from GET /gateway/bot. arikawa's
// manager always runs every shard of the bot in one process, so -shard-ids is
// not supported.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/diamondburned/arikawa/v3/api"
	"github.com/diamondburned/arikawa/v3/gateway"
	"github.com/diamondburned/arikawa/v3/session"
	"github.com/diamondburned/arikawa/v3/session/shard"
	"github.com/diamondburned/arikawa/v3/utils/handler"
	"github.com/diamondburned/arikawa/v3/utils/ws"

	"github.com/gatehouse-dev/gatehouse/compat/go/internal/probe"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := probe.Parse("arikawa", args, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	rec := probe.NewRecorder("arikawa", "github.com/diamondburned/arikawa/v3", o.Events)
	if len(o.ShardIDs) > 0 {
		return rec.Finish(errors.New("arikawa's shard manager runs all shards; -shard-ids is not supported"))
	}
	api.BaseEndpoint = o.Base
	api.Endpoint = api.BaseEndpoint + api.Path + "/"
	api.EndpointGateway = api.Endpoint + "gateway"
	api.EndpointGatewayBot = api.EndpointGateway + "/bot"
	if o.Verbose {
		ws.EnableRawEvents = true
		ws.WSDebug = func(v ...any) {
			fmt.Fprintln(os.Stderr, append([]any{time.Now().Format("15:04:05.000")}, v...)...)
		}
	}

	ctx, cancel := probe.Context(o.Timeout)
	defer cancel()

	newShard := func(m *shard.Manager, id *gateway.Identifier) (shard.Shard, error) {
		n := id.Shard.ShardID()
		s := session.NewCustom(*id, api.NewClient(id.Token), handler.New())
		s.AddIntents(gateway.Intents(o.Intents))
		rec.Note("compression", fmt.Sprintf("none (identify compress:%t)", id.Compress))
		s.AddHandler(func(*gateway.ReadyEvent) { rec.Ready(n) })
		s.AddHandler(func(ev gateway.Event) {
			if ev.Op() == 0 { // dispatch; arikawa does not export the constant
				rec.Event(n, string(ev.EventType()))
			}
		})
		return s, nil
	}

	var m *shard.Manager
	if o.ShardCount > 0 {
		cmd := gateway.DefaultIdentifyCommand("Bot " + o.Token)
		cmd.SetShard(0, o.ShardCount)
		m, err = shard.NewIdentifiedManager(cmd, newShard)
	} else {
		m, err = shard.NewManager("Bot "+o.Token, newShard)
	}
	if err != nil {
		return rec.Finish(fmt.Errorf("new manager: %w", err))
	}
	var ids []int
	for i := range m.NumShards() {
		ids = append(ids, i)
	}
	rec.Expect(m.NumShards(), ids)

	// Open opens the shards one by one and returns once all are READY.
	fatal := make(chan error, 1)
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		if err := m.Open(ctx); err != nil {
			fatal <- fmt.Errorf("open: %w", err)
		}
	}()
	werr := rec.Wait(ctx, fatal)
	cancel()
	<-opened
	m.Close()
	return rec.Finish(werr)
}
