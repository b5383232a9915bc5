package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// consumerKill: kill -9 the bot worker mid-stream and start it again at
// once. Its exclusive durable consumer resumes from the last ack; what it
// had not acknowledged comes again under the same keys.
func consumerKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	c.consumer.Kill()
	c.col.mark()
	if err := c.startConsumer(ctx); err != nil {
		return 0, "", err
	}
	if err := waitFor(ctx, 10*time.Second, "the restarted consumer's first event", func() bool { return c.col.sinceMark() > 0 }); err != nil {
		return 0, "", err
	}
	rec := c.col.sinceMark()
	note := "recovery is kill -9 of the consumer to the first event its restarted process handled (restarted at once; target 1s)"
	if rec > time.Second {
		return rec, note, fmt.Errorf("the consumer was back after %v, want within 1s", rec.Round(time.Millisecond))
	}
	return rec, note, nil
}

// nodeKill: kill -9 a gateway node under load. Its leases expire, the
// other node takes its shards and RESUMEs them from the saved sessions.
func nodeKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	before := c.sim.Stats()
	c.nodes["a"].Kill()
	killed := time.Now()
	ttl := c.cfg.LeaseTTL
	if err := c.waitSim(ctx, ttl+20*time.Second, "node a's shards back on node b", func(st sim.Stats) bool {
		return st.Connections == int64(c.cfg.Shards) && st.Resumes > before.Resumes
	}); err != nil {
		return 0, "", err
	}
	rec := time.Since(killed)
	moved := c.sim.Stats().Resumes - before.Resumes
	note := fmt.Sprintf("recovery is kill -9 of node a to its %d shards RESUMEd on node b (lease TTL %v; target TTL + 2s)", moved, ttl)
	if rec > ttl+2*time.Second {
		return rec, note, fmt.Errorf("failover took %v, want within the lease TTL plus 2s", rec.Round(time.Millisecond))
	}
	return rec, note, nil
}

// nodeDrain: an operator drains node a (a rolling update). Its shards hand
// off to node b by RESUME, at most one shard of an identify bucket in
// flight, and node a exits once it holds nothing.
func nodeDrain(ctx context.Context, c *cluster) (time.Duration, string, error) {
	before := c.sim.Stats()
	a := c.nodes["a"]
	if err := c.coordPost(ctx, "/v1/commands", map[string]string{"target": "a", "type": "drain"}); err != nil {
		return 0, "", err
	}
	start := time.Now()
	mc := c.cfg.MaxConcurrency
	worst := 0
	for a.Running() {
		if time.Since(start) > 60*time.Second {
			return 0, "", fmt.Errorf("node a did not exit within 60s of the drain")
		}
		down := map[int]int{}
		for shard := range c.cfg.Shards {
			if c.shardConns()[shard] == 0 {
				down[shard%mc]++
			}
		}
		for _, n := range down {
			worst = max(worst, n)
		}
		sleep(ctx, 10*time.Millisecond)
	}
	rec := a.Exited().Sub(start)
	if err := c.waitSim(ctx, 10*time.Second, "every shard connected after the drain", func(st sim.Stats) bool {
		return st.Connections == int64(c.cfg.Shards)
	}); err != nil {
		return rec, "", err
	}
	moved := c.sim.Stats().Resumes - before.Resumes
	note := fmt.Sprintf("recovery is the drain command to node a's exit; %d shards handed off by RESUME, at most %d shard(s) of one bucket disconnected at once", moved, worst)
	switch {
	case moved == 0:
		return rec, note, fmt.Errorf("no shard was handed off")
	case worst > 1:
		return rec, note, fmt.Errorf("%d shards of one bucket were in flight at once, want at most 1", worst)
	}
	return rec, note, nil
}

// coordinatorKill: kill -9 the coordinator and start it again. Nodes keep
// running their shards; the new coordinator takes the leases from KV, so
// no shard is leased twice or runs on two connections.
func coordinatorKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	before := c.sim.Stats()
	c.coords[0].Kill()
	killed := time.Now()
	twice := 0
	watch := func() {
		for _, n := range c.shardConns() {
			if n > 1 {
				twice++
			}
		}
	}
	if err := c.startCoordinator(ctx, 0); err != nil {
		return 0, "", err
	}
	if err := waitFor(ctx, 20*time.Second, "the restarted coordinator", func() bool { watch(); return c.coordUp(ctx) }); err != nil {
		return 0, "", err
	}
	rec := time.Since(killed)
	// Two heartbeat rounds under the new coordinator.
	end := time.Now().Add(c.cfg.LeaseTTL)
	for time.Now().Before(end) {
		watch()
		sleep(ctx, 20*time.Millisecond)
	}
	after := c.sim.Stats()
	note := fmt.Sprintf("recovery is kill -9 of the coordinator to its restarted process answering; shards kept running: %d RESUMEs, %d IDENTIFYs, %d samples with a shard on two connections",
		after.Resumes-before.Resumes, after.Identifies-before.Identifies, twice)
	switch {
	case twice > 0:
		return rec, note, fmt.Errorf("a shard ran on two connections")
	case after.Resumes != before.Resumes || after.Connections != int64(c.cfg.Shards):
		return rec, note, fmt.Errorf("shards were interrupted: %d RESUMEs, %d connections", after.Resumes-before.Resumes, after.Connections)
	}
	return rec, note, nil
}

// silentShard: the simulator stops sending MESSAGE_CREATE on shard 1's
// connection while its heartbeats are answered. The node notices from the
// shard's own baseline and cycles it by RESUME.
func silentShard(ctx context.Context, c *cluster) (time.Duration, string, error) {
	r0 := c.shardResumes(1)
	if _, err := c.sim.ApplyFault(sim.Fault{Kind: sim.FaultSilence, EventType: "MESSAGE_CREATE", Shards: []int{1}, UntilResume: true}); err != nil {
		return 0, "", err
	}
	applied := time.Now()
	if err := waitFor(ctx, 30*time.Second, "shard 1 cycled by RESUME", func() bool { return c.shardResumes(1) > r0 }); err != nil {
		return 0, "", err
	}
	return time.Since(applied), "recovery is the silence of MESSAGE_CREATE on shard 1 to its RESUME (nodes run -silence-after 2s -silence-events 20); events the simulator did not send are not counted as produced", nil
}

// reshard: POST /v1/reshard to twice the shard count under load. The new
// generation identifies beside the old, publishing moves to it (content IDs
// deduplicated by the broker), the count switches and the old generation
// closes: nothing lost or doubled, and no new shard's guilds wait longer
// than the usual gaps.
func reshard(ctx context.Context, c *cluster) (time.Duration, string, error) {
	return runReshard(ctx, c, "")
}

// reshardCoordinatorKill: the reshard, with the coordinator killed (-9)
// and started again once publishing is moving to the new generation. The
// restarted coordinator carries the reshard on from KV.
func reshardCoordinatorKill(ctx context.Context, c *cluster) (time.Duration, string, error) {
	return runReshard(ctx, c, "overlap")
}

// runReshard reshards N → 2N; killAt names the phase in which the
// coordinator is killed and restarted ("": never).
func runReshard(ctx context.Context, c *cluster, killAt string) (time.Duration, string, error) {
	from, to := c.cfg.Shards, 2*c.cfg.Shards
	c.col.gapsByShardOf(to)
	before := c.sim.Stats()
	if err := c.coordPost(ctx, "/v1/reshard", map[string]int{"to": to}); err != nil {
		return 0, "", err
	}
	start := time.Now()
	// The reshard's progress, as GET /v1/reshard shows it.
	type progress struct {
		Phase string `json:"phase"`
		Note  string `json:"note"`
	}
	var r progress
	phases := []string{}
	err := waitFor(ctx, 120*time.Second, "the reshard to finish", func() bool {
		var st struct {
			Reshard *progress `json:"reshard"`
		}
		if c.coordGet(ctx, "/v1/reshard", &st) != nil || st.Reshard == nil {
			return false
		}
		r = *st.Reshard
		if r.Phase != "starting" {
			c.count.Store(int64(to)) // every new shard is connected
		}
		if len(phases) == 0 || phases[len(phases)-1] != r.Phase {
			phases = append(phases, r.Phase)
		}
		if killAt != "" && r.Phase == killAt {
			killAt = ""
			c.coords[0].Kill()
			phases = append(phases, "coordinator killed")
			if err := c.startCoordinator(ctx, 0); err != nil {
				return false
			}
		}
		return r.Phase == "done" || r.Phase == "cancelled"
	})
	if err != nil {
		return 0, "", fmt.Errorf("%w (phase %s: %s)", err, r.Phase, r.Note)
	}
	rec := time.Since(start)
	if r.Phase != "done" {
		return rec, "", fmt.Errorf("the reshard ended %s: %s", r.Phase, r.Note)
	}
	// The nodes close the old generation on their next heartbeat.
	err = c.waitSim(ctx, 2*c.cfg.LeaseTTL, "the old generation closed and the new one connected", func(st sim.Stats) bool {
		old, cur := int64(0), int64(0)
		for _, s := range st.Shards {
			switch s.NumShards {
			case from:
				old += s.Connections
			case to:
				cur += s.Connections
			}
		}
		return old == 0 && cur == int64(to)
	})
	if err != nil {
		return rec, "", err
	}
	ids := c.sim.Stats().Identifies - before.Identifies
	if killAt != "" {
		return rec, "", fmt.Errorf("the reshard never reached phase %s", killAt)
	}
	note := fmt.Sprintf("recovery is POST /v1/reshard %d → %d to the switch (phases %s; %s); %d IDENTIFYs, one per new shard; gaps are per shard of the new count",
		from, to, strings.Join(phases, ", "), r.Note, ids)
	if ids != int64(to) {
		return rec, note, fmt.Errorf("%d IDENTIFYs, want %d (one per new shard)", ids, to)
	}
	return rec, note, nil
}
