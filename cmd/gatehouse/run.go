package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand of the gatehouse binary.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"demo", "run everything in one process against the simulator: no token needed", runDemo},
	{"serve", "run NATS, the coordinator and a gateway node in one process against Discord", runServe},
	{"sim", "run the Discord simulator (REST + gateway) for offline tests", runSim},
	{"gateway", "run a gateway node: shard sessions published to NATS JetStream", runGateway},
	{"tail", "print events from the stream as JSON lines, or a running summary", runTail},
	{"coordinator", "run the coordinator: global identify queue, Shardman, glance and gateway-queue APIs", runCoordinator},
	{"broker", "run only the NATS JetStream server gateway nodes embed, in its own process", runBroker},
	{"credentials", "make NATS credentials: an nkey seed per identity and the users file the broker admits", runCredentials},
	{"bench", "run end-to-end benchmarks and print a table", runBench},
	{"status", "print the fleet from a coordinator; exit 1 when a shard is down", runStatus},
	{"lookup", "print which shard and node hold a guild", runLookup},
	{"drain", "move every shard off a gateway node (or -undo)", runDrain},
	{"reshard", "plan a reshard to another shard count (-to N -dry-run)", runReshard},
	{"plan", "how long and how many identifies: a full restart, a reshard, recovery after an outage", runPlan},
	{"chaos", "run the zero-loss scenarios (kills, drain, silent shard) and print a table", runChaos},
	{"version", "print the version", runVersion},
}

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usageError is a command-line mistake; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageError{"no command given"}
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return usageError{fmt.Sprintf("unknown command %q", name)}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: gatehouse <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'gatehouse <command> -help' for a command's flags.")
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage to stderr with a one-line description.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gatehouse %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected arguments: %s", fs.Name(), strings.Join(fs.Args(), " "))}
	}
	return nil
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "Print the version of this gatehouse binary.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "gatehouse", version)
	return nil
}
