package loadtest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startSim runs an in-process simulator on 127.0.0.1:0 and, once the test
// is over, checks that the fleet made no identify violation.
func startSim(t *testing.T, cfg sim.Config) string {
	t.Helper()
	srv, base := simtest.Start(t, cfg)
	t.Cleanup(func() { // runs before the simulator's shutdown
		if st := srv.Stats(); st.IdentifyViolations != 0 {
			t.Errorf("fleet made %d identify violations: %v", st.IdentifyViolations, st.Violations)
		}
	})
	return base
}

// TestFleetStartsWithinIdentifyLimit checks that a fleet comes up at the
// identify limit with zero violations, in both transports, and counts
// events.
func TestFleetStartsWithinIdentifyLimit(t *testing.T) {
	for _, c := range []codec.Compression{codec.None, codec.ZlibStream} {
		t.Run(compressionName(c), func(t *testing.T) {
			base := startSim(t, sim.Config{
				Guilds: 3000, MaxConcurrency: 2, IdentifyInterval: 100 * time.Millisecond,
				EventRate: 200, HeartbeatInterval: time.Second,
			})
			// A bound, not a speed target: under -race, beside other
			// packages' tests on two cores, the 3,000 GUILD_CREATEs can
			// take half a minute.
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			f, err := NewFleet(ctx, FleetConfig{BaseURL: base + "/api/v10", Token: "sim-token", Shards: 4,
				IdentifyInterval: 100 * time.Millisecond, Compression: c})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); f.Run(ctx) }()
			for {
				st := f.Stats()
				if st.Ready == 4 && st.Guilds == 3000 && st.Events > 100 {
					break
				}
				if st.Errors > 0 || ctx.Err() != nil {
					t.Fatalf("fleet stats %+v, ctx %v", st, ctx.Err())
				}
				time.Sleep(20 * time.Millisecond)
			}
			st := f.Stats()
			// 4 shards at max_concurrency 2: two identify rounds, one
			// interval apart.
			if d := st.LastReady.Sub(st.FirstIdentify); d < 100*time.Millisecond {
				t.Errorf("fleet started in %v, faster than the identify limit allows", d)
			}
			cancel()
			<-done
		})
	}
}

func compressionName(c codec.Compression) string {
	if c == codec.None {
		return "none"
	}
	return string(c)
}
