package loadtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

func TestIngestSimArgs(t *testing.T) {
	args := IngestSimArgs(IngestWorkload{Shards: 16, Rate: 1000})
	for _, want := range [][]string{
		{"-event-types", "MESSAGE_CREATE"}, {"-shards", "16"}, {"-max-concurrency", "16"},
		{"-guilds", "160"}, {"-rate", "1000"}, {"-replay-buffer", "60000"}, {"-addr", "127.0.0.1:0"},
	} {
		i := slices.Index(args, want[0])
		if i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
			t.Errorf("IngestSimArgs: %s is not %s in %q", want[0], want[1], args)
		}
	}
	if args := IngestSimArgs(IngestWorkload{Shards: 1, Rate: 1}); !slices.Contains(args, "20000") {
		t.Errorf("IngestSimArgs at 1 event/s: replay buffer below the simulator default in %q", args)
	}
}

func TestIngestResultDerived(t *testing.T) {
	r := IngestResult{Window: 2 * time.Second, Events: 90, Generated: 100, CPUSeconds: 1, SimCPUSeconds: 0.5}
	if !r.Saturated() || r.ClientCores() != 0.5 || r.SimCores() != 0.25 {
		t.Errorf("Saturated, ClientCores, SimCores = %v, %v, %v; want true, 0.5, 0.25", r.Saturated(), r.ClientCores(), r.SimCores())
	}
	r.Events = 99
	if r.Saturated() {
		t.Errorf("99 of 100 events received: Saturated() = true")
	}
}

// TestRunJSIngest runs the JavaScript baseline for real: a simulator process
// and node with @discordjs/ws, 4 shards, a short window in each transport.
func TestRunJSIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node and a simulator process")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	script, err := filepath.Abs("../../compat/js/ingest.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@discordjs", "ws")); err != nil {
		t.Skip("compat/js/node_modules missing (run npm ci in compat/js)")
	}
	exe := buildGatehouse(t)

	for _, c := range []codec.Compression{codec.None, codec.ZlibStream} {
		t.Run(compressionName(c), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var logs strings.Builder
			r, err := RunJSIngest(ctx, JSIngestConfig{
				Exe: exe, Node: node, Script: script, Shards: 4, Rate: 1000, Compression: c,
				Warmup: 300 * time.Millisecond, Measure: 1500 * time.Millisecond, Logs: &logs,
			})
			if err != nil {
				t.Fatalf("RunJSIngest: %v\nlogs:\n%s", err, logs.String())
			}
			t.Logf("%s: %d events in %v (%.0f/s, %d generated), client %.2f CPU-s (%.0f events/CPU-s), sim %.2f CPU-s, RSS %d MiB",
				r.Name, r.Events, r.Window, r.EventsPerSec, r.Generated, r.CPUSeconds, r.EventsPerCPUSecond, r.SimCPUSeconds, r.RSSBytes>>20)
			if !strings.HasPrefix(r.Name, "@discordjs/ws ") || r.Shards != 4 || r.Compression != c || r.AllocsPerEvent >= 0 {
				t.Errorf("result %+v: wrong name, shards, compression or allocs", r)
			}
			// 4 shards × 1,000/s is well within what node reads in both
			// transports.
			if r.Window < time.Second || r.Generated < 4000 || r.EventsPerSec < 2000 || r.EventsPerSec > 6000 {
				t.Errorf("%d events (%d generated) in %v: %.0f/s, want about 4,000/s", r.Events, r.Generated, r.Window, r.EventsPerSec)
			}
			if r.CPUSeconds <= 0 || r.EventsPerCPUSecond < 2000 || r.EventsPerCPUSecond > 5e6 {
				t.Errorf("client CPU %.2f s, %.0f events/CPU-s: not plausible", r.CPUSeconds, r.EventsPerCPUSecond)
			}
			if r.SimCPUSeconds <= 0 || r.RSSBytes < 10<<20 {
				t.Errorf("sim CPU %.2f s, client RSS %d: not plausible", r.SimCPUSeconds, r.RSSBytes)
			}
		})
	}
}
