package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/coord"
)

//go:embed assets
var assets embed.FS

// Handler serves the dashboard in front of api (the coordinator's
// handler), which gets every request the dashboard does not take:
//
//	GET /                         the public status page (with ?shard=, twilight's gateway-queue, as before)
//	GET /admin                    the admin view (asks for the admin token)
//	GET /assets/…                 the page's script and style
//	GET /public/stream            live updates for the public page (server-sent events)
//	GET /public/history           the history, 24 h
//	GET /public/shards/{shard}    one shard's details, without node or error
//	GET /v1/stream, /v1/history   the same for the admin view (status token)
func (d *Dashboard) Handler(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		// No page may be framed (clickjacking the admin view's buttons):
		// frame-ancestors for current browsers, X-Frame-Options for old ones.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeFileFS(w, r, static, "index.html")
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("shard") {
			api.ServeHTTP(w, r) // twilight's gateway-queue
			return
		}
		page(w, r)
	})
	mux.HandleFunc("GET /admin", page)
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", noIndex(http.FileServerFS(static))))
	mux.HandleFunc("GET /public/stream", func(w http.ResponseWriter, r *http.Request) { d.stream(w, r, false) })
	mux.HandleFunc("GET /public/history", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.History()) })
	mux.HandleFunc("GET /public/shards/{shard}", func(w http.ResponseWriter, r *http.Request) { d.shard(w, r) })
	admin := func(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := d.cfg.Coordinator.Authorize(r, coord.RoleStatus); err != nil {
				coord.WriteError(w, err)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/stream", admin(func(w http.ResponseWriter, r *http.Request) { d.stream(w, r, true) }))
	mux.HandleFunc("GET /v1/history", admin(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, d.History()) }))
	mux.Handle("/", api)
	return mux
}

// noIndex refuses directory listings.
func noIndex(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path[len(r.URL.Path)-1] == '/' {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// publicShard is a shard's details on the public page.
type publicShard struct {
	Shard        int       `json:"shard"`
	State        string    `json:"state"`
	Class        string    `json:"class"`
	Guilds       *int      `json:"guilds,omitempty"`
	LatencyMS    *float64  `json:"latency_ms,omitempty"`
	EventsPerSec float64   `json:"events_per_sec"`
	Identifies   int64     `json:"identifies"`
	Resumes      int64     `json:"resumes"`
	Reconnects   int64     `json:"reconnects"`
	StateSince   time.Time `json:"state_since,omitzero"`
	ReportedAt   time.Time `json:"reported_at,omitzero"`
	// Admin view only.
	Node    string `json:"node,omitempty"`
	Holder  string `json:"holder,omitempty"`
	Zombies int64  `json:"zombies,omitempty"`
	Events  int64  `json:"events,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (d *Dashboard) shard(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("shard"))
	if err != nil {
		http.Error(w, `{"error":"shard is not a number","code":"bad_request"}`, http.StatusBadRequest)
		return
	}
	info, err := d.cfg.Coordinator.Shard(n)
	if err != nil {
		coord.WriteError(w, err)
		return
	}
	out := publicShard{Shard: info.Shard, State: info.State, Class: Class(info.State), Guilds: info.Guilds, LatencyMS: info.LatencyMS,
		EventsPerSec: info.EventsPerSec, Identifies: info.Identifies, Resumes: info.Resumes, Reconnects: info.Reconnects,
		StateSince: info.StateSince, ReportedAt: info.ReportedAt}
	writeJSON(w, out)
}

// stream serves server-sent events: the snapshot, then changes, with a
// comment every 15 s to keep proxies from closing an idle stream.
func (d *Dashboard) stream(w http.ResponseWriter, r *http.Request, admin bool) {
	s, snap, err := d.subscribe(admin)
	if err != nil {
		w.Header().Set("Retry-After", "30")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"too many live streams are open; retry later","code":"unavailable","retry_after_ms":30000}` + "\n"))
		return
	}
	defer d.unsubscribe(s)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	if _, err := w.Write(snap); err != nil || rc.Flush() != nil {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.gone:
			return
		case m := <-s.ch:
			if _, err := w.Write(m); err != nil {
				return
			}
			// Write what else is queued before flushing once.
			for more := true; more; {
				select {
				case m := <-s.ch:
					if _, err := w.Write(m); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return
			}
		case <-keep.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal error","code":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Write(data)
}
