package gateway

import (
	"testing"
	"time"
)

func TestDbgZlib(t *testing.T) {
	cfg := testSimConfig()
	cfg.Guilds = 2
	cfg.Shards = 1
	cfg.EventRate = 20
	_, api := startSim(t, cfg)
	b := newMemBroker(t)
	nc := testNodeConfig(t, api, b)
	_, stop := runNode(t, nc)
	time.Sleep(1500 * time.Millisecond)
	stop()
}
