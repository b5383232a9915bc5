package shard

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxGuildsPerShard is the most guilds one shard may hold: Discord closes
// a session that would hold more with close code 4011 ("Sharding
// required").
const MaxGuildsPerShard = 2500

// MaxCount is the largest shard count the package works with, and the
// largest guild count a single shard may report. A million shards would
// hold 2.5 billion guilds, far beyond any bot; the bound keeps corrupt
// input from overflowing arithmetic or allocating without limit.
const MaxCount = 1 << 20

// Defaults for the Config fields that are not derived from others.
const (
	// DefaultTargetGuilds is the default Config.TargetGuilds: the
	// density Discord's own recommendation is based on, one shard per
	// 1,000 guilds.
	DefaultTargetGuilds = 1000
	// DefaultHighWater is the default Config.HighWater: 90% of
	// MaxGuildsPerShard.
	DefaultHighWater = MaxGuildsPerShard * 9 / 10
	// DefaultShrinkAfter is the default Config.ShrinkAfter.
	DefaultShrinkAfter = 24 * time.Hour
)

// Errors NewPlanner and Plan return, wrapped with what is wrong; test
// with errors.Is.
var (
	// ErrConfig means a Config field is out of range or contradicts
	// another.
	ErrConfig = errors.New("shard: invalid config")
	// ErrInvalid means a Plan input is out of range: a negative count, a
	// report for a shard that does not exist, a zero time, or guilds
	// that would need more than MaxCount shards.
	ErrInvalid = errors.New("shard: invalid input")
)

// Config holds a Planner's thresholds. The zero value is the default
// configuration; a zero field means its default, which for the averages
// is derived from TargetGuilds.
type Config struct {
	// TargetGuilds is how many guilds a shard should hold after a
	// reshard: the planner asks for ceil(guilds / TargetGuilds) shards.
	// Zero means DefaultTargetGuilds (1,000). It must be below HighWater.
	TargetGuilds int
	// HighWater is the guild count of a single shard that calls for
	// growth when any shard holds more. Zero means DefaultHighWater
	// (2,250, 90% of MaxGuildsPerShard): 250 guilds of room before a
	// reconnect of that shard would be closed with 4011, which at the
	// usual pace of joins is days, not minutes. It is at most
	// MaxGuildsPerShard.
	HighWater int
	// GrowAverage is the mean guilds per shard that calls for growth
	// when it is exceeded. Zero means TargetGuilds plus a quarter of it
	// (1,250 with the default target), capped at HighWater: far enough
	// above the target that a bot resharded to the target does not
	// reshard again on ordinary growth for a while. It must be above
	// TargetGuilds and at most HighWater, since a mean above HighWater
	// implies a shard above it.
	GrowAverage int
	// ShrinkAverage is the mean guilds per shard below which the bot
	// runs more shards than it needs. Zero means half of TargetGuilds
	// (500 with the default target): a reshard to the target at least
	// doubles the mean, so a shrink is worth its cost. It must be below
	// TargetGuilds.
	ShrinkAverage int
	// ShrinkAfter is how long the mean must stay below ShrinkAverage, in
	// every plan, before the planner shrinks. Zero means
	// DefaultShrinkAfter (24 hours): a whole daily cycle of joins and
	// leaves, and the same window as Discord's session-start budget, so
	// shrinks cost at most one fleet of session starts a day. It must not
	// be negative.
	ShrinkAfter time.Duration
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.TargetGuilds == 0 {
		c.TargetGuilds = DefaultTargetGuilds
	}
	if c.HighWater == 0 {
		c.HighWater = DefaultHighWater
	}
	if c.GrowAverage == 0 {
		c.GrowAverage = min(c.TargetGuilds+max(c.TargetGuilds/4, 1), c.HighWater)
	}
	if c.ShrinkAverage == 0 {
		// With a target of 1 this is 0, which turns shrinking off.
		c.ShrinkAverage = c.TargetGuilds / 2
	}
	if c.ShrinkAfter == 0 {
		c.ShrinkAfter = DefaultShrinkAfter
	}
	return c
}

// validate checks a Config with its defaults filled in; raw is the Config
// as given, for the checks that tell a negative value from a default.
func (c Config) validate(raw Config) error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"TargetGuilds", raw.TargetGuilds},
		{"HighWater", raw.HighWater},
		{"GrowAverage", raw.GrowAverage},
		{"ShrinkAverage", raw.ShrinkAverage},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s %d is negative", ErrConfig, f.name, f.v)
		}
	}
	switch {
	case raw.ShrinkAfter < 0:
		return fmt.Errorf("%w: ShrinkAfter %v is negative", ErrConfig, raw.ShrinkAfter)
	case c.TargetGuilds > MaxGuildsPerShard:
		return fmt.Errorf("%w: TargetGuilds %d is above the %s guilds a shard may hold", ErrConfig, c.TargetGuilds, commas(MaxGuildsPerShard))
	case c.HighWater > MaxGuildsPerShard:
		return fmt.Errorf("%w: HighWater %d is above the %s guilds a shard may hold", ErrConfig, c.HighWater, commas(MaxGuildsPerShard))
	case c.TargetGuilds >= c.HighWater:
		return fmt.Errorf("%w: TargetGuilds %d must be below HighWater %d", ErrConfig, c.TargetGuilds, c.HighWater)
	case c.GrowAverage <= c.TargetGuilds:
		return fmt.Errorf("%w: GrowAverage %d must be above TargetGuilds %d", ErrConfig, c.GrowAverage, c.TargetGuilds)
	case c.GrowAverage > c.HighWater:
		return fmt.Errorf("%w: GrowAverage %d is above HighWater %d, so it could never trigger first", ErrConfig, c.GrowAverage, c.HighWater)
	case c.ShrinkAverage >= c.TargetGuilds:
		return fmt.Errorf("%w: ShrinkAverage %d must be below TargetGuilds %d", ErrConfig, c.ShrinkAverage, c.TargetGuilds)
	}
	return nil
}

// Planner decides how many shards a bot should run; see the package
// documentation for the rules. It is immutable after NewPlanner and safe
// for concurrent use; the State that Plan reads and returns belongs to the
// caller.
type Planner struct {
	cfg Config
}

// NewPlanner returns a Planner with cfg's zero fields set to their
// defaults. An invalid cfg is an error wrapping ErrConfig.
func NewPlanner(cfg Config) (*Planner, error) {
	full := cfg.withDefaults()
	if err := full.validate(cfg); err != nil {
		return nil, err
	}
	return &Planner{cfg: full}, nil
}

// Config returns the planner's configuration with every default filled in.
func (p *Planner) Config() Config { return p.cfg }

// Input is what Plan decides from.
type Input struct {
	// Recommended is the shard count Discord recommends, shards from GET
	// /gateway/bot. Zero means unknown and counts as 1.
	Recommended int
	// MaxConcurrency is session_start_limit.max_concurrency from GET
	// /gateway/bot. Zero counts as 1. Above 1 the bot is on large-bot
	// sharding and every count the planner chooses is a multiple of it.
	MaxConcurrency int
	// Current is the number of shards the bot runs now; zero means none
	// yet.
	Current int
	// Guilds maps a shard, 0..Current-1, to the number of guilds it
	// last reported holding. Shards that have not reported are absent;
	// the planner counts them at the mean of the shards that did.
	Guilds map[int]int
	// Now is the time of the plan. It must not be zero.
	Now time.Time
}

// State is what a Planner remembers from one plan to the next. The zero
// State is the start. Pass each plan the State the previous plan
// returned; its fields are exported so the caller can store it.
type State struct {
	// LowSince is when the mean guilds per shard fell below
	// ShrinkAverage, in a run of plans that all saw it there and could
	// all have shrunk the count. It is zero when the last plan did not.
	LowSince time.Time `json:"low_since,omitzero"`
}

// Action is what a Decision asks the caller to do.
type Action int

// The actions.
const (
	// Keep means run the current count.
	Keep Action = iota
	// Start means no shard runs yet: start Decision.Count shards.
	Start
	// Grow means reshard to a larger count.
	Grow
	// Shrink means reshard to a smaller count.
	Shrink
)

// String returns the action's name in lower case, or "Action(n)" for a
// value that is not an action.
func (a Action) String() string {
	switch a {
	case Keep:
		return "keep"
	case Start:
		return "start"
	case Grow:
		return "grow"
	case Shrink:
		return "shrink"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Decision is what Plan decides.
type Decision struct {
	// Action is what to do.
	Action Action
	// Count is the shard count to run: Input.Current for Keep, the new
	// count otherwise.
	Count int
	// Needed is the count the guilds call for: ceil(Guilds /
	// TargetGuilds), at least Discord's recommendation, rounded up to a
	// multiple of MaxConcurrency when that is above 1. When no shard has
	// reported, it is the rounded recommendation alone. Count differs from
	// Needed when the thresholds keep the current count, or when a hot
	// shard forces growth the total does not call for.
	Needed int
	// Guilds is the total number of guilds: the reports, plus the mean of
	// the reports for each shard that did not report. Zero when no shard
	// reported.
	Guilds int64
	// Reported is how many shards reported their guilds. Guilds is an
	// estimate when Reported is below Input.Current.
	Reported int
	// Reason explains the decision in a sentence for a person, with the
	// numbers that led to it.
	Reason string
}

// Reshard reports whether d asks to change a running bot's shard count.
func (d Decision) Reshard() bool { return d.Action == Grow || d.Action == Shrink }

// Plan decides how many shards to run given in and the State of the
// previous plan, and returns the decision with the State to pass to the
// next plan. It changes nothing and depends on nothing but its arguments.
// Invalid input is an error wrapping ErrInvalid, and the State is then
// returned unchanged.
func (p *Planner) Plan(in Input, st State) (Decision, State, error) {
	if err := in.validate(); err != nil {
		return Decision{}, st, err
	}
	c := p.cfg
	mc := max(in.MaxConcurrency, 1)
	rec := max(in.Recommended, 1)
	floor := roundUp(int64(rec), mc)

	if in.Current == 0 {
		d := Decision{Action: Start, Count: int(floor), Needed: int(floor)}
		if err := checkCount(floor); err != nil {
			return Decision{}, st, err
		}
		d.Reason = fmt.Sprintf("no shards running: start %s, %s", shardCount(d.Count), recommendation(in.Recommended, mc, d.Count))
		return d, State{}, nil
	}

	// The total: the reports, and the silent shards at the reported mean.
	var sum int64
	busiest, busiestGuilds := -1, -1
	for s, g := range in.Guilds {
		sum += int64(g)
		if g > busiestGuilds || g == busiestGuilds && s < busiest {
			busiest, busiestGuilds = s, g
		}
	}
	d := Decision{Reported: len(in.Guilds)}
	missing := int64(in.Current - d.Reported)
	if d.Reported > 0 {
		d.Guilds = sum + (missing*sum+int64(d.Reported)/2)/int64(d.Reported)
	}

	// What the guilds call for.
	needed := int64(rec)
	if d.Reported > 0 {
		needed = max(needed, ceilDiv(d.Guilds, int64(c.TargetGuilds)))
	}
	needed = roundUp(needed, mc)
	if err := checkCount(needed); err != nil {
		return Decision{}, st, fmt.Errorf("%w (%s guilds at %s per shard)", err, commas(d.Guilds), commas(int64(c.TargetGuilds)))
	}
	d.Needed = int(needed)
	cur := int64(in.Current)

	grow := func(to int64, why string) (Decision, State, error) {
		if err := checkCount(to); err != nil {
			return Decision{}, st, err
		}
		d.Action, d.Count = Grow, int(to)
		d.Reason = fmt.Sprintf("%s: grow from %d to %s%s", why, in.Current, shardCount(d.Count), estimateNote(in, d, sum))
		return d, State{}, nil
	}

	// Large-bot sharding: Discord closes the sessions of a bot whose count
	// is not a multiple of its assigned number with 4010 (documented,
	// [D]). That the number always equals max_concurrency is unconfirmed
	// ([?]: inferred, not documented), but both have been 16 in every
	// known case, and the count GET /gateway/bot returns is already a
	// valid multiple.
	if mc > 1 && in.Current%mc != 0 {
		why := fmt.Sprintf("%s is not a multiple of max_concurrency %d, and on large-bot sharding Discord closes such sessions with 4010", shardCount(in.Current), mc)
		return grow(max(needed, roundUp(cur, mc)), why)
	}
	if d.Reported == 0 {
		d.Action, d.Count = Keep, in.Current
		d.Reason = fmt.Sprintf("none of the %s has reported its guilds yet: keep %s", shardCount(in.Current), shardCount(in.Current))
		return d, State{}, nil
	}

	// Growth goes to what the guilds call for, or by the smallest step the
	// multiple allows when one hot shard is the only reason: a reshard
	// moves every guild, so the hot shard's guilds spread over all shards.
	growTo := max(needed, roundUp(cur+1, mc))
	if busiestGuilds > c.HighWater {
		why := fmt.Sprintf("shard %d holds %s guilds, over the %s high-water mark", busiest, commas(int64(busiestGuilds)), commas(int64(c.HighWater)))
		if busiestGuilds > MaxGuildsPerShard {
			why = fmt.Sprintf("shard %d holds %s guilds, over the %s a shard may hold, so Discord closes its next IDENTIFY with 4011", busiest, commas(int64(busiestGuilds)), commas(MaxGuildsPerShard))
		}
		return grow(growTo, why)
	}
	if d.Guilds > int64(c.GrowAverage)*cur {
		why := fmt.Sprintf("%s, over the %s grow mark", load(in, d), commas(int64(c.GrowAverage)))
		return grow(growTo, why)
	}

	if d.Guilds < int64(c.ShrinkAverage)*cur && needed < cur {
		since := st.LowSince
		if since.IsZero() || since.After(in.Now) {
			since = in.Now
		}
		if elapsed := in.Now.Sub(since); elapsed >= c.ShrinkAfter {
			d.Action, d.Count = Shrink, d.Needed
			d.Reason = fmt.Sprintf("%s, under the %s shrink mark for %v: shrink from %d to %s%s",
				load(in, d), commas(int64(c.ShrinkAverage)), elapsed, in.Current, shardCount(d.Count), estimateNote(in, d, sum))
			return d, State{}, nil
		}
		d.Action, d.Count = Keep, in.Current
		d.Reason = fmt.Sprintf("%s, under the %s shrink mark since %s: keep %s, and shrink to %d if it stays there until %s%s",
			load(in, d), commas(int64(c.ShrinkAverage)), since.UTC().Format(time.RFC3339), shardCount(in.Current), d.Needed,
			since.Add(c.ShrinkAfter).UTC().Format(time.RFC3339), estimateNote(in, d, sum))
		return d, State{LowSince: since}, nil
	}

	d.Action, d.Count = Keep, in.Current
	var b strings.Builder
	fmt.Fprintf(&b, "%s (busiest: shard %d, %s)", load(in, d), busiest, commas(int64(busiestGuilds)))
	switch {
	case d.Guilds < int64(c.ShrinkAverage)*cur:
		fmt.Fprintf(&b, ", under the %s shrink mark, but %s is already the fewest allowed", commas(int64(c.ShrinkAverage)), shardCount(in.Current))
	case in.Current < rec:
		fmt.Fprintf(&b, ", fewer than the %d Discord recommends but not over the %s grow mark", rec, commas(int64(c.GrowAverage)))
	default:
		fmt.Fprintf(&b, ", between the %s shrink and %s grow marks", commas(int64(c.ShrinkAverage)), commas(int64(c.GrowAverage)))
	}
	fmt.Fprintf(&b, ": keep %s%s", shardCount(in.Current), estimateNote(in, d, sum))
	d.Reason = b.String()
	return d, State{}, nil
}

// validate checks the ranges Plan relies on.
func (in Input) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"Recommended", in.Recommended},
		{"MaxConcurrency", in.MaxConcurrency},
		{"Current", in.Current},
	} {
		if f.v < 0 || f.v > MaxCount {
			return fmt.Errorf("%w: %s %d is outside 0..%d", ErrInvalid, f.name, f.v, MaxCount)
		}
	}
	if in.Now.IsZero() {
		return fmt.Errorf("%w: Now is zero", ErrInvalid)
	}
	for s, g := range in.Guilds {
		if s < 0 || s >= in.Current {
			return fmt.Errorf("%w: Guilds reports shard %d, which is out of range for %s", ErrInvalid, s, shardCount(in.Current))
		}
		if g < 0 || g > MaxCount {
			return fmt.Errorf("%w: shard %d reports %d guilds, outside 0..%d", ErrInvalid, s, g, MaxCount)
		}
	}
	return nil
}

// load describes the current guild load: "20 shards hold 26,000 guilds,
// 1,300 per shard on average".
func load(in Input, d Decision) string {
	about := ""
	if d.Reported < in.Current {
		about = "about "
	}
	mean := (d.Guilds + int64(in.Current)/2) / int64(in.Current)
	verb := "hold"
	if in.Current == 1 {
		verb = "holds"
	}
	return fmt.Sprintf("%s %s %s%s guilds, %s per shard on average", shardCount(in.Current), verb, about, commas(d.Guilds), commas(mean))
}

// estimateNote says how Guilds was estimated when some shards did not
// report, and is empty when all did.
func estimateNote(in Input, d Decision, sum int64) string {
	if d.Reported == 0 || d.Reported >= in.Current {
		return ""
	}
	missing := in.Current - d.Reported
	mean := (sum + int64(d.Reported)/2) / int64(d.Reported)
	others := "the other counts"
	if missing > 1 {
		others = fmt.Sprintf("the %d others count", missing)
	}
	return fmt.Sprintf(" (%d of %d shards reported; %s as their mean, %s guilds)", d.Reported, in.Current, others, commas(mean))
}

// recommendation explains a start count: Discord's recommendation, and
// the rounding to max_concurrency when it changed the count.
func recommendation(rec, mc, count int) string {
	switch {
	case rec == 0 && mc > 1:
		return fmt.Sprintf("one round of max_concurrency %d, as Discord's recommendation is unknown", mc)
	case rec == 0:
		return "as Discord's recommendation is unknown"
	case count == rec:
		return "as Discord recommends"
	}
	return fmt.Sprintf("Discord's recommendation of %d rounded up to a multiple of max_concurrency %d", rec, mc)
}

// checkCount reports a count above MaxCount as ErrInvalid.
func checkCount(n int64) error {
	if n > MaxCount {
		return fmt.Errorf("%w: that would take %d shards, more than %d", ErrInvalid, n, MaxCount)
	}
	return nil
}

// roundUp rounds n up to a multiple of m; m of 1 or less leaves n alone.
func roundUp(n int64, m int) int64 {
	if m <= 1 {
		return n
	}
	return ceilDiv(n, int64(m)) * int64(m)
}

// ceilDiv returns ceil(a / b) for a >= 0 and b > 0.
func ceilDiv(a, b int64) int64 {
	return (a + b - 1) / b
}

// commas writes n in decimal with a comma between groups of three digits,
// as in 2,410.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
