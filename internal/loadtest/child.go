package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChildConfig configures StartChild.
type ChildConfig struct {
	// Exe is the gatehouse binary; Args its subcommand and flags.
	Exe  string
	Args []string
	// Env is added to this process's environment.
	Env []string
	// Logs receives a copy of the child's stderr (nil: discarded); the
	// last 2 KiB are also kept for error messages.
	Logs io.Writer
	// Ready are prefixes StartChild waits for, in order: the first stdout
	// line starting with each (Line returns the rest of it).
	Ready []string
	// OnLine, when set, receives every stdout line, from one goroutine.
	OnLine func(string)
}

// Child is a gatehouse subcommand run as a process.
type Child struct {
	cmd     *exec.Cmd
	lines   []string // the text after each Ready prefix
	done    chan struct{}
	waitErr error     // the exit status, once done is closed
	exited  time.Time // when it exited, once done is closed
	tail    *tailWriter
}

// StartChild runs the child and waits up to 30s for its Ready lines.
func StartChild(ctx context.Context, cfg ChildConfig) (*Child, error) {
	name := "child"
	if len(cfg.Args) > 0 {
		name = cfg.Args[0]
	}
	cmd := exec.Command(cfg.Exe, cfg.Args...)
	if cfg.Env != nil {
		cmd.Env = append(os.Environ(), cfg.Env...)
	}
	c := &Child{cmd: cmd, done: make(chan struct{}), tail: &tailWriter{max: 2048}}
	logs := cfg.Logs
	if logs == nil {
		logs = io.Discard
	}
	cmd.Stderr = io.MultiWriter(logs, c.tail)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: starting %s: %w", name, err)
	}
	found := make(chan string, len(cfg.Ready))
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20) // an event line can be long
		i := 0
		for sc.Scan() {
			line := sc.Text()
			if i < len(cfg.Ready) && strings.HasPrefix(line, cfg.Ready[i]) {
				found <- strings.TrimPrefix(line, cfg.Ready[i])
				i++
			}
			if cfg.OnLine != nil {
				cfg.OnLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		c.waitErr = cmd.Wait()
		c.exited = time.Now()
	}()
	for range cfg.Ready {
		select {
		case l := <-found:
			c.lines = append(c.lines, l)
		case <-c.done:
			return nil, fmt.Errorf("loadtest: %s exited: %s", name, c.tail.String())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			c.stop()
			return nil, fmt.Errorf("loadtest: %s did not start within 30s: %s", name, c.tail.String())
		}
	}
	return c, nil
}

// startChild is StartChild without Env or OnLine.
func startChild(ctx context.Context, exe string, args []string, logs io.Writer, prefixes ...string) (*Child, error) {
	return StartChild(ctx, ChildConfig{Exe: exe, Args: args, Logs: logs, Ready: prefixes})
}

// Line returns the text after the i-th Ready prefix.
func (c *Child) Line(i int) string { return c.lines[i] }

// PID is the child's process ID.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Done is closed once the child exited and its output was read.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited is when the child exited; valid once Done is closed.
func (c *Child) Exited() time.Time { return c.exited }

// Running reports whether the child has not exited.
func (c *Child) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Stderr returns the last 2 KiB the child wrote to stderr.
func (c *Child) Stderr() string { return c.tail.String() }

// Kill sends SIGKILL (kill -9) and waits for the exit.
func (c *Child) Kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stop sends SIGTERM, waits up to 30s for a graceful exit, then kills.
func (c *Child) stop() { _ = c.Stop(30 * time.Second) }

// Stop sends SIGTERM, waits up to d, then kills; it returns the exit
// status.
func (c *Child) Stop(d time.Duration) error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(d):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return c.waitErr
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
