package dashboard

import (
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// Traffic-light classes of a cell.
const (
	ClassOK      = "ok"      // green: ready, online
	ClassWarn    = "warn"    // amber: waiting, connecting, identifying, resuming, starting, stopping
	ClassBad     = "bad"     // red: stopped, unhealthy, offline, zombie
	ClassUnknown = "unknown" // grey: unknown, unassigned
)

// Class maps a shard state, as nodes, Shardman workers and glance report
// it, to its traffic-light class.
func Class(state string) string {
	switch state {
	case "ready", "online":
		return ClassOK
	case "waiting", "idle", "connecting", "identifying", "authenticating", "resuming", "starting", "stopping":
		return ClassWarn
	case "stopped", "unhealthy", "offline", "zombie":
		return ClassBad
	}
	return ClassUnknown
}

// Cell is one shard in the grid.
type Cell struct {
	// Key identifies the cell: "<cluster>/<shard>".
	Key     string `json:"k"`
	Cluster string `json:"c"`
	Shard   int    `json:"s"`
	State   string `json:"st"`
	Class   string `json:"cl"`
	// Node is the holding node (admin view only).
	Node string `json:"n,omitempty"`
}

// GatewayCluster names the cluster of the shards the coordinator leases
// (to gateway nodes and Shardman workers); glance reports bring their own.
const GatewayCluster = "gateway"

// Fleet is the fleet panel.
type Fleet struct {
	ShardCount int `json:"shard_count"`
	// Nodes lists the live nodes (admin view); NodeCount counts them.
	Nodes     []coordapi.NodeInfo    `json:"nodes,omitempty"`
	NodeCount int                    `json:"node_count"`
	Queue     coordapi.IdentifyQueue `json:"identify"`
	Planner   *coordapi.PlannerState `json:"planner,omitempty"`
	// Consumers is each durable consumer's lag (admin view); Lag is the
	// largest pending count, for the public page.
	Consumers []broker.ConsumerLag `json:"consumers,omitempty"`
	MaxLag    uint64               `json:"max_lag"`
	// Classes counts the cells by class.
	Classes      map[string]int `json:"classes"`
	EventsPerSec float64        `json:"events_per_sec"`
	Guilds       int            `json:"guilds"`
	LatencyMS    float64        `json:"latency_ms"` // mean over reporting shards
	// Reshard is the running reshard; nil when none runs.
	Reshard *Reshard  `json:"reshard"`
	At      time.Time `json:"at"`
}

// Reshard is a reshard's progress.
type Reshard struct {
	From  int       `json:"from"`
	To    int       `json:"to"`
	Ready int       `json:"ready"`
	ETA   time.Time `json:"eta"`
	// Phase is the coordinator's (starting, dedup, overlap, handover).
	Phase string `json:"phase"`
}

// Input is what a view is computed from.
type Input struct {
	Shards    coordapi.ShardList
	Status    coordapi.Status
	Planner   *coordapi.PlannerState
	Consumers []broker.ConsumerLag
	Now       time.Time
}

// View is what a page shows; Public strips what the public page must not.
type View struct {
	Cells []Cell `json:"cells"`
	Fleet Fleet  `json:"fleet"`
}

// Build computes the admin view from in.
func Build(in Input) View {
	v := View{Fleet: Fleet{
		ShardCount: in.Shards.ShardCount, Nodes: in.Status.Nodes, NodeCount: len(in.Status.Nodes),
		Queue: in.Status.Identify, Planner: in.Planner, Consumers: in.Consumers, Classes: map[string]int{}, At: in.Now.UTC(),
	}}
	if r := in.Status.Reshard; r.Running() {
		v.Fleet.Reshard = &Reshard{From: r.From, To: r.To, Ready: r.Ready, ETA: r.ETA, Phase: r.Phase}
	}
	var latSum float64
	var latN int
	for _, s := range in.Shards.Shards {
		c := Cell{Key: GatewayCluster + "/" + strconv.Itoa(s.Shard), Cluster: GatewayCluster, Shard: s.Shard, State: s.State, Class: Class(s.State), Node: s.Node}
		if s.Holder == "shardman" {
			c.Node = "shardman"
		}
		v.Cells = append(v.Cells, c)
		v.Fleet.EventsPerSec += s.EventsPerSec
		if s.Guilds != nil {
			v.Fleet.Guilds += *s.Guilds
		}
		if s.LatencyMS != nil && s.State == "ready" {
			latSum += *s.LatencyMS
			latN++
		}
	}
	if latN > 0 {
		v.Fleet.LatencyMS = latSum / float64(latN)
	}
	for _, g := range in.Status.Glance {
		if g.Cluster == GatewayCluster {
			continue // the coordinator's own shards already have cells
		}
		v.Cells = append(v.Cells, Cell{Key: g.Cluster + "/" + strconv.Itoa(g.ID), Cluster: g.Cluster, Shard: g.ID, State: g.StateName, Class: Class(g.StateName)})
	}
	for _, c := range v.Cells {
		v.Fleet.Classes[c.Class]++
	}
	for _, l := range in.Consumers {
		v.Fleet.MaxLag = max(v.Fleet.MaxLag, l.Pending)
	}
	return v
}

// Public returns v without what the public page must not show: node
// names and consumer names. The cells are copied.
func (v View) Public() View {
	out := View{Fleet: v.Fleet, Cells: make([]Cell, len(v.Cells))}
	for i, c := range v.Cells {
		c.Node = ""
		out.Cells[i] = c
	}
	out.Fleet.Nodes, out.Fleet.Consumers = nil, nil
	return out
}

// Diff returns the cells of next that are new or differ from prev, and
// the keys of prev's cells that next no longer has.
func Diff(prev, next []Cell) (changed []Cell, gone []string) {
	old := make(map[string]Cell, len(prev))
	for _, c := range prev {
		old[c.Key] = c
	}
	for _, c := range next {
		if o, ok := old[c.Key]; !ok || o != c {
			changed = append(changed, c)
		}
		delete(old, c.Key)
	}
	for k := range old {
		gone = append(gone, k)
	}
	return changed, gone
}
