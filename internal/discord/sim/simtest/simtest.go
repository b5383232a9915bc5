// Package simtest runs a Discord simulator on a loopback port for the
// duration of a test, as net/http/httptest does for HTTP servers.
package simtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord/sim"
)

// Start runs a simulator configured by cfg on 127.0.0.1:0 until the test
// ends, then shuts it down and waits for it. It returns the server and its
// base URL, http://127.0.0.1:PORT; the REST API is under base + "/api/v10".
func Start(t testing.TB, cfg sim.Config) (*sim.Server, string) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("simulator shutdown: %v", err)
		}
		<-done
	})
	return s, "http://" + ln.Addr().String()
}
