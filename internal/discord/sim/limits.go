package sim

import "time"

// This file holds the pure rate-limit rules. Each type takes the current time
// as an argument and owns no clock, goroutine or lock; the server calls them
// under its mutex.

// identifyLimiter is the IDENTIFY concurrency rule: one accepted IDENTIFY per
// bucket (shard % max_concurrency) per interval, the window starting when an
// IDENTIFY is accepted.
type identifyLimiter struct {
	interval time.Duration
	slack    time.Duration     // an IDENTIFY this much early still passes
	last     map[int]time.Time // bucket → time of the last accepted IDENTIFY
}

func newIdentifyLimiter(interval, slack time.Duration) *identifyLimiter {
	return &identifyLimiter{interval: interval, slack: slack, last: map[int]time.Time{}}
}

// allow reports whether an IDENTIFY in bucket may be accepted at now. It
// does not record anything: call accept once the IDENTIFY is accepted.
func (l *identifyLimiter) allow(bucket int, now time.Time) bool {
	last, ok := l.last[bucket]
	return !ok || now.Sub(last) >= l.interval-l.slack
}

// accept starts bucket's window at now.
func (l *identifyLimiter) accept(bucket int, now time.Time) { l.last[bucket] = now }

// sessionBudget is the session-start limit: total starts per window; the
// window starts at the first start after a reset and refills at its end.
type sessionBudget struct {
	total     int
	window    time.Duration
	remaining int
	resetAt   time.Time // end of the running window; zero when none runs
}

func newSessionBudget(total int, window time.Duration) *sessionBudget {
	return &sessionBudget{total: total, window: window, remaining: total}
}

// roll ends the window if it is over at now.
func (b *sessionBudget) roll(now time.Time) {
	if !b.resetAt.IsZero() && !now.Before(b.resetAt) {
		b.remaining, b.resetAt = b.total, time.Time{}
	}
}

// state returns the starts left and the time until they refill, and whether
// a window runs (resetAfter is 0 when none does).
func (b *sessionBudget) state(now time.Time) (remaining int, resetAfter time.Duration, running bool) {
	b.roll(now)
	if b.resetAt.IsZero() {
		return b.remaining, 0, false
	}
	return b.remaining, b.resetAt.Sub(now), true
}

// spend takes one start at now and reports whether one was left.
func (b *sessionBudget) spend(now time.Time) bool {
	b.roll(now)
	if b.remaining <= 0 {
		return false
	}
	if b.resetAt.IsZero() {
		b.resetAt = now.Add(b.window)
	}
	b.remaining--
	return true
}

// sendWindow is the per-connection send limit: at most limit payloads in any
// sliding window of length window. It keeps the times of the last limit
// payloads in a ring.
type sendWindow struct {
	window time.Duration
	times  []time.Time // ring of the accepted payloads' times, oldest at head
	head   int
	n      int
}

func newSendWindow(limit int, window time.Duration) *sendWindow {
	return &sendWindow{window: window, times: make([]time.Time, limit)}
}

// allow records a payload at now and reports whether it stays within the
// limit: false means this payload is the limit+1-th within one window.
func (w *sendWindow) allow(now time.Time) bool {
	if len(w.times) == 0 {
		return false
	}
	if w.n < len(w.times) {
		w.times[(w.head+w.n)%len(w.times)] = now
		w.n++
		return true
	}
	if now.Sub(w.times[w.head]) < w.window {
		return false
	}
	w.times[w.head] = now
	w.head = (w.head + 1) % len(w.times)
	return true
}

// restLimiter is REST's global limit: limit requests per period per token,
// in fixed windows that start with the first request after the previous one
// ended (as Discord's X-RateLimit-Reset-After counts down).
type restLimiter struct {
	limit   int
	period  time.Duration
	windows map[string]*restWindow
}

type restWindow struct {
	start time.Time
	used  int
}

// restMaxKeys bounds the limiter's memory when clients send many tokens.
const restMaxKeys = 4096

func newRESTLimiter(limit int, period time.Duration) *restLimiter {
	return &restLimiter{limit: limit, period: period, windows: map[string]*restWindow{}}
}

// take counts one request for key at now. It returns whether the request is
// allowed, the requests left in the window and the time until it resets.
func (l *restLimiter) take(key string, now time.Time) (ok bool, remaining int, resetAfter time.Duration) {
	w := l.windows[key]
	if w == nil || now.Sub(w.start) >= l.period {
		if w == nil {
			if len(l.windows) >= restMaxKeys {
				l.prune(now)
			}
			w = &restWindow{}
			l.windows[key] = w
		}
		w.start, w.used = now, 0
	}
	resetAfter = w.start.Add(l.period).Sub(now)
	if w.used >= l.limit {
		return false, 0, resetAfter
	}
	w.used++
	return true, l.limit - w.used, resetAfter
}

// prune drops ended windows, or all of them if none has ended.
func (l *restLimiter) prune(now time.Time) {
	for k, w := range l.windows {
		if now.Sub(w.start) >= l.period {
			delete(l.windows, k)
		}
	}
	if len(l.windows) >= restMaxKeys {
		clear(l.windows)
	}
}
