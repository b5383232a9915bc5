package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

func TestPlanCases(t *testing.T) {
	gb := discord.GatewayBot{Shards: 40, SessionStartLimit: discord.SessionStartLimit{Total: 1000, Remaining: 50, MaxConcurrency: 16}}
	cs := planCases(gb, 40, 60, 5*time.Second, []string{"restart", "reshard", "outage"})
	if len(cs) != 3 {
		t.Fatalf("%d cases", len(cs))
	}
	if c := cs[0]; c.identifies != 40 || c.rounds != 3 || c.eta != 15*time.Second || c.left != 10 {
		t.Errorf("restart: %+v, want 40 identifies, 3 rounds, 15s, 10 left", c)
	}
	if c := cs[1]; c.identifies != 60 || c.rounds != 4 || c.left != -10 || !strings.Contains(c.note, "try 64") {
		t.Errorf("reshard: %+v, want 60 identifies in 4 rounds, 10 over the budget, and the multiple-of-16 hint", c)
	}
}

// TestPlanCommand asks a simulator's /gateway/bot.
func TestPlanCommand(t *testing.T) {
	_, base := simtest.Start(t, sim.Config{Guilds: 4000, Shards: 4, MaxConcurrency: 2})
	var out, errOut bytes.Buffer
	err := runPlan(t.Context(), []string{"-api", base + "/api/v10", "-token", "sim-token", "-to", "8"}, &out, &errOut)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"max_concurrency 2", "full restart of 4 shards: 4 identifies in 2 rounds, about 10s", "reshard 4 → 8 shards: 8 identifies in 4 rounds, about 20s", "recovery after an outage"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, bad := range [][]string{{"reshard"}, {"meteor"}, {"-shards", "-1"}, {"restart", "outage"}} {
		if err := runPlan(t.Context(), append(bad, "-api", base+"/api/v10", "-token", "x"), &out, &errOut); err == nil {
			t.Errorf("plan %v: no error", bad)
		}
	}
}
