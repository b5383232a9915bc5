package coord

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/identify"
)

// twilightBody is the original service's answer, byte for byte.
const twilightBody = `{"message": "You're free to connect now! :)"}`

// twilightQueue is twilight's gateway-queue, at /queue and at / (twilight's
// example client calls GET /?shard=N), any method, body ignored.
//
// Its clients treat any answer at all as permission to identify, so it
// never answers before the grant: a missing or unreadable shard is shard
// 0, as in the original; a spent session-start budget holds the request
// until the budget resets; and a request without the right token (unless
// -queue-open) has its connection closed with no answer, which the client
// retries instead of identifying.
func (c *Coordinator) twilightQueue(w http.ResponseWriter, r *http.Request) error {
	if !c.cfg.QueueOpen {
		if _, err := c.authorize(r, RoleWorker); err != nil {
			c.log.Warn("gateway-queue request refused; closing it without an answer", "from", clientIP(r), "err", err)
			abort(w)
			return nil
		}
	}
	shard, err := strconv.Atoi(r.URL.Query().Get("shard"))
	if err != nil || shard < 0 || shard >= maxShards {
		shard = 0
	}
	for {
		err := c.waitIdentify(r.Context(), shard, true) // its clients report no READY
		if err == nil {
			break
		}
		if r.Context().Err() != nil || errors.Is(err, ErrUnavailable) {
			abort(w) // the client left, or asks again elsewhere
			return nil
		}
		if !errors.Is(err, identify.ErrBudgetExhausted) {
			abort(w)
			return nil
		}
		// Hold the request until the budget resets (Discord's figures
		// arrive with the next refresh), checking every minute.
		wait := min(time.Until(c.gateNow().Snapshot().ResetAt), time.Minute)
		if !sleepCtx(r.Context(), max(wait, time.Second)) {
			return nil
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(twilightBody))
	return nil
}

// abort ends a request with no answer at all: the connection is closed.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http closes the connection quietly
}

// sleepCtx waits d or until ctx ends, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
