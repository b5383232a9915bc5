package codec

import (
	"fmt"
	"runtime"
	"testing"
)

// benchCompressions are the transports the benchmarks compare.
var benchCompressions = []Compression{ZlibStream, ZstdStream, None}

func totalLen(ps [][]byte) int {
	n := 0
	for _, p := range ps {
		n += len(p)
	}
	return n
}

// BenchmarkDecode decodes a stream of ~1 KB gateway dispatches, one message
// each, as a gateway node does; SetBytes counts decompressed bytes.
func BenchmarkDecode(b *testing.B) {
	payloads := gatewayPayloads(21, 4096)
	for _, c := range benchCompressions {
		b.Run(c.String(), func(b *testing.B) {
			msgs := encodeAll(b, c, EncoderConfig{}, payloads)
			dec, err := NewDecoder(c, DecoderConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(totalLen(payloads) / len(payloads)))
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(msgs) {
					dec.Reset()
					i = 0
				}
				if _, ok, err := dec.Decode(buf[:0], msgs[i]); err != nil || !ok {
					b.Fatalf("Decode(message %d) = %v, %v", i, ok, err)
				}
				i++
			}
			b.ReportMetric(float64(totalLen(payloads))/float64(totalLen(msgs)), "ratio")
		})
	}
}

// BenchmarkDecodeReference decodes the same zlib-stream with the natural
// loop over klauspost/compress/zlib (naiveZlib), for comparison. That loop
// is only correct because no payload of this corpus ends on a window
// boundary.
func BenchmarkDecodeReference(b *testing.B) {
	payloads := gatewayPayloads(21, 4096)
	total := 0
	for _, p := range payloads {
		total += len(p)
		if total%32768 == 0 {
			b.Skip("corpus has a window-aligned payload")
		}
	}
	msgs := encodeAll(b, ZlibStream, EncoderConfig{}, payloads)
	b.SetBytes(int64(totalLen(payloads) / len(payloads)))
	b.ReportAllocs()
	naive := new(naiveZlib)
	i := 0
	for b.Loop() {
		if i == len(msgs) {
			naive = new(naiveZlib)
			i = 0
		}
		if _, err := naive.decode(msgs[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkEncode encodes the same stream as the simulator does, at the
// default level and at the levels with a private compressor.
func BenchmarkEncode(b *testing.B) {
	payloads := gatewayPayloads(21, 4096)
	cases := []struct {
		c     Compression
		level int
	}{{ZlibStream, 0}, {ZlibStream, 1}, {ZlibStream, 6}, {ZstdStream, 0}, {ZstdStream, 3}, {None, 0}}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("%v/level%d", tc.c, tc.level), func(b *testing.B) {
			enc, err := NewEncoder(tc.c, EncoderConfig{Level: tc.level})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(totalLen(payloads) / len(payloads)))
			ratio := float64(totalLen(payloads)) / float64(totalLen(encodeAll(b, tc.c, EncoderConfig{Level: tc.level}, payloads)))
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(payloads) {
					enc.Reset()
					i = 0
				}
				if _, err := enc.Encode(buf[:0], payloads[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(ratio, "ratio")
		})
	}
}

// TestDecodeAllocs guards the zero-allocation decode path.
func TestDecodeAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters distort allocation counts")
	}
	payloads := gatewayPayloads(22, 400)
	for _, c := range benchCompressions {
		msgs := encodeAll(t, c, EncoderConfig{}, payloads)
		dec, err := NewDecoder(c, DecoderConfig{})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 64<<10)
		i := 0
		next := func() {
			if _, ok, err := dec.Decode(buf[:0], msgs[i]); err != nil || !ok {
				t.Fatalf("%v: Decode(message %d) = %v, %v", c, i, ok, err)
			}
			i++
		}
		for range 100 {
			next()
		}
		if got := testing.AllocsPerRun(250, next); got != 0 {
			t.Errorf("%v: Decode allocates %v times per payload, want 0", c, got)
		}
	}
}

// heapPerInstance builds n instances with newInst, runs each through feed, and
// returns the heap they hold per instance in bytes.
func heapPerInstance(n int, newInst func() any, feed func(any)) float64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	insts := make([]any, n)
	for i := range insts {
		insts[i] = newInst()
		feed(insts[i])
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(insts)
	return (float64(ms.HeapAlloc) - float64(before)) / float64(n)
}

// memCase is one kind of per-connection object whose heap is measured.
type memCase struct {
	name string
	new  func(testing.TB) any
	feed func(testing.TB, any, [][]byte)
}

func memCases(msgs map[Compression][][]byte) []memCase {
	decoder := func(c Compression) memCase {
		return memCase{
			name: c.String() + "/decoder",
			new: func(t testing.TB) any {
				d, err := NewDecoder(c, DecoderConfig{})
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			feed: func(t testing.TB, x any, payloads [][]byte) {
				d := x.(Decoder)
				var buf [8 << 10]byte
				for i, m := range msgs[c] {
					if _, ok, err := d.Decode(buf[:0], m); err != nil || !ok {
						t.Fatalf("Decode(message %d) = %v, %v", i, ok, err)
					}
				}
			},
		}
	}
	encoder := func(c Compression, level int) memCase {
		return memCase{
			name: fmt.Sprintf("%v/encoder-level%d", c, level),
			new: func(t testing.TB) any {
				e, err := NewEncoder(c, EncoderConfig{Level: level})
				if err != nil {
					t.Fatal(err)
				}
				return e
			},
			feed: func(t testing.TB, x any, payloads [][]byte) {
				e := x.(Encoder)
				var buf [8 << 10]byte
				for _, p := range payloads {
					if _, err := e.Encode(buf[:0], p); err != nil {
						t.Fatal(err)
					}
				}
			},
		}
	}
	return []memCase{
		decoder(ZlibStream), decoder(ZstdStream),
		encoder(ZlibStream, 0), encoder(ZlibStream, 1), encoder(ZstdStream, 0),
	}
}

// BenchmarkHeapPerConnection reports the heap one connection's Decoder or
// Encoder holds after 500 payloads, measured over 200 of them. Pooled
// scratch (Huffman tables, zstd output buffer, the shared level-0 flate
// compressor) is not counted: it is shared by all connections. Run with
// -benchtime=1x.
func BenchmarkHeapPerConnection(b *testing.B) {
	payloads := gatewayPayloads(23, 500)
	msgs := map[Compression][][]byte{
		ZlibStream: encodeAll(b, ZlibStream, EncoderConfig{}, payloads),
		ZstdStream: encodeAll(b, ZstdStream, EncoderConfig{}, payloads),
	}
	for _, mc := range memCases(msgs) {
		b.Run(mc.name, func(b *testing.B) {
			// Warm the pools so they are not counted.
			mc.feed(b, mc.new(b), payloads)
			var per float64
			for b.Loop() {
				per = heapPerInstance(200, func() any { return mc.new(b) }, func(x any) { mc.feed(b, x, payloads) })
			}
			b.ReportMetric(per/1024, "KiB/conn")
		})
	}
}

// TestZlibDecoderHeap keeps the per-connection cost of a warmed zlib-stream
// Decoder and a level-0 Encoder near their design (a 32 KiB window; an
// 8 KiB history).
func TestZlibDecoderHeap(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("heap figures need a plain, full run")
	}
	payloads := gatewayPayloads(24, 100)
	msgs := map[Compression][][]byte{ZlibStream: encodeAll(t, ZlibStream, EncoderConfig{}, payloads)}
	limits := map[string]float64{
		"zlib-stream/decoder":        40 << 10,
		"zlib-stream/encoder-level0": 12 << 10,
	}
	for _, mc := range memCases(msgs) {
		limit, ok := limits[mc.name]
		if !ok {
			continue
		}
		mc.feed(t, mc.new(t), payloads)
		per := heapPerInstance(50, func() any { return mc.new(t) }, func(x any) { mc.feed(t, x, payloads) })
		if per > limit {
			t.Errorf("%s holds %.1f KiB per connection, want at most %.0f KiB", mc.name, per/1024, limit/1024)
		}
	}
}

// BenchmarkIdleWake is what a quiet zlib-stream shard pays per message:
// Idle packs the full window, and the next Decode unpacks it first. It
// reports the packed window's size.
func BenchmarkIdleWake(b *testing.B) {
	payloads := gatewayPayloads(21, 4096)
	msgs := encodeAll(b, ZlibStream, EncoderConfig{}, payloads)
	dec := newZlib(b, DecoderConfig{}).(*zlibDecoder)
	buf := make([]byte, 0, 64<<10)
	i, packed := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(msgs) {
			dec.Reset()
			i = 0
		}
		dec.Idle()
		packed += len(dec.inf.packed)
		if _, ok, err := dec.Decode(buf[:0], msgs[i]); err != nil || !ok {
			b.Fatalf("Decode(message %d) = %v, %v", i, ok, err)
		}
		i++
	}
	b.ReportMetric(float64(packed)/float64(b.N), "packed-bytes")
}
