package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// apiServer is the HTTP server of the coordinator's API and dashboard,
// for every command that serves them. Requests live in base, so that at
// shutdown the identify requests still waiting in the queue end at once
// instead of holding Shutdown up.
//
// There is no ReadTimeout or WriteTimeout: identify requests wait in the
// queue, the push channel and the dashboard's streams stay open, and
// net/http cancels a request's context when its read deadline passes.
// Slow or idle clients are bounded instead by ReadHeaderTimeout (a request
// must arrive whole within it), IdleTimeout (a keep-alive connection with
// no request is closed) and the caps on streams and push channels.
func apiServer(h http.Handler, base context.Context, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
}
