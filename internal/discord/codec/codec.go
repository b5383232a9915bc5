package codec

import (
	"errors"
	"fmt"
)

// Compression names a transport compression as in the gateway URL's
// compress= query parameter.
type Compression string

// The transport compressions Discord offers.
const (
	// None sends every payload as its own uncompressed WebSocket message.
	None Compression = ""
	// ZlibStream is compress=zlib-stream: one zlib stream per connection,
	// sync-flushed after every payload.
	ZlibStream Compression = "zlib-stream"
	// ZstdStream is compress=zstd-stream: one never-closed zstd frame per
	// connection, flushed after every payload.
	ZstdStream Compression = "zstd-stream"
)

// Sentinel errors. Errors returned by this package wrap one of them, so test
// with errors.Is.
var (
	// ErrUnknownCompression reports a compression name other than "", "none",
	// "zlib-stream" and "zstd-stream".
	ErrUnknownCompression = errors.New("codec: unknown compression")

	// ErrPayloadTooLarge reports a payload whose decompressed size, or the
	// compressed bytes buffered for it while waiting for its end, exceed
	// DecoderConfig.MaxPayload.
	ErrPayloadTooLarge = errors.New("codec: payload too large")

	// ErrCorrupt reports compressed data that is not a valid zlib or zstd
	// stream: a bad header, an invalid code, a back-reference beyond the
	// window, a frame that cannot be decoded, and so on.
	ErrCorrupt = errors.New("codec: corrupt stream")

	// ErrWindowTooLarge reports a zstd frame whose window exceeds
	// DecoderConfig.MaxWindow. Decoding it would need that much memory.
	ErrWindowTooLarge = errors.New("codec: zstd window too large")
)

// ParseCompression parses the value of the compress= query parameter (or of a
// command-line flag). "" and "none" give None. Any other unknown value gives an
// error wrapping ErrUnknownCompression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "none":
		return None, nil
	case string(ZlibStream):
		return ZlibStream, nil
	case string(ZstdStream):
		return ZstdStream, nil
	}
	return None, fmt.Errorf("%w: %q", ErrUnknownCompression, s)
}

// String returns the query-parameter spelling, "none" for None.
func (c Compression) String() string {
	if c == None {
		return "none"
	}
	return string(c)
}

// Decoder decompresses the server-to-client side of one connection. It is not
// safe for concurrent use; use one per connection and call Reset before
// reusing it for a new connection.
//
// Once Decode has returned an error, every later call returns that error until
// Reset: the compression context is shared by all payloads of a connection, so
// nothing after a corrupt message can be decoded.
type Decoder interface {
	// Decode feeds one WebSocket message and appends the payload it completes,
	// if any, to dst. It returns ok == false, with dst unchanged, when msg
	// ended inside a payload and more messages are needed; the bytes are kept
	// until then. For zlib-stream that is a message not ending in 00 00 ff ff;
	// for zstd-stream one ending inside a block or frame header, or holding
	// no block with output at all.
	// msg is not retained after Decode returns and must not overlap dst. Decode
	// allocates nothing in steady state when dst has room for the payload.
	Decode(dst, msg []byte) (out []byte, ok bool, err error)

	// Reset discards all state so the Decoder can serve a new connection. It
	// keeps the memory it has allocated.
	Reset()

	// Idle tells the decoder that its connection has gone quiet. The
	// zlib-stream decoder then packs its 32 KiB window (S2, typically 4-5×
	// smaller on gateway JSON) and gives the window back, and the next
	// Decode unpacks it: about 35 µs for both. The
	// zstd-stream decoder keeps its state. Idle between payloads only; a
	// payload in progress stays as it is.
	Idle()
}

// DecoderConfig configures NewDecoder. The zero value is ready to use.
type DecoderConfig struct {
	// MaxWindow caps the window a zstd frame may declare, which is how much
	// history the decoder must keep. Larger frames fail with
	// ErrWindowTooLarge. Zero means 1 MiB; Discord uses 256 KiB. The minimum
	// is 1 KiB. It does not apply to zlib-stream, whose window is 32 KiB.
	MaxWindow int

	// MaxPayload caps the decompressed size of one payload, and the
	// compressed bytes buffered while a payload is incomplete. Larger payloads
	// fail with ErrPayloadTooLarge. Zero means 64 MiB.
	MaxPayload int
}

const (
	defaultMaxWindow  = 1 << 20
	minMaxWindow      = 1 << 10
	defaultMaxPayload = 64 << 20
)

func (c DecoderConfig) withDefaults() (DecoderConfig, error) {
	if c.MaxWindow == 0 {
		c.MaxWindow = defaultMaxWindow
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = defaultMaxPayload
	}
	if c.MaxWindow < minMaxWindow {
		return c, fmt.Errorf("codec: MaxWindow %d is below the minimum of %d", c.MaxWindow, minMaxWindow)
	}
	if c.MaxPayload < 0 {
		return c, fmt.Errorf("codec: negative MaxPayload %d", c.MaxPayload)
	}
	return c, nil
}

// NewDecoder returns a Decoder for one connection using compression c. None
// gives a pass-through Decoder that appends each message as one payload.
func NewDecoder(c Compression, cfg DecoderConfig) (Decoder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	switch c {
	case None:
		return plainDecoder{}, nil
	case ZlibStream:
		return newZlibDecoder(cfg), nil
	case ZstdStream:
		return newZstdDecoder(cfg)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCompression, string(c))
}

// Encoder compresses the server-to-client side of one connection, as the
// simulator does. It is not safe for concurrent use; use one per connection
// and call Reset before reusing it for a new connection.
type Encoder interface {
	// Encode appends to dst the bytes of the WebSocket message that carries
	// payload, exactly as Discord frames it: for zlib-stream the next part of
	// the connection's zlib stream (starting with 78 9c on the first call)
	// ending in a sync flush, 00 00 ff ff; for zstd-stream the next flushed
	// blocks of the connection's single frame (starting with the frame header
	// 28 b5 2f fd 00 40 on the first call). payload is not retained.
	Encode(dst, payload []byte) ([]byte, error)

	// Reset starts a new stream for a new connection.
	Reset()
}

// EncoderConfig configures NewEncoder. The zero value is ready to use.
type EncoderConfig struct {
	// Level selects the compression effort.
	//
	// Zero, the default, is tuned for a simulator serving thousands of
	// connections at once, where memory per connection matters more than the
	// last percent of ratio:
	//   - zlib-stream compresses each payload with a compressor borrowed from
	//     a pool (klauspost/compress flate level 1), primed with the last
	//     8 KiB the connection sent. A connection keeps only those 8 KiB
	//     between payloads instead of a ~800 KiB compressor of its own. The
	//     stream is still one zlib stream whose back-references reach at
	//     most 8 KiB plus the payload itself. On ~1 KB gateway JSON the ratio
	//     is within 1% of a private level-1 compressor's, for about three
	//     times its CPU: priming the compressor costs ~15-20 µs per payload.
	//   - zstd-stream uses zstd's fastest level with the lower-memory option.
	//     A zstd encoder's state cannot be handed between connections, so
	//     each one keeps about 800 KiB.
	//
	// 1 to 9 give zlib-stream a private klauspost/compress flate compressor
	// at that level with the full 32 KiB window (roughly 0.8 to 1.2 MiB per
	// connection), and zstd-stream the zstd level of that number (1 fastest,
	// 3 default, higher is slower), mapped by zstd.EncoderLevelFromZstd.
	Level int
}

// NewEncoder returns an Encoder for one connection using compression c. None
// gives a pass-through Encoder that appends each payload unchanged.
func NewEncoder(c Compression, cfg EncoderConfig) (Encoder, error) {
	if cfg.Level < 0 || cfg.Level > 9 {
		return nil, fmt.Errorf("codec: Level %d out of range 0-9", cfg.Level)
	}
	switch c {
	case None:
		return plainEncoder{}, nil
	case ZlibStream:
		return newZlibEncoder(cfg)
	case ZstdStream:
		return newZstdEncoder(cfg)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownCompression, string(c))
}

// plainDecoder is the Decoder for None.
type plainDecoder struct{}

func (plainDecoder) Decode(dst, msg []byte) ([]byte, bool, error) {
	return append(dst, msg...), true, nil
}
func (plainDecoder) Reset() {}
func (plainDecoder) Idle()  {}

// plainEncoder is the Encoder for None.
type plainEncoder struct{}

func (plainEncoder) Encode(dst, payload []byte) ([]byte, error) { return append(dst, payload...), nil }
func (plainEncoder) Reset()                                     {}
