package client_test

import (
	"context"
	"encoding/json"
	"log"
	"os/signal"
	"sync"
	"syscall"

	"github.com/gatehouse-dev/gatehouse/client"
)

// A worker that handles guild messages, one consumer for all its replicas.
func ExampleClient_Consume() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := client.Connect(ctx, client.Config{
		URL:      "nats://127.0.0.1:4222",
		Consumer: "my-bot",
		Types:    []string{"MESSAGE_CREATE"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// The handler runs concurrently for different shards. A real bot keeps
	// the keys in a store with expiry.
	var seen sync.Map
	err = c.Consume(ctx, func(ctx context.Context, ev *client.Event) error {
		if _, dup := seen.Load(ev.Key()); dup && ev.Redelivered {
			return nil // handled before the last restart
		}
		var msg struct {
			ChannelID string `json:"channel_id"`
			Content   string `json:"content"`
		}
		if err := json.Unmarshal(ev.Data, &msg); err != nil {
			return nil // nothing to retry
		}
		log.Printf("shard %d: %s in %s", ev.Shard, msg.Content, msg.ChannelID)
		seen.Store(ev.Key(), true)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Setting the bot's presence on one shard.
func ExampleClient_SendShard() {
	ctx := context.Background()
	c, err := client.Connect(ctx, client.Config{URL: "nats://127.0.0.1:4222"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	presence := []byte(`{"op":3,"d":{"since":null,"activities":[{"name":"the gate","type":3}],"status":"online","afk":false}}`)
	if err := c.SendShard(ctx, 0, presence); err != nil {
		log.Print(err)
	}
}
