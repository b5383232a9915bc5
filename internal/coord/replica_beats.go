package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// followerBeat answers a Shardman beat on a follower: from the batch when
// beatBatch takes it, else by forwarding it to the leader, noting a
// success so that the session's next beats are batched.
func (c *Coordinator) followerBeat(w http.ResponseWriter, r *http.Request, raw []byte, b shardmanBeat) {
	c.rep.beatMu.Lock()
	taken := c.rep.beats.offer(time.Now(), b)
	c.rep.beatMu.Unlock()
	if taken {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	sw := &statusWriter{ResponseWriter: w}
	c.forward(sw, r, route{})
	if sw.status == http.StatusNoContent {
		c.rep.beatMu.Lock()
		c.rep.beats.accepted(time.Now(), b.SessionID)
		c.rep.beatMu.Unlock()
	}
}

// statusWriter notes the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// flushBeats hands the batched beats to the leader every beatFlushEvery
// until ctx ends, and forgets what the leader accepted when another
// replica starts leading.
func (c *Coordinator) flushBeats(ctx context.Context) {
	t := time.NewTicker(beatFlushEvery)
	defer t.Stop()
	var leader string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h, _ := c.rep.keeper.Holder()
		c.rep.beatMu.Lock()
		if h.Owner != leader {
			leader = h.Owner
			c.rep.beats.reset()
		}
		sent := c.rep.beats.take()
		c.rep.beatMu.Unlock()
		if len(sent) == 0 {
			continue
		}
		unknown, err := c.sendBeats(ctx, sent)
		c.rep.beatMu.Lock()
		if err != nil {
			c.rep.beats.failed(time.Now(), sent)
		} else {
			c.rep.beats.answered(time.Now(), sent, unknown)
		}
		c.rep.beatMu.Unlock()
		if err != nil && ctx.Err() == nil {
			c.log.Debug("handing beats to the leader failed; they are kept for the next try", "beats", len(sent), "err", err)
		}
	}
}

// sendBeats posts a batch to the leader and returns the sessions it does
// not know.
func (c *Coordinator) sendBeats(ctx context.Context, sent []takenBeat) ([]string, error) {
	target, ok := c.rep.leaderURL()
	if !ok {
		return nil, fmt.Errorf("%w: no other replica leads", ErrUnavailable)
	}
	batch := coordapi.ReplicaBeats{Beats: make([]coordapi.ReplicaBeat, len(sent))}
	for i, b := range sent {
		batch.Beats[i] = b.shardmanBeat
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, beatStale)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+coordapi.ReplicaBeatsPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(headerForwardedBy, c.rep.id)
	req.Header.Set(headerForwardKey, c.rep.forwardKey)
	resp, err := c.rep.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%w: the leader answered %s: %s", ErrUnavailable, resp.Status, bytes.TrimSpace(msg))
	}
	var a coordapi.ReplicaBeatsAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: the leader's answer: %v", ErrUnavailable, err)
	}
	return a.Unknown, nil
}

// replicaBeats is POST /v1/replica/beats on the leader: it records a
// follower's batch as if each beat had come to /beat.
func (c *Coordinator) replicaBeats(w http.ResponseWriter, r *http.Request) error {
	if c.rep == nil || !c.rep.forwarded(r) {
		return fmt.Errorf("%w: only coordinator replicas hand over beats", ErrUnauthorized)
	}
	var batch coordapi.ReplicaBeats
	if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
		return fmt.Errorf("%w: beats: %v", ErrBadRequest, err)
	}
	a := coordapi.ReplicaBeatsAnswer{Unknown: []string{}}
	now := time.Now()
	c.mu.Lock()
	for _, b := range batch.Beats {
		if c.shardman.beat(now, b.SessionID, b) != nil {
			a.Unknown = append(a.Unknown, b.SessionID)
		}
	}
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
