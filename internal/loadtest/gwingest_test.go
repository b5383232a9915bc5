package loadtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

var (
	buildOnce sync.Once
	builtExe  string
	buildErr  string
)

// buildGatehouse builds the gatehouse binary once per test run.
func buildGatehouse(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH, cannot build the gatehouse binary")
	}
	buildOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			buildErr = err.Error()
			return
		}
		exe := filepath.Join(dir, "gatehouse")
		if out, err := exec.Command(goTool, "build", "-o", exe, "github.com/gatehouse-dev/gatehouse/cmd/gatehouse").CombinedOutput(); err != nil {
			buildErr = err.Error() + "\n" + string(out)
			return
		}
		builtExe = exe
	})
	if buildErr != "" {
		t.Fatalf("go build: %s", buildErr)
	}
	return builtExe
}

func TestRunGatewayIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a simulator and a gateway node process")
	}
	exe := buildGatehouse(t)
	for _, sep := range []bool{false, true} {
		name := "embedded"
		if sep {
			name = "separate"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var logs strings.Builder
			r, err := RunGatewayIngest(ctx, GatewayIngestConfig{
				Exe: exe, Shards: 4, Rate: 1000, Compression: codec.ZlibStream, SeparateBroker: sep,
				Warmup: 500 * time.Millisecond, Measure: 1500 * time.Millisecond, Logs: &logs,
			})
			if err != nil {
				t.Fatalf("RunGatewayIngest: %v\nlogs:\n%s", err, logs.String())
			}
			t.Logf("%s: %.0f events/s published, %.0f consumed/s, %.2f CPU-s (%.0f events/CPU-s), broker %.2f CPU-s, %.2f allocs/event, RSS %d MiB",
				r.Name, r.EventsPerSec, float64(r.Consumed)/r.Window.Seconds(), r.CPUSeconds, r.EventsPerCPUSecond, r.BrokerCPUSeconds, r.AllocsPerEvent, r.RSSBytes>>20)
			// 4 shards × 1,000/s: the node keeps up, and so does the consumer.
			if r.EventsPerSec < 2000 || r.EventsPerSec > 6000 {
				t.Errorf("%.0f events/s published, want about 4,000/s", r.EventsPerSec)
			}
			if float64(r.Consumed)/r.Window.Seconds() < 2000 {
				t.Errorf("consumer got %d events in %v", r.Consumed, r.Window)
			}
			if r.CPUSeconds <= 0 || r.AllocsPerEvent < 0 || r.RSSBytes < 5<<20 {
				t.Errorf("implausible result %+v", r)
			}
			if sep != (r.BrokerCPUSeconds > 0) {
				t.Errorf("broker CPU %.3f with separate=%v", r.BrokerCPUSeconds, sep)
			}
		})
	}
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "gatehouse-bin-") }
