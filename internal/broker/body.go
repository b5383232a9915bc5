package broker

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Body formats: the first byte of every batch body.
const (
	// FormatRecords: the rest is records, each a uvarint length followed by
	// that many bytes of a raw gateway payload.
	FormatRecords byte = 1
	// FormatZstd: the rest is a zstd frame whose content is a FormatRecords
	// body without its format byte. Used for payloads too large for one
	// message otherwise.
	FormatZstd byte = 2
	// FormatS2: the rest is an S2 block (github.com/klauspost/compress/s2)
	// whose content is a FormatRecords body without its format byte. The
	// gateway compresses batches this way by default: the broker's cost
	// grows with bytes stored, and S2 is cheap to encode and to decode.
	FormatS2 byte = 3
)

// NewBody starts an empty records body in dst[:0].
func NewBody(dst []byte) []byte {
	return append(dst[:0], FormatRecords)
}

// AppendRecord appends one payload to a records body.
func AppendRecord(body, payload []byte) []byte {
	body = binary.AppendUvarint(body, uint64(len(payload)))
	return append(body, payload...)
}

// RecordOverhead is the most bytes AppendRecord adds besides the payload.
const RecordOverhead = binary.MaxVarintLen64

var (
	zencOnce sync.Once
	zenc     *zstd.Encoder
	zdecOnce sync.Once
	zdec     *zstd.Decoder
)

// Compress turns a FormatRecords body into a FormatZstd body appended to
// dst. It is meant for the rare payload larger than a message.
func Compress(dst, body []byte) ([]byte, error) {
	if len(body) == 0 || body[0] != FormatRecords {
		return dst, ErrBadBatch
	}
	zencOnce.Do(func() {
		zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	dst = append(dst, FormatZstd)
	return zenc.EncodeAll(body[1:], dst), nil
}

// CompressS2 turns a FormatRecords body into a FormatS2 body appended to
// dst[:0]. It allocates nothing when dst has room for s2.MaxEncodedLen.
func CompressS2(dst, body []byte) ([]byte, error) {
	if len(body) == 0 || body[0] != FormatRecords {
		return dst, ErrBadBatch
	}
	n := s2.MaxEncodedLen(len(body) - 1)
	if n < 0 {
		return dst, ErrTooLarge
	}
	if cap(dst) < n+1 {
		dst = make([]byte, 0, n+1)
	}
	dst = append(dst[:0], FormatS2)
	enc := s2.Encode(dst[1:cap(dst)], body[1:])
	return dst[:1+len(enc)], nil
}

// MaxDecompressed caps the decompressed size of a FormatZstd body.
const MaxDecompressed = 256 << 20

// Records calls fn for each payload in body, in order. A FormatZstd body is
// decompressed first. The payload slices alias body (or a decompressed copy)
// and are valid only during the call. It returns ErrBadBatch (wrapped) for a
// body that does not parse, and stops early with the error fn returns.
func Records(body []byte, fn func(payload []byte) error) error {
	if len(body) == 0 {
		return fmt.Errorf("%w: empty body", ErrBadBatch)
	}
	switch body[0] {
	case FormatRecords:
		body = body[1:]
	case FormatZstd:
		zdecOnce.Do(func() {
			zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxDecompressed))
		})
		raw, err := zdec.DecodeAll(body[1:], nil)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadBatch, err)
		}
		body = raw
	case FormatS2:
		n, err := s2.DecodedLen(body[1:])
		// The declared size is allocated up front, so it must be plausible:
		// a batch of gateway JSON compresses far less than 64:1.
		if err != nil || n > MaxDecompressed || (n > 1<<20 && n/64 > len(body)) {
			return fmt.Errorf("%w: bad S2 block (%v)", ErrBadBatch, err)
		}
		raw, err := s2.Decode(make([]byte, n), body[1:])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadBatch, err)
		}
		body = raw
	default:
		return fmt.Errorf("%w: unknown format %d", ErrBadBatch, body[0])
	}
	for len(body) > 0 {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return fmt.Errorf("%w: truncated record", ErrBadBatch)
		}
		if err := fn(body[k : k+int(n)]); err != nil {
			return err
		}
		body = body[k+int(n):]
	}
	return nil
}
