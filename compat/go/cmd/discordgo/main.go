// Command discordgo connects github.com/bwmarrin/discordgo sessions, one per
// shard, to a Discord gateway simulator and reports, as one JSON line,
// whether every shard reached READY and enough events arrived.
//
// Only public configuration is used: discordgo's exported Endpoint variables
// are pointed at the simulator (they are plain package variables computed
// once at init, so the derived ones are set too). discordgo has no shard
// manager; like most discordgo bots this program opens one Session per shard,
// one after another, pausing -identify-wait between them.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/gatehouse-dev/gatehouse/compat/go/internal/probe"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var (
		apiVersion   string
		identifyWait time.Duration
	)
	o, err := probe.Parse("discordgo", args, func(fs *flag.FlagSet) {
		fs.StringVar(&apiVersion, "api-version", discordgo.APIVersion, "API version for REST paths and the gateway ?v= (discordgo's default)")
		fs.DurationVar(&identifyWait, "identify-wait", 5*time.Second, "pause between opening two shards")
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	discordgo.APIVersion = apiVersion
	discordgo.EndpointDiscord = o.Base + "/"
	discordgo.EndpointAPI = discordgo.EndpointDiscord + "api/v" + apiVersion + "/"
	discordgo.EndpointGateway = discordgo.EndpointAPI + "gateway"
	discordgo.EndpointGatewayBot = discordgo.EndpointGateway + "/bot"

	rec := probe.NewRecorder("discordgo", "github.com/bwmarrin/discordgo", o.Events)
	// discordgo reports op 9 only in its log ("... in response to Op9");
	// its exported Logger hook sees every line at the session's LogLevel.
	// The hook is global, so the shard is known only when there is one.
	logShard := -1
	if len(o.ShardIDs) == 1 {
		logShard = o.ShardIDs[0]
	}
	discordgo.Logger = func(level, _ int, format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		if strings.Contains(msg, "in response to Op9") {
			rec.InvalidSession(logShard, "unknown")
		}
		if o.Verbose || level <= discordgo.LogWarning {
			fmt.Fprintf(os.Stderr, "discordgo: %s\n", msg)
		}
	}
	ctx, cancel := probe.Context(o.Timeout)
	defer cancel()

	newSession := func(shard, count int) (*discordgo.Session, error) {
		s, err := discordgo.New("Bot " + o.Token)
		if err != nil {
			return nil, err
		}
		s.LogLevel = discordgo.LogInformational
		if o.Verbose {
			s.LogLevel = discordgo.LogDebug
		}
		s.ShardID, s.ShardCount = shard, count
		s.Identify.Intents = discordgo.Intent(o.Intents)
		rec.Note("compression", fmt.Sprintf("none (identify compress:%t)", s.Identify.Compress))
		s.AddHandler(func(_ *discordgo.Session, _ *discordgo.Ready) { rec.Ready(shard) })
		s.AddHandler(func(_ *discordgo.Session, e *discordgo.Event) { rec.Event(shard, e.Type) })
		return s, nil
	}

	count, ids := o.ShardCount, o.ShardIDs
	if count == 0 || len(ids) == 0 {
		probeSession, err := newSession(0, 1)
		if err != nil {
			return rec.Finish(err)
		}
		gb, err := probeSession.GatewayBot(discordgo.WithContext(ctx))
		if err != nil {
			return rec.Finish(fmt.Errorf("GET /gateway/bot: %w", err))
		}
		count, ids = probe.Shards(count, ids, gb.Shards)
	}
	rec.Expect(count, ids)

	fatal := make(chan error, 1)
	var sessions []*discordgo.Session // owned by the opener until opened is closed
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		for i, id := range ids {
			if i > 0 {
				select {
				case <-time.After(identifyWait):
				case <-ctx.Done():
					return
				}
			}
			s, err := newSession(id, count)
			if err == nil {
				// Open dials, reads HELLO, sends IDENTIFY and reads one more
				// message (READY, or op 9 which it answers with a new IDENTIFY).
				err = s.Open()
			}
			if err != nil {
				select {
				case fatal <- fmt.Errorf("shard %d: open: %w", id, err):
				default:
				}
				return
			}
			sessions = append(sessions, s)
		}
	}()
	werr := rec.Wait(ctx, fatal)
	cancel()
	<-opened
	for _, s := range sessions {
		s.Close()
	}
	return rec.Finish(werr)
}
