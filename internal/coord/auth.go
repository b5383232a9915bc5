package coord

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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

// source is what failed authentications are counted by: the client's
// IPv4 address, or its IPv6 /64, since one IPv6 host is usually given a
// whole /64 and could rotate through it.
func source(r *http.Request) string {
	ip, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return clientIP(r)
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// authLimiter limits failed authentications: per source, and across all
// sources together so that a flood from many addresses costs a bounded
// amount of work and logging. It only ever sees failures: a request with
// a valid credential is never counted nor refused, so no client's
// failures can lock a valid credential out, whether it shares the
// attacker's address (a proxy, NAT, Kubernetes SNAT) or not. It is a pure
// core: the caller passes the time and holds the lock.
type authLimiter struct {
	perSource ipLimiter
	// GlobalMax failures per Window across every source; beyond it every
	// failure is answered 429 at once until the window ends.
	GlobalMax   int
	globalStart time.Time
	globalCount int
}

// fail counts a failed authentication from src at now and reports whether
// the failure is over a limit, with the time until it would not be.
func (l *authLimiter) fail(now time.Time, src string) (limited bool, retry time.Duration) {
	w := l.perSource.Window
	if now.Sub(l.globalStart) >= w {
		l.globalStart, l.globalCount = now, 0
	}
	l.globalCount++
	ok, retry := l.perSource.hit(now, src)
	if l.globalCount > l.GlobalMax {
		return true, max(retry, l.globalStart.Add(w).Sub(now))
	}
	return !ok, retry
}

// ipLimiter counts events per client IP in fixed windows and refuses an IP
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
