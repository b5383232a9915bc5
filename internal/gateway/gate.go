package gateway

import (
	"context"
	"time"
)

// IdentifyGate decides when a shard may send IDENTIFY. Every IDENTIFY goes
// through one; RESUME never does. The in-process identify.LocalGate enforces
// Discord's buckets and daily budget for one node; the coordinator provides
// a global one for a fleet.
type IdentifyGate interface {
	// Wait blocks until shard may identify now, or ctx ends. An error other
	// than ctx's means the shard must not identify (for example, the daily
	// session-start budget is spent); it says when it could.
	Wait(ctx context.Context, shard int) error
}

// IdentifyObserver is implemented by gates that want to know when an
// identify took effect: the node reports the READY (or the failure) of
// every IDENTIFY the gate allowed.
type IdentifyObserver interface {
	// Identified reports that shard's IDENTIFY, allowed earlier, was
	// answered at (READY) or ended without an answer at (connection lost).
	Identified(shard int, at time.Time)
}
