package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// tailServer starts a NATS server with JetStream and, unless noStream, the
// event stream, and returns its URL and a JetStream handle.
func tailServer(t *testing.T, noStream bool) (string, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !noStream {
		_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: "GATEHOUSE_EVENTS", Subjects: []string{"gatehouse.ev.>"},
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ns.ClientURL(), js
}

// publishTail publishes one batch of dispatches of type typ with sequence
// numbers first.. for shard of numShards.
func publishTail(t *testing.T, js jetstream.JetStream, shard, numShards int, typ string, first int64, ds ...string) {
	t.Helper()
	body := broker.NewBody(nil)
	for i, d := range ds {
		body = broker.AppendRecord(body, discord.AppendFrame(nil, typ, first+int64(i), discord.OpDispatch, []byte(d)))
	}
	msg := nats.NewMsg(string(broker.Subjects{}.AppendEvent(nil, shard, 0, []byte(typ))))
	msg.Data = body
	msg.Header.Set(broker.HeaderMsgID, fmt.Sprintf("%d:sess:%d", shard, first))
	msg.Header.Set(broker.HeaderShard, fmt.Sprintf("%d/%d", shard, numShards))
	msg.Header.Set(broker.HeaderSession, "sess")
	msg.Header.Set(broker.HeaderSeq, fmt.Sprintf("%d-%d", first, first+int64(len(ds))-1))
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

func TestTailJSON(t *testing.T) {
	url, js := tailServer(t, false)
	publishTail(t, js, 0, 2, "MESSAGE_CREATE", 1, `{"guild_id":"41771983423143937","content":"a"}`, `{"guild_id":"41771983423143937","content":"b"}`)
	publishTail(t, js, 1, 2, "TYPING_START", 1, `{"guild_id":"41771983423143938"}`)
	publishTail(t, js, 1, 2, "MESSAGE_CREATE", 2, "{\n  \"content\": \"pretty\"\n}")
	publishTail(t, js, 0, 2, "MESSAGE_CREATE", 3, `{"guild_id":"41771983423143937","content":"c"}`)

	var out, errOut bytes.Buffer
	err := runTail(t.Context(), []string{"-nats", url, "-from", "all", "-types", "message_create", "-n", "4"}, &out, &errOut)
	if err != nil {
		t.Fatalf("runTail = %v; stderr: %s", err, errOut.String())
	}
	type line struct {
		Shard   int             `json:"shard"`
		Seq     int64           `json:"seq"`
		Type    string          `json:"type"`
		GuildID *string         `json:"guild_id"`
		D       json.RawMessage `json:"d"`
	}
	var got []line
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, l)
	}
	slices.SortFunc(got, func(a, b line) int { return (a.Shard*100 + int(a.Seq)) - (b.Shard*100 + int(b.Seq)) })
	g := func(s string) *string { return &s }
	want := []line{
		{0, 1, "MESSAGE_CREATE", g("41771983423143937"), json.RawMessage(`{"guild_id":"41771983423143937","content":"a"}`)},
		{0, 2, "MESSAGE_CREATE", g("41771983423143937"), json.RawMessage(`{"guild_id":"41771983423143937","content":"b"}`)},
		{0, 3, "MESSAGE_CREATE", g("41771983423143937"), json.RawMessage(`{"guild_id":"41771983423143937","content":"c"}`)},
		{1, 2, "MESSAGE_CREATE", nil, json.RawMessage(`{"content":"pretty"}`)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s\noutput:\n%s", diff, out.String())
	}
}

func TestTailCount(t *testing.T) {
	url, js := tailServer(t, false)
	for i := range 3 {
		publishTail(t, js, i%2, 2, "MESSAGE_CREATE", int64(1+2*i), `{"guild_id":"1"}`, `{"guild_id":"1"}`)
	}
	publishTail(t, js, 1, 2, "GUILD_CREATE", 9, `{"id":"2"}`)

	var out, errOut bytes.Buffer
	err := runTail(t.Context(), []string{"-nats", url, "-from", "all", "-count", "-n", "7", "-durable", "tailer"}, &out, &errOut)
	if err != nil {
		t.Fatalf("runTail = %v; stderr: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "final ") {
		t.Fatalf("last line %q is not the final summary", last)
	}
	for _, want := range []string{"total 7", "MESSAGE_CREATE=6", "GUILD_CREATE=1", "shards: 0=4 1=3"} {
		if !strings.Contains(last, want) {
			t.Errorf("final summary %q lacks %q", last, want)
		}
	}

	// The durable consumer resumes after what it acknowledged: nothing is
	// left, so a new event is the next one printed.
	publishTail(t, js, 0, 2, "TYPING_START", 20, `{"guild_id":"3"}`)
	var out2 bytes.Buffer
	if err := runTail(t.Context(), []string{"-nats", url, "-n", "1", "-durable", "tailer"}, &out2, &errOut); err != nil {
		t.Fatalf("runTail = %v", err)
	}
	if !strings.Contains(out2.String(), `"seq":20,"key":"0:sess:20","lease":0,"type":"TYPING_START"`) {
		t.Errorf("second run printed %q, want the new event only", out2.String())
	}
}

func TestTailFlags(t *testing.T) {
	bad := [][]string{
		{"-from", "yesterday"},
		{"-shards", "x"},
		{"-shards", "3-1"},
		{"-types", "MESSAGE CREATE"},
		{"-n", "-1"},
		{"-interval", "0s"},
		{"-durable", "a.b"},
		{"-prefix", "a.*"},
		{"extra"},
		{"-nats", ""},
	}
	for _, args := range bad {
		var out, errOut bytes.Buffer
		if err := runTail(t.Context(), args, &out, &errOut); !errors.As(err, new(usageError)) {
			t.Errorf("runTail(%q) = %v, want a usage error", args, err)
		}
	}
	var out, errOut bytes.Buffer
	if err := runTail(t.Context(), []string{"-help"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("runTail(-help) = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(errOut.String(), "Usage: gatehouse tail") {
		t.Errorf("help output %q", errOut.String())
	}
}

func TestTailNoStream(t *testing.T) {
	url, _ := tailServer(t, true)
	var out, errOut bytes.Buffer
	err := runTail(t.Context(), []string{"-nats", url}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "stream not found") {
		t.Errorf("runTail without a stream = %v, want a stream-not-found error", err)
	}
}
