package gateway

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// A transcript drives a Machine with a list of steps written as text and
// records, per step, the state after it and the actions it produced.
//
//	start                 Start
//	connected             Connected
//	dialfail              DialFailed
//	recv <payload json>   Receive
//	grant                 IdentifyGranted
//	closed <code>         Closed with a close frame (0: no close frame)
//	tick                  Tick
//	stop                  Stop
//	+<duration>           advance the clock
type transcript struct {
	name   string
	resume Session
	steps  []string
	want   []string // "<state>: <actions>" per step that is not a clock move
	check  func(t *testing.T, m *Machine)
	// noCompare skips the comparison with want (the test checks the
	// machine afterwards).
	noCompare bool
}

func runTranscript(t *testing.T, tc transcript) *Machine {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	m := NewMachine(MachineConfig{
		Shard: 1, NumShards: 4, Token: "tok", Intents: discord.IntentGuilds, GatewayURL: "wss://gw",
		HelloTimeout: 10 * time.Second, ReadyTimeout: 20 * time.Second,
		BackoffMin: time.Second, BackoffMax: 8 * time.Second,
		Rand: func() float64 { return 0.5 },
	}, tc.resume)
	var got []string
	for _, step := range tc.steps {
		verb, arg, _ := strings.Cut(step, " ")
		var acts []Action
		switch {
		case strings.HasPrefix(step, "+"):
			d, err := time.ParseDuration(step[1:])
			if err != nil {
				t.Fatal(err)
			}
			now = now.Add(d)
			continue
		case verb == "start":
			acts = m.Start(now, nil)
		case verb == "connected":
			m.Connected(now)
		case verb == "dialfail":
			acts = m.DialFailed(now, errors.New("refused"), nil)
		case verb == "recv":
			h, err := discord.ScanHeader([]byte(arg))
			if err != nil {
				t.Fatalf("step %q: %v", step, err)
			}
			acts = m.Receive(now, h, []byte(arg), nil)
		case verb == "grant":
			acts = m.IdentifyGranted(now, nil)
		case verb == "paused":
			acts = m.ReaderPaused(now, nil)
		case verb == "closed":
			var code int
			fmt.Sscan(arg, &code)
			var err error = errors.New("EOF")
			if code != 0 {
				err = &discord.CloseError{Code: discord.CloseCode(code)}
			}
			acts = m.Closed(now, err, nil)
		case verb == "tick":
			acts = m.Tick(now, nil)
		case verb == "stop":
			acts = m.Stop(now, nil)
		default:
			t.Fatalf("unknown step %q", step)
		}
		got = append(got, m.State().String()+": "+describe(acts))
	}
	if diff := cmp.Diff(tc.want, got); diff != "" && !tc.noCompare {
		t.Errorf("%s: transcript mismatch (-want +got):\n%s", tc.name, diff)
	}
	if tc.check != nil {
		tc.check(t, m)
	}
	return m
}

func describe(acts []Action) string {
	var parts []string
	for _, a := range acts {
		switch a.Kind {
		case ActDial:
			parts = append(parts, "dial "+a.URL)
		case ActSend:
			h, _ := discord.ScanHeader(a.Payload)
			s := fmt.Sprintf("send op%d", h.Op)
			if h.Op == discord.OpHeartbeat || h.Op == discord.OpResume {
				s += " " + string(h.D)
			}
			parts = append(parts, s)
		case ActClose:
			parts = append(parts, fmt.Sprintf("close %d", a.Code))
		case ActRequestIdentify:
			parts = append(parts, "gate")
		case ActSessionChanged:
			parts = append(parts, "persist")
		case ActStop:
			parts = append(parts, "stop")
		case ActIdentified:
			parts = append(parts, "identified")
		}
	}
	if parts == nil {
		return "-"
	}
	return strings.Join(parts, ", ")
}

const (
	hello    = `recv {"t":null,"s":null,"op":10,"d":{"heartbeat_interval":1000}}`
	hbAck    = `recv {"t":null,"s":null,"op":11,"d":null}`
	ready    = `recv {"t":"READY","s":1,"op":0,"d":{"session_id":"S1","resume_gateway_url":"wss://resume"}}`
	resumed  = `recv {"t":"RESUMED","s":6,"op":0,"d":{}}`
	msg2     = `recv {"t":"MESSAGE_CREATE","s":2,"op":0,"d":{"guild_id":"1"}}`
	reconn   = `recv {"t":null,"s":null,"op":7,"d":null}`
	invFalse = `recv {"t":null,"s":null,"op":9,"d":false}`
	invTrue  = `recv {"t":null,"s":null,"op":9,"d":true}`
	hbReq    = `recv {"t":null,"s":null,"op":1,"d":null}`
)

func TestMachineTranscripts(t *testing.T) {
	resumable := Session{ID: "S0", Seq: 5, ResumeURL: "wss://resume"}
	for _, tc := range []transcript{
		{
			name:  "identify, ready, heartbeat with hbAck",
			steps: []string{"start", "connected", hello, "grant", ready, msg2, "+500ms", "tick", hbAck, "+1s", "tick"},
			want: []string{
				"connecting: dial wss://gw", "connecting: -", "identifying: gate", "authenticating: send op2",
				"ready: identified, persist", "ready: -", "ready: send op1 2", "ready: -", "ready: send op1 2",
			},
			check: func(t *testing.T, m *Machine) {
				if m.Session() != (Session{ID: "S1", Seq: 2, ResumeURL: "wss://resume"}) {
					t.Errorf("session %+v", m.Session())
				}
			},
		},
		{
			name:   "saved session resumes without the gate",
			resume: resumable,
			steps:  []string{"start", "connected", hello, resumed},
			want:   []string{"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`, "ready: -"},
		},
		{
			name:  "zombie: no hbAck and nothing heard, close resumable and resume at once",
			steps: []string{"start", "connected", hello, "grant", ready, "+500ms", "tick", "+1s", "tick", "closed 0", "tick", "connected", hello},
			want: []string{
				"connecting: dial wss://gw", "connecting: -", "identifying: gate", "authenticating: send op2", "ready: identified, persist",
				"ready: send op1 1", "ready: close 4000", "waiting: -", "connecting: dial wss://resume", "connecting: -",
				`resuming: send op6 {"token":"tok","session_id":"S1","seq":1}`,
			},
		},
		{
			name:  "a dispatch since the beat counts as liveness",
			steps: []string{"start", "connected", hello, "grant", ready, "+500ms", "tick", msg2, "+1s", "tick"},
			want: []string{
				"connecting: dial wss://gw", "connecting: -", "identifying: gate", "authenticating: send op2", "ready: identified, persist",
				"ready: send op1 1", "ready: -", "ready: send op1 2",
			},
		},
		{
			name:  "a reader held by the broker's back-pressure is not a zombie",
			steps: []string{"start", "connected", hello, "grant", ready, "+500ms", "tick", "+1s", "paused", "tick", "+1s", "tick"},
			want: []string{
				"connecting: dial wss://gw", "connecting: -", "identifying: gate", "authenticating: send op2", "ready: identified, persist",
				"ready: send op1 1", "ready: -", "ready: send op1 1", "ready: close 4000",
			},
		},
		{
			name:   "op 7 closes with a resumable code and resumes",
			resume: resumable,
			steps:  []string{"start", "connected", hello, resumed, reconn, "closed 4000", "tick"},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`, "ready: -",
				"ready: close 4000", "waiting: -", "connecting: dial wss://resume",
			},
		},
		{
			name:   "op 9 false drops the session and identifies after 1-5s",
			resume: resumable,
			steps:  []string{"start", "connected", hello, invFalse, "closed 4000", "+2s", "tick", "+1s", "tick", "connected", hello},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`,
				"resuming: close 4000", "waiting: persist", "waiting: -", "connecting: dial wss://gw", "connecting: -", "identifying: gate",
			},
		},
		{
			name:   "op 9 true resumes",
			resume: resumable,
			steps:  []string{"start", "connected", hello, resumed, invTrue, "closed 4000", "+3s", "tick"},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`, "ready: -",
				"ready: close 4000", "waiting: -", "connecting: dial wss://resume",
			},
		},
		{
			name:   "op 1 is answered at once",
			resume: resumable,
			steps:  []string{"start", "connected", hello, resumed, hbReq},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`, "ready: -",
				"ready: send op1 6",
			},
		},
		{
			name:   "fatal close codes stop the shard",
			resume: resumable,
			steps:  []string{"start", "connected", hello, "closed 4004", "tick"},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`,
				"stopped: stop", "stopped: -",
			},
		},
		{
			name:   "4007 re-identifies after backoff, 1006 resumes",
			resume: resumable,
			steps:  []string{"start", "connected", "closed 0", "+1s", "tick", "connected", "closed 4007", "+2s", "tick"},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", "waiting: -", "connecting: dial wss://resume", "connecting: -",
				"waiting: persist", "connecting: dial wss://gw",
			},
		},
		{
			name:  "hello timeout and dial failures back off, doubling",
			steps: []string{"start", "dialfail", "+749ms", "tick", "+1ms", "tick", "dialfail", "+1500ms", "tick", "connected", "+10s", "tick"},
			want: []string{
				// 1s then 2s, with jitter over the upper half (Rand 0.5: 0.75s, 1.5s).
				"connecting: dial wss://gw", "waiting: -", "waiting: -", "connecting: dial wss://gw", "waiting: -",
				"connecting: dial wss://gw", "connecting: -", "connecting: close 4000",
			},
		},
		{
			name:   "stop closes with a resumable code, never 1000",
			resume: resumable,
			steps:  []string{"start", "connected", hello, resumed, "stop", "closed 4000", "tick"},
			want: []string{
				"connecting: dial wss://resume", "connecting: -", `resuming: send op6 {"token":"tok","session_id":"S0","seq":5}`, "ready: -",
				"stopped: close 4000, stop", "stopped: -", "stopped: -",
			},
		},
		{
			name:  "a grant after the connection closed is ignored",
			steps: []string{"start", "connected", hello, "closed 0", "grant"},
			want:  []string{"connecting: dial wss://gw", "connecting: -", "identifying: gate", "waiting: -", "waiting: -"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runTranscript(t, tc) })
	}
}

func TestSendLimiterReserve(t *testing.T) {
	l := &SendLimiter{Limit: 5, Reserve: 2, Window: time.Minute}
	t0 := time.Unix(0, 0)
	for i := range 3 {
		if ok, _ := l.Allow(t0.Add(time.Duration(i)*time.Second), true); !ok {
			t.Fatalf("command %d refused", i)
		}
	}
	ok, retry := l.Allow(t0.Add(3*time.Second), true)
	if ok || !retry.Equal(t0.Add(time.Minute)) {
		t.Errorf("4th command: ok=%v retry=%v, want refused until +1m", ok, retry.Sub(t0))
	}
	for i := range 2 {
		if ok, _ := l.Allow(t0.Add(3*time.Second), false); !ok {
			t.Errorf("heartbeat %d refused: the reserve is for them", i)
		}
	}
	// At +63s the sends of +0s..+3s have left the window.
	if ok, _ := l.Allow(t0.Add(63*time.Second), true); !ok {
		t.Error("command refused after the window moved")
	}
}

// TestMachineOffline: a ready shard that loses its connection is
// reconnecting, not offline, until an attempt to get back fails; it is
// back online at RESUMED.
func TestMachineOffline(t *testing.T) {
	resumable := Session{ID: "S0", Seq: 5, ResumeURL: "wss://resume"}
	for _, tc := range []struct {
		steps []string
		want  bool
	}{
		{[]string{"start"}, false}, // never ready: starting
		{[]string{"start", "dialfail"}, false},
		{[]string{"start", "connected", hello, resumed}, false},
		{[]string{"start", "connected", hello, resumed, "closed 0", "+1s", "tick"}, false},
		{[]string{"start", "connected", hello, resumed, "closed 0", "+1s", "tick", "dialfail"}, true},
		{[]string{"start", "connected", hello, resumed, "closed 0", "+1s", "tick", "connected", hello, "closed 4000"}, true},
		{[]string{"start", "connected", hello, resumed, "closed 0", "+1s", "tick", "dialfail", "+4s", "tick", "connected", hello, resumed}, false},
	} {
		m := runTranscript(t, transcript{name: strings.Join(tc.steps, ","), resume: resumable, steps: tc.steps, want: nil, noCompare: true})
		if got := m.Offline(); got != tc.want {
			t.Errorf("%v: Offline() = %v, want %v", tc.steps, got, tc.want)
		}
	}
}
