package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
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
	cmd  *exec.Cmd
	done chan error
}

// StartSim runs exe with args (which must make it print the line
// "gatehouse sim listening on http://HOST:PORT …" first, as `gatehouse sim`
// does) and waits for that line. The child's stderr goes to logs (nil:
// discarded). Stop ends it.
func StartSim(ctx context.Context, exe string, args []string, logs io.Writer) (*SimProcess, error) {
	cmd := exec.Command(exe, args...)
	if logs == nil {
		logs = io.Discard
	}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &SimProcess{cmd: cmd, done: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		p.done <- cmd.Wait()
	}()
	select {
	case line, ok := <-lines:
		const prefix = "gatehouse sim listening on "
		if !ok || !strings.HasPrefix(line, prefix) {
			p.Stop()
			return nil, fmt.Errorf("loadtest: simulator did not start (first line %q)", line)
		}
		p.Base, _, _ = strings.Cut(strings.TrimPrefix(line, prefix), " ")
		return p, nil
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, errors.New("loadtest: simulator did not start within 30s")
	}
}

// PID is the child's process ID.
func (p *SimProcess) PID() int { return p.cmd.Process.Pid }

// CPU returns the user and system CPU time the child has used so far.
func (p *SimProcess) CPU() (time.Duration, error) { return ProcessCPU(p.PID()) }

// Stop sends SIGTERM, waits up to 10 s, then kills the child.
func (p *SimProcess) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return <-p.done
	}
}

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
