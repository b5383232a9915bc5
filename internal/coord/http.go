package coord

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
	"github.com/gatehouse-dev/gatehouse/internal/discord"
	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// route is one endpoint. The route table is the source of truth for the
// mux and is checked against the OpenAPI document by a test.
type route struct {
	method, pattern string
	// role is the least role that may call it; RoleNone means the handler
	// authenticates on its own terms (compatible endpoints) or not at all.
	role Role
	h    func(w http.ResponseWriter, r *http.Request) error
	// bigBody lifts the body limit to MaxReportBytes (node heartbeats,
	// which carry a report per shard).
	bigBody bool
	// read marks a route any replica answers, from the leader's view when
	// it does not lead; every other route is a write, which a follower
	// forwards to the leader.
	read bool
	// noAnswer: the route's clients take any answer as permission
	// (twilight's gateway-queue), so a refusal closes the connection.
	noAnswer bool
	// follower: the handler serves a follower itself rather than being
	// forwarded (Shardman's beats, which a follower batches).
	follower bool
}

func (c *Coordinator) routes() []route {
	return []route{
		{method: "GET", pattern: "/openapi.json", h: c.openAPI, read: true},
		{method: "GET", pattern: "/healthz", h: c.healthz, read: true},
		{method: "GET", pattern: "/v1/status", role: RoleStatus, h: c.status, read: true},
		{method: "GET", pattern: "/v1/guilds/{guild}", role: RoleStatus, h: c.guildLookup, read: true},
		{method: "GET", pattern: "/v1/identify", role: RoleStatus, h: c.identifyState, read: true},
		{method: "GET", pattern: "/v1/planner", role: RoleStatus, h: c.plannerState, read: true},
		{method: "POST", pattern: "/v1/identify/{shard}", role: RoleWorker, h: c.identifyWait},
		{method: "POST", pattern: "/v1/identify/{shard}/ready", role: RoleWorker, h: c.identifyReady},
		{method: "POST", pattern: "/v1/nodes/{node}/heartbeat", role: RoleNode, h: c.nodeHeartbeat, bigBody: true},
		{method: "POST", pattern: "/v1/nodes/{node}/leave", role: RoleNode, h: c.nodeLeave},
		{method: "GET", pattern: "/v1/nodes/{node}/push", role: RoleNode, h: c.pushChannel},
		{method: "POST", pattern: "/v1/commands", role: RoleAdmin, h: c.postCommand},
		{method: "POST", pattern: "/v1/reshard", role: RoleAdmin, h: c.reshardPost},
		{method: "GET", pattern: "/v1/reshard", role: RoleAdmin, h: c.reshardGet, read: true},
		{method: "DELETE", pattern: "/v1/reshard", role: RoleAdmin, h: c.reshardDelete},
		{method: "GET", pattern: "/v1/nodes", role: RoleStatus, h: c.nodeList, read: true},
		{method: "GET", pattern: "/v1/leases", role: RoleStatus, h: c.leaseList, read: true},
		{method: "GET", pattern: "/v1/shards", role: RoleStatus, h: c.shardList, read: true},
		{method: "GET", pattern: "/v1/shards/{shard}", role: RoleStatus, h: c.shardGet, read: true},
		// twilight gateway-queue: any method.
		{method: "", pattern: "/queue", h: c.twilightQueue, noAnswer: true},
		// Shardman: its own secret check and statuses.
		{method: "GET", pattern: "/connect", h: c.shardmanConnect},
		{method: "POST", pattern: "/beat", h: c.shardmanBeat, follower: true},
		// between replicas: a follower's batch of Shardman beats.
		{method: "POST", pattern: coordapi.ReplicaBeatsPath, h: c.replicaBeats, bigBody: true},
		// glance.
		{method: "POST", pattern: "/api/status/{cluster}/{id}/{state}", role: RoleWorker, h: c.glanceStatus},
		{method: "POST", pattern: "/api/health/{cluster}/{id}", role: RoleWorker, h: c.glanceHealth},
		{method: "GET", pattern: "/api/status", role: RoleStatus, h: c.glanceList, read: true},
	}
}

// handle wraps a route: per-IP refusal after failed authentications, the
// role check, the body limit, and error answers.
func (c *Coordinator) handle(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := c.cfg.MaxBodyBytes
		if rt.bigBody {
			limit = max(limit, c.cfg.MaxReportBytes)
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if c.rep != nil {
			c.trustForwarded(r)
		}
		if rt.role != RoleNone {
			if _, err := c.authorize(r, rt.role); err != nil {
				writeError(w, err)
				return
			}
		}
		if !rt.read && !rt.follower && !c.Leading() {
			c.forward(w, r, rt)
			return
		}
		if err := rt.h(w, r); err != nil {
			if statusOf(err) == http.StatusInternalServerError {
				c.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
}

// Authorize checks that r carries a token of role need or above, counting
// failures against the client's IP like every API request. Its errors map
// to statuses with WriteError.
func (c *Coordinator) Authorize(r *http.Request, need Role) error {
	_, err := c.authorize(r, need)
	return err
}

// WriteError answers err as the API does: its status, and a JSON body with
// a message and a machine-readable code.
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

// authorize returns the request's role if it may act as need. The
// credential is always checked: a valid one is never refused, whatever
// other clients did from the same address. A failure counts against its
// source and against the global cap; over either it is answered 429.
func (c *Coordinator) authorize(r *http.Request, need Role) (Role, error) {
	role := c.keys.role(credential(r))
	if role == RoleNone {
		src := source(r)
		c.mu.Lock()
		limited, retry := c.fails.fail(time.Now(), src)
		c.mu.Unlock()
		if limited {
			return RoleNone, &retryError{fmt.Errorf("%w: too many failed authentications from %s", ErrTooManyRequests, src), retry}
		}
		return RoleNone, fmt.Errorf("%w: missing or unknown token (send Authorization: Bearer <token>)", ErrUnauthorized)
	}
	if !role.allows(need) {
		return role, fmt.Errorf("%w: a %s token may not do this; it needs %s", ErrForbidden, role, need)
	}
	return role, nil
}

func (c *Coordinator) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// parseShard reads a shard number, which must be below the deployment's
// shard count (or a reshard's new count, while one runs).
func (c *Coordinator) parseShard(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: shard %q is not a non-negative number", ErrBadRequest, s)
	}
	limit := c.shardCount()
	c.mu.Lock()
	if c.fleet.next != nil {
		limit = max(limit, c.fleet.next.count) // a reshard's new generation identifies too
	}
	c.mu.Unlock()
	if n >= limit {
		return 0, fmt.Errorf("%w: shard %d is out of range for %d shards", ErrBadRequest, n, limit)
	}
	return n, nil
}

// identifyWait blocks until the shard may identify. A client that goes away
// gives its place up.
func (c *Coordinator) identifyWait(w http.ResponseWriter, r *http.Request) error {
	shard, err := c.parseShard(r.PathValue("shard"))
	if err != nil {
		return err
	}
	if err := c.waitIdentify(r.Context(), shard, false); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, coordapi.IdentifyGrant{Shard: shard, Bucket: discord.ShardBucket(shard, c.cfg.MaxConcurrency), GrantedAt: time.Now().UTC()})
	return nil
}

// waitIdentify waits for shard's grant and adds the retry time to a
// refusal for lack of session starts. A replica writes the budget it
// spent before it answers, so that a new leader starts from it; a wait
// that outlives this replica's leadership ends unanswered (the client
// asks again, through whichever replica leads by then).
func (c *Coordinator) waitIdentify(ctx context.Context, shard int, blind bool) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	unhook := context.AfterFunc(c.termContext(), stop)
	defer unhook()
	gate := c.gateNow()
	var err error
	if blind {
		err = gate.WaitBlind(ctx, shard)
	} else {
		err = gate.Wait(ctx, shard)
	}
	if errors.Is(err, identify.ErrBudgetExhausted) {
		snap := gate.Snapshot()
		return &retryError{err, time.Until(snap.ResetAt)}
	}
	if err != nil && ctx.Err() != nil {
		if c.termContext().Err() != nil {
			return &retryError{fmt.Errorf("%w: this replica stopped leading", ErrUnavailable), time.Second}
		}
		return fmt.Errorf("%w: the client left the queue", context.Canceled)
	}
	if err == nil && c.rep != nil {
		c.rep.writeMu.Lock()
		err = c.saveBudget(ctx)
		c.rep.writeMu.Unlock()
		if err != nil {
			gate.Identified(shard, time.Now()) // the grant is given up: count the window from now
		}
	}
	return err
}

// identifyReady reports the READY (or the failure) of a granted identify,
// so the bucket's next slot counts from it.
func (c *Coordinator) identifyReady(w http.ResponseWriter, r *http.Request) error {
	shard, err := c.parseShard(r.PathValue("shard"))
	if err != nil {
		return err
	}
	c.gateNow().Identified(shard, time.Now())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Coordinator) identifyState(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, c.Queue())
	return nil
}

// Queue returns the identify queue and the session-start budget.
func (c *Coordinator) Queue() coordapi.IdentifyQueue {
	if v, _, ok := c.followerView(); ok {
		return v.Status.Identify
	}
	snap := c.gateNow().Snapshot()
	q := coordapi.IdentifyQueue{MaxConcurrency: snap.MaxConcurrency, IntervalMS: snap.Interval.Milliseconds(), Remaining: snap.Remaining, Buckets: []coordapi.BucketState{}}
	if !snap.ResetAt.IsZero() {
		t := snap.ResetAt.UTC()
		q.ResetAt = &t
	}
	for _, b := range snap.Buckets {
		bs := coordapi.BucketState{Bucket: b.Bucket, Waiting: b.Waiting}
		if !b.NextFree.IsZero() {
			t := b.NextFree.UTC()
			bs.NextFree = &t
		}
		q.Buckets = append(q.Buckets, bs)
	}
	return q
}

// guildLookup answers which shard holds a guild: (guild_id >> 22) % shards.
func (c *Coordinator) guildLookup(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseUint(r.PathValue("guild"), 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("%w: guild %q is not a snowflake", ErrBadRequest, r.PathValue("guild"))
	}
	count := c.shardCount()
	if v, _, ok := c.followerView(); ok {
		count = v.Shards.ShardCount
	}
	if count < 1 {
		return fmt.Errorf("%w: no view from the leader yet", ErrUnavailable)
	}
	shard := discord.ShardForGuild(discord.Snowflake(id), count)
	ans := coordapi.GuildAnswer{GuildID: strconv.FormatUint(id, 10), Shard: shard, ShardCount: count}
	info, err := c.Shard(shard)
	if err != nil {
		return err
	}
	ans.Node, ans.State, ans.Guilds = info.Node, info.State, info.Guilds
	if info.Holder == "shardman" {
		ans.Worker = "shardman"
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}
