// Package dashboard is the coordinator's web dashboard: a live shard grid
// (one cell per shard, coloured by state, grouped by cluster and node), a
// guild → shard search, shard details, a fleet panel (nodes, identify
// queue, session-start budget, planner, consumer lag) and 24 hours of
// history charts.
//
// The page and its script are embedded (no CDN, no build step). Updates are
// pushed as server-sent events: a snapshot when a page connects, then only
// the cells whose state changed, so 5,000 shards cost nothing while
// they are healthy. A Hub computes the view once a second for every page.
//
// Two modes share one page: the public status page at / (no token; no
// node names, consumer names or errors — nothing internal) and the admin
// view at /admin, which sends the admin token it is given and offers
// actions (restart a shard, drain a node, a reshard's dry-run plan).
//
// The view and the history are pure (view.go, history.go); the Hub and
// the handlers are the shell around them.
package dashboard
