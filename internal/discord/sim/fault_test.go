package sim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseFault(t *testing.T) {
	tests := []struct {
		in      string
		want    Fault
		errPart string // "" for success
	}{
		{`{"kind":"reconnect","delay":"1.5s","code":4000}`, Fault{Kind: FaultReconnect, Delay: Duration(1500 * time.Millisecond), Code: 4000}, ""},
		{`{"kind":"latency","delay":300}`, Fault{Kind: FaultLatency, Delay: Duration(300 * time.Millisecond)}, ""},
		{`{"kind":"guild_outage","shards":[0,1],"num_shards":2,"guilds":3,"duration":"2s"}`,
			Fault{Kind: FaultGuildOutage, Shards: []int{0, 1}, NumShards: 2, Guilds: 3, Duration: Duration(2 * time.Second)}, ""},
		{`{"kind":"silence","event_type":"MESSAGE_CREATE"}`, Fault{Kind: FaultSilence, EventType: "MESSAGE_CREATE"}, ""},
		{`{"kind":"invalid_session","resumable":true}`, Fault{Kind: FaultInvalidSession, Resumable: true}, ""},
		{`{"kind":"nope"}`, Fault{}, `kind "nope" is unknown`},
		{`{"kind":"close","code":999}`, Fault{}, "code 999"},
		{`{"kind":"close","colour":1}`, Fault{}, "unknown field"},
		{`{"kind":"latency"}`, Fault{}, "positive delay"},
		{`{"kind":"latency","delay":"soon"}`, Fault{}, "bad duration"},
		{`{"kind":"silence","event_type":"message create"}`, Fault{}, "event_type"},
		{`{"kind":"silence","event_type":"MESSAGE_CREATE","until_resume":true}`, Fault{Kind: FaultSilence, EventType: "MESSAGE_CREATE", UntilResume: true}, ""},
		{`{"kind":"latency","delay":300,"until_resume":true}`, Fault{}, "silence only"},
		{`{"kind":"drop","shards":[3],"num_shards":2}`, Fault{}, "out of range"},
		{`{"kind":"drop","shards":[-1]}`, Fault{}, "out of range"},
		{`{"kind":"zombie","duration":"-1s"}`, Fault{}, "negative"},
		{`{"kind":"drop"} {}`, Fault{}, "trailing"},
		{``, Fault{}, "EOF"},
	}
	for _, tt := range tests {
		got, err := ParseFault([]byte(tt.in))
		switch {
		case tt.errPart == "" && err != nil:
			t.Errorf("ParseFault(%s) = %v", tt.in, err)
		case tt.errPart != "" && (err == nil || !errors.Is(err, ErrBadFault) || !strings.Contains(err.Error(), tt.errPart)):
			t.Errorf("ParseFault(%s) error = %v, want ErrBadFault saying %q", tt.in, err, tt.errPart)
		case tt.errPart == "":
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseFault(%s) mismatch (-want +got):\n%s", tt.in, diff)
			}
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Fault{Kind: FaultLatency, Delay: Duration(1500 * time.Millisecond)})
	if err != nil || !strings.Contains(string(b), `"delay":"1.5s"`) {
		t.Errorf("Marshal = %s, %v; want delay \"1.5s\"", b, err)
	}
	var back Fault
	if err := json.Unmarshal(b, &back); err != nil || back.Delay != Duration(1500*time.Millisecond) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
}

func TestShardFaultMatches(t *testing.T) {
	tests := []struct {
		f            shardFault
		shard, n     int
		want, active bool
	}{
		{shardFault{}, 3, 8, true, true},
		{shardFault{}, -1, 0, true, true},
		{shardFault{shards: []int{3}}, 3, 8, true, true},
		{shardFault{shards: []int{3}}, 2, 8, false, true},
		{shardFault{shards: []int{3}}, -1, 0, false, true},
		{shardFault{numShards: 4}, 3, 8, false, true},
		{shardFault{numShards: 8, until: t0.Add(time.Second)}, 3, 8, true, true},
		{shardFault{until: t0}, 3, 8, true, false},
	}
	for i, tt := range tests {
		if got := tt.f.matches(tt.shard, tt.n); got != tt.want {
			t.Errorf("case %d: matches(%d, %d) = %v, want %v", i, tt.shard, tt.n, got, tt.want)
		}
		if got := tt.f.active(t0); got != tt.active {
			t.Errorf("case %d: active = %v, want %v", i, got, tt.active)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"negative guilds":        {Guilds: -1},
		"NaN rate":               {EventRate: nan()},
		"bad heartbeat code":     {HeartbeatTimeoutCode: 1006},
		"non-privileged refused": {DisallowedIntents: 1},
		"unknown compression":    {CompressDefault: "gzip"},
		"unknown policy":         {Exhausted: "explode"},
		"too many guilds":        {Guilds: maxGuilds + 1},
	} {
		if _, err := cfg.withDefaults(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: withDefaults() = %v, want ErrConfig", name, err)
		}
	}
	c, err := Config{Guilds: 6001, ShardMultiple: 4}.withDefaults()
	if err != nil || c.Shards != 8 || c.HeartbeatTimeout != c.HeartbeatInterval*3/2 || c.Token != "sim-token" {
		t.Errorf("defaults = shards %d timeout %v token %q, %v; want 8 (7 rounded to 4), 1.5 × interval, sim-token", c.Shards, c.HeartbeatTimeout, c.Token, err)
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}
