package coordclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// pushLoop keeps the push channel open until ctx ends, reconnecting with
// backoff, and carries out the commands it brings.
func (a *Agent) pushLoop(ctx context.Context) {
	backoff := a.c.cfg.RetryMin
	for ctx.Err() == nil {
		start := time.Now()
		err := a.pushOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = a.c.cfg.RetryMin // it was up a while: start over
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		a.c.log.Debug("push channel down; reconnecting", "in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, a.c.cfg.RetryMax)
	}
}

// pushOnce runs one push-channel connection.
func (a *Agent) pushOnce(ctx context.Context) error {
	cur := a.c.cur.Load()
	u := *a.c.bases[int(cur)%len(a.c.bases)]
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path += "/v1/nodes/" + url.PathEscape(a.cfg.NodeID) + "/push"
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, _, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{
		HTTPClient: a.c.cfg.HTTP,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + a.c.cfg.Token}},
	})
	cancel()
	if err != nil {
		a.c.failover(cur) // the next attempt tries another replica
		return err
	}
	defer ws.CloseNow()
	ws.SetReadLimit(4 << 10)
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		var cmd coordapi.Command
		if err := json.Unmarshal(data, &cmd); err != nil || cmd.ID == "" {
			a.c.log.Warn("push channel: unreadable command", "err", err)
			continue
		}
		err = a.run(ctx, cmd)
		ack := coordapi.CommandAck{ID: cmd.ID, OK: err == nil}
		if err != nil {
			ack.Error = err.Error()
		}
		b, _ := json.Marshal(ack)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = ws.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			return err
		}
	}
}

// nudged is what a beat command signals: Run heartbeats at once.
func (a *Agent) nudged() <-chan struct{} { return a.nudge }

// errUnknownCommand answers a coordapi.Command type this node does not know.
var errUnknownCommand = errors.New("unknown command")

// run carries out one command.
func (a *Agent) run(ctx context.Context, cmd coordapi.Command) error {
	a.c.log.Info("coordapi.Command from the coordinator", "id", cmd.ID, "type", cmd.Type)
	switch cmd.Type {
	case coordapi.CmdRestartShard:
		if cmd.Shard == nil {
			return errors.New("restart_shard without a shard")
		}
		return a.restart(ctx, []int{*cmd.Shard})
	case coordapi.CmdBeat:
		select {
		case a.nudge <- struct{}{}:
		default:
		}
		return nil
	case coordapi.CmdRespawnAll:
		a.mu.Lock()
		var shards []int
		for s := range a.cur.tokens {
			if !a.cur.removing[s] {
				shards = append(shards, s)
			}
		}
		a.mu.Unlock()
		slices.Sort(shards)
		return a.restart(ctx, shards)
	case coordapi.CmdDrain, coordapi.CmdUndrain:
		a.mu.Lock()
		a.draining = cmd.Type == coordapi.CmdDrain
		a.mu.Unlock()
		return nil
	case coordapi.CmdConfig:
		if cmd.Capacity == nil || *cmd.Capacity < 0 {
			return errors.New("config without a valid capacity")
		}
		a.mu.Lock()
		a.capacity = *cmd.Capacity
		a.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%w %q", errUnknownCommand, cmd.Type)
}

// restart closes shards and starts them again: each RESUMEs its session.
// The leases stay with this node.
func (a *Agent) restart(ctx context.Context, shards []int) error {
	var errs []error
	for _, s := range shards {
		a.mu.Lock()
		g := a.cur
		_, ok := g.tokens[s]
		busy := g.removing[s]
		if ok && !busy {
			g.removing[s] = true // no revoke may stop it meanwhile
		}
		a.mu.Unlock()
		if !ok || busy {
			errs = append(errs, fmt.Errorf("shard %d does not run here", s))
			continue
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err := a.node.Stop(rctx, g.count, s)
		if err == nil {
			err = a.node.Start(rctx, g.count, s)
		}
		cancel()
		a.mu.Lock()
		delete(g.removing, s)
		if err != nil {
			// Not running any more: give the lease back.
			if tok, ok := g.tokens[s]; ok {
				delete(g.tokens, s)
				g.released = append(g.released, coordapi.HeldShard{Shard: s, Token: tok})
			}
		}
		a.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", s, err))
		}
	}
	return errors.Join(errs...)
}
