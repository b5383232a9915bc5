// Package coordapi is the wire contract of the coordinator's HTTP API: the
// JSON types the coordinator (package coord) serves and its clients
// (package coordclient: gateway nodes, the CLI) send and read. Both sides
// import them from here, so a field is declared once and the two cannot
// drift apart.
//
// # Node protocol
//
// A gateway node run with -shards assigned heartbeats with a NodeBeat
// (POST /v1/nodes/{node}/heartbeat) and carries out the NodeOrders it gets
// back: shards to start (Assign, each with a fresh lease token), shards
// whose leases were renewed, shards to stop (Revoke). During a reshard both
// carry a second section (Next) for the new shard generation. The push
// channel (GET /v1/nodes/{node}/push, a WebSocket) brings Commands, each
// answered with a CommandAck.
//
// # Reads and operations
//
// Status, ShardList, PlannerState, GuildAnswer, IdentifyQueue, Reshard and
// ReshardPlan are what the read endpoints answer and the CLI prints;
// CommandRequest and ReshardRequest are what operators send. Every error
// of the native API is an ErrorBody.
//
// The package holds types and constants only: no I/O, no behaviour beyond
// small accessors.
package coordapi
