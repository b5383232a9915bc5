package codec

import (
	"bytes"
	stdzlib "compress/zlib"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	kpzlib "github.com/klauspost/compress/zlib"
)

// flushWriter is a zlib writer flushed after every payload.
type flushWriter interface {
	io.Writer
	Flush() error
}

// encodeWith encodes payloads with a third-party zlib writer, one sync-flushed
// message per payload, as a Discord server would.
func encodeWith(t testing.TB, newWriter func(io.Writer) (flushWriter, error), payloads [][]byte) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([][]byte, len(payloads))
	for i, p := range payloads {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		msgs[i] = bytes.Clone(buf.Bytes())
		buf.Reset()
	}
	return msgs
}

func stdWriter(level int) func(io.Writer) (flushWriter, error) {
	return func(w io.Writer) (flushWriter, error) { return stdzlib.NewWriterLevel(w, level) }
}

func kpWriter(level int) func(io.Writer) (flushWriter, error) {
	return func(w io.Writer) (flushWriter, error) { return kpzlib.NewWriterLevel(w, level) }
}

func newZlib(t testing.TB, cfg DecoderConfig) Decoder {
	t.Helper()
	d, err := NewDecoder(ZlibStream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// payloadSets are the kinds of data the zlib tests run through every encoder.
func payloadSets() map[string][][]byte {
	rng := rand.New(rand.NewPCG(7, 7))
	random := make([][]byte, 40)
	for i := range random {
		random[i] = make([]byte, rng.IntN(5000))
		for j := range random[i] {
			random[i][j] = byte(rng.Uint32())
		}
	}
	tiny := make([][]byte, 200)
	for i := range tiny {
		tiny[i] = []byte(fmt.Sprintf(`{"op":11,"d":%d}`, i)[:1+i%15])
	}
	// Repeats of a 32 KiB block: matches reach back the whole window into
	// earlier payloads.
	block := sizedPayload(rng, 32768)
	var far [][]byte
	for i := range 6 {
		far = append(far, block[i*5000%32768:], block[:i*5000%32768], block)
	}
	runs := [][]byte{bytes.Repeat([]byte("a"), 70000), bytes.Repeat([]byte("ab"), 300), {}, []byte("x"), {}, bytes.Repeat([]byte{0}, 258*3)}
	return map[string][][]byte{
		"gateway": gatewayPayloads(11, 400),
		"random":  random,
		"tiny":    tiny,
		"far":     far,
		"runs":    runs,
		"empty":   {{}, {}, []byte("{}"), {}},
	}
}

// TestZlibEncoderFraming checks what Encode emits against Discord's framing,
// and that the stream is a plain zlib stream for another decoder.
func TestZlibEncoderFraming(t *testing.T) {
	payloads := gatewayPayloads(5, 200)
	for _, level := range []int{0, 1, 6, 9} {
		msgs := encodeAll(t, ZlibStream, EncoderConfig{Level: level}, payloads)
		if !bytes.HasPrefix(msgs[0], []byte{0x78, 0x9c}) {
			t.Errorf("level %d: first message starts % x, want 78 9c", level, msgs[0][:2])
		}
		var all []byte
		for i, m := range msgs {
			if !bytes.HasSuffix(m, []byte{0, 0, 0xff, 0xff}) {
				t.Fatalf("level %d: message %d ends % x, want 00 00 ff ff", level, i, m[max(0, len(m)-4):])
			}
			all = append(all, m...)
		}
		zr, err := stdzlib.NewReader(bytes.NewReader(all))
		if err != nil {
			t.Fatalf("level %d: compress/zlib rejects the stream: %v", level, err)
		}
		for i, p := range payloads {
			got := make([]byte, len(p))
			if _, err := io.ReadFull(zr, got); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("level %d: compress/zlib payload %d = %s, %v; want %s", level, i, describe(got), err, describe(p))
			}
		}
	}
}

// TestZlibDecodesOtherEncoders decodes streams written by compress/zlib and
// klauspost/compress/zlib at every kind of level: stored blocks, fixed and
// dynamic Huffman, Huffman only.
func TestZlibDecodesOtherEncoders(t *testing.T) {
	writers := map[string]func(io.Writer) (flushWriter, error){
		"std-0": stdWriter(0), "std-1": stdWriter(1), "std-6": stdWriter(6), "std-9": stdWriter(9), "std-huffman": stdWriter(-2),
		"kp-0": kpWriter(0), "kp-1": kpWriter(1), "kp-5": kpWriter(5), "kp-9": kpWriter(9), "kp-huffman": kpWriter(-2),
	}
	for setName, payloads := range payloadSets() {
		for wName, w := range writers {
			t.Run(setName+"/"+wName, func(t *testing.T) {
				t.Parallel()
				msgs := encodeWith(t, w, payloads)
				decodeAll(t, newZlib(t, DecoderConfig{}), msgs, payloads)
			})
		}
		for _, level := range []int{0, 1, 9} {
			t.Run(fmt.Sprintf("%s/ours-%d", setName, level), func(t *testing.T) {
				t.Parallel()
				msgs := encodeAll(t, ZlibStream, EncoderConfig{Level: level}, payloads)
				decodeAll(t, newZlib(t, DecoderConfig{}), msgs, payloads)
			})
		}
	}
}

// chunkSource is the source of the naive decoder: the current message, then
// io.EOF. It is an io.ByteReader, so flate never reads ahead of what it needs.
type chunkSource struct{ b []byte }

func (s *chunkSource) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func (s *chunkSource) ReadByte() (byte, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c, nil
}

// naiveZlib is the natural decoding loop, kept here as the reference for the
// bug this package avoids: feed the message to one zlib reader per
// connection, Read (with a buffer larger than the window) until the message
// is consumed.
type naiveZlib struct {
	src chunkSource
	zr  io.Reader
	buf [64 << 10]byte
}

func (n *naiveZlib) decode(msg []byte) ([]byte, error) {
	n.src.b = msg
	if n.zr == nil {
		zr, err := kpzlib.NewReader(&n.src)
		if err != nil {
			return nil, err
		}
		n.zr = zr
	}
	var out []byte
	for len(n.src.b) > 0 {
		k, err := n.zr.Read(n.buf[:])
		out = append(out, n.buf[:k]...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// windowAlignedSizes returns payload sizes whose running total lands on a
// multiple of 32 KiB again and again, in every way: one payload of exactly
// 32 KiB, payloads of 32767 and 32769 bytes, 64 KiB, and random pairs that
// add up to the next boundary.
func windowAlignedSizes(rng *rand.Rand) []int {
	sizes := []int{32768, 32767, 1, 32769, 32767, 65536, 1000, 31768, 16384, 16384, 32768 * 3, 100, 32668}
	total := 0
	for _, s := range sizes {
		total += s
	}
	for range 40 {
		a := 1 + rng.IntN(32767)
		sizes = append(sizes, a)
		total += a
		// The second of the pair ends on the next boundary, sometimes one
		// further.
		b := (total/32768+1)*32768 - total + 32768*rng.IntN(2)
		sizes = append(sizes, b)
		total += b
	}
	return sizes
}

func payloadsOfSizes(rng *rand.Rand, sizes []int) [][]byte {
	ps := make([][]byte, len(sizes))
	for i, n := range sizes {
		ps[i] = sizedPayload(rng, n)
	}
	return ps
}

// TestZlibWindowBoundary forces the case that breaks the natural decoding
// loop: a payload whose output ends exactly where the 32 KiB window fills.
// It first shows that the naive loop fails on this input, at the first such
// payload, and succeeds when the boundaries are shifted; then that Decoder
// returns every payload byte for byte.
func TestZlibWindowBoundary(t *testing.T) {
	rng := rand.New(rand.NewPCG(32768, 1))
	sizes := windowAlignedSizes(rng)
	payloads := payloadsOfSizes(rng, sizes)
	aligned := 0
	total := 0
	for _, s := range sizes {
		total += s
		if total%32768 == 0 {
			aligned++
		}
	}
	if aligned < 40 {
		t.Fatalf("only %d payloads end on a window boundary", aligned)
	}

	// The same sizes with the first payload a little longer, so that no
	// payload ends on a boundary.
	var control []int
	for delta := 1; control == nil; delta++ {
		control = append([]int{sizes[0] + delta}, sizes[1:]...)
		total = 0
		for _, s := range control {
			total += s
			if total%32768 == 0 {
				control = nil
				break
			}
		}
	}
	controlPayloads := payloadsOfSizes(rng, control)

	encoders := map[string]func(testing.TB, [][]byte) [][]byte{
		"ours-0": func(t testing.TB, ps [][]byte) [][]byte { return encodeAll(t, ZlibStream, EncoderConfig{}, ps) },
		"ours-1": func(t testing.TB, ps [][]byte) [][]byte { return encodeAll(t, ZlibStream, EncoderConfig{Level: 1}, ps) },
		"std-6":  func(t testing.TB, ps [][]byte) [][]byte { return encodeWith(t, stdWriter(6), ps) },
		"std-0":  func(t testing.TB, ps [][]byte) [][]byte { return encodeWith(t, stdWriter(0), ps) },
	}
	for name, encode := range encoders {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msgs := encode(t, payloads)

			// The reference loop breaks, and where it breaks is a boundary.
			naive := new(naiveZlib)
			total, failedAt := 0, -1
			for i, m := range msgs {
				total += len(payloads[i])
				if _, err := naive.decode(m); err != nil {
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("naive decode(message %d) error %v, want io.ErrUnexpectedEOF", i, err)
					}
					failedAt = i
					break
				}
			}
			if failedAt < 0 {
				t.Fatal("naive decoder decoded window-aligned payloads; the test does not reach the bug")
			}
			if total%32768 != 0 {
				t.Fatalf("naive decoder failed at message %d, ending at %d, not on a window boundary", failedAt, total)
			}
			t.Logf("naive loop fails at message %d, whose output ends at %d = %d × 32 KiB", failedAt, total, total/32768)

			// Control: without aligned payloads the naive loop is fine.
			naive = new(naiveZlib)
			for i, m := range encode(t, controlPayloads) {
				got, err := naive.decode(m)
				if err != nil || !bytes.Equal(got, controlPayloads[i]) {
					t.Fatalf("naive decode(control message %d) = %s, %v; want the payload", i, describe(got), err)
				}
			}

			decodeAll(t, newZlib(t, DecoderConfig{}), msgs, payloads)
		})
	}
}

// splitMessage cuts m into 1 to 4 parts at random points, empty parts
// included.
func splitMessage(rng *rand.Rand, m []byte) [][]byte {
	cuts := []int{0, len(m)}
	for range rng.IntN(4) {
		cuts = append(cuts, rng.IntN(len(m)+1))
	}
	// A cut inside the 00 00 ff ff marker now and then.
	if rng.IntN(4) == 0 && len(m) >= 4 {
		cuts = append(cuts, len(m)-1-rng.IntN(3))
	}
	slicesSort(cuts)
	parts := make([][]byte, 0, len(cuts)-1)
	for i := 1; i < len(cuts); i++ {
		parts = append(parts, m[cuts[i-1]:cuts[i]])
	}
	return parts
}

func slicesSort(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// decodeSplit feeds each message in random parts and checks that only the
// part reaching the end of the message completes the payload (empty parts
// after it complete nothing).
func decodeSplit(t *testing.T, dec Decoder, rng *rand.Rand, msgs, payloads [][]byte) {
	t.Helper()
	for i, m := range msgs {
		parts := splitMessage(rng, m)
		end, done := 0, false
		for j, part := range parts {
			if rng.IntN(4) == 0 {
				dec.Idle()
			}
			out, ok, err := dec.Decode(nil, part)
			if err != nil {
				t.Fatalf("Decode(message %d part %d of %d) error: %v", i, j, len(parts), err)
			}
			end += len(part)
			last := end == len(m) && !done
			done = done || last
			if ok != last {
				t.Fatalf("Decode(message %d part %d of %d, %d bytes) ok = %v, want %v", i, j, len(parts), len(part), ok, last)
			}
			if ok && !bytes.Equal(out, payloads[i]) {
				t.Fatalf("Decode(message %d, split) = %s; want %s", i, describe(out), describe(payloads[i]))
			}
			if !ok && len(out) != 0 {
				t.Fatalf("Decode(message %d part %d) appended %d bytes while incomplete", i, j, len(out))
			}
		}
	}
}

func TestZlibSplitMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	payloads := gatewayPayloads(12, 500)
	for _, level := range []int{0, 9} {
		msgs := encodeAll(t, ZlibStream, EncoderConfig{Level: level}, payloads)
		decodeSplit(t, newZlib(t, DecoderConfig{}), rng, msgs, payloads)
	}
	sizes := windowAlignedSizes(rng)
	big := payloadsOfSizes(rng, sizes)
	decodeSplit(t, newZlib(t, DecoderConfig{}), rng, encodeAll(t, ZlibStream, EncoderConfig{}, big), big)
}

// TestZlibFalseMarker sends a payload in a stored block whose data contains
// 00 00 ff ff, cut right after it: the first part looks complete but is not.
func TestZlibFalseMarker(t *testing.T) {
	payload := []byte("abc\x00\x00\xff\xffdef")
	msgs := encodeWith(t, stdWriter(0), [][]byte{[]byte("first"), payload, []byte("third")})
	m := msgs[1]
	cut := bytes.Index(m, []byte("\x00\x00\xff\xffdef")) + 4
	dec := newZlib(t, DecoderConfig{})
	decodeAll(t, dec, msgs[:1], [][]byte{[]byte("first")})
	out, ok, err := dec.Decode(nil, m[:cut])
	if ok || err != nil {
		t.Fatalf("Decode(part ending in a false marker) = %q, %v, %v; want not ok", out, ok, err)
	}
	out, ok, err = dec.Decode(nil, m[cut:])
	if !ok || err != nil || !bytes.Equal(out, payload) {
		t.Fatalf("Decode(rest) = %q, %v, %v; want %q", out, ok, err, payload)
	}
	decodeAll(t, dec, msgs[2:], [][]byte{[]byte("third")})
}

func TestZlibCorrupt(t *testing.T) {
	valid := encodeAll(t, ZlibStream, EncoderConfig{}, gatewayPayloads(4, 3))
	// The second message refers back into the first; alone it reaches
	// beyond the window.
	orphan := append([]byte{0x78, 0x9c}, valid[1]...)
	tests := []struct {
		name string
		msgs [][]byte
	}{
		{"header check bits", [][]byte{{0x78, 0x9d, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff}}},
		{"not deflate", [][]byte{{0x79, 0x9c, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff}}},
		{"preset dictionary", [][]byte{{0x78, 0xbb, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff}}},
		{"reserved block type", [][]byte{{0x78, 0x9c, 0x06, 0x00, 0x00, 0xff, 0xff}}},
		{"final block", [][]byte{{0x78, 0x9c, 0x01, 0x00, 0x00, 0xff, 0xff}}},
		{"stored length check", [][]byte{{0x78, 0x9c, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff}}},
		{"distance beyond window", [][]byte{orphan}},
		{"garbage after valid", [][]byte{valid[0], {0xff, 0xfe, 0xfd, 0x00, 0x00, 0xff, 0xff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newZlib(t, DecoderConfig{})
			var err error
			for _, m := range tt.msgs {
				if _, _, err = dec.Decode(nil, m); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(%s) error = %v, want ErrCorrupt", tt.name, err)
			}
			// Sticky until Reset.
			if _, ok, err2 := dec.Decode(nil, valid[0]); ok || err2 != err {
				t.Fatalf("Decode after error = %v, %v; want the same error %v", ok, err2, err)
			}
			dec.Reset()
			decodeAll(t, dec, valid, gatewayPayloads(4, 3))
		})
	}
}

func TestZlibPayloadTooLarge(t *testing.T) {
	big := sizedPayload(rand.New(rand.NewPCG(1, 1)), 5000)
	msgs := encodeAll(t, ZlibStream, EncoderConfig{}, [][]byte{[]byte("ok"), big})
	dec := newZlib(t, DecoderConfig{MaxPayload: 4096})
	decodeAll(t, dec, msgs[:1], [][]byte{[]byte("ok")})
	if _, _, err := dec.Decode(nil, msgs[1]); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Decode(5000-byte payload, MaxPayload 4096) error = %v, want ErrPayloadTooLarge", err)
	}

	// Parts of a payload that never ends count too.
	dec = newZlib(t, DecoderConfig{MaxPayload: 4096})
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, _, err = dec.Decode(nil, bytes.Repeat([]byte{1}, 1000))
	}
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Decode(5 KB without a marker, MaxPayload 4096) error = %v, want ErrPayloadTooLarge", err)
	}
}

// TestZlibMaxPayloadExact accepts a payload of exactly MaxPayload bytes.
func TestZlibMaxPayloadExact(t *testing.T) {
	p := sizedPayload(rand.New(rand.NewPCG(2, 2)), 4096)
	for _, level := range []int{0, 9} {
		msgs := encodeAll(t, ZlibStream, EncoderConfig{Level: level}, [][]byte{p})
		decodeAll(t, newZlib(t, DecoderConfig{MaxPayload: 4096}), msgs, [][]byte{p})
	}
}

// TestZlibIdle packs the window between payloads and checks that decoding
// goes on byte for byte: with a window not yet full, one full and wrapped,
// one ending exactly on the ring's start, and across Reset.
func TestZlibIdle(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	payloads := gatewayPayloads(5, 300)
	msgs := encodeAll(t, ZlibStream, EncoderConfig{}, payloads)
	dec := newZlib(t, DecoderConfig{}).(*zlibDecoder)
	dec.Idle() // a fresh decoder has nothing to pack
	if dec.inf.hist != nil || dec.inf.packed != nil {
		t.Fatalf("fresh decoder after Idle: hist %v packed %d bytes", dec.inf.hist != nil, len(dec.inf.packed))
	}
	var packedMax int
	for i, m := range msgs {
		out, ok, err := dec.Decode(nil, m)
		if err != nil || !ok || !bytes.Equal(out, payloads[i]) {
			t.Fatalf("Decode(message %d) = %s, %v, %v; want %s", i, describe(out), ok, err, describe(payloads[i]))
		}
		if rng.IntN(2) == 0 {
			dec.Idle()
			if dec.inf.hist != nil {
				t.Fatalf("after Idle (message %d): window still held", i)
			}
			if len(dec.inf.packed) >= windowSize/2 {
				t.Errorf("after message %d: %d bytes of window packed to %d, want under half", i, dec.inf.hlen, len(dec.inf.packed))
			}
			packedMax = max(packedMax, len(dec.inf.packed))
		}
	}
	if dec.inf.hlen != windowSize || dec.inf.hpos == 0 {
		t.Fatalf("the test wants a full, wrapped window; hlen %d hpos %d", dec.inf.hlen, dec.inf.hpos)
	}
	t.Logf("largest packed window: %d bytes", packedMax)

	// A payload in progress keeps the window: Idle does nothing.
	next := encodeAll(t, ZlibStream, EncoderConfig{}, append(payloads[:len(payloads):len(payloads)], payloads[7]))
	last := next[len(next)-1]
	dec2 := newZlib(t, DecoderConfig{}).(*zlibDecoder)
	decodeAll(t, dec2, next[:len(next)-1], payloads)
	if _, ok, err := dec2.Decode(nil, last[:len(last)/2]); ok || err != nil {
		t.Fatalf("first half: ok %v err %v", ok, err)
	}
	dec2.Idle()
	if dec2.inf.hist == nil {
		t.Fatal("Idle packed the window in the middle of a payload")
	}
	if out, ok, err := dec2.Decode(nil, last[len(last)/2:]); !ok || err != nil || !bytes.Equal(out, payloads[7]) {
		t.Fatalf("second half: %s, %v, %v", describe(out), ok, err)
	}

	// Sizes that land the ring's write position on 0 with a full window.
	sizes := []int{windowSize, 100, windowSize - 100, 5}
	big := payloadsOfSizes(rng, sizes)
	dec.Reset()
	for i, m := range encodeAll(t, ZlibStream, EncoderConfig{}, big) {
		dec.Idle()
		out, ok, err := dec.Decode(nil, m)
		if err != nil || !ok || !bytes.Equal(out, big[i]) {
			t.Fatalf("after Reset, Decode(payload %d of %d bytes) = %s, %v, %v", i, sizes[i], describe(out), ok, err)
		}
	}
}

// TestZlibIdleCorruptPack checks that a damaged packed window is reported
// as ErrCorrupt, not decoded into wrong bytes.
func TestZlibIdleCorruptPack(t *testing.T) {
	payloads := gatewayPayloads(6, 40)
	msgs := encodeAll(t, ZlibStream, EncoderConfig{}, payloads)
	dec := newZlib(t, DecoderConfig{}).(*zlibDecoder)
	decodeAll(t, dec, msgs[:20], payloads[:20])
	dec.Idle()
	dec.inf.packed = dec.inf.packed[:len(dec.inf.packed)/2]
	if _, _, err := dec.Decode(nil, msgs[20]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode after a damaged pack = %v, want ErrCorrupt", err)
	}
}
