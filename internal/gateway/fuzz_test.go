package gateway

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/discord/codec"
)

// FuzzFramePath feeds arbitrary WebSocket messages, as Discord (or anything
// on the network path) could send them, through a ready shard's frame path:
// inflate, scan, state machine, batching. Nothing may panic, and whatever
// is published must be a payload that scans.
func FuzzFramePath(f *testing.F) {
	enc, _ := codec.NewEncoder(codec.ZlibStream, codec.EncoderConfig{})
	z, _ := enc.Encode(nil, messageCreate(2))
	f.Add(false, messageCreate(2))
	f.Add(true, z)
	f.Add(false, []byte(`{"t":null,"s":null,"op":7,"d":null}`))
	f.Add(false, []byte(`{"t":"READY","s":1,"op":0,"d":{"session_id":"x"}}`))
	f.Add(false, []byte(`{"op":10,"d":{"heartbeat_interval":-1}}`))
	f.Add(true, []byte{0x78, 0x9c, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, compressed bool, msg []byte) {
		nb := &nopBroker{}
		comp := codec.None
		typ := compressed
		if compressed {
			comp = codec.ZlibStream
		}
		r := benchRunner(t, nb, comp)
		_ = r.handle(typ, msg)
		_ = r.batch.flush(r.n.pubCtx)
	})
}
