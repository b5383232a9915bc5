package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SimProcess is a `gatehouse sim` child process, so that a benchmark can
// count the simulator's CPU apart from its own.
type SimProcess struct {
	// Base is the simulator's HTTP base, e.g. http://127.0.0.1:41234.
	Base string
	c    *Child
}

// StartSim runs exe with args (which must make it print the line
// "gatehouse sim listening on http://HOST:PORT …", as `gatehouse sim`
// does) and waits for that line. The child's stderr goes to logs (nil:
// discarded). Stop ends it.
func StartSim(ctx context.Context, exe string, args []string, logs io.Writer) (*SimProcess, error) {
	if logs == nil {
		logs = io.Discard
	}
	c, err := startChild(ctx, exe, args, logs, "gatehouse sim listening on ")
	if err != nil {
		return nil, fmt.Errorf("loadtest: simulator did not start: %w", err)
	}
	base, _, _ := strings.Cut(c.lines[0], " ")
	return &SimProcess{Base: base, c: c}, nil
}

// PID is the child's process ID.
func (p *SimProcess) PID() int { return p.c.PID() }

// CPU returns the user and system CPU time the child has used so far.
func (p *SimProcess) CPU() (time.Duration, error) { return ProcessCPU(p.PID()) }

// Stop sends SIGTERM, waits up to 10 s, then kills the child.
func (p *SimProcess) Stop() error { return p.c.Stop(10 * time.Second) }

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcessCPU returns user+system CPU time of a process from /proc/PID/stat
// (Linux only).
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("loadtest: reading process CPU: %w", err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 (1-based) of the whole line.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("loadtest: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("loadtest: malformed /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("loadtest: malformed /proc stat")
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// SelfCPU returns the calling process's user+system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
