package coord

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/lease/kvlease"
)

// Control is what a replicated coordinator runs on: the control plane's
// two buckets in JetStream KV and a channel between the replicas. With
// it, any number of coordinators share one deployment: one leads (it
// holds the leader record in Live), the others serve reads from the
// leader's published view and forward writes to it.
type Control struct {
	// Ctl holds the coordinators' state: the shard lease records, the
	// token base, the saved state and the identify budget.
	Ctl KV
	// Live holds the records that expire a lease TTL after their last
	// write: gateway nodes' liveness records and the leadership.
	Live KV
	// LiveTTL is Live's TTL: how long leadership and a node's liveness
	// last without a renewal.
	LiveTTL time.Duration
	// Views carries the leader's read model to the other replicas.
	Views ViewBus
	// Legacy, when set, returns the state an older coordinator saved in
	// the session bucket (nil when none); it is read once, when the
	// control bucket has no state yet.
	Legacy func(ctx context.Context) ([]byte, error)
}

// ViewBus carries the leader's read model between replicas (core NATS).
type ViewBus interface {
	PublishView(ctx context.Context, data []byte) error
	// Views sends every view published until ctx ends, then closes.
	Views(ctx context.Context) (<-chan []byte, error)
}

// replica is a coordinator's part in a replicated control plane.
type replica struct {
	ctl    *Control
	id     string
	url    string
	keeper *kvlease.Keeper // the leadership
	// forwardKey marks a request forwarded by another replica, whose
	// client address it then vouches for. It is derived from the admin
	// token, which every replica has.
	forwardKey string
	proxy      *httputil.ReverseProxy
	hc         *http.Client // to the leader, over the proxy's connections

	// beats batches the Shardman beats this replica answers while it
	// follows (beatMu guards it).
	beatMu sync.Mutex
	beats  *beatBatch

	leading atomic.Bool                   // this replica leads, its takeover done
	view    atomic.Pointer[coordapi.View] // the leader's, as last received
	viewAt  atomic.Int64                  // when it arrived (unix nanoseconds)

	// writeMu serializes what the leader writes to the control bucket:
	// heartbeats' lease writes, liveness events, saves.
	writeMu  sync.Mutex
	book     *leaseBook
	stateRev uint64 // revision of the saved state
	identRev uint64 // revision of the identify budget
	// term ends with this replica's current leadership; its goroutines
	// (the liveness watch) are waited for by stepDown.
	term    context.Context
	endTerm context.CancelFunc
	termWG  sync.WaitGroup
}

// whyShutdown is stepDown's reason at a graceful stop.
const whyShutdown = "shutting down"

const (
	stateKey    = "coordinator"
	identifyKey = "identify"
)

// forwardConns bounds the connections a follower keeps to the leader.
// Long polls and push channels hold one each for their length, so it is
// sized well above a fleet's nodes.
const forwardConns = 512

// headers of a request one replica forwards to the leader.
const (
	headerForwardedBy = "Gatehouse-Forwarded-By"
	headerForwardKey  = "Gatehouse-Forward-Key"
	headerClientIP    = "Gatehouse-Client-IP"
)

func newReplica(cfg Config) (*replica, error) {
	if cfg.Control.Ctl == nil || cfg.Control.Live == nil || cfg.Control.Views == nil || cfg.Control.LiveTTL <= 0 {
		return nil, fmt.Errorf("%w: Control needs Ctl, Live, LiveTTL and Views", ErrBadRequest)
	}
	u, err := url.Parse(cfg.Advertise)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: Advertise %q: want this replica's API URL, http(s)://host:port", ErrBadRequest, cfg.Advertise)
	}
	info, _ := json.Marshal(struct {
		URL string `json:"url"`
	}{strings.TrimRight(cfg.Advertise, "/")})
	k, err := kvlease.New(kvlease.Config{Store: cfg.Control.Live, Key: coordapi.LeaderKey, Owner: cfg.ReplicaID,
		TTL: cfg.Control.LiveTTL, Info: info, Logger: cfg.Logger.With("part", "election")})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte("gatehouse replica forward\x00" + cfg.Tokens.Admin))
	r := &replica{ctl: cfg.Control, id: cfg.ReplicaID, url: strings.TrimRight(cfg.Advertise, "/"), keeper: k, forwardKey: hex.EncodeToString(sum[:]),
		beats: newBeatBatch(cfg.BeatTimeout)}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:       r.rewrite,
		FlushInterval: -1, // long polls and the push channel stream
		// Requests wait for one of a bounded set of kept-alive connections
		// rather than dialing more: with thousands of workers beating, a
		// connection per request would churn through the ephemeral ports
		// (every closed one waits a minute in TIME_WAIT).
		Transport: &http.Transport{Proxy: nil, MaxConnsPerHost: forwardConns, MaxIdleConns: forwardConns, MaxIdleConnsPerHost: forwardConns,
			IdleConnTimeout: 90 * time.Second},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Value(noAnswerKey{}) != nil {
				abort(w)
				return
			}
			writeError(w, &retryError{fmt.Errorf("%w: the leader did not answer: %v", ErrUnavailable, err), time.Second})
		},
		ErrorLog: nil,
	}
	r.hc = &http.Client{Transport: r.proxy.Transport}
	return r, nil
}

// leaderURL is the leader's API base, as its record says, and whether
// another replica leads.
func (r *replica) leaderURL() (string, bool) {
	h, ok := r.keeper.Holder()
	if !ok || h.Owner == r.id {
		return "", false
	}
	var info struct {
		URL string `json:"url"`
	}
	if json.Unmarshal(h.Info, &info) != nil || info.URL == "" {
		return "", false
	}
	return info.URL, true
}

func (r *replica) rewrite(pr *httputil.ProxyRequest) {
	u, _ := url.Parse(pr.In.Header.Get("X-Gatehouse-Target"))
	pr.Out.Header.Del("X-Gatehouse-Target")
	pr.SetURL(u)
	pr.Out.Host = u.Host
	pr.Out.Header.Set(headerForwardedBy, r.id)
	pr.Out.Header.Set(headerForwardKey, r.forwardKey)
	pr.Out.Header.Set(headerClientIP, clientIP(pr.In))
}

// forwarded reports whether r came from another replica (it carries the
// replicas' key).
func (r *replica) forwarded(req *http.Request) bool {
	k := req.Header.Get(headerForwardKey)
	return k != "" && subtle.ConstantTimeCompare([]byte(k), []byte(r.forwardKey)) == 1
}

// Leading reports whether this coordinator leads: it may decide and
// write. A standalone coordinator always leads.
func (c *Coordinator) Leading() bool {
	if c.rep == nil {
		return true
	}
	if !c.rep.leading.Load() {
		return false
	}
	_, held := c.rep.keeper.Held()
	return held
}

// Replica describes this replica.
func (c *Coordinator) Replica() coordapi.ReplicaInfo {
	switch {
	case c.rep == nil:
		return coordapi.ReplicaInfo{ID: c.cfg.ReplicaID, Role: coordapi.RoleStandalone}
	case c.Leading():
		return coordapi.ReplicaInfo{ID: c.rep.id, URL: c.rep.url, Role: coordapi.RoleLeader}
	}
	return coordapi.ReplicaInfo{ID: c.rep.id, URL: c.rep.url, Role: coordapi.RoleFollower}
}

// leader describes the leading replica, nil while none does.
func (c *Coordinator) leader() *coordapi.ReplicaInfo {
	if c.Leading() {
		r := c.Replica()
		return &r
	}
	if c.rep == nil {
		return nil
	}
	h, ok := c.rep.keeper.Holder()
	if !ok {
		return nil
	}
	u, _ := c.rep.leaderURL()
	return &coordapi.ReplicaInfo{ID: h.Owner, URL: u, Role: coordapi.RoleLeader}
}

// forward passes a write to the leader. A request already forwarded once
// is not forwarded again (two replicas that each believe the other leads
// would bounce it for ever).
func (c *Coordinator) forward(w http.ResponseWriter, r *http.Request, rt route) {
	target, ok := c.rep.leaderURL()
	if !ok || c.rep.forwarded(r) {
		if rt.noAnswer {
			abort(w) // twilight's clients take any answer as a grant
			return
		}
		writeError(w, &retryError{fmt.Errorf("%w: no coordinator leads right now (an election takes at most one lease TTL)", ErrUnavailable), time.Second})
		return
	}
	r.Header.Set("X-Gatehouse-Target", target)
	if rt.noAnswer {
		r = r.WithContext(context.WithValue(r.Context(), noAnswerKey{}, true))
	}
	c.rep.proxy.ServeHTTP(w, r)
}

// noAnswerKey marks a forwarded request whose client takes any answer as
// permission: a failed forward closes its connection unanswered.
type noAnswerKey struct{}

// followerView is the leader's view when this replica does not lead and
// answers reads from it (an empty one before the first arrives), with
// its age; ok is false when this replica leads or is standalone.
func (c *Coordinator) followerView() (v *coordapi.View, age time.Duration, ok bool) {
	if c.rep == nil || c.Leading() {
		return nil, 0, false
	}
	if v = c.rep.view.Load(); v == nil {
		return &coordapi.View{Status: coordapi.Status{Nodes: []coordapi.NodeInfo{}, Leases: []coordapi.ShardLease{},
			Shardman: []coordapi.ShardmanSession{}, Glance: []coordapi.GlanceShard{}, Identify: coordapi.IdentifyQueue{Remaining: -1, Buckets: []coordapi.BucketState{}}},
			Shards: coordapi.ShardList{Shards: []coordapi.ShardInfo{}}}, 0, true
	}
	return v, time.Since(time.Unix(0, c.rep.viewAt.Load())), true
}

// trustForwarded takes the client address of a request another replica
// forwarded (it carries the replicas' key), so that limits and logs see
// the client rather than the replica; the headers of any other request
// are dropped, since clients could set them.
func (c *Coordinator) trustForwarded(r *http.Request) {
	if c.rep.forwarded(r) {
		if ip := r.Header.Get(headerClientIP); ip != "" {
			r.RemoteAddr = net.JoinHostPort(ip, "0")
		}
		return
	}
	r.Header.Del(headerForwardedBy)
	r.Header.Del(headerForwardKey)
	r.Header.Del(headerClientIP)
}

// runReplica is Run for a replicated coordinator: it takes part in the
// election, takes over when it wins, leads (the same timers as a
// standalone coordinator, and publishing its view every second) and
// steps down when it loses; it follows the leader's views meanwhile.
func (c *Coordinator) runReplica(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// The election outlives ctx by the final save, so that a leader
	// stops leading only once its state is written.
	ectx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	wg.Go(func() {
		if err := c.rep.keeper.Run(ectx); err != nil && ectx.Err() == nil {
			c.log.Error("leader election stopped", "err", err)
		}
	})
	wg.Go(func() { c.followViews(ctx) })
	wg.Go(func() { c.flushBeats(ctx) })
	t := time.NewTicker(tick)
	defer t.Stop()
	var nextRefresh time.Time
	for {
		changed := c.rep.keeper.Changed()
		_, held := c.rep.keeper.Held()
		switch {
		case held && !c.rep.leading.Load():
			if err := c.takeOver(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("taking over as leader failed; trying again", "err", err)
			}
			nextRefresh = time.Time{}
		case !held && c.rep.leading.Load():
			c.stepDown("the leadership record was lost (not renewed in time, or taken over)")
		}
		if c.Leading() {
			now := time.Now()
			c.sweep(now)
			if c.cfg.GatewayBot != nil && !now.Before(nextRefresh) {
				nextRefresh = now.Add(c.refreshBudget(ctx, now))
			}
			c.save(ctx, false)
			c.publishView(ctx)
		}
		select {
		case <-ctx.Done():
			if c.rep.leading.Load() {
				c.save(context.WithoutCancel(ctx), true)
				c.stepDown(whyShutdown)
			}
			stopElection() // gives the leadership up for the next replica
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// takeOver makes this replica the leader: it reads the control bucket
// (lease records, the token base, the saved state, the identify budget)
// and the nodes' liveness records, and rebuilds its state from them.
// Until it returns the replica answers no write.
func (c *Coordinator) takeOver(ctx context.Context) error {
	start := time.Now()
	term, endTerm := context.WithCancel(ctx)
	ok := false
	defer func() {
		if !ok {
			endTerm()
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, stateRev, err := c.loadState(rctx)
	if err != nil {
		return err
	}
	book, err := loadLeaseBook(rctx, c.rep.ctl.Ctl, st.NextToken)
	if err != nil {
		return err
	}
	budget, identRev, err := c.loadBudget(rctx)
	if err != nil {
		return err
	}
	events, err := c.rep.ctl.Live.Watch(term, "node.>")
	if err != nil {
		return fmt.Errorf("coord: watching liveness: %w", err)
	}
	live := map[string]uint64{}
	for done := false; !done; {
		select {
		case <-rctx.Done():
			return fmt.Errorf("coord: reading liveness records: %w", rctx.Err())
		case e, open := <-events:
			switch {
			case !open:
				return errors.New("coord: the liveness watch ended")
			case e.Key == "":
				done = true
			default:
				if id, epoch, alive := livenessOf(e); alive {
					live[id] = epoch
				}
			}
		}
	}
	now := time.Now()
	c.mu.Lock()
	if err := c.resetStateLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	c.restoreLocked(now, st)
	c.fleet.live = live
	c.fillLeasesLocked(now, book)
	gate := c.gateNow()
	if budget != nil {
		gate.SetBudget(*budget)
	}
	// Any grant the last leader made may still land: hold every bucket
	// for two windows, a grant's validity and one window.
	gate.HoldUntil(now.Add(2*c.cfg.IdentifyInterval + c.cfg.IdentifyMargin))
	c.fleet.dirty = false
	c.mu.Unlock()
	c.rep.book, c.rep.stateRev, c.rep.identRev = book, stateRev, identRev
	c.rep.term, c.rep.endTerm = term, endTerm
	c.rep.termWG.Go(func() { c.watchLiveness(term, events) })
	ok = true
	c.rep.leading.Store(true)
	c.log.Info("leading: took over", "replica", c.rep.id, "took", time.Since(start).Round(time.Millisecond),
		"live_nodes", len(live), "shard_count", c.shardCount())
	c.nudgeNodes()
	return nil
}

// stepDown stops leading: writes end, the term's goroutines and requests
// (identify waits, push channels) end, and the state is dropped; the next
// takeover reads it back.
func (c *Coordinator) stepDown(why string) {
	if !c.rep.leading.Swap(false) {
		return
	}
	lvl := slog.LevelWarn
	if why == whyShutdown {
		lvl = slog.LevelInfo // the next replica takes over at once
	}
	c.log.Log(context.Background(), lvl, "stepping down as leader", "replica", c.rep.id, "why", why)
	if c.rep.endTerm != nil {
		c.rep.endTerm()
	}
	c.rep.termWG.Wait()
	c.push.closeAll()
	c.mu.Lock()
	_ = c.resetStateLocked()
	c.mu.Unlock()
}

// termContext is the context of the current leadership term, which ends
// when this replica stops leading; a standalone coordinator's never ends.
func (c *Coordinator) termContext() context.Context {
	if c.rep == nil || c.rep.term == nil {
		return context.Background()
	}
	return c.rep.term
}

// livenessOf reads a liveness record: the node and its epoch, or alive
// false for a deleted or expired one.
func livenessOf(e broker.Entry) (id string, epoch uint64, alive bool) {
	id, ok := strings.CutPrefix(e.Key, "node.")
	if !ok || e.Deleted {
		return id, 0, false
	}
	rec, err := kvlease.Decode(e.Value)
	if err != nil {
		return id, 0, false
	}
	return id, rec.Epoch, true
}

// watchLiveness applies nodes' liveness records as they change, until the
// term ends. A watch that ends early ends the term: leases cannot be kept
// right without it.
func (c *Coordinator) watchLiveness(term context.Context, events <-chan broker.Entry) {
	for {
		select {
		case <-term.Done():
			for range events {
			}
			return
		case e, open := <-events:
			if !open {
				if term.Err() == nil {
					go c.stepDown("the liveness watch ended")
				}
				return
			}
			if e.Key == "" {
				continue
			}
			id, epoch, alive := livenessOf(e)
			c.rep.writeMu.Lock()
			c.mu.Lock()
			var gone int
			if alive {
				gone = len(c.fleet.nodeLive(id, epoch))
			} else {
				gone = len(c.fleet.nodeGone(id))
			}
			c.mu.Unlock()
			err := c.flushWrites(term, nil)
			c.rep.writeMu.Unlock()
			if !alive {
				c.log.Warn("a node's liveness record ended; its shards go to other nodes", "node", id, "shards", gone)
			} else if gone > 0 {
				c.log.Warn("a node came back with a new liveness record; what it held is free", "node", id, "shards", gone)
			}
			if err != nil {
				c.log.Error("writing lease releases", "err", err)
			}
			c.nudgeNodes()
		}
	}
}

// flushWrites writes what the fleet journalled to the lease authority and
// settles the results into o (nil: no orders wait on them). A record
// changed by someone else means another coordinator writes: this one
// steps down. The caller holds c.rep.writeMu (a standalone coordinator
// journals nothing).
func (c *Coordinator) flushWrites(ctx context.Context, o *coordapi.NodeOrders) error {
	if c.rep == nil {
		return nil
	}
	c.mu.Lock()
	ws := c.fleet.takeWrites()
	live := c.fleet.live
	c.mu.Unlock()
	if len(ws) == 0 {
		return nil
	}
	res, err := c.rep.book.write(ctx, ws, live)
	c.mu.Lock()
	c.fleet.settle(res, o)
	c.mu.Unlock()
	if errors.Is(err, errAuthority) {
		go c.stepDown(err.Error())
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// fillLeasesLocked puts the recorded leases of live holders into the
// fleet's tables, under their recorded tokens.
func (c *Coordinator) fillLeasesLocked(now time.Time, book *leaseBook) {
	fill := func(f *fleet) {
		book.records(f.count, func(shard int, r leaseRecord, token uint64) {
			if r.Holder == "" {
				return
			}
			if e, live := f.live[r.Holder]; !live || e != r.Epoch {
				return // its holder has gone since: free
			}
			if _, err := f.leases.Put(now, shard, r.Holder, token); err != nil {
				c.log.Warn("unusable lease record", "shard", shard, "count", f.count, "err", err)
			}
		})
	}
	fill(c.fleet)
	if c.fleet.next != nil {
		c.fleet.next.live = c.fleet.live
		fill(c.fleet.next)
	}
}

// followViews keeps the leader's latest view, for the reads a follower
// answers, until ctx ends.
func (c *Coordinator) followViews(ctx context.Context) {
	for ctx.Err() == nil {
		ch, err := c.rep.ctl.Views.Views(ctx)
		if err != nil {
			c.log.Warn("following the leader's views", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		for data := range ch {
			if c.Leading() {
				continue // our own: a view is megabytes with thousands of workers
			}
			var v coordapi.View
			if err := json.Unmarshal(data, &v); err != nil {
				c.log.Warn("unreadable view from the leader", "err", err)
				continue
			}
			if v.Leader.ID == c.rep.id {
				continue // our own
			}
			c.rep.view.Store(&v)
			c.rep.viewAt.Store(time.Now().UnixNano())
		}
	}
}

// publishView sends the leader's read model to the other replicas.
func (c *Coordinator) publishView(ctx context.Context) {
	now := time.Now()
	v := coordapi.View{Leader: c.Replica(), At: now.UTC(), Status: c.Status(), Shards: c.Shards()}
	if p, err := c.Planner(now); err == nil {
		v.Planner = p
	}
	data, err := json.Marshal(v)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err = c.rep.ctl.Views.PublishView(pctx, data)
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		c.log.Debug("publishing the view", "err", err)
	}
}
