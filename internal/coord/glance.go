package coord

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// GlanceState is a shard state as glance numbers them.
type GlanceState int

// glance's shard states.
const (
	GlanceUnknown GlanceState = iota
	GlanceUnhealthy
	GlanceOffline
	GlanceOnline
	GlanceStarting
	GlanceStopping
	GlanceResuming
)

var glanceNames = [...]string{"unknown", "unhealthy", "offline", "online", "starting", "stopping", "resuming"}

func (s GlanceState) String() string {
	if s >= 0 && int(s) < len(glanceNames) {
		return glanceNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// glanceKey names a shard of a cluster.
type glanceKey struct {
	cluster string
	id      int
}

// glanceShard is what the board knows about one shard.
type glanceShard struct {
	state      GlanceState
	lastHealth time.Time // zero: never reported
	changed    time.Time
}

// glanceBoard is the pure core behind glance's endpoints: shards report
// their state and their health; a shard that should be reporting health
// and has not for interval becomes unhealthy, and a health report on an
// unhealthy shard makes it online again. The caller holds the lock and
// passes the time.
type glanceBoard struct {
	interval time.Duration
	shards   map[glanceKey]*glanceShard
}

// maxGlanceShards bounds the board against clients inventing keys.
const maxGlanceShards = 100_000

func (b *glanceBoard) get(now time.Time, k glanceKey) (*glanceShard, error) {
	if b.shards == nil {
		b.shards = map[glanceKey]*glanceShard{}
	}
	s, ok := b.shards[k]
	if !ok {
		if len(b.shards) >= maxGlanceShards {
			return nil, fmt.Errorf("%w: the board holds %d shards already", ErrTooManyRequests, maxGlanceShards)
		}
		s = &glanceShard{changed: now}
		b.shards[k] = s
	}
	return s, nil
}

// status records a state report.
func (b *glanceBoard) status(now time.Time, k glanceKey, st GlanceState) error {
	s, err := b.get(now, k)
	if err != nil {
		return err
	}
	if s.state != st {
		s.state, s.changed = st, now
	}
	if st == GlanceOnline && s.lastHealth.IsZero() {
		s.lastHealth = now // the health interval starts now
	}
	return nil
}

// health records a health report: an unhealthy shard is online again.
func (b *glanceBoard) health(now time.Time, k glanceKey) error {
	s, err := b.get(now, k)
	if err != nil {
		return err
	}
	s.lastHealth = now
	if s.state == GlanceUnhealthy {
		s.state, s.changed = GlanceOnline, now
	}
	return nil
}

// watched reports whether a state expects health reports: a shard that is
// offline, stopping or unknown is not expected to report.
func watched(st GlanceState) bool {
	return st == GlanceOnline || st == GlanceStarting || st == GlanceResuming
}

// sweep marks unhealthy every watched shard whose last health report (or
// the moment it came online) is interval old, and returns them in order.
func (b *glanceBoard) sweep(now time.Time) []glanceKey {
	var out []glanceKey
	for k, s := range b.shards {
		if !watched(s.state) {
			continue
		}
		since := s.lastHealth
		if since.IsZero() {
			since = s.changed
		}
		if now.Sub(since) >= b.interval {
			s.state, s.changed = GlanceUnhealthy, now
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b glanceKey) int {
		return cmp.Or(cmp.Compare(a.cluster, b.cluster), cmp.Compare(a.id, b.id))
	})
	return out
}

// list returns every shard, by cluster then ID.
func (b *glanceBoard) list() []coordapi.GlanceShard {
	out := make([]coordapi.GlanceShard, 0, len(b.shards))
	for k, s := range b.shards {
		g := coordapi.GlanceShard{Cluster: k.cluster, ID: k.id, State: int(s.state), StateName: s.state.String(), Changed: s.changed.UTC()}
		if !s.lastHealth.IsZero() {
			t := s.lastHealth.UTC()
			g.LastHealth = &t
		}
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b coordapi.GlanceShard) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// glanceKeyOf parses {cluster}/{id}.
func glanceKeyOf(r *http.Request) (glanceKey, error) {
	cluster := r.PathValue("cluster")
	if cluster == "" || len(cluster) > 64 {
		return glanceKey{}, fmt.Errorf("%w: cluster %q: want 1 to 64 characters", ErrBadRequest, cluster)
	}
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 || id >= maxShards {
		return glanceKey{}, fmt.Errorf("%w: shard %q is not a shard number", ErrBadRequest, r.PathValue("id"))
	}
	return glanceKey{cluster, id}, nil
}

func (c *Coordinator) glanceStatus(w http.ResponseWriter, r *http.Request) error {
	k, err := glanceKeyOf(r)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(r.PathValue("state"))
	if err != nil || n < 0 || n >= len(glanceNames) {
		return fmt.Errorf("%w: state %q: want 0-6 (unknown, unhealthy, offline, online, starting, stopping, resuming)", ErrBadRequest, r.PathValue("state"))
	}
	c.mu.Lock()
	err = c.glance.status(time.Now(), k, GlanceState(n))
	c.fleet.dirty = true
	c.mu.Unlock()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Coordinator) glanceHealth(w http.ResponseWriter, r *http.Request) error {
	k, err := glanceKeyOf(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	err = c.glance.health(time.Now(), k)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Coordinator) glanceList(w http.ResponseWriter, r *http.Request) error {
	if v, _, ok := c.followerView(); ok {
		writeJSON(w, http.StatusOK, v.Status.Glance)
		return nil
	}
	c.mu.Lock()
	list := c.glance.list()
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
	return nil
}
