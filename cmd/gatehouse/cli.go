package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordclient"
	"github.com/gatehouse-dev/gatehouse/internal/dashboard"
)

// The operator commands talk to a running coordinator's API.

// unhealthyError is gatehouse status' verdict when something is down; main
// exits 1 for it, like for any other failure, after the table.
type unhealthyError struct{ n int }

func (e unhealthyError) Error() string { return fmt.Sprintf("%d shard(s) unhealthy", e.n) }

// apiFlags adds -coordinator and -token to fs; tokenEnv names the
// environment variables the token comes from when -token is not given, in
// order. The function it returns makes the coordinator's client; the
// caller closes it.
func apiFlags(fs *flag.FlagSet, tokenEnv ...string) func() (*coordclient.Client, error) {
	base := fs.String("coordinator", envOr("GATEHOUSE_COORDINATOR", "http://127.0.0.1:8080"), "the coordinator's `URL` (default $GATEHOUSE_COORDINATOR or http://127.0.0.1:8080)")
	token := fs.String("token", "", "API `token` (default $"+strings.Join(tokenEnv, ", else $")+")")
	return func() (*coordclient.Client, error) {
		tok := *token
		for _, env := range tokenEnv {
			if tok == "" {
				tok = os.Getenv(env)
			}
		}
		if tok == "" {
			return nil, usageError{"no token: pass -token or set $" + strings.Join(tokenEnv, " or $")}
		}
		c, err := coordclient.New(coordclient.Config{URL: *base, Token: tok, HTTP: &http.Client{Timeout: 15 * time.Second}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, usageError{fmt.Sprintf("-coordinator: %v", err)}
		}
		return c, nil
	}
}

// parseInterspersed parses fs allowing flags after the positional
// arguments too (gatehouse lookup 123 -coordinator …), and returns the
// positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "Print the fleet: shards by state, nodes, the identify queue and budget, the planner, and every shard that is not healthy. Exits 1 when a shard is down or unassigned.", stderr)
	client := apiFlags(fs, "GATEHOUSE_STATUS_TOKEN", "GATEHOUSE_ADMIN_TOKEN")
	asJSON := fs.Bool("json", false, "print the coordinator's status and shards as JSON instead of tables")
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{"status takes no arguments"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	shards, err := c.Shards(ctx)
	if err != nil {
		return err
	}
	plan, planErr := c.Planner(ctx)
	bad := 0
	for _, s := range shards.Shards {
		if cl := dashboard.Class(s.State); cl == dashboard.ClassBad || cl == dashboard.ClassUnknown {
			bad++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Status coordapi.Status    `json:"status"`
			Shards coordapi.ShardList `json:"shards"`
		}{st, shards}); err != nil {
			return err
		}
	} else {
		printStatus(stdout, c.URL(), st, shards, plan, planErr)
	}
	if bad > 0 {
		return unhealthyError{bad}
	}
	return nil
}

func printStatus(w io.Writer, base string, st coordapi.Status, shards coordapi.ShardList, plan coordapi.PlannerState, planErr error) {
	now := time.Now()
	byState := map[string]int{}
	guilds := 0
	for _, s := range shards.Shards {
		byState[s.State]++
		if s.Guilds != nil {
			guilds += *s.Guilds
		}
	}
	states := make([]string, 0, len(byState))
	for s := range byState {
		states = append(states, s)
	}
	sort.Strings(states)
	parts := make([]string, len(states))
	for i, s := range states {
		parts[i] = fmt.Sprintf("%d %s", byState[s], s)
	}
	fmt.Fprintf(w, "Coordinator %s: %d shards, max_concurrency %d, %d guilds reported\n", base, st.ShardCount, st.MaxConcurrency, guilds)
	fmt.Fprintf(w, "Shards: %s\n", strings.Join(parts, ", "))
	waiting := 0
	for _, b := range st.Identify.Buckets {
		waiting += b.Waiting
	}
	budget := "not tracked"
	if st.Identify.Remaining >= 0 {
		budget = fmt.Sprintf("%d session starts left", st.Identify.Remaining)
		if st.Identify.ResetAt != nil {
			budget += " (reset " + st.Identify.ResetAt.UTC().Format("2006-01-02 15:04 UTC") + ")"
		}
	}
	fmt.Fprintf(w, "Identify: %d waiting; %s\n", waiting, budget)
	if planErr == nil {
		fmt.Fprintf(w, "Planner: %s, %d → %d shards: %s\n", plan.Action, plan.Current, plan.Target, plan.Reason)
	}
	if r := st.Reshard; r.Running() {
		fmt.Fprintf(w, "Reshard: %d → %d (%s, since %s): %d of %d new shards ready; %s\n",
			r.From, r.To, r.Phase, r.Started.Format("15:04:05"), r.Ready, r.To, r.Note)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(st.Nodes) > 0 {
		fmt.Fprintln(w, "\nNodes:")
		fmt.Fprintln(tw, "  NODE\tSHARDS\tCAPACITY\tDRAINING\tLAST SEEN")
		for _, n := range st.Nodes {
			capacity := "-"
			if n.Capacity > 0 {
				capacity = strconv.Itoa(n.Capacity)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%v\t%s ago\n", n.ID, len(n.Shards), capacity, n.Draining, now.Sub(n.LastSeen).Round(time.Second))
		}
		tw.Flush()
	} else {
		fmt.Fprintln(w, "\nNodes: none")
	}
	var sick []coordapi.ShardInfo
	for _, s := range shards.Shards {
		if dashboard.Class(s.State) != dashboard.ClassOK {
			sick = append(sick, s)
		}
	}
	if len(sick) == 0 {
		fmt.Fprintln(w, "\nEvery shard is healthy.")
		return
	}
	fmt.Fprintf(w, "\nShards not online (%d):\n", len(sick))
	fmt.Fprintln(tw, "  SHARD\tSTATE\tHOLDER\tFOR\tERROR")
	for i, s := range sick {
		if i == 50 {
			fmt.Fprintf(tw, "  …\t%d more\t\t\t\n", len(sick)-50)
			break
		}
		holder := s.Node
		if holder == "" {
			holder = s.Holder
		}
		if holder == "" {
			holder = "-"
		}
		since := "-"
		if !s.StateSince.IsZero() {
			since = now.Sub(s.StateSince).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\n", s.Shard, s.State, holder, since, s.Error)
	}
	tw.Flush()
}

func runLookup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lookup", "Print which shard holds a guild, (guild_id >> 22) % shard_count, and who runs it. Usage: gatehouse lookup GUILD_ID", stderr)
	client := apiFlags(fs, "GATEHOUSE_STATUS_TOKEN", "GATEHOUSE_ADMIN_TOKEN")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: gatehouse lookup GUILD_ID"}
	}
	id, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || id == 0 {
		return usageError{fmt.Sprintf("lookup: %q is not a guild ID (a number from 1 to 18446744073709551615)", pos[0])}
	}
	c, err := client()
	if err != nil {
		return err
	}
	defer c.Close()
	ans, err := c.Guild(ctx, id)
	if err != nil {
		return err
	}
	holder := "nobody"
	switch {
	case ans.Node != "":
		holder = "node " + ans.Node
	case ans.Worker != "":
		holder = "a " + ans.Worker + " worker"
	}
	line := fmt.Sprintf("guild %s is on shard %d of %d, run by %s, %s", ans.GuildID, ans.Shard, ans.ShardCount, holder, ans.State)
	if ans.Guilds != nil {
		line += fmt.Sprintf(" (%d guilds on the shard)", *ans.Guilds)
	}
	fmt.Fprintln(stdout, line)
	return nil
}

func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("drain", "Move every shard off a gateway node (by RESUME, one at a time as other nodes take them) and give it none; -undo gives it shards again. Usage: gatehouse drain NODE", stderr)
	client := apiFlags(fs, "GATEHOUSE_ADMIN_TOKEN")
	undo := fs.Bool("undo", false, "undrain the node instead")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError{"usage: gatehouse drain NODE (or * for every node)"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	typ := coordapi.CmdDrain
	if *undo {
		typ = coordapi.CmdUndrain
	}
	defer c.Close()
	res, err := c.Command(ctx, coordapi.CommandRequest{Target: pos[0], Command: coordapi.Command{Type: typ}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s: done; the coordinator moves its shards with the next heartbeats (push channel reached: %s)\n",
		typ, pos[0], strings.Join(append([]string{}, res.Delivered...), ", "))
	return nil
}

func runReshard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reshard", "Plan (and run) a reshard to another shard count: identifies, identify rounds, time, session-start budget, guilds a shard.", stderr)
	client := apiFlags(fs, "GATEHOUSE_ADMIN_TOKEN")
	to := fs.Int("to", 0, "the new shard `count` (required)")
	dry := fs.Bool("dry-run", false, "print the plan only")
	wait := fs.Bool("wait", true, "follow the reshard, printing each phase, until it is done")
	spend := fs.Bool("spend-reserve", false, "let the reshard spend the session starts kept in reserve (the plan says how many): an operator's decision the coordinator never takes on its own")
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{"reshard takes no arguments: gatehouse reshard -to N [-dry-run]"}
	}
	if *to < 1 {
		return usageError{"reshard: -to N is required, N >= 1"}
	}
	c, err := client()
	if err != nil {
		return err
	}
	defer c.Close()
	req := coordapi.ReshardRequest{To: *to, SpendReserve: *spend}
	plan, err := c.PlanReshard(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, plan.Summary)
	if len(plan.Problems) > 0 {
		return fmt.Errorf("reshard to %d cannot run: %s", *to, strings.Join(plan.Problems, "; "))
	}
	if *dry {
		return nil
	}
	if _, err := c.StartReshard(ctx, req); err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintf(stdout, "reshard to %d started; follow it with GET /v1/reshard, gatehouse status or on the dashboard\n", *to)
		return nil
	}
	return followReshard(ctx, c, stdout)
}

// followReshard prints a reshard's phases and progress until it ends.
func followReshard(ctx context.Context, c *coordclient.Client, stdout io.Writer) error {
	last := ""
	for {
		r, err := c.Reshard(ctx)
		if err != nil {
			return err
		}
		if r == nil {
			return errors.New("reshard: the coordinator reports none (did it restart?)")
		}
		line := fmt.Sprintf("%s: %s", r.Phase, r.Note)
		if r.Phase == coordapi.PhaseStarting {
			line = fmt.Sprintf("starting: %d of %d new shards ready with their guilds", r.Ready, r.To)
		}
		if line != last {
			fmt.Fprintf(stdout, "%s  %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
		switch r.Phase {
		case coordapi.PhaseDone:
			fmt.Fprintf(stdout, "reshard %d → %d done in %s\n", r.From, r.To, r.Finished.Sub(r.Started).Round(100*time.Millisecond))
			return nil
		case coordapi.PhaseCancelled:
			return fmt.Errorf("reshard %d → %d cancelled", r.From, r.To)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
