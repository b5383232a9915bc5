package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(t.Context(), nil, &out, &errOut); !errors.As(err, new(usageError)) {
		t.Errorf("run() = %v, want usage error", err)
	}
	if err := run(t.Context(), []string{"nope"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown command "nope"`) {
		t.Errorf("run(nope) = %v", err)
	}
	out.Reset()
	if err := run(t.Context(), []string{"help"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "sim ") {
		t.Errorf("run(help) = %v, output %q", err, out.String())
	}
	for _, cmd := range []string{"sim", "version", "bench"} {
		errOut.Reset()
		args := []string{cmd, "-help"}
		if cmd == "bench" {
			args = []string{"bench", "sim", "-help"}
		}
		if err := run(t.Context(), args, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("run(%v) = %v, want flag.ErrHelp", args, err)
		}
		if !strings.Contains(errOut.String(), "Usage: gatehouse "+cmd) {
			t.Errorf("run(%v) printed %q", args, errOut.String())
		}
	}
	if err := run(t.Context(), []string{"sim", "-guilds", "x"}, &out, &errOut); !errors.As(err, new(usageError)) {
		t.Errorf("run(sim -guilds x) = %v, want usage error", err)
	}
	if err := run(t.Context(), []string{"sim", "-compress-default", "gzip"}, &out, &errOut); !errors.As(err, new(usageError)) {
		t.Errorf("run(sim -compress-default gzip) = %v, want usage error", err)
	}
	if err := run(t.Context(), []string{"sim", "-guilds", "-5"}, &out, &errOut); !errors.As(err, new(usageError)) {
		t.Errorf("run(sim -guilds -5) = %v, want usage error", err)
	}
}

func TestParseFaultSpec(t *testing.T) {
	tests := []struct {
		in   string
		want scheduledFault
	}{
		{"reconnect", scheduledFault{fault: sim.Fault{Kind: "reconnect"}}},
		{"reconnect@60s", scheduledFault{fault: sim.Fault{Kind: "reconnect"}, every: time.Minute}},
		{"close:code=4000,shards=0-2,5@5m", scheduledFault{fault: sim.Fault{Kind: "close", Code: 4000, Shards: []int{0, 1, 2, 5}}, every: 5 * time.Minute}},
		{"latency:delay=200ms,num_shards=16", scheduledFault{fault: sim.Fault{Kind: "latency", Delay: sim.Duration(200 * time.Millisecond), NumShards: 16}}},
		{"silence:event_type=MESSAGE_CREATE,shards=3,duration=30s", scheduledFault{fault: sim.Fault{Kind: "silence", EventType: "MESSAGE_CREATE", Shards: []int{3}, Duration: sim.Duration(30 * time.Second)}}},
		{"invalid_session:resumable=true", scheduledFault{fault: sim.Fault{Kind: "invalid_session", Resumable: true}}},
	}
	for _, tt := range tests {
		got, err := parseFaultSpec(tt.in)
		if err != nil {
			t.Errorf("parseFaultSpec(%q) error: %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(scheduledFault{})); diff != "" {
			t.Errorf("parseFaultSpec(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
	for _, bad := range []string{"", "close:code=x", "close:nope=1", "reconnect@", "reconnect@-1s", "close:shards=3-1", "x:shards=a"} {
		if _, err := parseFaultSpec(bad); err == nil {
			t.Errorf("parseFaultSpec(%q) = nil error", bad)
		}
	}
}

func TestParseIntents(t *testing.T) {
	got, err := parseIntents("GUILD_MEMBERS, message_content,256")
	if want := discord.IntentGuildMembers | discord.IntentMessageContent | discord.IntentGuildPresences; err != nil || got != want {
		t.Errorf("parseIntents = %v, %v, want %v", got, err, want)
	}
	if _, err := parseIntents("GUILD_NOPE"); err == nil {
		t.Error("parseIntents(GUILD_NOPE) = nil error")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func TestRunSim(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"sim", "-addr", "127.0.0.1:0", "-guilds", "3000", "-max-concurrency", "4", "-fault", "latency:delay=1ms"}, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("reading first line: %v (stderr %s)", err, stderr.b.String())
	}
	go io.Copy(io.Discard, pr)
	const prefix = "gatehouse sim listening on http://127.0.0.1:"
	if !strings.HasPrefix(line, prefix) {
		cancel()
		t.Fatalf("first line = %q, want prefix %q", line, prefix)
	}
	base, _, _ := strings.Cut(strings.TrimPrefix(line, "gatehouse sim listening on "), " ")

	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v10/gateway/bot", nil)
	req.Header.Set("Authorization", "Bot sim-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var gb discord.GatewayBot
	err = json.NewDecoder(resp.Body).Decode(&gb)
	resp.Body.Close()
	if err != nil || gb.Shards != 3 || gb.SessionStartLimit.MaxConcurrency != 4 || gb.URL != "ws://"+strings.TrimPrefix(base, "http://") {
		t.Errorf("/gateway/bot = %+v, %v", gb, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run(sim) after cancel = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("sim did not stop")
	}
}
