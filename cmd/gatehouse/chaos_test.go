package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/chaos"
)

// TestChaos runs the short version of every zero-loss scenario with the
// built binary: each must lose and duplicate nothing, spend no IDENTIFY
// and pass its own checks (the consumer back within 1 s, failover within
// the lease TTL plus 2 s, at most one shard of a bucket in flight during
// a drain and the drained node exiting, no shard on two connections
// across a coordinator restart, the silent shard cycled by RESUME).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five deployments of several processes")
	}
	exe := buildExe(t)
	rs, err := chaos.Run(t.Context(), chaos.Config{Exe: exe, Steady: 2 * time.Second, Outage: 12 * time.Second, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := chaos.WriteTable(&out, rs); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if len(rs) != len(chaos.Scenarios()) {
		t.Fatalf("%d results, want %d", len(rs), len(chaos.Scenarios()))
	}
	for _, r := range rs {
		if !r.OK() {
			t.Errorf("%s: %d lost, %d duplicated, err %q", r.Scenario, r.Lost, r.Duplicated, r.Err)
		}
		if r.Produced < 1000 || r.Delivered != r.Produced {
			t.Errorf("%s: produced %d, delivered %d: want a steady load delivered in full", r.Scenario, r.Produced, r.Delivered)
		}
		if r.Recovery <= 0 {
			t.Errorf("%s: no recovery time measured", r.Scenario)
		}
	}
	if !strings.Contains(out.String(), "scenario") || !strings.Contains(out.String(), "max gap") {
		t.Errorf("table has no header:\n%s", out.String())
	}
}

func TestChaosBadConfig(t *testing.T) {
	for _, cfg := range []chaos.Config{{}, {Exe: "x", Shards: 1}, {Exe: "x", Scenarios: []string{"meteor"}}} {
		if _, err := chaos.Run(t.Context(), cfg); err == nil {
			t.Errorf("Run(%+v) = nil error, want a config error", cfg)
		}
	}
}
