package codec

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/flate"
)

// fuzzSizes picks payload sizes from rng: small ones, ones that end the
// stream's output exactly on a 32 KiB window boundary, the sizes around the
// window, and large ones, at most about 200 KB in all.
func fuzzSizes(rng *rand.Rand) []int {
	var sizes []int
	total := 0
	for n := 1 + rng.IntN(24); n > 0 && total < 200<<10; n-- {
		var s int
		switch rng.IntN(5) {
		case 0, 1:
			s = rng.IntN(2000)
		case 2:
			s = 32768 - total%32768 + 32768*rng.IntN(2)
		case 3:
			s = [...]int{0, 1, 32767, 32768, 32769, 65535, 65536, 65537}[rng.IntN(8)]
		default:
			s = rng.IntN(70000)
		}
		sizes = append(sizes, s)
		total += s
	}
	return sizes
}

// fuzzPayloads cuts payloads of the given sizes out of data repeated, or out
// of gateway-like text when data is empty.
func fuzzPayloads(rng *rand.Rand, data []byte, sizes []int) [][]byte {
	ps := make([][]byte, len(sizes))
	off := 0
	for i, n := range sizes {
		if len(data) == 0 {
			ps[i] = sizedPayload(rng, n)
			continue
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = data[off%len(data)]
			off++
		}
		ps[i] = p
	}
	return ps
}

func fuzzRoundTrip(t *testing.T, c Compression, data []byte, seed uint64, level uint8) {
	rng := rand.New(rand.NewPCG(seed, uint64(len(data))))
	payloads := fuzzPayloads(rng, data, fuzzSizes(rng))
	var msgs [][]byte
	if c == ZlibStream && level >= 10 {
		// Another encoder's block choices: compress/zlib at level-10-1.
		msgs = encodeWith(t, stdWriter(int(level%10)), payloads)
	} else {
		msgs = encodeAll(t, c, EncoderConfig{Level: int(level % 10)}, payloads)
	}
	dec, err := NewDecoder(c, DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		parts := [][]byte{m}
		// zstd payloads over 128 KiB take several blocks, and a cut between
		// blocks is indistinguishable from the end of a payload.
		if c == ZlibStream || len(payloads[i]) <= zstdMaxBlock {
			parts = splitMessage(rng, m)
		}
		end, done := 0, false
		for j, part := range parts {
			if rng.IntN(3) == 0 {
				dec.Idle() // packs the window between payloads, does nothing inside one
			}
			out, ok, err := dec.Decode(nil, part)
			if err != nil {
				t.Fatalf("Decode(message %d part %d) error: %v", i, j, err)
			}
			end += len(part)
			last := end == len(m) && !done && (len(payloads[i]) > 0 || c == ZlibStream)
			done = done || last
			if ok != last {
				t.Fatalf("Decode(message %d part %d of %d) ok = %v, want %v", i, j, len(parts), ok, last)
			}
			if ok && !bytes.Equal(out, payloads[i]) {
				t.Fatalf("Decode(message %d) = %s; want %s", i, describe(out), describe(payloads[i]))
			}
		}
	}
}

func FuzzZlibRoundTrip(f *testing.F) {
	f.Add([]byte(nil), uint64(1), uint8(0))
	f.Add([]byte(nil), uint64(2), uint8(1))
	f.Add([]byte(nil), uint64(3), uint8(16))
	f.Add([]byte("abc"), uint64(4), uint8(9))
	f.Add([]byte{0, 0, 0xff, 0xff}, uint64(5), uint8(10))
	f.Add(bytes.Repeat([]byte{0x78, 0x9c, 1, 2, 3}, 40), uint64(6), uint8(6))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, level uint8) {
		fuzzRoundTrip(t, ZlibStream, data, seed, level%20)
	})
}

func FuzzZstdRoundTrip(f *testing.F) {
	f.Add([]byte(nil), uint64(1), uint8(0))
	f.Add([]byte(nil), uint64(2), uint8(3))
	f.Add([]byte("abc"), uint64(3), uint8(9))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, uint64(4), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, level uint8) {
		fuzzRoundTrip(t, ZstdStream, data, seed, level%10)
	})
}

// FuzzDecodeGarbage feeds arbitrary bytes, cut into messages, to both
// decoders, fresh or after a valid start, bare or dressed as a payload end
// (zlib) or a frame (zstd). It must return a documented error or payloads,
// never panic.
func FuzzDecodeGarbage(f *testing.F) {
	valid := encodeAll(f, ZlibStream, EncoderConfig{}, gatewayPayloads(9, 4))
	validZstd := encodeAll(f, ZstdStream, EncoderConfig{}, gatewayPayloads(9, 4))
	f.Add(bytes.Join(valid, nil), uint64(1), uint8(0))
	f.Add(valid[1], uint64(2), uint8(2))
	f.Add(bytes.Join(validZstd, nil), uint64(3), uint8(1))
	f.Add(validZstd[2], uint64(4), uint8(7))
	f.Add([]byte{0x78, 0x9c, 0x04, 0xc0, 0x21, 0x0d, 0x00, 0x00, 0x00, 0xff, 0xff}, uint64(5), uint8(4))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x40, 0x24, 0x00, 0x00, 0x11, 0x22}, uint64(6), uint8(5))
	f.Add(valid[0][2:len(valid[0])-4], uint64(7), uint8(8))
	f.Add([]byte{0x04, 0xc0, 0x21, 0x0d, 0x00, 0x00}, uint64(8), uint8(8))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, mode uint8) {
		c := ZlibStream
		prefix := valid
		if mode&1 != 0 {
			c, prefix = ZstdStream, validZstd
		}
		dec, err := NewDecoder(c, DecoderConfig{MaxPayload: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if mode&2 != 0 {
			for i, m := range prefix {
				if _, ok, err := dec.Decode(nil, m); !ok || err != nil {
					t.Fatalf("Decode(valid message %d) = %v, %v", i, ok, err)
				}
			}
		}
		if mode&4 != 0 {
			if c == ZlibStream {
				data = append(bytes.Clone(data), 0, 0, 0xff, 0xff)
			} else if mode&2 == 0 {
				data = append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x40}, data...)
			}
		}
		if c == ZlibStream && mode&(2|8) == 8 {
			checkInflateReference(t, dec, data)
			return
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		for _, part := range splitMessage(rng, data) {
			out, ok, err := dec.Decode(nil, part)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrPayloadTooLarge) && !errors.Is(err, ErrWindowTooLarge) {
					t.Fatalf("Decode(garbage) error %v wraps no sentinel", err)
				}
				if _, ok2, err2 := dec.Decode(nil, part); ok2 || err2 != err {
					t.Fatalf("Decode after error = %v, %v; want the same error", ok2, err2)
				}
				return
			}
			if !ok && len(out) != 0 {
				t.Fatalf("Decode(garbage) appended %d bytes without completing a payload", len(out))
			}
			if len(out) > 1<<20 {
				t.Fatalf("Decode(garbage) returned %d bytes, over MaxPayload", len(out))
			}
		}
	})
}

// checkInflateReference decodes deflate data ending in a sync flush as one
// payload and, when that succeeds, checks the output against
// klauspost/compress/flate on the same bytes: it must have produced the same
// output by the time it runs out of input.
func checkInflateReference(t *testing.T, dec Decoder, data []byte) {
	body := append(bytes.Clone(data), 0, 0, 0xff, 0xff)
	out, ok, err := dec.Decode(nil, append([]byte{0x78, 0x9c}, body...))
	if err != nil || !ok {
		return
	}
	ref, refErr := io.ReadAll(flate.NewReader(&chunkSource{b: body}))
	if refErr == nil || !bytes.Equal(out, ref) {
		t.Fatalf("Decode(deflate % x) = %s; klauspost/compress/flate gives %s, %v", data, describe(out), describe(ref), refErr)
	}
}
