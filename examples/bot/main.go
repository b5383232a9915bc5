// Command bot is a small Gatehouse bot worker: it receives MESSAGE_CREATE
// events from the stream, answers "!ping" (by logging the reply it would send
// through Discord's REST API), changes its presence with "!status TEXT", and
// sets a presence on every shard it hears from.
//
// It never connects to Discord: gateway nodes hold the shard sessions and
// publish the events to NATS JetStream, and the bot consumes them with the
// client package. Its durable consumer remembers what it acknowledged, so a
// restarted bot resumes where it stopped, and several copies started with the
// same -consumer share the work.
//
// To try it offline, run the Discord simulator, a gateway node pointed at it
// (with the privileged MESSAGE_CONTENT intent, without which Discord and the
// simulator send messages with empty content) and the bot, each in its own
// terminal:
//
//	gatehouse sim -event-types MESSAGE_CREATE -rate 5
//	gatehouse gateway -api http://127.0.0.1:8787/api/v10 -token sim-token -intents GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT
//	go run ./examples/bot -nats nats://127.0.0.1:4222 -nkey gatehouse-data/credentials/worker.nk -consumer pingbot
//
// The gateway node runs NATS with JetStream inside its process and listens
// for workers on 127.0.0.1:4222, admitting only the identities whose seeds
// it made in its data directory: the bot uses the worker's (or
// $GATEHOUSE_NATS_NKEY). The simulator's messages rarely say "!ping";
// the bot logs a line every -report messages so that one can see it work,
// and `gatehouse tail -types MESSAGE_CREATE` shows the same events raw.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/client"
)

func main() {
	url := flag.String("nats", "nats://127.0.0.1:4222", "NATS server `URL`")
	nkey := flag.String("nkey", os.Getenv("GATEHOUSE_NATS_NKEY"), "nkey seed `file` of a worker identity (default $GATEHOUSE_NATS_NKEY)")
	consumer := flag.String("consumer", "pingbot", "durable consumer `name`; copies with the same name share the events")
	report := flag.Int("report", 1000, "log a line every `N` messages (0 = never)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *url, *nkey, *consumer, *report); err != nil {
		log.Error("bot stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, url, nkey, consumer string, report int) error {
	c, err := client.Connect(ctx, client.Config{
		URL:      url,
		NKeyFile: nkey,
		Consumer: consumer,
		Types:    []string{"MESSAGE_CREATE"},
		Logger:   log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	b := &bot{c: c, log: log, report: int64(report)}
	log.Info("bot consuming", "nats", url, "consumer", consumer)
	if err := c.Consume(ctx, b.handle); err != nil {
		return err
	}
	log.Info("bot stopped", "messages", b.handled.Load())
	return nil
}

// message is the part of a MESSAGE_CREATE the bot reads.
type message struct {
	ID        string `json:"id"`
	ChannelID string `json:"channel_id"`
	GuildID   string `json:"guild_id"`
	Content   string `json:"content"`
	Author    struct {
		Username string `json:"username"`
		Bot      bool   `json:"bot"`
	} `json:"author"`
}

type bot struct {
	c      *client.Client
	log    *slog.Logger
	report int64

	handled  atomic.Int64
	presence sync.Map // shard → struct{}: presence set
}

// handle is called for each MESSAGE_CREATE, concurrently for different
// shards and in order within one. Returning an error makes the client hand
// the same event again later, so only transient failures should do that.
func (b *bot) handle(ctx context.Context, ev *client.Event) error {
	if _, done := b.presence.LoadOrStore(ev.Shard, struct{}{}); !done {
		// Once per shard, failure or not: a missing gateway must not slow
		// down every message.
		if err := b.setPresence(ctx, ev.Shard, 0, "the gate"); err != nil {
			b.log.Warn("setting presence", "shard", ev.Shard, "err", err)
		}
	}
	if n := b.handled.Add(1); b.report > 0 && n%b.report == 0 {
		b.log.Info("messages handled", "count", n, "last_shard", ev.Shard, "last_key", ev.Key())
	}

	var m message
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		b.log.Warn("undecodable message", "key", ev.Key(), "err", err)
		return nil // retrying would not help
	}
	if m.Author.Bot {
		return nil
	}
	switch {
	case m.Content == "!ping":
		// A real bot would POST to /channels/{channel_id}/messages here,
		// skipping it when ev.Redelivered and the key was answered before.
		b.log.Info("pong", "channel", m.ChannelID, "guild", m.GuildID, "to", m.Author.Username,
			"shard", ev.Shard, "key", ev.Key(), "redelivered", ev.Redelivered)
	case strings.HasPrefix(m.Content, "!status "):
		text := strings.TrimSpace(strings.TrimPrefix(m.Content, "!status "))
		shard := -1 // the shard of the guild
		if ev.GuildID == 0 {
			shard = ev.Shard // a direct message
		}
		if err := b.setPresence(ctx, shard, ev.GuildID, text); err != nil {
			b.log.Warn("setting presence", "guild", m.GuildID, "err", err)
		}
	}
	return nil
}

// setPresence sets a "watching TEXT" presence on shard, or when shard is -1
// on the shard that holds guild.
func (b *bot) setPresence(ctx context.Context, shard int, guild uint64, text string) error {
	activity, err := json.Marshal(text)
	if err != nil {
		return err
	}
	payload := fmt.Appendf(nil, `{"op":3,"d":{"since":null,"activities":[{"name":%s,"type":3}],"status":"online","afk":false}}`, activity)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if shard < 0 {
		err = b.c.Send(ctx, guild, payload)
	} else {
		err = b.c.SendShard(ctx, shard, payload)
	}
	var refused *client.CommandError
	if errors.As(err, &refused) {
		return fmt.Errorf("gateway refused: %s", refused.Message)
	}
	return err
}
