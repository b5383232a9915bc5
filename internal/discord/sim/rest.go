package sim

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// restLimit is Discord's global REST limit: requests per second per token.
const restLimit = 50

// routes mounts the handlers.
func (s *Server) routes() {
	s.mux.HandleFunc("/api/", s.serveAPI)
	s.mux.HandleFunc("/sim/stats", s.serveStats)
	s.mux.HandleFunc("/sim/faults", s.serveFaults)
	s.mux.HandleFunc("/sim/token", s.serveToken)
	s.mux.HandleFunc("/sim/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "unknown admin path "+r.URL.Path+"; see /sim/stats, /sim/faults, /sim/token")
	})
	s.mux.HandleFunc("/", s.serveRoot)
}

// serveRoot serves the gateway at / and /resume; anything else is 404.
func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/", "/resume", "/resume/":
		if !isUpgrade(r) && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUpgradeRequired)
			io.WriteString(w, "Gatehouse Discord simulator. Gateway: connect a WebSocket here with ?v=10&encoding=json. REST: /api/v10. Admin: /sim/stats, /sim/faults.\n")
			return
		}
		s.serveGateway(w, r)
	default:
		writeDiscordError(w, http.StatusNotFound, "404: Not Found")
	}
}

// writeJSON writes a JSON body.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeDiscordError writes Discord's error body {"message": …, "code": 0}.
func writeDiscordError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, []byte(`{"message": `+strconv.Quote(msg)+`, "code": 0}`))
}

// writeError writes the admin API's error body {"message": …}.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	writeJSON(w, status, b)
}

// serveAPI answers the REST calls a sharded bot makes under /api/v9 and
// /api/v10; other versions get 400.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/")
	version, path, _ := strings.Cut(rest, "/")
	if !ok || version != "v10" && version != "v9" {
		writeDiscordError(w, http.StatusBadRequest, "400: Bad Request")
		return
	}
	path = "/" + path
	switch path {
	case "/gateway":
		if r.Method != http.MethodGet {
			writeDiscordError(w, http.StatusMethodNotAllowed, "405: Method Not Allowed")
			return
		}
		writeJSON(w, http.StatusOK, []byte(`{"url": `+strconv.Quote("ws://"+r.Host)+`}`))
		return
	case "/gateway/bot", "/users/@me", "/applications/@me", "/oauth2/applications/@me":
	default:
		writeDiscordError(w, http.StatusNotFound, "404: Not Found")
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bot ")
	now := time.Now()
	s.mu.Lock()
	authed := ok && token != "" && s.tokenOK(token)
	var limited bool
	var remaining int
	var resetAfter time.Duration
	if authed {
		limited, remaining, resetAfter = s.restTakeLocked(token, now)
	}
	s.mu.Unlock()
	if !authed {
		writeDiscordError(w, http.StatusUnauthorized, "401: Unauthorized")
		return
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(restLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatFloat(float64(now.Add(resetAfter).UnixMilli())/1000, 'f', 3, 64))
	h.Set("X-RateLimit-Reset-After", strconv.FormatFloat(resetAfter.Seconds(), 'f', 3, 64))
	h.Set("X-RateLimit-Bucket", "global")
	if limited {
		retry := max(resetAfter.Seconds(), 0.001)
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retry))))
		h.Set("X-RateLimit-Global", "true")
		h.Set("X-RateLimit-Scope", "global")
		writeJSON(w, http.StatusTooManyRequests, []byte(`{"message": "You are being rate limited.", "retry_after": `+
			strconv.FormatFloat(retry, 'f', 3, 64)+`, "global": true}`))
		return
	}
	if r.Method != http.MethodGet {
		writeDiscordError(w, http.StatusMethodNotAllowed, "405: Method Not Allowed")
		return
	}
	switch path {
	case "/gateway/bot":
		writeJSON(w, http.StatusOK, s.gatewayBotJSON(r.Host, now))
	case "/users/@me":
		writeJSON(w, http.StatusOK, s.rend.userMeJSON())
	default:
		s.mu.Lock()
		guilds := len(s.world.live)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, s.rend.applicationMeJSON(appFlags(s.cfg.DisallowedIntents), guilds))
	}
}

// restTakeLocked counts a request against the token's global limit. The
// caller holds mu.
func (s *Server) restTakeLocked(token string, now time.Time) (limited bool, remaining int, resetAfter time.Duration) {
	ok, remaining, resetAfter := s.rest.take(token, now)
	return !ok, remaining, resetAfter
}

// gatewayBotJSON is GET /gateway/bot's body with the live session-start
// limit, in Discord's key order and separators.
func (s *Server) gatewayBotJSON(host string, now time.Time) []byte {
	s.mu.Lock()
	remaining, resetAfter, running := s.budget.state(now)
	s.mu.Unlock()
	if !running && !s.cfg.IdleResetAfterZero {
		resetAfter = s.cfg.SessionStartReset
	}
	b := []byte(`{"url": `)
	b = strconv.AppendQuote(b, "ws://"+host)
	b = append(b, `, "shards": `...)
	b = strconv.AppendInt(b, int64(s.cfg.Shards), 10)
	b = append(b, `, "session_start_limit": {"total": `...)
	b = strconv.AppendInt(b, int64(s.cfg.SessionStartTotal), 10)
	b = append(b, `, "remaining": `...)
	b = strconv.AppendInt(b, int64(remaining), 10)
	b = append(b, `, "reset_after": `...)
	b = strconv.AppendInt(b, resetAfter.Milliseconds(), 10)
	b = append(b, `, "max_concurrency": `...)
	b = strconv.AppendInt(b, int64(s.cfg.MaxConcurrency), 10)
	return append(b, "}}"...)
}

// serveStats answers GET /sim/stats.
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	b, err := json.Marshal(s.Stats())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 1 << 16

// serveFaults applies (POST), lists (GET) and clears (DELETE) faults.
func (s *Server) serveFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		b, _ := json.Marshal(s.Faults())
		writeJSON(w, http.StatusOK, b)
	case http.MethodDelete:
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
			return
		}
		if len(body) > maxAdminBody {
			writeError(w, http.StatusRequestEntityTooLarge, "body over 64 KiB")
			return
		}
		f, err := ParseFault(body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		res, err := s.ApplyFault(f)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		b, _ := json.Marshal(res)
		writeJSON(w, http.StatusOK, b)
	default:
		writeError(w, http.StatusMethodNotAllowed, "use GET, POST or DELETE")
	}
}

// serveToken rotates the token: POST {"token": "…"}.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "use POST with {\"token\": \"…\"}")
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "want {\"token\": \"…\"}: "+strings.TrimPrefix(err.Error(), "json: "))
		return
	}
	if body.Token == "" {
		writeError(w, http.StatusBadRequest, "token must not be empty")
		return
	}
	s.RotateToken(body.Token)
	w.WriteHeader(http.StatusNoContent)
}
