package coord

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// TestShardReports: a node's reports on the shards it holds show in GET
// /v1/shards and /v1/guilds, feed the planner, and are dropped when the
// shard leaves the node; reports on shards it does not hold are ignored
// and malformed ones refused.
func TestShardReports(t *testing.T) {
	c := newTest(t, func(c *Config) { c.ShardCount = 4; c.Recommended = 4 })
	beat := func(node, body string) (int, coordapi.NodeOrders) {
		t.Helper()
		code, _, out := do(c, "POST", "/v1/nodes/"+node+"/heartbeat", bearer(testTokens.Node), "application/json", body)
		var o coordapi.NodeOrders
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(out), &o); err != nil {
				t.Fatal(err)
			}
		}
		return code, o
	}
	shards := func() coordapi.ShardList {
		t.Helper()
		code, _, out := do(c, "GET", "/v1/shards", bearer(testTokens.Status), "", "")
		var l coordapi.ShardList
		if code != http.StatusOK || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("GET /v1/shards: %d %s", code, out)
		}
		return l
	}
	if l := shards(); l.ShardCount != 4 || len(l.Shards) != 4 || l.Shards[2].State != "unassigned" || l.Shards[2].Holder != "" {
		t.Fatalf("before any node: %+v", l)
	}

	_, o := beat("a", `{"shards":[]}`)
	if len(o.Assign) != 4 {
		t.Fatalf("assign %v", o.Assign)
	}
	held, reports := []string{}, []string{}
	for _, h := range o.Assign {
		held = append(held, fmt.Sprintf(`{"shard":%d,"token":%d}`, h.Shard, h.Token))
		reports = append(reports, fmt.Sprintf(`{"shard":%d,"state":"ready","guilds":%d,"latency_ms":41.5,"events":%d,"identifies":1}`, h.Shard, 2400+h.Shard, 100*h.Shard))
	}
	if l := shards(); l.Shards[1].State != "unknown" || l.Shards[1].Node != "a" {
		t.Errorf("held, not reported: %+v", l.Shards[1])
	}
	body := `{"shards":[` + strings.Join(held, ",") + `],"reports":[` + strings.Join(reports, ",") + `]}`
	if code, _ := beat("a", body); code != http.StatusOK {
		t.Fatalf("beat with reports: %d", code)
	}
	l := shards()
	for _, s := range l.Shards {
		if s.Holder != "node" || s.Node != "a" || s.State != "ready" || s.Guilds == nil || *s.Guilds != 2400+s.Shard ||
			s.LatencyMS == nil || *s.LatencyMS != 41.5 || s.Events != int64(100*s.Shard) || s.Identifies != 1 || s.ReportedAt.IsZero() {
			t.Errorf("shard %d: %+v", s.Shard, s)
		}
	}
	_, _, out := do(c, "GET", "/v1/guilds/81064793145933824", bearer(testTokens.Status), "", "")
	var g coordapi.GuildAnswer
	if err := json.Unmarshal([]byte(out), &g); err != nil || g.State != "ready" || g.Guilds == nil || *g.Guilds != 2400+g.Shard {
		t.Errorf("guild lookup: %s", out)
	}
	// 2400 guilds a shard is over the high-water mark: the planner grows.
	p, err := c.Planner(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.Reported != 4 || p.Guilds != 4*2400+6 || p.Action != "grow" {
		t.Errorf("planner: %+v", p)
	}

	// Another node's reports on a's shards are ignored.
	beat("b", `{"shards":[],"reports":[{"shard":0,"state":"stopped","guilds":1}]}`)
	if s := shards().Shards[0]; s.State != "ready" || s.Node != "a" {
		t.Errorf("a report from a node that does not hold the shard was taken: %+v", s)
	}
	// a stops reporting shard 3: its report goes.
	body = `{"shards":[` + strings.Join(held, ",") + `],"reports":[` + strings.Join(reports[:3], ",") + `]}`
	beat("a", body)
	if s := shards().Shards[o.Assign[3].Shard]; s.State != "unknown" || s.Guilds != nil {
		t.Errorf("a report a node stopped sending: %+v", s)
	}
	for _, bad := range []string{
		`{"shards":[],"reports":[{"shard":9,"state":"ready"}]}`,
		`{"shards":[],"reports":[{"shard":1,"state":"` + strings.Repeat("x", 40) + `"}]}`,
		`{"shards":[],"reports":[{"shard":1,"state":"ready","guilds":-1}]}`,
		`{"shards":[],"reports":[{"shard":1,"state":"ready","bogus":1}]}`,
	} {
		if code, _ := beat("c", bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}
