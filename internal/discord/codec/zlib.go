package codec

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/flate"
)

// syncFlushMarker ends every zlib-stream payload: the LEN/NLEN of the empty
// stored block a sync flush writes.
var syncFlushMarker = [4]byte{0x00, 0x00, 0xff, 0xff}

func hasSyncFlushMarker(b []byte) bool {
	return len(b) >= 4 && [4]byte(b[len(b)-4:]) == syncFlushMarker
}

// bufPool holds the buffers that keep the bytes of a payload split over
// several messages until its end arrives. Splits are rare, so a connection
// borrows one only while it waits.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxPooledBuf is the largest buffer put back into bufPool; a rare huge
// payload should not stay pinned in the pool.
const maxPooledBuf = 1 << 20

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// zlibDecoder decodes zlib-stream.
type zlibDecoder struct {
	maxPayload int
	started    bool    // the 2-byte zlib header has been read
	err        error   // sticky
	pending    *[]byte // bytes of an incomplete payload, or nil
	inf        inflater
}

func newZlibDecoder(cfg DecoderConfig) *zlibDecoder {
	return &zlibDecoder{maxPayload: cfg.MaxPayload}
}

func (d *zlibDecoder) Idle() {
	if d.pending == nil && d.err == nil {
		d.inf.sleep()
	}
}

func (d *zlibDecoder) Reset() {
	d.started = false
	d.err = nil
	d.releasePending()
	d.inf.reset()
}

func (d *zlibDecoder) releasePending() {
	if d.pending != nil {
		putBuf(d.pending)
		d.pending = nil
	}
}

func (d *zlibDecoder) fail(dst []byte, err error) ([]byte, bool, error) {
	d.err = err
	d.releasePending()
	return dst, false, err
}

func (d *zlibDecoder) Decode(dst, msg []byte) ([]byte, bool, error) {
	if d.err != nil {
		return dst, false, d.err
	}
	if d.inf.hist == nil {
		if err := d.inf.wake(); err != nil {
			return d.fail(dst, err)
		}
	}
	in := msg
	if d.pending != nil || !hasSyncFlushMarker(msg) {
		if d.pending == nil {
			d.pending = getBuf()
		}
		if len(*d.pending)+len(msg) > d.maxPayload {
			return d.fail(dst, fmt.Errorf("%w: more than %d compressed bytes", ErrPayloadTooLarge, d.maxPayload))
		}
		*d.pending = append(*d.pending, msg...)
		if !hasSyncFlushMarker(*d.pending) {
			return dst, false, nil
		}
		in = *d.pending
	}
	out, err := d.decode(dst, in)
	if err == errShort {
		// The marker was data that happens to end like one; the payload goes
		// on in the next message. Nothing was committed: decode it all again
		// when more arrives.
		if d.pending == nil {
			d.pending = getBuf()
			*d.pending = append(*d.pending, msg...)
		}
		return dst, false, nil
	}
	if err != nil {
		return d.fail(dst, err)
	}
	d.releasePending()
	return out, true, nil
}

// decode inflates one complete payload, reading the zlib header first if this
// is the first payload.
func (d *zlibDecoder) decode(dst, in []byte) ([]byte, error) {
	if d.started {
		return d.inf.inflate(dst, in, d.maxPayload)
	}
	if len(in) < 2 {
		return dst, errShort
	}
	cmf, flg := in[0], in[1]
	switch {
	case cmf&0x0f != 8 || cmf>>4 > 7:
		return dst, fmt.Errorf("%w: zlib: header %02x %02x is not deflate with a window of at most 32 KiB", ErrCorrupt, cmf, flg)
	case (uint(cmf)<<8|uint(flg))%31 != 0:
		return dst, fmt.Errorf("%w: zlib: header check bits of %02x %02x", ErrCorrupt, cmf, flg)
	case flg&0x20 != 0:
		return dst, fmt.Errorf("%w: zlib: stream needs a preset dictionary", ErrCorrupt)
	}
	out, err := d.inf.inflate(dst, in[2:], d.maxPayload)
	if err == nil {
		d.started = true
	}
	return out, err
}

// zlibHeader starts every zlib-stream: deflate, 32 KiB window, default level,
// which is what Discord sends.
var zlibHeader = [2]byte{0x78, 0x9c}

// lowMemHistory is how much of its past output a Level 0 zlib-stream encoder
// keeps to prime the pooled compressor.
const lowMemHistory = 8 << 10

// appendWriter is an io.Writer appending to buf.
type appendWriter struct{ buf []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// pooledFlate is a level-1 compressor shared by Level 0 encoders between
// payloads. It writes to its own appendWriter, so nothing in the pool refers
// to a connection's buffers.
type pooledFlate struct {
	w  *flate.Writer
	aw appendWriter
}

var flatePool = sync.Pool{New: func() any {
	p := new(pooledFlate)
	w, err := flate.NewWriter(&p.aw, flate.BestSpeed)
	if err != nil {
		panic(err) // BestSpeed is a valid level
	}
	p.w = w
	return p
}}

// zlibEncoder encodes zlib-stream. The zlib header is written by hand and the
// body is raw deflate: the stream is never closed, so the Adler-32 trailer is
// never due and never computed.
type zlibEncoder struct {
	started bool
	w       *flate.Writer // Level 1-9: the connection's own compressor
	aw      appendWriter  // w's output
	hist    []byte        // Level 0: the last lowMemHistory bytes encoded
}

func newZlibEncoder(cfg EncoderConfig) (*zlibEncoder, error) {
	e := &zlibEncoder{}
	if cfg.Level == 0 {
		e.hist = make([]byte, 0, lowMemHistory)
		return e, nil
	}
	w, err := flate.NewWriter(&e.aw, cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("codec: zlib level %d: %w", cfg.Level, err)
	}
	e.w = w
	return e, nil
}

func (e *zlibEncoder) Reset() {
	e.started = false
	e.hist = e.hist[:0]
	if e.w != nil {
		e.w.Reset(&e.aw)
	}
}

func (e *zlibEncoder) Encode(dst, payload []byte) ([]byte, error) {
	if !e.started {
		dst = append(dst, zlibHeader[:]...)
		e.started = true
	}
	if e.w != nil {
		e.aw.buf = dst
		_, err := e.w.Write(payload)
		if err == nil {
			err = e.w.Flush()
		}
		dst, e.aw.buf = e.aw.buf, nil
		return dst, err
	}
	p := flatePool.Get().(*pooledFlate)
	p.aw.buf = dst
	// The pooled compressor starts from this connection's recent output, so
	// its back-references land where the decoder's window has the same bytes.
	p.w.ResetDict(&p.aw, e.hist)
	_, err := p.w.Write(payload)
	if err == nil {
		err = p.w.Flush()
	}
	dst, p.aw.buf = p.aw.buf, nil
	flatePool.Put(p)
	e.remember(payload)
	return dst, err
}

// remember keeps the last lowMemHistory bytes of the stream's plain text.
func (e *zlibEncoder) remember(p []byte) {
	if len(p) >= lowMemHistory {
		e.hist = append(e.hist[:0], p[len(p)-lowMemHistory:]...)
		return
	}
	if over := len(e.hist) + len(p) - lowMemHistory; over > 0 {
		e.hist = append(e.hist[:0], e.hist[over:]...)
	}
	e.hist = append(e.hist, p...)
}
