package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
	"github.com/gatehouse-dev/gatehouse/internal/discord/sim/simtest"
)

// TestServe runs `gatehouse serve` against a simulator standing in for
// Discord: every shard comes up and events are published; a restart on the
// same data directory RESUMEs every shard.
func TestServe(t *testing.T) {
	srv, base := simtest.Start(t, sim.Config{Guilds: 3000, MaxConcurrency: 2, IdentifyInterval: 200 * time.Millisecond,
		HeartbeatInterval: 2 * time.Second, EventRate: 20})
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", "admin-serve")
	dir := t.TempDir()
	serve := func() {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pr, pw := io.Pipe()
		var stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"serve", "-api", base + "/api/v10", "-token", "sim-token", "-listen", "127.0.0.1:0",
				"-nats-listen", "127.0.0.1:0", "-data-dir", dir, "-identify-interval", "200ms", "-report-every", "100ms",
				"-log-level", "warn"}, pw, &stderr)
			pw.Close()
		}()
		sc := bufio.NewScanner(pr)
		ok := false
		deadline := time.AfterFunc(30*time.Second, cancel)
		defer deadline.Stop()
		for sc.Scan() {
			if strings.Contains(sc.Text(), "shards ready 3/3") && !strings.Contains(sc.Text(), " 0 events published") {
				ok = true
				break
			}
		}
		go io.Copy(io.Discard, pr)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if !ok {
			t.Fatalf("no line with 3/3 shards ready and events published; stderr:\n%s", stderr.b.String())
		}
	}
	serve()
	first := srv.Stats()
	serve()
	again := srv.Stats()
	if again.Identifies != first.Identifies || again.Resumes < first.Resumes+3 {
		t.Errorf("restart: %d new IDENTIFYs and %d RESUMEs, want 0 and 3", again.Identifies-first.Identifies, again.Resumes-first.Resumes)
	}
	if v := again.IdentifyViolations; v != 0 {
		t.Errorf("%d identify violations", v)
	}
}

func TestServeErrors(t *testing.T) {
	t.Setenv("GATEHOUSE_TOKEN", "")
	t.Setenv("GATEHOUSE_ADMIN_TOKEN", "")
	var out syncBuffer
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve"}, "no token"},
		{[]string{"serve", "-token", "x"}, "GATEHOUSE_ADMIN_TOKEN"},
	} {
		err := run(t.Context(), tc.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
