package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Replicas is a replicated control plane for benchmarks: a gatehouse
// broker and N coordinator replicas on it, each on its own fixed port.
type Replicas struct {
	Broker *Child
	Coords []*Child
	URLs   []string // each replica's API base
	Admin  string   // the admin token
	dir    string
	exe    string
	env    []string
	args   []string
	logs   io.Writer
	hc     *http.Client
}

// StartReplicas starts a broker in a temporary directory and n coordinator
// replicas with args (after "coordinator"; no -listen) and env, which must
// set GATEHOUSE_ADMIN_TOKEN.
func StartReplicas(ctx context.Context, exe string, n int, env, args []string, logs io.Writer) (*Replicas, error) {
	dir, err := os.MkdirTemp("", "gatehouse-replicas-")
	if err != nil {
		return nil, err
	}
	r := &Replicas{dir: dir, exe: exe, env: env, logs: logs, hc: &http.Client{Timeout: 5 * time.Second}}
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GATEHOUSE_ADMIN_TOKEN="); ok {
			r.Admin = v
		}
	}
	for i := 0; i < len(args); i++ {
		if args[i] == "-listen" {
			i++
			continue
		}
		r.args = append(r.args, args[i])
	}
	r.Broker, err = StartChild(ctx, ChildConfig{Exe: exe, Args: []string{"broker", "-listen", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "nats"), "-log-level", "warn"},
		Logs: logs, Ready: []string{"gatehouse broker: NATS at "}})
	if err != nil {
		r.Stop()
		return nil, err
	}
	natsURL, _, _ := strings.Cut(r.Broker.Line(0), ",")
	r.args = append(r.args, "-nats", natsURL, "-nats-nkey", filepath.Join(dir, "nats", "credentials", "coordinator.nk"))
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.Stop()
			return nil, err
		}
		r.URLs = append(r.URLs, "http://"+l.Addr().String())
		l.Close()
		r.Coords = append(r.Coords, nil)
	}
	for i := range n {
		if err := r.Start(ctx, i); err != nil {
			r.Stop()
			return nil, err
		}
	}
	return r, nil
}

// Start starts replica i (again).
func (r *Replicas) Start(ctx context.Context, i int) error {
	args := append([]string{"coordinator", "-listen", strings.TrimPrefix(r.URLs[i], "http://"), "-replica-id", fmt.Sprintf("r%d", i)}, r.args...)
	c, err := StartChild(ctx, ChildConfig{Exe: r.exe, Args: args, Env: r.env, Logs: r.logs, Ready: []string{"gatehouse coordinator: API on "}})
	if err != nil {
		return err
	}
	r.Coords[i] = c
	return nil
}

// Leader returns the index of the replica that says it leads, or -1.
func (r *Replicas) Leader(ctx context.Context) int {
	for i, u := range r.URLs {
		if r.Coords[i] == nil || !r.Coords[i].Running() {
			continue
		}
		if ReplicaRole(ctx, r.hc, u, r.Admin) == "leader" {
			return i
		}
	}
	return -1
}

// ReplicaRole asks the coordinator at base (http://HOST:PORT) for its
// role among the replicas ("leader", "follower"), with an admin or
// status token; "" when it does not answer.
func ReplicaRole(ctx context.Context, hc *http.Client, base, token string) string {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Replica struct {
			Role string `json:"role"`
		} `json:"replica"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return ""
	}
	return st.Replica.Role
}

// WaitLeader waits until a replica leads and returns it.
func (r *Replicas) WaitLeader(ctx context.Context, within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		if l := r.Leader(ctx); l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("loadtest: no coordinator replica leads after %v", within)
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Write sends a harmless write (undrain every node) to replica i, as any
// client would, and reports whether it was taken.
func (r *Replicas) Write(ctx context.Context, i int) bool {
	req, _ := http.NewRequestWithContext(ctx, "POST", r.URLs[i]+"/v1/commands", strings.NewReader(`{"target":"*","type":"undrain"}`))
	req.Header.Set("Authorization", "Bearer "+r.Admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop stops every process and removes the directory.
func (r *Replicas) Stop() {
	for _, c := range r.Coords {
		if c != nil {
			c.stop()
		}
	}
	if r.Broker != nil {
		r.Broker.stop()
	}
	os.RemoveAll(r.dir)
}
