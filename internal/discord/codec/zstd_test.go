package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func newZstd(t testing.TB, cfg DecoderConfig) Decoder {
	t.Helper()
	d, err := NewDecoder(ZstdStream, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// zstdFrameHeader is a frame header with no content size and no checksum
// whose window descriptor is wd.
func zstdFrameHeader(wd byte) []byte {
	return []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, wd}
}

// rawBlock is a raw block holding p.
func rawBlock(p []byte, last bool) []byte {
	h := uint32(len(p)) << 3
	if last {
		h |= 1
	}
	return append([]byte{byte(h), byte(h >> 8), byte(h >> 16)}, p...)
}

// emptyCompressedBlockBytes is a compressed block with no literals and no
// sequences.
var emptyCompressedBlockBytes = []byte{2<<1 | 2<<3, 0, 0, 0x00, 0x00}

// TestZstdEncoderFraming checks the bytes Encode emits: Discord's frame
// header first, then flushed blocks of a frame that is never closed, one
// block per payload up to 128 KiB, and a stream another decoder reads.
func TestZstdEncoderFraming(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	payloads := append(gatewayPayloads(6, 200), sizedPayload(rng, 300<<10), []byte("{}"))
	for _, level := range []int{0, 1, 3, 9} {
		msgs := encodeAll(t, ZstdStream, EncoderConfig{Level: level}, payloads)
		want := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x40}
		if !bytes.HasPrefix(msgs[0], want) {
			t.Fatalf("level %d: first message starts % x, want % x", level, msgs[0][:6], want)
		}
		st := zstdWalk{}
		var all []byte
		for i, m := range msgs {
			feed, complete, next, err := scanZstd(m, st)
			if err != nil || !complete || feed != len(m) {
				t.Fatalf("level %d: message %d walks to %d of %d, complete %v, error %v", level, i, feed, len(m), complete, err)
			}
			if !next.inFrame {
				t.Fatalf("level %d: message %d closes the frame", level, i)
			}
			st = next
			all = append(all, m...)
		}
		zr, err := zstd.NewReader(bytes.NewReader(all), zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range payloads {
			got := make([]byte, len(p))
			if _, err := io.ReadFull(zr, got); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("level %d: zstd.Decoder payload %d = %s, %v; want %s", level, i, describe(got), err, describe(p))
			}
		}
		zr.Close()
		decodeAll(t, newZstd(t, DecoderConfig{}), msgs, payloads)
	}
}

// TestZstdEmptyPayload: an empty payload sends nothing, and nothing decodes
// to no payload.
func TestZstdEmptyPayload(t *testing.T) {
	msgs := encodeAll(t, ZstdStream, EncoderConfig{}, [][]byte{{}, []byte("x")})
	if len(msgs[0]) != 0 {
		t.Errorf("Encode(empty payload) = % x, want nothing", msgs[0])
	}
	dec := newZstd(t, DecoderConfig{})
	if out, ok, err := dec.Decode(nil, msgs[0]); ok || err != nil || len(out) != 0 {
		t.Errorf("Decode(empty message) = %q, %v, %v; want not ok", out, ok, err)
	}
	decodeAll(t, dec, msgs[1:], [][]byte{[]byte("x")})
}

// TestZstdUnits feeds hand-made streams with units the encoder never makes:
// empty blocks after the payload, a message with only a frame header, a
// closed frame followed by a new one, a checksum, skippable frames.
func TestZstdUnits(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	skippable := []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'}
	checksumHeader := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x40}
	tests := []struct {
		name string
		msgs [][]byte
		want []string // "" with ok false for messages that complete nothing
	}{
		{"trailing empty raw block", [][]byte{
			cat(zstdFrameHeader(0x40), rawBlock([]byte("abc"), false), rawBlock(nil, false)),
			rawBlock([]byte("def"), false),
		}, []string{"abc", "def"}},
		{"trailing empty compressed block", [][]byte{
			cat(zstdFrameHeader(0x40), rawBlock([]byte("abc"), false), emptyCompressedBlockBytes),
			rawBlock([]byte("def"), false),
		}, []string{"abc", "def"}},
		{"header alone", [][]byte{
			zstdFrameHeader(0x40),
			rawBlock([]byte("abc"), false),
			rawBlock([]byte("def"), false),
		}, []string{"", "abc", "def"}},
		{"closed frame then a new one", [][]byte{
			cat(zstdFrameHeader(0x40), rawBlock([]byte("abc"), true)),
			cat(zstdFrameHeader(0x40), rawBlock([]byte("def"), false)),
			cat(rawBlock([]byte("ghi"), true), skippable),
			cat(zstdFrameHeader(0x40), rawBlock([]byte("jkl"), false)),
		}, []string{"abc", "def", "ghi", "jkl"}},
		{"skippable frame first", [][]byte{
			cat(skippable, zstdFrameHeader(0x40), rawBlock([]byte("abc"), false)),
		}, []string{"abc"}},
		{"frame with a checksum", [][]byte{
			cat(checksumHeader, rawBlock([]byte("abc"), false)),
			// xxhash64("abcdef") low 32 bits, little-endian.
			cat(rawBlock([]byte("def"), true), binary.LittleEndian.AppendUint32(nil, zstdChecksum(t, "abcdef"))),
		}, []string{"abc", "def"}},
		{"empty block alone", [][]byte{
			cat(zstdFrameHeader(0x40), rawBlock([]byte("abc"), false)),
			rawBlock(nil, false),
			rawBlock([]byte("def"), false),
		}, []string{"abc", "", "def"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newZstd(t, DecoderConfig{})
			for i, m := range tt.msgs {
				out, ok, err := dec.Decode(nil, m)
				if err != nil || ok != (tt.want[i] != "") || string(out) != tt.want[i] {
					t.Fatalf("Decode(message %d) = %q, %v, %v; want %q", i, out, ok, err, tt.want[i])
				}
			}
		})
	}
}

// zstdChecksum is the frame checksum of s, taken from a frame klauspost/compress
// writes with a checksum.
func zstdChecksum(t *testing.T, s string) uint32 {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	frame := enc.EncodeAll([]byte(s), nil)
	return binary.LittleEndian.Uint32(frame[len(frame)-4:])
}

// TestZstdWindowTooLarge refuses frames whose window exceeds MaxWindow,
// including absurd ones, before allocating for them.
func TestZstdWindowTooLarge(t *testing.T) {
	tests := []struct {
		name      string
		wd        byte
		maxWindow int
		wantErr   error
	}{
		{"discord 256 KiB", 0x40, 0, nil},
		{"1 MiB at the default cap", 0x50, 0, nil},
		{"8 MiB at the default cap", 0x68, 0, ErrWindowTooLarge},
		{"8 MiB with an 8 MiB cap", 0x68, 8 << 20, nil},
		{"2 GiB", 0xa8, 0, ErrWindowTooLarge},
		{"largest descriptor", 0xff, 64 << 20, ErrWindowTooLarge},
		{"256 KiB with a 128 KiB cap", 0x40, 128 << 10, ErrWindowTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newZstd(t, DecoderConfig{MaxWindow: tt.maxWindow})
			msg := append(zstdFrameHeader(tt.wd), rawBlock([]byte("hello"), false)...)
			out, ok, err := dec.Decode(nil, msg)
			if tt.wantErr == nil {
				if err != nil || !ok || string(out) != "hello" {
					t.Fatalf("Decode = %q, %v, %v; want hello", out, ok, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decode error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestZstdSplitMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	payloads := gatewayPayloads(13, 500)
	payloads = append(payloads, sizedPayload(rng, 100<<10), sizedPayload(rng, 32768))
	for _, level := range []int{0, 3} {
		msgs := encodeAll(t, ZstdStream, EncoderConfig{Level: level}, payloads)
		decodeSplit(t, newZstd(t, DecoderConfig{}), rng, msgs, payloads)
	}
}

func TestZstdCorrupt(t *testing.T) {
	payloads := gatewayPayloads(4, 3)
	valid := encodeAll(t, ZstdStream, EncoderConfig{}, payloads)
	garbled := bytes.Clone(valid[0])
	for i := 9; i < len(garbled); i += 3 {
		garbled[i] ^= 0x5a
	}
	tests := []struct {
		name string
		msgs [][]byte
	}{
		{"bad magic", [][]byte{{0x28, 0xb5, 0x2f, 0xfe, 0x00, 0x40, 0x28, 0, 0, 'h', 'e', 'l', 'l', 'o'}}},
		{"reserved header bit", [][]byte{{0x28, 0xb5, 0x2f, 0xfd, 0x08, 0x40, 0x28, 0, 0, 'h', 'e', 'l', 'l', 'o'}}},
		{"reserved block type", [][]byte{append(zstdFrameHeader(0x40), 0x06, 0, 0)}},
		{"block over 128 KiB", [][]byte{append(zstdFrameHeader(0x40), 0xf8, 0xff, 0xff)}},
		{"garbled block", [][]byte{garbled}},
		{"garbage after valid", [][]byte{valid[0], {0x24, 0, 0, 0xff, 0xff, 0xff, 0xff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := newZstd(t, DecoderConfig{})
			var err error
			for _, m := range tt.msgs {
				if _, _, err = dec.Decode(nil, m); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode(%s) error = %v, want ErrCorrupt", tt.name, err)
			}
			if _, ok, err2 := dec.Decode(nil, valid[0]); ok || err2 != err {
				t.Fatalf("Decode after error = %v, %v; want the same error %v", ok, err2, err)
			}
			dec.Reset()
			decodeAll(t, dec, valid, payloads)
		})
	}
}

func TestZstdPayloadTooLarge(t *testing.T) {
	big := sizedPayload(rand.New(rand.NewPCG(1, 1)), 5000)
	msgs := encodeAll(t, ZstdStream, EncoderConfig{}, [][]byte{[]byte("ok"), big})
	dec := newZstd(t, DecoderConfig{MaxPayload: 4096})
	decodeAll(t, dec, msgs[:1], [][]byte{[]byte("ok")})
	if _, _, err := dec.Decode(nil, msgs[1]); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("Decode(5000-byte payload, MaxPayload 4096) error = %v, want ErrPayloadTooLarge", err)
	}
}
