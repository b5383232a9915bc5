// Package chaos runs Gatehouse's zero-loss scenarios end to end: a bot
// worker killed mid-stream, a gateway node killed under load, a node
// drained for a rolling update, the coordinator killed, a shard that goes
// silent while its heartbeats are answered, and a reshard to twice the
// shard count (also with the coordinator killed mid-way). Each scenario
// runs on a fresh deployment of the gatehouse binary's processes on
// loopback against the simulator in this process, at a steady load, and
// counts every simulator event (each has a unique sim_event_id) from the
// session it was sent to to the consumer that handled it: produced,
// delivered, lost, duplicated, the longest wait between events of one
// shard, IDENTIFYs used and the time to recover. `gatehouse chaos` prints
// the table.
package chaos
