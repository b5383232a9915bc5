package codec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gatewayPayload returns a dispatch that looks like real gateway traffic, about
// 1 KB on average (MESSAGE_CREATE 0.5-2 KB, PRESENCE_UPDATE and
// GUILD_MEMBER_UPDATE smaller): the same keys over and over, fresh snowflakes
// and text.
func gatewayPayload(rng *rand.Rand, seq int) []byte {
	words := [...]string{"hello", "shard", "gateway", "the", "a", "resume", "bot", "ping", "pong", "lorem", "ipsum", "discord", "event", "guild", "member"}
	snow := func(b []byte) []byte {
		return strconv.AppendUint(b, 1<<60|rng.Uint64()>>6, 10)
	}
	b := make([]byte, 0, 1400)
	switch rng.IntN(4) {
	case 0, 1:
		b = append(b, `{"t":"MESSAGE_CREATE","s":`...)
		b = strconv.AppendInt(b, int64(seq), 10)
		b = append(b, `,"op":0,"d":{"type":0,"tts":false,"timestamp":"2026-11-22T10:`...)
		b = strconv.AppendInt(b, int64(10+rng.IntN(50)), 10)
		b = append(b, `:00.000000+00:00","pinned":false,"nonce":"`...)
		b = snow(b)
		b = append(b, `","mentions":[],"mention_roles":[],"mention_everyone":false,"member":{"roles":["`...)
		b = snow(b)
		b = append(b, `"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"2025-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,"avatar":null},"id":"`...)
		b = snow(b)
		b = append(b, `","flags":0,"embeds":[],"edited_timestamp":null,"content":"`...)
		for range 20 + rng.IntN(200) {
			b = append(b, words[rng.IntN(len(words))]...)
			b = append(b, ' ')
		}
		b = append(b, `","components":[],"channel_id":"`...)
		b = snow(b)
		b = append(b, `","author":{"username":"user`...)
		b = strconv.AppendInt(b, int64(rng.IntN(5000)), 10)
		b = append(b, `","public_flags":0,"id":"`...)
		b = snow(b)
		b = append(b, `","global_name":null,"discriminator":"0","avatar":"`...)
		b = strconv.AppendUint(b, rng.Uint64(), 16)
		b = strconv.AppendUint(b, rng.Uint64(), 16)
		b = append(b, `"},"attachments":[],"guild_id":"`...)
		b = snow(b)
		b = append(b, `"}}`...)
	case 2:
		b = append(b, `{"t":"PRESENCE_UPDATE","s":`...)
		b = strconv.AppendInt(b, int64(seq), 10)
		b = append(b, `,"op":0,"d":{"user":{"id":"`...)
		b = snow(b)
		b = append(b, `"},"status":"online","guild_id":"`...)
		b = snow(b)
		b = append(b, `","client_status":{"desktop":"online"},"activities":[{"type":0,"name":"`...)
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, `","id":"`...)
		b = strconv.AppendUint(b, rng.Uint64(), 16)
		b = append(b, `","created_at":`...)
		b = strconv.AppendInt(b, 1700000000000+rng.Int64N(1e10), 10)
		b = append(b, `}]}}`...)
	default:
		b = append(b, `{"t":"GUILD_MEMBER_UPDATE","s":`...)
		b = strconv.AppendInt(b, int64(seq), 10)
		b = append(b, `,"op":0,"d":{"user":{"username":"member`...)
		b = strconv.AppendInt(b, int64(rng.IntN(100000)), 10)
		b = append(b, `","public_flags":0,"id":"`...)
		b = snow(b)
		b = append(b, `","global_name":null,"discriminator":"0","bot":false,"avatar":null},"roles":[`...)
		for i := range rng.IntN(8) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = snow(b)
			b = append(b, '"')
		}
		b = append(b, `],"premium_since":null,"pending":false,"nick":null,"joined_at":"2025-06-01T12:00:00.000000+00:00","guild_id":"`...)
		b = snow(b)
		b = append(b, `","flags":0,"deaf":false,"mute":false,"communication_disabled_until":null}}`...)
	}
	return b
}

// gatewayPayloads returns n gateway-like payloads.
func gatewayPayloads(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ps := make([][]byte, n)
	for i := range ps {
		ps[i] = gatewayPayload(rng, i+1)
	}
	return ps
}

// sizedPayload returns n bytes of gateway-like text.
func sizedPayload(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+1500)
	for len(b) < n {
		b = append(b, gatewayPayload(rng, len(b))...)
	}
	return b[:n]
}

// encodeAll encodes each payload into its own message.
func encodeAll(t testing.TB, c Compression, cfg EncoderConfig, payloads [][]byte) [][]byte {
	t.Helper()
	enc, err := NewEncoder(c, cfg)
	if err != nil {
		t.Fatalf("NewEncoder(%v, %+v) error: %v", c, cfg, err)
	}
	msgs := make([][]byte, len(payloads))
	for i, p := range payloads {
		m, err := enc.Encode(nil, p)
		if err != nil {
			t.Fatalf("Encode(payload %d) error: %v", i, err)
		}
		msgs[i] = m
	}
	return msgs
}

// decodeAll decodes one message per payload and checks each payload byte for
// byte.
func decodeAll(t testing.TB, dec Decoder, msgs, payloads [][]byte) {
	t.Helper()
	var buf []byte
	for i, m := range msgs {
		out, ok, err := dec.Decode(buf[:0], m)
		if err != nil || !ok {
			t.Fatalf("Decode(message %d of %d) = ok %v, error %v; want ok", i, len(msgs), ok, err)
		}
		if !bytes.Equal(out, payloads[i]) {
			t.Fatalf("Decode(message %d) = %s; want %s", i, describe(out), describe(payloads[i]))
		}
		buf = out
	}
}

// describe summarizes a payload for failure messages.
func describe(b []byte) string {
	if len(b) <= 64 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes %q...%q", len(b), b[:32], b[len(b)-16:])
}

func TestParseCompression(t *testing.T) {
	tests := []struct {
		in      string
		want    Compression
		wantErr bool
	}{
		{"", None, false},
		{"none", None, false},
		{"zlib-stream", ZlibStream, false},
		{"zstd-stream", ZstdStream, false},
		{"zlib", None, true},
		{"ZLIB-STREAM", None, true},
		{"etf", None, true},
	}
	for _, tt := range tests {
		got, err := ParseCompression(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnknownCompression) {
			t.Errorf("ParseCompression(%q) error %v does not wrap ErrUnknownCompression", tt.in, err)
		}
	}
}

func TestCompressionString(t *testing.T) {
	for c, want := range map[Compression]string{None: "none", ZlibStream: "zlib-stream", ZstdStream: "zstd-stream"} {
		if got := c.String(); got != want {
			t.Errorf("%q.String() = %q, want %q", string(c), got, want)
		}
		if back, err := ParseCompression(c.String()); back != c || err != nil {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q", c.String(), back, err, c)
		}
	}
}

func TestNewUnknown(t *testing.T) {
	if _, err := NewDecoder("deflate", DecoderConfig{}); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("NewDecoder(deflate) error = %v, want ErrUnknownCompression", err)
	}
	if _, err := NewEncoder("deflate", EncoderConfig{}); !errors.Is(err, ErrUnknownCompression) {
		t.Errorf("NewEncoder(deflate) error = %v, want ErrUnknownCompression", err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []DecoderConfig{{MaxWindow: 512}, {MaxPayload: -1}} {
		if _, err := NewDecoder(ZstdStream, cfg); err == nil {
			t.Errorf("NewDecoder(zstd, %+v) = nil error, want error", cfg)
		}
	}
	for _, lvl := range []int{-1, 10} {
		if _, err := NewEncoder(ZlibStream, EncoderConfig{Level: lvl}); err == nil {
			t.Errorf("NewEncoder(zlib, Level %d) = nil error, want error", lvl)
		}
	}
}

func TestNone(t *testing.T) {
	payloads := gatewayPayloads(1, 20)
	msgs := encodeAll(t, None, EncoderConfig{}, payloads)
	for i := range msgs {
		if !bytes.Equal(msgs[i], payloads[i]) {
			t.Fatalf("None Encode(payload %d) changed the payload", i)
		}
	}
	dec, err := NewDecoder(None, DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	decodeAll(t, dec, msgs, payloads)
}

// TestRoundTrip encodes gateway traffic at every level and decodes it, then
// does it again on the same Encoder and Decoder after Reset.
func TestRoundTrip(t *testing.T) {
	payloads := gatewayPayloads(2, 300)
	for _, c := range []Compression{None, ZlibStream, ZstdStream} {
		for _, level := range []int{0, 1, 5, 9} {
			t.Run(fmt.Sprintf("%v/level%d", c, level), func(t *testing.T) {
				t.Parallel()
				enc, err := NewEncoder(c, EncoderConfig{Level: level})
				if err != nil {
					t.Fatal(err)
				}
				dec, err := NewDecoder(c, DecoderConfig{})
				if err != nil {
					t.Fatal(err)
				}
				for round := range 2 {
					var msg, out []byte
					for i, p := range payloads {
						msg, err = enc.Encode(msg[:0], p)
						if err != nil {
							t.Fatalf("round %d: Encode(payload %d) error: %v", round, i, err)
						}
						var ok bool
						out, ok, err = dec.Decode(out[:0], msg)
						if err != nil || !ok || !bytes.Equal(out, p) {
							t.Fatalf("round %d: Decode(message %d) = %s, %v, %v; want %s", round, i, describe(out), ok, err, describe(p))
						}
					}
					enc.Reset()
					dec.Reset()
				}
			})
		}
	}
}

// TestDecodeAppends checks that Decode appends to dst and leaves dst alone
// while a payload is incomplete.
func TestDecodeAppends(t *testing.T) {
	payloads := gatewayPayloads(3, 3)
	for _, c := range []Compression{None, ZlibStream, ZstdStream} {
		msgs := encodeAll(t, c, EncoderConfig{}, payloads)
		dec, err := NewDecoder(c, DecoderConfig{})
		if err != nil {
			t.Fatal(err)
		}
		dst := []byte("prefix:")
		for i, m := range msgs {
			before := len(dst)
			if c != None && len(m) > 2 {
				out, ok, err := dec.Decode(dst, m[:len(m)/2])
				if ok || err != nil || len(out) != before {
					t.Fatalf("%v: Decode(half of message %d) = %d bytes, %v, %v; want dst unchanged, not ok", c, i, len(out), ok, err)
				}
				m = m[len(m)/2:]
			}
			out, ok, err := dec.Decode(dst, m)
			if !ok || err != nil || !bytes.Equal(out[:before], dst) || !bytes.Equal(out[before:], payloads[i]) {
				t.Fatalf("%v: Decode(message %d) = %s, %v, %v; want dst + payload", c, i, describe(out), ok, err)
			}
			dst = out
		}
	}
}
