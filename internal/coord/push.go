package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// pushHub holds the open push channels, one per node ID.
type pushHub struct {
	mu    sync.Mutex
	conns map[string]*pushConn
	seq   uint64
}

type pushConn struct {
	out chan coordapi.Command
}

// maxPushConns bounds the open push channels.
const maxPushConns = 10_000

func (h *pushHub) attach(id string) (*pushConn, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns == nil {
		h.conns = map[string]*pushConn{}
	}
	if len(h.conns) >= maxPushConns {
		return nil, nil, fmt.Errorf("%w: %d push channels open", ErrTooManyRequests, maxPushConns)
	}
	pc := &pushConn{out: make(chan coordapi.Command, 64)}
	if old := h.conns[id]; old != nil {
		close(old.out) // the newer connection of a node wins
	}
	h.conns[id] = pc
	return pc, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.conns[id] == pc {
			delete(h.conns, id)
			close(pc.out)
		}
	}, nil
}

// closeAll ends every push channel (a replica that stops leading): the
// nodes connect again, through whichever replica, to the new leader.
func (h *pushHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, pc := range h.conns {
		delete(h.conns, id)
		close(pc.out)
	}
}

// send queues cmd for target ("*": all) and returns who got it.
func (h *pushHub) send(target string, cmd coordapi.Command) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for id, pc := range h.conns {
		if target != "*" && id != target {
			continue
		}
		select {
		case pc.out <- cmd:
			got = append(got, id)
		default: // a node that does not read its channel misses commands
		}
	}
	slices.Sort(got)
	return got
}

func (h *pushHub) nextID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return "c" + strconv.FormatUint(h.seq, 10)
}

// pushChannel is GET /v1/nodes/{node}/push: a WebSocket on which the
// coordinator sends Commands as JSON text messages and the node answers
// CommandAcks.
func (c *Coordinator) pushChannel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("node")
	if !coordapi.ValidNodeID(id) {
		return fmt.Errorf("%w: node ID %q: want 1 to 128 letters, digits, -, _ and . (not at either end, never two dots)", ErrBadRequest, id)
	}
	// Counted per node, not per address: the caller is authenticated, and
	// a fleet behind one NAT must not share one allowance.
	now := time.Now()
	c.mu.Lock()
	ok, retry := c.connects.hit(now, "node:"+id)
	c.mu.Unlock()
	if !ok {
		return &retryError{fmt.Errorf("%w: node %s reconnected its push channel too often", ErrTooManyRequests, id), retry}
	}
	pc, detach, err := c.push.attach(id)
	if err != nil {
		return err
	}
	defer detach()
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept answered the client
	}
	ws.SetReadLimit(4 << 10)
	ctx := r.Context()
	c.log.Info("push channel open", "node", id)
	// Reader: acknowledgements. It ends when the connection does.
	readErr := make(chan error, 1)
	readerDone := make(chan struct{})
	defer func() { ws.CloseNow(); <-readerDone }()
	go func() {
		defer close(readerDone)
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			var ack coordapi.CommandAck
			if json.Unmarshal(data, &ack) != nil || ack.ID == "" {
				c.log.Warn("push channel: unreadable acknowledgement", "node", id)
				continue
			}
			if ack.OK {
				c.log.Info("command done", "node", id, "command", ack.ID)
			} else {
				c.log.Warn("command failed", "node", id, "command", ack.ID, "err", ack.Error)
			}
		}
	}()
	ping := time.NewTicker(20 * time.Second)
	defer ping.Stop()
	for {
		select {
		case cmd, open := <-pc.out:
			if !open {
				ws.Close(websocket.StatusPolicyViolation, "replaced by a newer connection of this node")
				return nil
			}
			b, _ := json.Marshal(cmd)
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := ws.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return nil
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := ws.Ping(pctx)
			cancel()
			if err != nil {
				return nil
			}
		case err := <-readErr:
			if !errors.Is(err, context.Canceled) && websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				c.log.Info("push channel closed", "node", id, "err", err)
			}
			return nil
		case <-ctx.Done():
			ws.Close(websocket.StatusGoingAway, "coordinator shutting down")
			return nil
		}
	}
}

// postCommand is POST /v1/commands: send a typed command to a node, or to
// every node.
func (c *Coordinator) postCommand(w http.ResponseWriter, r *http.Request) error {
	var req coordapi.CommandRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if statusOf(err) == http.StatusRequestEntityTooLarge {
			return err
		}
		return fmt.Errorf("%w: command body: %v", ErrBadRequest, err)
	}
	cmd, err := c.checkCommand(req)
	if err != nil {
		return err
	}
	// drain and undrain also take effect in the coordinator, whether or
	// not the node is connected: its shards move away at once.
	if cmd.Type == coordapi.CmdDrain || cmd.Type == coordapi.CmdUndrain {
		c.mu.Lock()
		err = c.fleet.setDrain(req.Target, cmd.Type == coordapi.CmdDrain)
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	delivered := c.push.send(req.Target, cmd)
	if delivered == nil {
		delivered = []string{}
	}
	c.log.Info("command sent", "command", cmd.ID, "type", cmd.Type, "target", req.Target, "delivered", delivered)
	writeJSON(w, http.StatusOK, coordapi.CommandResult{ID: cmd.ID, Delivered: delivered})
	return nil
}

// checkCommand validates a command request and stamps its ID.
func (c *Coordinator) checkCommand(req coordapi.CommandRequest) (coordapi.Command, error) {
	cmd := req.Command
	if req.Target == "" {
		return cmd, fmt.Errorf("%w: target: a node ID or \"*\"", ErrBadRequest)
	}
	switch cmd.Type {
	case coordapi.CmdRestartShard:
		if cmd.Shard == nil || *cmd.Shard < 0 || *cmd.Shard >= c.shardCount() {
			return cmd, fmt.Errorf("%w: restart_shard needs a shard below %d", ErrBadRequest, c.shardCount())
		}
	case coordapi.CmdRespawnAll, coordapi.CmdDrain, coordapi.CmdUndrain:
	case coordapi.CmdConfig:
		if cmd.Capacity == nil || *cmd.Capacity < 0 {
			return cmd, fmt.Errorf("%w: config needs a capacity of 0 (no limit) or more", ErrBadRequest)
		}
	default:
		return cmd, fmt.Errorf("%w: type %q: want restart_shard, respawn_all, drain, undrain or config", ErrBadRequest, cmd.Type)
	}
	cmd.ID = c.push.nextID()
	return cmd, nil
}
