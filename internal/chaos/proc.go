package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is a gatehouse child process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process exited and its output is read
	stderr *tailBuffer
	exited time.Time // set before done closes
}

// startProc runs exe args with env added. Every stdout line goes to
// onLine (nil: ignored); when ready is not "", startProc waits up to 30s
// for a stdout line starting with it and returns the rest of that line.
func startProc(ctx context.Context, name, exe string, env []string, ready string, onLine func(string), args ...string) (*proc, string, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), stderr: &tailBuffer{max: 8 << 10}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("chaos: starting %s: %w", name, err)
	}
	found := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if ready != "" {
				if rest, ok := strings.CutPrefix(line, ready); ok {
					select {
					case found <- rest:
					default:
					}
				}
			}
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		p.exited = time.Now()
	}()
	if ready == "" {
		return p, "", nil
	}
	select {
	case line := <-found:
		return p, line, nil
	case <-p.done:
		return nil, "", fmt.Errorf("chaos: %s exited at start: %s", name, p.stderr.String())
	case <-time.After(30 * time.Second):
		p.kill()
		return nil, "", fmt.Errorf("chaos: %s printed no %q within 30s: %s", name, ready, p.stderr.String())
	case <-ctx.Done():
		p.kill()
		return nil, "", ctx.Err()
	}
}

// kill sends SIGKILL (kill -9) and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGINT and waits up to d, then kills.
func (p *proc) stop(d time.Duration) error {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		p.kill()
		return fmt.Errorf("chaos: %s did not stop within %v", p.name, d)
	}
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tailBuffer keeps the last max bytes written (a child's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
