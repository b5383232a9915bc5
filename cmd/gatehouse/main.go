// Command gatehouse runs every part of Gatehouse from one binary: the
// all-in-one demo, the Discord simulator, gateway nodes, the coordinator,
// the broker, tail and the benchmarks.
//
// Usage:
//
//	gatehouse <command> [flags]
//	gatehouse <command> -help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "gatehouse:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}
