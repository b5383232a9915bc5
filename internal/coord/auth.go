package coord

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Role is what a credential may do. Each role includes the ones below it:
// admin may do everything; a node may do what a worker may; a worker may
// read status; status may only read.
type Role int

// Roles, weakest first.
const (
	RoleNone   Role = iota
	RoleStatus      // read-only: status, shards, queue state
	RoleWorker      // bot processes: Shardman, glance, the identify queue
	RoleNode        // gateway nodes: the identify queue, node reports
	RoleAdmin       // everything, including commands
)

func (r Role) String() string {
	switch r {
	case RoleStatus:
		return "status"
	case RoleWorker:
		return "worker"
	case RoleNode:
		return "node"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// allows reports whether a credential of role r may act as need: roles
// are ordered, each including the ones below it.
func (r Role) allows(need Role) bool { return r != RoleNone && r >= need }

// Tokens are the shared secrets of each role. An empty token disables its
// role; Admin is required.
type Tokens struct {
	Admin, Node, Worker, Status string
}

// keyring compares presented credentials with the configured tokens in
// constant time (on their SHA-256, so lengths leak nothing either).
type keyring struct {
	sums  [][sha256.Size]byte
	roles []Role
}

func newKeyring(t Tokens) (*keyring, error) {
	if t.Admin == "" {
		return nil, fmt.Errorf("%w: an admin token is required", ErrBadRequest)
	}
	k := &keyring{}
	seen := map[string]Role{}
	for _, e := range []struct {
		tok  string
		role Role
	}{{t.Admin, RoleAdmin}, {t.Node, RoleNode}, {t.Worker, RoleWorker}, {t.Status, RoleStatus}} {
		if e.tok == "" {
			continue
		}
		if prev, ok := seen[e.tok]; ok {
			return nil, fmt.Errorf("%w: the %s and %s tokens are the same; give each role its own", ErrBadRequest, prev, e.role)
		}
		seen[e.tok] = e.role
		k.sums = append(k.sums, sha256.Sum256([]byte(e.tok)))
		k.roles = append(k.roles, e.role)
	}
	return k, nil
}

// role returns the role of a presented token, checking every configured
// token so the time taken does not depend on which one matched.
func (k *keyring) role(presented string) Role {
	if presented == "" {
		return RoleNone
	}
	sum := sha256.Sum256([]byte(presented))
	got := RoleNone
	for i := range k.sums {
		if subtle.ConstantTimeCompare(sum[:], k.sums[i][:]) == 1 {
			got = k.roles[i]
		}
	}
	return got
}

// credential returns the token a request presents: "Authorization: Bearer
// T", or a bare "Authorization: T" as Shardman's clients send it.
func credential(r *http.Request) string {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if after, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(after)
	}
	return h
}

// clientIP returns the request's peer address without the port. Proxy
// headers are not trusted: a limiter keyed on them could be dodged.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ipLimiter counts events per client IP in fixed windows and blocks an IP
// that exceeds Max in one Window until the window after. It is a pure core:
// the caller passes the time and holds the lock. The table is bounded: when
// full, entries whose window ended are dropped, and if none has, new IPs
// share one overflow entry (so a flood of addresses limits itself).
type ipLimiter struct {
	Max     int
	Window  time.Duration
	MaxIPs  int
	entries map[string]*ipEntry
}

type ipEntry struct {
	start time.Time
	count int
}

const overflowIP = "*"

// hit counts one event from ip at now and reports whether it is allowed,
// and if not, how long until it would be.
func (l *ipLimiter) hit(now time.Time, ip string) (ok bool, retry time.Duration) {
	e := l.entry(now, ip)
	if now.Sub(e.start) >= l.Window {
		e.start, e.count = now, 0
	}
	if e.count >= l.Max {
		return false, e.start.Add(l.Window).Sub(now)
	}
	e.count++
	return true, 0
}

// blocked reports whether ip is over its limit at now, without counting.
func (l *ipLimiter) blocked(now time.Time, ip string) (bool, time.Duration) {
	e, ok := l.entries[ip]
	if !ok || now.Sub(e.start) >= l.Window || e.count < l.Max {
		return false, 0
	}
	return true, e.start.Add(l.Window).Sub(now)
}

func (l *ipLimiter) entry(now time.Time, ip string) *ipEntry {
	if l.entries == nil {
		l.entries = map[string]*ipEntry{}
	}
	if e, ok := l.entries[ip]; ok {
		return e
	}
	if len(l.entries) >= l.MaxIPs {
		for k, e := range l.entries {
			if now.Sub(e.start) >= l.Window {
				delete(l.entries, k)
			}
		}
	}
	if len(l.entries) >= l.MaxIPs {
		ip = overflowIP
		if e, ok := l.entries[ip]; ok {
			return e
		}
	}
	e := &ipEntry{start: now}
	l.entries[ip] = e
	return e
}
