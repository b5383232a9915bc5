package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/client"
	"github.com/nats-io/nats.go/jetstream"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	return ports
}

// startCluster runs three embedded servers as one cluster, every stream
// and bucket at three replicas.
func startCluster(t *testing.T) ([]*Broker, Credentials) {
	t.Helper()
	creds := Credentials{Dir: t.TempDir()}
	users, err := MakeCredentials(creds.Dir, DefaultIDs())
	if err != nil {
		t.Fatal(err)
	}
	secret, err := creds.ClusterSecret()
	if err != nil {
		t.Fatal(err)
	}
	routes := freePorts(t, 3)
	nodes := make([]*Broker, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			var rs []string
			for j, p := range routes {
				if j != i {
					rs = append(rs, fmt.Sprintf("nats://127.0.0.1:%d", p))
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			nodes[i], errs[i] = Open(ctx, Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Users: users, NKeyFile: creds.Seed("coordinator"),
				Cluster: fmt.Sprintf("127.0.0.1:%d", routes[i]), Routes: rs, ClusterSecret: secret, Replicas: 3, LiveTTL: 5 * time.Second})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("cluster node %d: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for i := range nodes {
		t.Cleanup(func() { nodes[i].Close() })
	}
	return nodes, creds
}

// TestCluster: three nodes form a cluster with every stream and bucket at
// three replicas; one dies and the others go on serving publishes and
// compare-and-set writes; a process that would lower the replicas is
// refused.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three servers")
	}
	nodes, creds := startCluster(t)
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL()
	}
	info, err := nodes[0].stream.Info(testCtx(t))
	if err != nil || info.Config.Replicas != 3 {
		t.Fatalf("stream replicas %d (%v), want 3", info.Config.Replicas, err)
	}
	for _, kv := range []*KV{nodes[0].Control(), nodes[0].Live()} {
		st, err := kv.kv.Status(testCtx(t))
		if err != nil || st.Config().Replicas != 3 {
			t.Errorf("bucket %s replicas (%v), want 3", kv.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = Open(ctx, Config{URL: strings.Join(urls, ","), NKeyFile: creds.Seed("coordinator"), Manage: true, Replicas: 1})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "refusing to lower") {
		t.Errorf("a manager asking for 1 replica: %v, want a refusal to lower them", err)
	}
	node := openTest(t, Config{URL: strings.Join(urls, ","), NKeyFile: creds.Seed("node")})
	publishWait(t, node, newBatch(node, 1, "MESSAGE_CREATE", "s", 1, "x"))
	// A worker acks through any node of the cluster.
	nc, errs := violations(t, strings.Join(urls, ","), creds.Seed("worker"))
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, DefaultStream, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	st0, _ := js.Stream(ctx, DefaultStream)
	if _, err := st0.ResetConsumer(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.Ack(); err != nil {
			t.Errorf("ack in the cluster: %v (%v)", err, errs())
		}
	}
	time.Sleep(500 * time.Millisecond)
	if ci, err := cons.Info(ctx); err != nil || ci.AckFloor.Stream != 1 || ci.NumAckPending != 0 {
		t.Errorf("after the ack: floor %+v, %d pending (%v); errors %v", ci.AckFloor, ci.NumAckPending, err, errs())
	}
	// A bot worker consuming while events arrive acknowledges every batch:
	// none is delivered into an inbox nobody reads (which would hold the
	// acknowledgement floor back until AckWait).
	pctx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; pctx.Err() == nil; i++ {
			node.Publish(pctx, newBatch(node, i%8, "MESSAGE_CREATE", "s", int64(i+2), `{"op":0,"s":1,"t":"MESSAGE_CREATE","d":{"guild_id":"1"}}`), nil)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wc, err := client.Connect(ctx, client.Config{URL: strings.Join(urls, ","), NKeyFile: creds.Seed("worker"), Consumer: "bot", Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopConsume := context.WithTimeout(ctx, 3*time.Second)
	wc.Consume(cctx, func(context.Context, *client.Event) error { return nil })
	stopConsume()
	stopPub()
	<-pubDone
	wc.Close()
	bot, err := nodes[0].js.Consumer(ctx, DefaultStream, "bot")
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := bot.Info(ctx); err != nil || ci.NumRedelivered != 0 || ci.AckFloor.Consumer+uint64(ci.NumAckPending) < ci.Delivered.Consumer || ci.AckFloor.Stream < 100 {
		t.Errorf("the worker's consumer: ack floor %+v, %d pending, %d redelivered, delivered %+v (%v): batches were lost to nobody", ci.AckFloor, ci.NumAckPending, ci.NumRedelivered, ci.Delivered, err)
	}
	nodes[2].Close() // one node of three dies
	publishWait(t, node, newBatch(node, 1, "MESSAGE_CREATE", "s", 1, "x"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := node.Live().Create(ctx, fmt.Sprintf("node.n%d", time.Now().UnixNano()), []byte(`{}`))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a liveness write with one node of three down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
