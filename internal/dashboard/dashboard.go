package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
	"github.com/gatehouse-dev/gatehouse/internal/coord"
)

// Config configures a Dashboard.
type Config struct {
	// Coordinator is the data source. Required.
	Coordinator *coord.Coordinator
	// Consumers lists the event stream's durable consumers with their lag;
	// nil when there is no stream to look at.
	Consumers func(ctx context.Context) ([]broker.ConsumerLag, error)
	// LoadHistory and SaveHistory keep the history across restarts (the
	// coordinator's KV bucket); nil keeps it in memory only.
	LoadHistory func(ctx context.Context) ([]byte, error)
	SaveHistory func(ctx context.Context, data []byte) error
	// Tick is how often the view is recomputed and changes pushed.
	// Default 1s.
	Tick time.Duration
	// Sample is the history's sampling period. Default 10s.
	Sample time.Duration
	// SaveEvery is how often the history is saved. Default 1m.
	SaveEvery time.Duration
	// MaxPublicStreams caps the public page's live streams (GET
	// /public/stream, no token needed); one more is answered 503 with
	// Retry-After. Default 1000. MaxAdminStreams caps the authenticated
	// ones apart (GET /v1/stream), so a crowd on the public page never
	// shuts operators out. Default 100.
	MaxPublicStreams int
	MaxAdminStreams  int
	Logger           *slog.Logger
}

// Dashboard computes the view for every page and serves the pages (see
// Handler). Run drives it.
type Dashboard struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	view      View // the admin view, as last computed
	fleetJSON []byte
	hist      History
	subs      map[*subscriber]struct{}
	consumers []broker.ConsumerLag
}

// subscriber is one connected page.
type subscriber struct {
	admin bool
	ch    chan []byte // framed events
	gone  chan struct{}
	once  sync.Once
}

func (s *subscriber) drop() { s.once.Do(func() { close(s.gone) }) }

// New returns a Dashboard; Run starts it.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Coordinator == nil {
		return nil, errors.New("dashboard: Config.Coordinator is required")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 10 * time.Second
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = time.Minute
	}
	if cfg.MaxPublicStreams <= 0 {
		cfg.MaxPublicStreams = 1000
	}
	if cfg.MaxAdminStreams <= 0 {
		cfg.MaxAdminStreams = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{cfg: cfg, log: cfg.Logger, subs: map[*subscriber]struct{}{}}
	d.view = d.compute(time.Now())
	return d, nil
}

// Run loads the saved history, then recomputes the view every Tick and
// pushes the changes to the pages, samples the history every Sample and
// saves it every SaveEvery, until ctx ends; it saves once more then.
func (d *Dashboard) Run(ctx context.Context) error {
	if d.cfg.LoadHistory != nil {
		data, err := d.cfg.LoadHistory(ctx)
		switch {
		case err != nil:
			d.log.Warn("loading the dashboard history; starting empty", "err", err)
		case data != nil:
			var h History
			if err := json.Unmarshal(data, &h); err != nil {
				d.log.Warn("unreadable dashboard history; starting empty", "err", err)
			} else {
				d.mu.Lock()
				d.hist = h
				d.mu.Unlock()
			}
		}
	}
	tick := time.NewTicker(d.cfg.Tick)
	defer tick.Stop()
	sample := time.NewTicker(d.cfg.Sample)
	defer sample.Stop()
	save := time.NewTicker(d.cfg.SaveEvery)
	defer save.Stop()
	lagEvery := max(5*time.Second, d.cfg.Tick)
	var lastLag time.Time
	for {
		select {
		case <-ctx.Done():
			d.save(context.WithoutCancel(ctx))
			d.mu.Lock()
			for s := range d.subs {
				s.drop()
			}
			d.mu.Unlock()
			return nil
		case now := <-tick.C:
			if d.cfg.Consumers != nil && now.Sub(lastLag) >= lagEvery {
				lastLag = now
				lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				lag, err := d.cfg.Consumers(lctx)
				cancel()
				if err != nil {
					d.log.Debug("consumer lag", "err", err)
				} else {
					d.mu.Lock()
					d.consumers = lag
					d.mu.Unlock()
				}
			}
			d.update(now)
		case now := <-sample.C:
			d.sample(now)
		case <-save.C:
			d.save(ctx)
		}
	}
}

func (d *Dashboard) compute(now time.Time) View {
	c := d.cfg.Coordinator
	in := Input{Shards: c.Shards(), Status: c.Status(), Now: now}
	if p, err := c.Planner(now); err == nil {
		in.Planner = &p
	}
	d.mu.Lock()
	in.Consumers = d.consumers
	d.mu.Unlock()
	return Build(in)
}

// update recomputes the view and pushes what changed.
func (d *Dashboard) update(now time.Time) {
	v := d.compute(now)
	changed, gone := Diff(d.view.Cells, v.Cells)
	f := v.Fleet
	f.At = time.Time{} // not a change by itself
	fj, _ := json.Marshal(f)
	d.mu.Lock()
	defer d.mu.Unlock()
	prevFleet := d.fleetJSON
	d.view, d.fleetJSON = v, fj
	if len(d.subs) == 0 {
		return
	}
	var admin, public [][]byte
	if len(changed) > 0 || len(gone) > 0 {
		admin = append(admin, frame("cells", cellsMsg{Changed: changed, Gone: gone}))
		pub := make([]Cell, len(changed))
		for i, c := range changed {
			c.Node = ""
			pub[i] = c
		}
		public = append(public, frame("cells", cellsMsg{Changed: pub, Gone: gone}))
	}
	if !bytes.Equal(prevFleet, fj) {
		admin = append(admin, frame("fleet", v.Fleet))
		public = append(public, frame("fleet", v.Public().Fleet))
	}
	d.broadcastLocked(admin, public)
}

type cellsMsg struct {
	Changed []Cell   `json:"changed"`
	Gone    []string `json:"gone,omitempty"`
}

// snapshotMsg is the first event a page gets.
type snapshotMsg struct {
	Cells   []Cell  `json:"cells"`
	Fleet   Fleet   `json:"fleet"`
	History []Point `json:"history"`
	Admin   bool    `json:"admin"`
}

func (d *Dashboard) sample(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.view.Fleet
	p := Point{T: now.Unix(), EventsPerSec: f.EventsPerSec, LatencyMS: f.LatencyMS, Guilds: f.Guilds}
	d.hist.Add(p)
	msg := frame("history", p)
	d.broadcastLocked([][]byte{msg}, [][]byte{msg})
}

func (d *Dashboard) save(ctx context.Context) {
	if d.cfg.SaveHistory == nil {
		return
	}
	d.mu.Lock()
	data, err := json.Marshal(&d.hist)
	d.mu.Unlock()
	if err != nil {
		d.log.Error("encoding the dashboard history", "err", err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.cfg.SaveHistory(sctx, data); err != nil {
		d.log.Warn("saving the dashboard history", "err", err)
	}
}

// broadcastLocked queues the frames for every page. A page that cannot
// keep up is dropped; it reconnects and starts from a snapshot.
func (d *Dashboard) broadcastLocked(admin, public [][]byte) {
	for s := range d.subs {
		msgs := public
		if s.admin {
			msgs = admin
		}
		for _, m := range msgs {
			select {
			case s.ch <- m:
			default:
				s.drop()
				delete(d.subs, s)
			}
		}
	}
}

// errTooManyStreams refuses a live stream over its cap.
var errTooManyStreams = errors.New("dashboard: too many live streams")

// subscribe registers a page and returns it with its snapshot frame, or
// errTooManyStreams when its kind of stream is at its cap.
func (d *Dashboard) subscribe(admin bool) (*subscriber, []byte, error) {
	s := &subscriber{admin: admin, ch: make(chan []byte, 64), gone: make(chan struct{})}
	d.mu.Lock()
	defer d.mu.Unlock()
	limit, n := d.cfg.MaxPublicStreams, 0
	if admin {
		limit = d.cfg.MaxAdminStreams
	}
	for o := range d.subs {
		if o.admin == admin {
			n++
		}
	}
	if n >= limit {
		return nil, nil, errTooManyStreams
	}
	v := d.view
	if !admin {
		v = v.Public()
	}
	snap := frame("snapshot", snapshotMsg{Cells: v.Cells, Fleet: v.Fleet, History: d.hist.Points(), Admin: admin})
	d.subs[s] = struct{}{}
	return s, snap, nil
}

func (d *Dashboard) unsubscribe(s *subscriber) {
	d.mu.Lock()
	delete(d.subs, s)
	d.mu.Unlock()
	s.drop()
}

// History returns the history points, oldest first.
func (d *Dashboard) History() []Point {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hist.Points()
}

// frame encodes one server-sent event.
func frame(event string, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(fmt.Sprintf("%q", err.Error()))
	}
	var b bytes.Buffer
	b.Grow(len(data) + len(event) + 16)
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data) // JSON has no raw newlines
	b.WriteString("\n\n")
	return b.Bytes()
}
