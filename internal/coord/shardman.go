package coord

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord/coordapi"
)

// shardmanSession is one worker connected through Shardman's /connect.
type shardmanSession struct {
	id         string
	shard      int
	connected  time.Time
	lastBeat   time.Time
	guildCount *int
	latency    *float64
	extra      json.RawMessage
}

// shardman is the pure core behind Shardman's endpoints: a worker connects
// and gets the lowest free shard with a session ID; it beats with that ID;
// a session silent for timeout is dropped and its shard is free again. The
// caller holds the lock and passes the time.
type shardman struct {
	count   int
	timeout time.Duration
	byID    map[string]*shardmanSession
	byShard []*shardmanSession
	newID   func() string
	taken   func(shard int) bool // shards held otherwise (by gateway nodes); nil: none
}

func newShardman(count int, timeout time.Duration) *shardman {
	return &shardman{count: count, timeout: timeout, byID: map[string]*shardmanSession{}, byShard: make([]*shardmanSession, count), newID: randomID}
}

// randomID returns 128 random bits in hex.
func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// connect hands the lowest free shard to a new session.
func (m *shardman) connect(now time.Time) (*shardmanSession, error) {
	m.expire(now)
	for shard, s := range m.byShard {
		if s != nil || m.taken != nil && m.taken(shard) {
			continue
		}
		sess := &shardmanSession{id: m.newID(), shard: shard, connected: now, lastBeat: now}
		m.byShard[shard] = sess
		m.byID[sess.id] = sess
		return sess, nil
	}
	return nil, fmt.Errorf("%w: all %d shards are held", ErrNoShardFree, m.count)
}

// beat records a heartbeat of session id.
func (m *shardman) beat(now time.Time, id string, b shardmanBeat) error {
	s, ok := m.byID[id]
	if !ok || now.Sub(s.lastBeat) >= m.timeout {
		return fmt.Errorf("%w: session %q", ErrNotFound, id)
	}
	s.lastBeat, s.guildCount, s.latency, s.extra = now, b.GuildCount, b.Latency, b.Extra
	return nil
}

// expire drops the sessions silent for the timeout and returns them.
func (m *shardman) expire(now time.Time) []shardmanSession {
	var out []shardmanSession
	for shard, s := range m.byShard {
		if s != nil && now.Sub(s.lastBeat) >= m.timeout {
			out = append(out, *s)
			delete(m.byID, s.id)
			m.byShard[shard] = nil
		}
	}
	return out
}

// list returns the live sessions by shard; session IDs are secrets of
// their workers and are not shown.
func (m *shardman) list() []coordapi.ShardmanSession {
	out := []coordapi.ShardmanSession{}
	for _, s := range m.byShard {
		if s != nil {
			out = append(out, coordapi.ShardmanSession{Shard: s.shard, Connected: s.connected.UTC(), LastBeat: s.lastBeat.UTC(), GuildCount: s.guildCount, Latency: s.latency, Extra: s.extra})
		}
	}
	return out
}

// shardmanBeat is a parsed /beat body (GuildCount and Latency nil for
// null); it is also what a follower hands the leader in a batch.
type shardmanBeat = coordapi.ReplicaBeat

// fieldError is one entry of a FastAPI-style 422 body.
type fieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// validationError is a 422 answer in FastAPI's shape.
type validationError struct{ detail []fieldError }

func (e *validationError) Error() string {
	var parts []string
	for _, d := range e.detail {
		parts = append(parts, fmt.Sprint(d.Loc, ": ", d.Msg))
	}
	return "coord: invalid beat: " + strings.Join(parts, "; ")
}

// maxGuildCount bounds a reported guild_count (a shard holds at most 2,500).
const maxGuildCount = 1 << 20

// parseBeat reads a /beat body as Shardman's FastAPI model does (pydantic
// v1, lax): a JSON object; session_id a string (numbers become strings);
// guild_count an int or null (numeric strings and floats are truncated,
// true is 1), latency a float or null, extra anything; the optional ones
// are null when absent. A body that is not a JSON object, form bodies
// included, is "not a valid dict". Errors come back as a validationError
// in pydantic v1's words.
func parseBeat(contentType string, body []byte) (shardmanBeat, error) {
	var b shardmanBeat
	if len(bytes.TrimSpace(body)) == 0 {
		return b, &validationError{[]fieldError{{Loc: []any{"body"}, Msg: "field required", Type: "value_error.missing"}}}
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	notDict := &validationError{[]fieldError{{Loc: []any{"body"}, Msg: "value is not a valid dict", Type: "type_error.dict"}}}
	if mt != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return b, notDict // FastAPI does not parse it as JSON
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return b, &validationError{[]fieldError{{Loc: []any{"body", 0}, Msg: "JSON decode error: " + err.Error(), Type: "value_error.jsondecode"}}}
	}
	fields, ok := raw.(map[string]any)
	if !ok {
		return b, notDict
	}
	var ve validationError
	bad := func(name, msg, typ string) {
		ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: msg, Type: typ})
	}
	switch v := fields["session_id"].(type) {
	case string:
		b.SessionID = v
	case json.Number:
		b.SessionID = v.String()
	case nil:
		if _, present := fields["session_id"]; present {
			bad("session_id", "none is not an allowed value", "type_error.none.not_allowed")
		} else {
			bad("session_id", "field required", "value_error.missing")
		}
	default:
		bad("session_id", "str type expected", "type_error.str")
	}
	if n, ok, valid := laxNumber(fields["guild_count"]); !valid {
		bad("guild_count", "value is not a valid integer", "type_error.integer")
	} else if ok {
		if n < 0 || n > maxGuildCount {
			bad("guild_count", "value is not a valid guild count", "value_error.number.not_in_range")
		} else {
			g := int(n)
			b.GuildCount = &g
		}
	}
	if f, ok, valid := laxNumber(fields["latency"]); !valid {
		bad("latency", "value is not a valid float", "type_error.float")
	} else if ok {
		b.Latency = &f
	}
	if v, ok := fields["extra"]; ok && v != nil {
		if raw, err := json.Marshal(v); err == nil {
			b.Extra = raw
		}
	}
	if len(ve.detail) > 0 {
		return shardmanBeat{}, &ve
	}
	return b, nil
}

// laxNumber reads an optional number as pydantic v1 does: null or absent
// is not set (ok false); numbers, numeric strings and booleans are
// accepted; anything else is invalid.
func laxNumber(v any) (n float64, ok, valid bool) {
	switch v := v.(type) {
	case nil:
		return 0, false, true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil, err == nil && !math.IsInf(f, 0)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	case bool:
		if v {
			return 1, true, true
		}
		return 0, true, true
	}
	return 0, false, false
}

// shardmanAuth checks Shardman's secret: the worker token (or admin) in a
// bare Authorization header (Bearer is accepted too). As in Shardman, a
// missing header is a 422 and a wrong one a 403 "Invalid Token".
func (c *Coordinator) shardmanAuth(r *http.Request) error {
	if r.Header.Get("Authorization") == "" {
		return &validationError{[]fieldError{{Loc: []any{"header", "authorization"}, Msg: "field required", Type: "value_error.missing"}}}
	}
	_, err := c.authorize(r, RoleWorker)
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) {
		return &statusError{errors.New("Invalid Token"), http.StatusForbidden}
	}
	return err
}

// shardmanDetail answers an error in FastAPI's {"detail": ...} shape.
func shardmanDetail(w http.ResponseWriter, err error) {
	var ve *validationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": ve.detail})
		return
	}
	status := statusOf(err)
	if errors.Is(err, ErrNoShardFree) {
		status = http.StatusUnauthorized // Shardman's answer when every shard is held
	}
	setRetryAfter(w, err)
	msg := err.Error()
	switch {
	case errors.Is(err, ErrNoShardFree):
		msg = "No Shards Available"
	case errors.Is(err, ErrNotFound):
		msg = "Session Not Found"
	case status == http.StatusInternalServerError:
		msg = "internal error"
	}
	writeJSON(w, status, map[string]string{"detail": msg})
}

// shardmanConnect is Shardman's GET /connect.
func (c *Coordinator) shardmanConnect(w http.ResponseWriter, r *http.Request) error {
	if err := c.shardmanAuth(r); err != nil {
		shardmanDetail(w, err)
		return nil
	}
	now := time.Now()
	c.mu.Lock()
	ok, retry := c.connects.hit(now, clientIP(r))
	var sess *shardmanSession
	var err error
	if ok {
		sess, err = c.shardman.connect(now)
		c.fleet.dirty = true
	}
	c.mu.Unlock()
	if !ok {
		shardmanDetail(w, &retryError{fmt.Errorf("%w: too many connects from %s", ErrTooManyRequests, clientIP(r)), retry})
		return nil
	}
	if err != nil {
		shardmanDetail(w, err)
		return nil
	}
	c.log.Info("shardman: worker connected", "shard", sess.shard)
	// sleep_duration: Shardman's hint to wait before identifying. Workers
	// here identify through the coordinator's queue (/queue or
	// /v1/identify), which does the pacing, so it is always 0.
	writeJSON(w, http.StatusOK, map[string]any{"shard_id": sess.shard, "max_shards": c.shardCount(), "session_id": sess.id, "sleep_duration": 0.0})
	return nil
}

// shardmanBeat is Shardman's POST /beat.
func (c *Coordinator) shardmanBeat(w http.ResponseWriter, r *http.Request) error {
	if err := c.shardmanAuth(r); err != nil {
		shardmanDetail(w, err)
		return nil
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		shardmanDetail(w, err)
		return nil
	}
	b, err := parseBeat(r.Header.Get("Content-Type"), raw)
	if err != nil {
		shardmanDetail(w, err)
		return nil
	}
	if c.rep != nil && !c.Leading() {
		c.followerBeat(w, r, raw, b)
		return nil
	}
	c.mu.Lock()
	err = c.shardman.beat(time.Now(), b.SessionID, b)
	c.mu.Unlock()
	if err != nil {
		shardmanDetail(w, err)
		return nil
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
