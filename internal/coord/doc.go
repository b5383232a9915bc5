// Package coord is Gatehouse's control plane: the coordinator that decides
// when each shard of a deployment may identify, who holds each shard, and
// what is healthy, for Gatehouse's gateway nodes and for bot processes that
// keep their own gateway connections.
//
// A Coordinator owns the pure cores (identify.Scheduler behind a
// LocalGate, lease.Table, the glance status board) behind one mutex and
// serves them over HTTP (Handler): its own JSON API under /v1, described
// by the OpenAPI document at /openapi.json, and endpoints that existing
// tools speak unchanged: Shardman's /connect and /beat, glance's
// /api/status and /api/health, and twilight's gateway-queue (/queue).
//
// Every request is authenticated by role (admin, node, worker, status)
// with tokens compared in constant time; failed attempts and connection
// attempts are limited per client IP. Errors map to HTTP statuses in one
// place (statusOf). The bot token never reaches this package.
package coord
