package broker

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func records(t *testing.T, body []byte) [][]byte {
	t.Helper()
	var out [][]byte
	if err := Records(body, func(p []byte) error {
		out = append(out, bytes.Clone(p))
		return nil
	}); err != nil {
		t.Fatalf("Records: %v", err)
	}
	return out
}

func TestBodyRoundTrip(t *testing.T) {
	var want [][]byte
	body := NewBody(nil)
	for i := range 200 {
		p := fmt.Appendf(nil, `{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":{"content":"%s"}}`, i+1, bytes.Repeat([]byte("x"), i*7))
		want = append(want, p)
		body = AppendRecord(body, p)
	}
	body = AppendRecord(body, nil) // an empty record survives too
	want = append(want, nil)
	for _, tc := range []struct {
		name string
		enc  func([]byte) ([]byte, error)
	}{
		{"records", func(b []byte) ([]byte, error) { return b, nil }},
		{"zstd", func(b []byte) ([]byte, error) { return Compress(nil, b) }},
		{"s2", func(b []byte) ([]byte, error) { return CompressS2(nil, b) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := tc.enc(body)
			if err != nil {
				t.Fatal(err)
			}
			got := records(t, enc)
			if diff := cmp.Diff(want, got, cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("records differ (-want +got):\n%s", diff)
			}
			if tc.name != "records" && len(enc) >= len(body) {
				t.Errorf("%s body %d bytes, not smaller than %d", tc.name, len(enc), len(body))
			}
		})
	}
}

func TestRecordsMalformed(t *testing.T) {
	for _, body := range [][]byte{
		nil,
		{},
		{9, 1, 'x'},                              // unknown format
		{FormatRecords, 5, 'a', 'b'},             // truncated record
		{FormatRecords, 0x80},                    // truncated varint
		{FormatZstd, 1, 2, 3},                    // not zstd
		{FormatS2, 0xff, 0xff, 0xff, 0xff, 0x0f}, // absurd decoded length
	} {
		err := Records(body, func([]byte) error { return nil })
		if !errors.Is(err, ErrBadBatch) {
			t.Errorf("Records(% x) = %v, want ErrBadBatch", body, err)
		}
	}
	// The callback's error stops the walk and is returned as is.
	stop := errors.New("stop")
	body := AppendRecord(AppendRecord(NewBody(nil), []byte("a")), []byte("b"))
	n := 0
	if err := Records(body, func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Records with a failing callback: err %v after %d calls, want stop after 1", err, n)
	}
	if _, err := CompressS2(nil, []byte{FormatZstd}); !errors.Is(err, ErrBadBatch) {
		t.Errorf("CompressS2 of a non-records body: %v", err)
	}
}

func TestSubjects(t *testing.T) {
	s := Subjects{}
	if got := string(s.AppendEvent(nil, 12, 3, []byte("MESSAGE_CREATE"))); got != "gatehouse.ev.12.3.MESSAGE_CREATE" {
		t.Errorf("AppendEvent = %q", got)
	}
	if got := s.EventFilter(-1, -1, "GUILD_CREATE"); got != "gatehouse.ev.*.*.GUILD_CREATE" {
		t.Errorf("EventFilter = %q", got)
	}
	if got := (Subjects{Prefix: "bot1"}).ShardEvents(7); got != "bot1.ev.7.>" {
		t.Errorf("ShardEvents = %q", got)
	}
	if got := (&Batch{Shard: 3, Session: "abc", FirstSeq: 42}).MsgID(); got != "3:abc:42" {
		t.Errorf("MsgID = %q", got)
	}
	// Partitions are stable and spread.
	counts := make([]int, 4)
	for g := uint64(1); g <= 4000; g++ {
		p := Partition(g<<22|g, 4)
		if p != Partition(g<<22|g, 4) {
			t.Fatal("Partition is not stable")
		}
		counts[p]++
	}
	for i, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("partition %d got %d of 4000 guilds", i, c)
		}
	}
	if Partition(0, 8) != 0 || Partition(12345, 1) != 0 {
		t.Error("guild 0 and a single partition must map to 0")
	}
}

// FuzzRecords feeds arbitrary bodies, as a consumer reads them off the
// network, to Records: it must never panic, and a body it accepts must
// re-encode to the same records.
func FuzzRecords(f *testing.F) {
	body := AppendRecord(AppendRecord(NewBody(nil), []byte(`{"op":0}`)), []byte("x"))
	f.Add(body)
	z, _ := Compress(nil, body)
	f.Add(z)
	s, _ := CompressS2(nil, body)
	f.Add(s)
	f.Add([]byte{FormatRecords, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got [][]byte
		err := Records(b, func(p []byte) error {
			got = append(got, bytes.Clone(p))
			return nil
		})
		if err != nil {
			return
		}
		re := NewBody(nil)
		for _, p := range got {
			re = AppendRecord(re, p)
		}
		var again [][]byte
		if err := Records(re, func(p []byte) error { again = append(again, bytes.Clone(p)); return nil }); err != nil {
			t.Fatalf("re-encoded body does not parse: %v", err)
		}
		if len(again) != len(got) {
			t.Fatalf("%d records, re-encoded %d", len(got), len(again))
		}
	})
}
