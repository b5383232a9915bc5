package client

import (
	"bytes"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/broker"
)

// FuzzBatch feeds arbitrary batch bodies, subjects and headers, which come
// from the network, through the decoding path of Consume. It must never
// panic, and what it hands out must come from the body.
func FuzzBatch(f *testing.F) {
	good := broker.NewBody(nil)
	for seq := int64(1); seq <= 3; seq++ {
		good = broker.AppendRecord(good, newTestEvent("MESSAGE_CREATE", seq, guildOn(2, 4, int(seq))).raw)
	}
	good = broker.AppendRecord(good, []byte(`{"op":11}`))
	good = broker.AppendRecord(good, []byte(`{"t":"GUILD_CREATE","s":9,"op":0,"d":{"id":"41771983423143937","name":"x"}}`))
	z, err := broker.Compress(nil, good)
	if err != nil {
		f.Fatal(err)
	}
	s2body, err := broker.CompressS2(nil, good)
	if err != nil {
		f.Fatal(err)
	}
	subj := "gatehouse.ev.2.0.MESSAGE_CREATE"
	f.Add(s2body, subj, "2/4", "sess")
	f.Add(good, subj, "2/4", "sess")
	f.Add(z, subj, "2/4", "sess")
	f.Add(good[:len(good)-5], subj, "2/4", "sess")
	f.Add([]byte{broker.FormatRecords, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, subj, "2/4", "s")
	f.Add([]byte{broker.FormatRecords, 2, '{', '}'}, "gatehouse.ev.0.0.X", "0/1", "s")
	f.Add([]byte{}, "gatehouse.ev.1.2", "1/2", "s")
	f.Add(good, "gatehouse.ev.999999999.0.T", "999999999/1000000000", "s")
	f.Add(good, "gatehouse.ev.-1.0.T", "-1/2", "s")
	f.Add([]byte{broker.FormatZstd}, subj, "2/4", "")

	f.Fuzz(func(t *testing.T, body []byte, subject, shardHeader, session string) {
		meta, err := parseBatchMeta(subject, "gatehouse.ev.", shardHeader, session)
		if err != nil {
			return
		}
		if meta.shard < 0 || meta.shard >= meta.numShards || meta.partition < 0 || meta.session != session {
			t.Fatalf("parseBatchMeta(%q, %q, %q) = %+v", subject, shardHeader, session, meta)
		}
		var ev Event
		sel := selection{partitions: 3, partition: 1, types: map[string]bool{"MESSAGE_CREATE": true}}
		_, _ = eachEvent(body, &meta, &ev, func(ev *Event) error {
			_ = ev.Key()
			_ = sel.wantEvent(ev)
			if ev.Shard != meta.shard || ev.NumShards != meta.numShards || ev.Session != session {
				t.Fatalf("event %+v does not match batch %+v", ev, meta)
			}
			if len(body) > 0 && body[0] == broker.FormatRecords && !bytes.Contains(body, ev.Raw) {
				t.Fatalf("Raw %q is not from the body", ev.Raw)
			}
			if ev.Data != nil && !bytes.Contains(ev.Raw, ev.Data) {
				t.Fatalf("Data %q is not from Raw %q", ev.Data, ev.Raw)
			}
			if cap(ev.Raw) != len(ev.Raw) {
				t.Fatalf("Raw can be appended to in place: len %d, cap %d", len(ev.Raw), cap(ev.Raw))
			}
			return nil
		})
	})
}
