package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// A bot's test starts a simulator on a free loopback port, points the bot at
// its REST base instead of https://discord.com/api/v10, and lets the bot
// connect to the gateway URL that /gateway/bot returns. Here the "bot" is a
// few lines that identify and wait for READY.
func Example() {
	srv, err := sim.New(sim.Config{Token: "my-test-token", Guilds: 10})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The REST base the bot would be configured with.
	restBase := "http://" + ln.Addr().String() + "/api/v10"
	req, _ := http.NewRequestWithContext(ctx, "GET", restBase+"/gateway/bot", nil)
	req.Header.Set("Authorization", "Bot my-test-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var gw discord.GatewayBot
	json.NewDecoder(resp.Body).Decode(&gw)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	fmt.Println("recommended shards:", gw.Shards)

	conn, _, err := websocket.Dial(ctx, gw.URL+"/?v=10&encoding=json", nil)
	if err != nil {
		panic(err)
	}
	defer conn.Close(websocket.StatusNormalClosure, "") // 1000 ends the session
	conn.SetReadLimit(-1)                               // READY and GUILD_CREATE can be large

	var p discord.Payload
	read := func() {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			panic(err)
		}
		json.Unmarshal(msg, &p)
	}
	read()
	fmt.Println("first payload:", p.Op)

	intents := discord.IntentGuilds | discord.IntentGuildMessages
	identify, _ := json.Marshal(map[string]any{"op": discord.OpIdentify, "d": discord.Identify{
		Token:      "my-test-token",
		Properties: discord.IdentifyProperties{OS: "linux", Browser: "mybot", Device: "mybot"},
		Intents:    &intents,
	}})
	conn.Write(ctx, websocket.MessageText, identify)
	for read(); p.T != "READY"; read() {
	}
	var ready discord.Ready
	json.Unmarshal(p.D, &ready)
	fmt.Println("READY with", len(ready.Guilds), "guilds")
	// Output:
	// recommended shards: 1
	// first payload: HELLO
	// READY with 10 guilds
}
