package loadtest

import (
	"context"
	"errors"
	"io"
	"time"
)

// FailoverConfig describes a leader failover benchmark: three coordinator
// replicas on a broker; the leader is killed (-9) and the time is taken
// until a write sent to a surviving replica is taken again.
type FailoverConfig struct {
	Exe      string        // the gatehouse binary; required
	LeaseTTL time.Duration // the replicas' -lease-ttl (leadership lasts this long unrenewed); default 15s
	Logs     io.Writer
}

// FailoverResult is one failover.
type FailoverResult struct {
	// Elected is the kill to a surviving replica leading; Writable the
	// kill to a write through a follower being taken.
	Elected, Writable time.Duration
}

// RunFailover runs one leader failover.
func RunFailover(ctx context.Context, cfg FailoverConfig) (FailoverResult, error) {
	if cfg.Exe == "" {
		return FailoverResult{}, errors.New("loadtest: Exe is required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	logs := cfg.Logs
	if logs == nil {
		logs = io.Discard
	}
	env := []string{"GATEHOUSE_ADMIN_TOKEN=bench-admin-secret"}
	rs, err := StartReplicas(ctx, cfg.Exe, 3, env, []string{"-shard-count", "16", "-lease-ttl", cfg.LeaseTTL.String(), "-log-level", "warn"}, logs)
	if err != nil {
		return FailoverResult{}, err
	}
	defer rs.Stop()
	old, err := rs.WaitLeader(ctx, 2*cfg.LeaseTTL)
	if err != nil {
		return FailoverResult{}, err
	}
	// Let the leadership be renewed at its usual pace first.
	select {
	case <-time.After(cfg.LeaseTTL / 2):
	case <-ctx.Done():
		return FailoverResult{}, ctx.Err()
	}
	other := (old + 1) % 3
	rs.Coords[old].Kill()
	killed := time.Now()
	var res FailoverResult
	deadline := killed.Add(3 * cfg.LeaseTTL)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if res.Elected == 0 {
			if l := rs.Leader(ctx); l >= 0 && l != old {
				res.Elected = time.Since(killed)
			}
		}
		if res.Writable == 0 && rs.Write(ctx, other) {
			res.Writable = time.Since(killed)
		}
		if res.Elected > 0 && res.Writable > 0 {
			return res, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return res, errors.New("loadtest: no replica took over within three lease TTLs")
}
