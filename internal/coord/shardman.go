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
	"net/url"
	"strconv"
	"strings"
	"time"
)

// shardmanSession is one worker connected through Shardman's /connect.
type shardmanSession struct {
	id         string
	shard      int
	connected  time.Time
	lastBeat   time.Time
	guildCount int
	latency    float64
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

// ShardmanSession is a worker's session as the status API shows it.
type ShardmanSession struct {
	Shard      int             `json:"shard_id"`
	Connected  time.Time       `json:"connected"`
	LastBeat   time.Time       `json:"last_beat"`
	GuildCount int             `json:"guild_count"`
	Latency    float64         `json:"latency"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

// list returns the live sessions by shard; session IDs are secrets of
// their workers and are not shown.
func (m *shardman) list() []ShardmanSession {
	out := []ShardmanSession{}
	for _, s := range m.byShard {
		if s != nil {
			out = append(out, ShardmanSession{Shard: s.shard, Connected: s.connected.UTC(), LastBeat: s.lastBeat.UTC(), GuildCount: s.guildCount, Latency: s.latency, Extra: s.extra})
		}
	}
	return out
}

// shardmanBeat is a parsed /beat body.
type shardmanBeat struct {
	SessionID  string
	GuildCount int
	Latency    float64
	Extra      json.RawMessage
}

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

// parseBeat reads a /beat body, JSON or form-encoded. Missing or mistyped
// fields come back as a validationError listing each.
func parseBeat(r *http.Request) (shardmanBeat, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return shardmanBeat{}, err
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	fields := map[string]any{}
	var ve validationError
	switch {
	case mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data":
		if mt == "multipart/form-data" {
			r.Body = io.NopCloser(bytes.NewReader(body))
			if err := r.ParseMultipartForm(int64(len(body)) + 1); err != nil {
				return shardmanBeat{}, &validationError{[]fieldError{{Loc: []any{"body"}, Msg: "Invalid form body", Type: "value_error"}}}
			}
			for k, v := range r.MultipartForm.Value {
				if len(v) > 0 {
					fields[k] = v[0]
				}
			}
		} else {
			vals, err := url.ParseQuery(string(body))
			if err != nil {
				return shardmanBeat{}, &validationError{[]fieldError{{Loc: []any{"body"}, Msg: "Invalid form body", Type: "value_error"}}}
			}
			for k, v := range vals {
				fields[k] = v[0]
			}
		}
	default:
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			return shardmanBeat{}, &validationError{[]fieldError{{Loc: []any{"body", 0}, Msg: "JSON decode error", Type: "json_invalid"}}}
		}
	}
	var b shardmanBeat
	str := func(name string) string {
		v, ok := fields[name]
		if !ok {
			ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Field required", Type: "missing"})
			return ""
		}
		s, ok := v.(string)
		if !ok {
			ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Input should be a valid string", Type: "string_type"})
		}
		return s
	}
	num := func(name string, integer bool) float64 {
		v, ok := fields[name]
		if !ok {
			ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Field required", Type: "missing"})
			return 0
		}
		var f float64
		var err error
		switch v := v.(type) {
		case json.Number:
			f, err = v.Float64()
		case string:
			f, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
		default:
			err = errors.New("not a number")
		}
		switch {
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			if integer {
				ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Input should be a valid integer, unable to parse string as an integer", Type: "int_parsing"})
			} else {
				ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Input should be a valid number, unable to parse string as a number", Type: "float_parsing"})
			}
		case integer && (f != math.Trunc(f) || f < 0 || f > maxGuildCount):
			ve.detail = append(ve.detail, fieldError{Loc: []any{"body", name}, Msg: "Input should be a valid integer", Type: "int_type"})
		}
		return f
	}
	b.SessionID = str("session_id")
	b.GuildCount = int(num("guild_count", true))
	b.Latency = num("latency", false)
	if v, ok := fields["extra"]; ok && v != nil {
		raw, err := json.Marshal(v)
		if err == nil {
			b.Extra = raw
		}
	}
	if len(ve.detail) > 0 {
		return shardmanBeat{}, &ve
	}
	return b, nil
}

// shardmanAuth checks Shardman's secret: the worker token (or admin) in a
// bare Authorization header. A wrong secret is 403, as in Shardman.
func (c *Coordinator) shardmanAuth(r *http.Request) error {
	_, err := c.authorize(r, RoleWorker)
	if errors.Is(err, ErrUnauthorized) {
		return &statusError{fmt.Errorf("%w: invalid secret", ErrForbidden), http.StatusForbidden}
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
	var re *retryError
	if errors.As(err, &re) && re.after > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((re.after+time.Second-1)/time.Second), 10))
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
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
	writeJSON(w, http.StatusOK, map[string]any{"shard_id": sess.shard, "max_shards": c.cfg.ShardCount, "session_id": sess.id})
	return nil
}

// shardmanBeat is Shardman's POST /beat.
func (c *Coordinator) shardmanBeat(w http.ResponseWriter, r *http.Request) error {
	if err := c.shardmanAuth(r); err != nil {
		shardmanDetail(w, err)
		return nil
	}
	b, err := parseBeat(r)
	if err != nil {
		shardmanDetail(w, err)
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
