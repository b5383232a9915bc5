package coord

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// TestPlannerAndLookup: Shardman workers report guild counts; the planner
// advises growing when one shard passes the high-water mark; the guild
// lookup names who holds the shard.
func TestPlannerAndLookup(t *testing.T) {
	c := newTest(t, func(c *Config) { c.ShardCount = 2; c.MaxConcurrency = 1; c.Recommended = 2 })
	var ids []string
	for range 2 {
		_, _, body := do(c, "GET", "/connect", testTokens.Worker, "", "")
		var a struct {
			SessionID string `json:"session_id"`
		}
		json.Unmarshal([]byte(body), &a)
		ids = append(ids, a.SessionID)
	}
	for i, n := range []string{"2400", "900"} {
		if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json",
			`{"session_id":"`+ids[i]+`","guild_count":`+n+`,"latency":0.1}`); code != 204 {
			t.Fatalf("beat: %d %s", code, body)
		}
	}
	code, _, body := do(c, "GET", "/v1/planner", bearer(testTokens.Status), "", "")
	var p coordapi.PlannerState
	if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil {
		t.Fatalf("planner: %d %s", code, body)
	}
	if p.Action != "grow" || !p.Reshard || p.Target <= 2 || p.Guilds != 3300 || p.Reported != 2 || !strings.Contains(p.Reason, "2,400") {
		t.Errorf("planner advice: %+v", p)
	}
	code, _, body = do(c, "GET", "/v1/guilds/81384788765712384", bearer(testTokens.Status), "", "")
	if code != 200 || !strings.Contains(body, `"worker":"shardman"`) {
		t.Errorf("lookup: %d %s, want the Shardman worker named", code, body)
	}
	if code, _, body := do(c, "POST", "/beat", testTokens.Worker, "application/json",
		`{"session_id":"`+ids[0]+`","guild_count":2000000,"latency":0.1}`); code != 422 {
		t.Errorf("absurd guild count: %d %s, want 422", code, body)
	}
}
