package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

const (
	zstdMagic          = 0xfd2fb528
	zstdSkippableMagic = 0x184d2a50 // low 4 bits are free
	zstdMaxBlock       = 128 << 10  // largest block, compressed or not

	// zstdScratchSize exceeds the largest block's output. The decoder's Read
	// returns at most one block per call, so a Read that does not fill the
	// scratch buffer has handed over everything decoded so far; filling it
	// exactly would leave the next Read unable to tell "nothing left" from
	// "more left" without reading past the message.
	zstdScratchSize = zstdMaxBlock + 4<<10

	// zstdWindowLog is Discord's window: 256 KiB, window descriptor 0x40.
	zstdWindowLog = 18
)

var zstdScratchPool = sync.Pool{New: func() any { b := make([]byte, zstdScratchSize); return &b }}

// errEndOfMessage is what the decoder's source returns past the bytes given
// to it. Decode never lets it be reached; if it is, the stream is broken.
var errEndOfMessage = errors.New("codec: zstd decoder read past the message")

// msgReader is the zstd decoder's source: the bytes of the current message.
// It never returns io.EOF, and it must not have Bytes and Len methods, or
// zstd.Decoder.Reset would decode it eagerly as a whole.
type msgReader struct {
	b   []byte
	pos int
}

func (r *msgReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.b) {
		return 0, errEndOfMessage
	}
	n := copy(p, r.b[r.pos:])
	r.pos += n
	return n, nil
}

// zstdDecoder decodes zstd-stream.
type zstdDecoder struct {
	dec        *zstd.Decoder
	src        msgReader
	maxPayload int
	err        error   // sticky
	pending    *[]byte // bytes carried to the next message, or nil
	walk       zstdWalk
}

// Idle does nothing: the zstd decoder's window lives inside
// klauspost/compress's decoder, which cannot hand it out.
func (d *zstdDecoder) Idle() {}

func newZstdDecoder(cfg DecoderConfig) (*zstdDecoder, error) {
	d := &zstdDecoder{maxPayload: cfg.MaxPayload}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(cfg.MaxWindow)),
	)
	if err != nil {
		return nil, fmt.Errorf("codec: zstd decoder: %w", err)
	}
	if err := dec.Reset(&d.src); err != nil {
		return nil, fmt.Errorf("codec: zstd decoder: %w", err)
	}
	d.dec = dec
	return d, nil
}

func (d *zstdDecoder) Reset() {
	d.err = nil
	d.walk = zstdWalk{}
	d.releasePending()
	d.src = msgReader{}
	if err := d.dec.Reset(&d.src); err != nil {
		// Only a closed decoder fails to reset, and this one is never closed.
		d.err = fmt.Errorf("codec: zstd reset: %w", err)
	}
}

func (d *zstdDecoder) releasePending() {
	if d.pending != nil {
		putBuf(d.pending)
		d.pending = nil
	}
}

func (d *zstdDecoder) fail(dst []byte, err error) ([]byte, bool, error) {
	d.err = err
	d.releasePending()
	return dst, false, err
}

func (d *zstdDecoder) Decode(dst, msg []byte) ([]byte, bool, error) {
	if d.err != nil {
		return dst, false, d.err
	}
	in := msg
	if d.pending != nil {
		if len(*d.pending)+len(msg) > d.maxPayload {
			return d.fail(dst, fmt.Errorf("%w: more than %d compressed bytes", ErrPayloadTooLarge, d.maxPayload))
		}
		*d.pending = append(*d.pending, msg...)
		in = *d.pending
	}
	feed, complete, next, err := scanZstd(in, d.walk)
	if err != nil {
		return d.fail(dst, err)
	}
	if !complete || feed == 0 {
		// The message ends inside a frame header or block, or it had no
		// block with output yet (only a frame header, say): wait for more.
		if d.pending == nil {
			if len(msg) > d.maxPayload {
				return d.fail(dst, fmt.Errorf("%w: more than %d compressed bytes", ErrPayloadTooLarge, d.maxPayload))
			}
			d.pending = getBuf()
			*d.pending = append(*d.pending, msg...)
		}
		return dst, false, nil
	}
	out := dst
	if feed > 0 {
		if out, err = d.run(dst, in[:feed]); err != nil {
			return d.fail(dst, err)
		}
	}
	d.walk = next
	// Units after the last block with output (frame headers, empty blocks)
	// wait for the next message: the decoder would read on past them,
	// looking for output, and run into the end of this one.
	if tail := in[feed:]; len(tail) > 0 {
		if d.pending == nil {
			d.pending = getBuf()
		}
		*d.pending = append((*d.pending)[:0], tail...)
	} else {
		d.releasePending()
	}
	return out, true, nil
}

// run decodes data, which ends with a block that has output, and appends the
// output to dst.
func (d *zstdDecoder) run(dst, data []byte) ([]byte, error) {
	d.src.b, d.src.pos = data, 0
	sp := zstdScratchPool.Get().(*[]byte)
	scratch := *sp
	out := dst
	var err error
	for d.src.pos < len(data) {
		before := d.src.pos
		n, rerr := d.dec.Read(scratch)
		if n == len(scratch) {
			err = fmt.Errorf("%w: zstd: block output larger than %d bytes", ErrCorrupt, zstdMaxBlock)
			break
		}
		if len(out)-len(dst)+n > d.maxPayload {
			err = fmt.Errorf("%w: more than %d bytes", ErrPayloadTooLarge, d.maxPayload)
			break
		}
		out = append(out, scratch[:n]...)
		if rerr != nil {
			err = zstdError(rerr)
			break
		}
		if n == 0 && d.src.pos == before {
			err = fmt.Errorf("%w: zstd: decoder made no progress", ErrCorrupt)
			break
		}
	}
	d.src.b, d.src.pos = nil, 0
	zstdScratchPool.Put(sp)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func zstdError(err error) error {
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return fmt.Errorf("%w: %w", ErrWindowTooLarge, err)
	}
	return fmt.Errorf("%w: zstd: %w", ErrCorrupt, err)
}

// zstdWalk is where scanZstd stands in the stream between messages.
type zstdWalk struct {
	inFrame  bool // expecting a block header, else a frame header
	checksum bool // the current frame ends with a 4-byte checksum
}

func zstdCorrupt(what string) error { return fmt.Errorf("%w: zstd: %s", ErrCorrupt, what) }

// scanZstd walks the frame headers and block headers of in, starting in state
// st, without decoding anything. It reports whether in ends exactly after a
// unit (frame header, block, skippable frame); feed, the end of the last block
// that may have output (0 if none); and the state at feed. Everything after
// feed is units without output.
func scanZstd(in []byte, st zstdWalk) (feed int, complete bool, atFeed zstdWalk, err error) {
	atFeed = st
	pos := 0
	for pos < len(in) {
		rest := in[pos:]
		if !st.inFrame {
			if len(rest) < 4 {
				return 0, false, atFeed, nil
			}
			magic := binary.LittleEndian.Uint32(rest)
			if magic&^0xf == zstdSkippableMagic {
				if len(rest) < 8 {
					return 0, false, atFeed, nil
				}
				size := uint64(binary.LittleEndian.Uint32(rest[4:]))
				if uint64(len(rest)) < 8+size {
					return 0, false, atFeed, nil
				}
				pos += 8 + int(size)
				continue
			}
			if magic != zstdMagic {
				return 0, false, atFeed, zstdCorrupt("bad frame magic")
			}
			if len(rest) < 5 {
				return 0, false, atFeed, nil
			}
			fhd := rest[4]
			if fhd&0x08 != 0 {
				return 0, false, atFeed, zstdCorrupt("reserved frame header bit set")
			}
			single := fhd&0x20 != 0
			size := 5 + [4]int{0, 1, 2, 4}[fhd&3]
			if !single {
				size++ // window descriptor
			}
			switch fhd >> 6 {
			case 0:
				if single {
					size++
				}
			case 1:
				size += 2
			case 2:
				size += 4
			case 3:
				size += 8
			}
			if len(rest) < size {
				return 0, false, atFeed, nil
			}
			pos += size
			st = zstdWalk{inFrame: true, checksum: fhd&0x04 != 0}
			continue
		}
		if len(rest) < 3 {
			return 0, false, atFeed, nil
		}
		h := uint32(rest[0]) | uint32(rest[1])<<8 | uint32(rest[2])<<16
		last, typ, size := h&1 != 0, h>>1&3, int(h>>3)
		if size > zstdMaxBlock {
			return 0, false, atFeed, zstdCorrupt("block larger than 128 KiB")
		}
		unit, output := 3, false
		switch typ {
		case 0: // raw
			unit += size
			output = size > 0
		case 1: // RLE
			unit++
			output = size > 0
		case 2: // compressed
			unit += size
			output = len(rest) < unit || !emptyCompressedBlock(rest[3:unit])
		default:
			return 0, false, atFeed, zstdCorrupt("reserved block type")
		}
		if last && st.checksum {
			unit += 4
		}
		if len(rest) < unit {
			return 0, false, atFeed, nil
		}
		pos += unit
		if last {
			st = zstdWalk{}
		}
		if output {
			feed, atFeed = pos, st
		}
	}
	return feed, true, atFeed, nil
}

// emptyCompressedBlock reports whether a compressed block's content surely
// decodes to nothing: no literals and no sequences. Anything it cannot parse
// counts as output, and the decoder judges it.
func emptyCompressedBlock(c []byte) bool {
	if len(c) == 0 {
		return false
	}
	b0 := c[0]
	if b0&3 > 1 {
		return false // Huffman-coded literals are never empty
	}
	// Raw or RLE literals; the size format gives the header length.
	var regen, hdr int
	switch b0 >> 2 & 3 {
	case 0, 2:
		regen, hdr = int(b0>>3), 1
	case 1:
		if len(c) < 2 {
			return false
		}
		regen, hdr = int(b0>>4)|int(c[1])<<4, 2
	case 3:
		if len(c) < 3 {
			return false
		}
		regen, hdr = int(b0>>4)|int(c[1])<<4|int(c[2])<<12, 3
	}
	if regen != 0 {
		return false
	}
	if b0&3 == 1 {
		hdr++ // the RLE byte
	}
	return len(c) > hdr && c[hdr] == 0 // zero sequences
}

// zstdEncoder encodes zstd-stream with one never-closed frame.
type zstdEncoder struct {
	enc *zstd.Encoder
	aw  appendWriter
}

func newZstdEncoder(cfg EncoderConfig) (*zstdEncoder, error) {
	level := zstd.SpeedFastest
	if cfg.Level > 0 {
		level = zstd.EncoderLevelFromZstd(cfg.Level)
	}
	e := &zstdEncoder{}
	enc, err := zstd.NewWriter(&e.aw,
		zstd.WithWindowSize(1<<zstdWindowLog),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(level),
		zstd.WithLowerEncoderMem(true),
	)
	if err != nil {
		return nil, fmt.Errorf("codec: zstd encoder: %w", err)
	}
	e.enc = enc
	return e, nil
}

func (e *zstdEncoder) Reset() { e.enc.Reset(&e.aw) }

func (e *zstdEncoder) Encode(dst, payload []byte) ([]byte, error) {
	e.aw.buf = dst
	_, err := e.enc.Write(payload)
	if err == nil {
		err = e.enc.Flush()
	}
	dst, e.aw.buf = e.aw.buf, nil
	return dst, err
}
