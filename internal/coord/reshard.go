package coord

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/shard"
)

// ReshardPlan is what a reshard to another shard count would take.
type ReshardPlan struct {
	From           int `json:"from"`
	To             int `json:"to"`
	MaxConcurrency int `json:"max_concurrency"`
	// Identifies is how many session starts the new generation spends:
	// one per new shard. Rounds is how many identify rounds that takes,
	// one shard of every bucket per round; ETA is their length.
	Identifies int     `json:"identifies"`
	Rounds     int     `json:"rounds"`
	ETASeconds float64 `json:"eta_seconds"`
	// SessionStartsRemaining is the budget left now, Reserve what must stay
	// after the reshard (for reconnects that cannot resume), and Fits
	// whether Identifies + Reserve fit.
	SessionStartsRemaining int        `json:"session_starts_remaining"`
	Reserve                int        `json:"reserve"`
	Fits                   bool       `json:"fits"`
	BudgetResetAt          *time.Time `json:"budget_reset_at,omitempty"`
	// GuildsPerShard is the mean after the reshard, from the reported
	// guild counts (0 when none are reported).
	GuildsPerShard float64 `json:"guilds_per_shard"`
	// Problems lists why the plan cannot run; empty when it can.
	Problems []string `json:"problems"`
	// Summary is the plan in one paragraph, for people.
	Summary string `json:"summary"`
}

// PlanReshard returns what resharding to `to` shards would take, and what
// stands in its way: a count that is not a multiple of max_concurrency on
// large-bot sharding, more than 2,500 guilds a shard, or a session-start
// budget that cannot cover the new generation plus a reserve.
func (c *Coordinator) PlanReshard(now time.Time, to int) (ReshardPlan, error) {
	if to < 1 || to > 1_000_000 {
		return ReshardPlan{}, fmt.Errorf("%w: shard count %d: want 1 to 1000000", ErrBadRequest, to)
	}
	mc := max(c.cfg.MaxConcurrency, 1)
	q := c.Queue()
	c.mu.Lock()
	guilds := c.reportedGuildsLocked(now)
	c.mu.Unlock()
	var total int64
	for _, g := range guilds {
		total += int64(g)
	}
	if len(guilds) > 0 && len(guilds) < c.cfg.ShardCount {
		total = total * int64(c.cfg.ShardCount) / int64(len(guilds)) // shards not reporting count at the mean
	}
	interval := c.cfg.IdentifyInterval + max(c.cfg.IdentifyMargin, 0)
	p := ReshardPlan{
		From: c.cfg.ShardCount, To: to, MaxConcurrency: mc, Identifies: to,
		Rounds: (to + mc - 1) / mc, ETASeconds: shard.StartTime(to, mc, interval).Seconds(),
		SessionStartsRemaining: q.Remaining, Reserve: max(mc, to/10), BudgetResetAt: q.ResetAt,
		Problems: []string{},
	}
	if total > 0 {
		p.GuildsPerShard = float64(total) / float64(to)
	}
	if to == p.From {
		p.Problems = append(p.Problems, fmt.Sprintf("the bot already runs %d shards", to))
	}
	if mc > 1 && to%mc != 0 {
		p.Problems = append(p.Problems, fmt.Sprintf("large-bot sharding needs a multiple of max_concurrency %d: try %d", mc, (to+mc-1)/mc*mc))
	}
	if p.GuildsPerShard > discordMaxGuildsPerShard {
		p.Problems = append(p.Problems, fmt.Sprintf("%.0f guilds a shard is over Discord's %d: use at least %d shards", p.GuildsPerShard, discordMaxGuildsPerShard, (total+discordMaxGuildsPerShard-1)/discordMaxGuildsPerShard))
	}
	if q.Remaining >= 0 {
		p.Fits = q.Remaining >= p.Identifies+p.Reserve
		if !p.Fits {
			msg := fmt.Sprintf("the session-start budget has %d left, the reshard needs %d plus a reserve of %d", q.Remaining, p.Identifies, p.Reserve)
			if q.ResetAt != nil {
				msg += fmt.Sprintf(": wait for the reset at %s (in %s)", q.ResetAt.UTC().Format(time.RFC3339), q.ResetAt.Sub(now).Round(time.Minute))
			}
			p.Problems = append(p.Problems, msg)
		}
	} else {
		p.Fits = true // no budget tracked (a simulator without limits)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Reshard %d → %d shards: %d identifies in %d rounds of %d buckets, about %s.", p.From, p.To, p.Identifies, p.Rounds, mc, time.Duration(p.ETASeconds*float64(time.Second)).Round(time.Second))
	if p.GuildsPerShard > 0 {
		fmt.Fprintf(&b, " About %.0f guilds a shard.", p.GuildsPerShard)
	}
	if q.Remaining >= 0 {
		fmt.Fprintf(&b, " Session starts: %d left, %d needed plus a reserve of %d.", q.Remaining, p.Identifies, p.Reserve)
	}
	if len(p.Problems) > 0 {
		fmt.Fprintf(&b, " Cannot run: %s.", strings.Join(p.Problems, "; "))
	}
	p.Summary = b.String()
	return p, nil
}

// discordMaxGuildsPerShard is Discord's cap: a session over it is closed
// with 4011.
const discordMaxGuildsPerShard = 2500

func (c *Coordinator) reshardPost(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		To     int  `json:"to"`
		DryRun bool `json:"dry_run"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if statusOf(err) == http.StatusRequestEntityTooLarge {
			return err
		}
		return fmt.Errorf("%w: reshard body: %v", ErrBadRequest, err)
	}
	plan, err := c.PlanReshard(time.Now(), req.To)
	if err != nil {
		return err
	}
	if !req.DryRun {
		return fmt.Errorf("%w: running a reshard is not available in this version; its plan: %s", ErrNotImplemented, plan.Summary)
	}
	writeJSON(w, http.StatusOK, plan)
	return nil
}
