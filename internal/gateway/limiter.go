package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/discord"
)

// Errors of gateway commands.
var (
	// ErrPayloadTooLarge: a command over discord.MaxClientPayload bytes,
	// which Discord would answer by closing the connection with 4002.
	ErrPayloadTooLarge = fmt.Errorf("gateway: command larger than %d bytes", discord.MaxClientPayload)
	// ErrBadCommand: not a JSON gateway payload with an op a client may send.
	ErrBadCommand = errors.New("gateway: not a valid gateway command")
	// ErrNotConnected: the shard has no open, ready connection.
	ErrNotConnected = errors.New("gateway: shard not connected")
	// ErrNotOwned: this node does not run the shard.
	ErrNotOwned = errors.New("gateway: shard not on this node")
)

// SendLimit and SendWindow are Discord's limit on client payloads per
// connection; 4008 closes the connection past it.
const (
	SendLimit  = 120
	SendWindow = 60 * time.Second
	// SendReserve is how many of SendLimit are kept for heartbeats (regular
	// and requested) and IDENTIFY/RESUME; commands get the rest.
	SendReserve = 10
)

// SendLimiter is the pure sliding-window limiter of one connection: every
// payload counts; commands may use at most Limit-Reserve of the window.
type SendLimiter struct {
	Limit, Reserve int
	Window         time.Duration
	sent           []time.Time // ring of send times, oldest first
}

// NewSendLimiter returns Discord's limits.
func NewSendLimiter() *SendLimiter {
	return &SendLimiter{Limit: SendLimit, Reserve: SendReserve, Window: SendWindow}
}

func (l *SendLimiter) trim(now time.Time) {
	i := 0
	for i < len(l.sent) && !now.Before(l.sent[i].Add(l.Window)) {
		i++
	}
	if i > 0 {
		l.sent = append(l.sent[:0], l.sent[i:]...)
	}
}

// Allow reports whether a payload may be sent at now; command says whether
// it is a command (subject to the reserve). When it may, the send is
// counted. Otherwise it returns when to try again.
func (l *SendLimiter) Allow(now time.Time, command bool) (ok bool, retryAt time.Time) {
	l.trim(now)
	limit := l.Limit
	if command {
		limit -= l.Reserve
	}
	if len(l.sent) < limit {
		l.sent = append(l.sent, now)
		return true, time.Time{}
	}
	// The (len-limit+1)-th oldest send must leave the window first.
	return false, l.sent[len(l.sent)-limit].Add(l.Window)
}

// Reset forgets every send (a new connection).
func (l *SendLimiter) Reset() { l.sent = l.sent[:0] }
