package natsbroker

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// authServer runs an embedded server that admits the default identities.
func authServer(t *testing.T) (*Broker, Credentials) {
	t.Helper()
	creds := Credentials{Dir: t.TempDir()}
	users, err := MakeCredentials(creds.Dir, DefaultIDs())
	if err != nil {
		t.Fatal(err)
	}
	srv := openTest(t, Config{Listen: "127.0.0.1:0", Users: users, NKeyFile: creds.Seed("stack")})
	return srv, creds
}

// violations connects as name and records the server's permission errors.
func violations(t *testing.T, url, seed string) (*nats.Conn, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var errs []string
	opt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opt, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		errs = append(errs, err.Error())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, func() []string {
		nc.Flush()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// TestRolesMayDoTheirWork: each identity does what its part needs, through
// the broker's own code.
func TestRolesMayDoTheirWork(t *testing.T) {
	srv, creds := authServer(t)
	ctx := testCtx(t)
	coord := openTest(t, Config{URL: srv.ClientURL(), NKeyFile: creds.Seed("coordinator"), Manage: true, LiveTTL: 2 * time.Second})
	if _, err := coord.Control().Create(ctx, "lease.4.0", []byte(`{}`)); err != nil {
		t.Errorf("coordinator writes a lease record: %v", err)
	}
	if _, err := coord.Live().Create(ctx, "leader", []byte(`{}`)); err != nil {
		t.Errorf("coordinator takes the leadership: %v", err)
	}
	if _, err := coord.Consumers(ctx); err != nil {
		t.Errorf("coordinator lists consumers: %v", err)
	}
	node := openTest(t, Config{URL: srv.ClientURL(), NKeyFile: creds.Seed("node")})
	publishWait(t, node, newBatch(node, 1, "MESSAGE_CREATE", "s", 1, "x"))
	if err := node.SaveSession(ctx, broker.SessionState{Shard: 1, NumShards: 4, SessionID: "s", Seq: 1, Lease: 7}); err != nil {
		t.Errorf("node saves a session: %v", err)
	}
	if _, err := node.LastBatch(ctx, 1); err != nil {
		t.Errorf("node reads its last batch: %v", err)
	}
	if _, err := node.Live().Create(ctx, "node.a", []byte(`{}`)); err != nil {
		t.Errorf("node writes its liveness record: %v", err)
	}
	ch, err := node.Live().Watch(ctx, "node.a")
	if err != nil {
		t.Fatalf("node watches its liveness record: %v", err)
	}
	if e := <-ch; e.Key != "node.a" {
		t.Errorf("node's watch: %+v", e)
	}
	for _, name := range []string{"worker", "tail"} {
		nc, errs := violations(t, srv.ClientURL(), creds.Seed(name))
		js, _ := jetstream.New(nc)
		st, err := js.Stream(ctx, DefaultStream)
		if err != nil {
			t.Fatalf("%s binds the stream: %v", name, err)
		}
		cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("%s creates its consumer: %v", name, err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("%s fetches: %v", name, err)
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Errorf("%s acks: %v", name, err)
			}
		}
		if _, err := st.ResetConsumer(ctx, name); err != nil {
			t.Errorf("%s resets its consumer (Exclusive): %v", name, err)
		}
		if v := errs(); len(v) > 0 {
			t.Errorf("%s: permission errors doing its work: %v", name, v)
		}
	}
}

// TestRolesMayNotForge: no identity can do what another's part is: a
// worker or a read-only tool cannot publish events, send commands (tail)
// or write any bucket; a coordinator cannot publish events or send
// commands; a node cannot write the coordinators' state or the
// leadership.
func TestRolesMayNotForge(t *testing.T) {
	srv, creds := authServer(t)
	forbidden := map[string][]string{
		"worker":      {"gatehouse.ev.0.0.MESSAGE_CREATE", "$KV.gatehouse_ctl.lease.8.0", "$KV.gatehouse_sessions.8.0", "$KV.gatehouse_live.leader", "$KV.gatehouse_live.node.a", "$JS.API.STREAM.DELETE.GATEHOUSE_EVENTS"},
		"tail":        {"gatehouse.ev.0.0.MESSAGE_CREATE", "gatehouse.cmd.0", "$KV.gatehouse_ctl.lease.8.0", "$JS.API.STREAM.PURGE.GATEHOUSE_EVENTS"},
		"coordinator": {"gatehouse.ev.0.0.MESSAGE_CREATE", "gatehouse.cmd.0", "$KV.gatehouse_sessions.8.0", "$KV.gatehouse_live.node.a"},
		"node":        {"$KV.gatehouse_ctl.lease.8.0", "$KV.gatehouse_live.leader", "$JS.API.STREAM.DELETE.GATEHOUSE_EVENTS", "gatehouse.ctl.view"},
	}
	for name, subjects := range forbidden {
		nc, errs := violations(t, srv.ClientURL(), creds.Seed(name))
		for _, subj := range subjects {
			if err := nc.Publish(subj, []byte(`{"forged":true}`)); err != nil {
				t.Fatal(err)
			}
		}
		got := strings.Join(errs(), "\n")
		for _, subj := range subjects {
			if !strings.Contains(got, "Permissions Violation for Publish to \""+subj+"\"") {
				t.Errorf("%s published to %s unrefused; errors: %s", name, subj, got)
			}
		}
	}
	// The stream holds no forged event.
	info, err := srv.stream.Info(testCtx(t))
	if err != nil || info.State.Msgs != 0 {
		t.Errorf("stream: %d messages (%v), want none", info.State.Msgs, err)
	}
}

// TestRefusedCredentials: a process without credentials, or with a seed
// the broker does not know, is told clearly.
func TestRefusedCredentials(t *testing.T) {
	srv, _ := authServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	other := Credentials{Dir: t.TempDir()}
	if _, err := MakeCredentials(other.Dir, map[string][]Role{"stranger": {RoleWorker}}); err != nil {
		t.Fatal(err)
	}
	for name, seed := range map[string]string{"no credentials": "", "an unknown key": other.Seed("stranger")} {
		_, err := Open(ctx, Config{URL: srv.ClientURL(), NKeyFile: seed})
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "-nats-nkey") {
			t.Errorf("%s: %v, want ErrAuth saying what to pass", name, err)
		}
	}
}

// TestMakeCredentialsKeepsSeeds: making credentials again keeps the
// seeds that exist and their public keys; seeds are private files.
func TestMakeCredentialsKeepsSeeds(t *testing.T) {
	dir := t.TempDir()
	a, err := MakeCredentials(dir, DefaultIDs())
	if err != nil {
		t.Fatal(err)
	}
	b, err := MakeCredentials(dir, map[string][]Role{"worker-eu": {RoleWorker}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(a)+1 {
		t.Fatalf("%d users after adding one to %d", len(b), len(a))
	}
	for _, u := range a {
		found := false
		for _, v := range b {
			found = found || (v.Name == u.Name && v.NKey == u.NKey)
		}
		if !found {
			t.Errorf("%s's key changed", u.Name)
		}
	}
	st, err := statMode(Credentials{Dir: dir}.Seed("node"))
	if err != nil || st&0o077 != 0 {
		t.Errorf("seed mode %o (%v), want readable by its owner only", st, err)
	}
	if users, err := LoadUsers(Credentials{Dir: dir}.UsersFile()); err != nil || len(users) != len(b) {
		t.Errorf("users file: %d users, %v", len(users), err)
	}
}

func statMode(path string) (os.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Mode().Perm(), nil
}
