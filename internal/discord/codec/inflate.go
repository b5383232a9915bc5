package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
)

// This file holds a DEFLATE (RFC 1951) decoder shaped for zlib-stream. It
// decodes one whole payload at a time from a byte slice and returns cleanly
// when the input ends on a block boundary, which is exactly how a sync flush
// ends a payload. Between payloads the only state is the 32 KiB window and
// the at most 7 bits left in the last byte, and both are committed only after
// a payload decoded without error, so a payload found to be incomplete can be
// decoded again from its start once more bytes arrive.
//
// The io.Reader based decoders (compress/flate and klauspost's) cannot say
// "input ended on a block boundary": Read never returns (0, nil), so a Read
// issued after a payload's last output byte has already been returned runs
// into the end of the input and latches io.ErrUnexpectedEOF. That happens
// whenever a payload's output ends exactly where the decoder's 32 KiB window
// fills (see TestZlibWindowBoundary).

const (
	windowSize = 1 << 15 // deflate's largest back-reference distance

	litRoot  = 9 // index bits of the literal/length root table
	distRoot = 7 // index bits of the distance root table
	clRoot   = 7 // the code-length code has codes of at most 7 bits

	// Root table plus subtables, worst case. A subtable for codes longer
	// than the root has 2^d entries, d = longest code with that prefix minus
	// the root bits, d ≤ 15-root, and it holds at least d+1 codes. Spending
	// all 286 literal/length codes on d = 6 gives 40×64 + 32 (the 6 codes
	// left over) = 2592 entries; the 30 distance codes give 3×256 + 4 = 772.
	litTableSize  = 1<<litRoot + 2592
	distTableSize = 1<<distRoot + 772

	maxLitCodes  = 286
	maxDistCodes = 30
)

// A table entry packs what decoding one symbol needs:
//
//	bits  0-3   code length in bits (the full length, also in subtables)
//	bits  4-7   kind
//	bits  8-15  extra bits to read after the code (lengths, distances), or
//	            the index bits of the subtable for kindLink
//	bits 16-31  value: the literal byte, the base length or distance, the
//	            code-length symbol, or the subtable offset for kindLink
const (
	kindLiteral = 0 << 4 // literal byte, or a code-length symbol
	kindBase    = 1 << 4 // length (literal/length table) or distance (distance table)
	kindEnd     = 2 << 4 // end of block
	kindLink    = 3 << 4 // the code is longer than the root: look in a subtable
	kindInvalid = 4 << 4 // no such code, or a reserved symbol

	kindMask = 0xf0
	nbitMask = 0x0f
)

func entry(kind, extra, value uint32) uint32 { return value<<16 | extra<<8 | kind }

// Symbol tables (entries without their code length), read-only after init.
var (
	litSymbols  [288]uint32
	distSymbols [32]uint32
	clSymbols   [19]uint32

	fixedLit  [1 << litRoot]uint32
	fixedDist [1 << distRoot]uint32
)

// clOrder is the order in which code-length code lengths are sent.
var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

func init() {
	for i := range 256 {
		litSymbols[i] = entry(kindLiteral, 0, uint32(i))
	}
	litSymbols[256] = entry(kindEnd, 0, 0)
	base, extra := uint32(3), uint32(0)
	for i := 257; i < 285; i++ {
		if i >= 265 && (i-265)%4 == 0 {
			extra++
		}
		litSymbols[i] = entry(kindBase, extra, base)
		base += 1 << extra
	}
	litSymbols[285] = entry(kindBase, 0, 258)
	litSymbols[286] = entry(kindInvalid, 0, 0)
	litSymbols[287] = entry(kindInvalid, 0, 0)

	base, extra = 1, 0
	for i := range 30 {
		if i >= 4 && i%2 == 0 {
			extra++
		}
		distSymbols[i] = entry(kindBase, extra, base)
		base += 1 << extra
	}
	distSymbols[30] = entry(kindInvalid, 0, 0)
	distSymbols[31] = entry(kindInvalid, 0, 0)

	for i := range clSymbols {
		clSymbols[i] = entry(kindLiteral, 0, uint32(i))
	}

	var lens [288]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	used, count := codeStats(lens[:])
	if !buildTable(fixedLit[:], litRoot, lens[:], used, &count, litSymbols[:]) {
		panic("codec: fixed literal/length code does not build")
	}
	for i := range 32 {
		lens[i] = 5
	}
	used, count = codeStats(lens[:32])
	if !buildTable(fixedDist[:], distRoot, lens[:32], used, &count, distSymbols[:]) {
		panic("codec: fixed distance code does not build")
	}
}

// buildTable fills t with the lookup table of the canonical Huffman code whose
// code lengths are lens, indexed by symbol; used lists the symbols with a
// non-zero length in increasing order and count[l] how many have length l
// (count[0] is ignored), both gathered while the lengths were read, so that
// sparse codes cost per used symbol, not per symbol. syms gives each symbol's
// entry without its length.
//
// Codes up to root bits long are looked up directly with the next root bits
// of input; longer ones through a subtable sized for the longest code sharing
// their first root bits. buildTable reports false for an over-subscribed
// code, an incomplete one (except a single code of one bit, which zlib and Go
// accept) and a table that would not fit in t. A code with no symbols at all
// builds a table that fails on use.
//
// The root table is built by doubling: with the codes of length l placed in a
// table of 2^l entries, copying it behind itself gives the table of 2^(l+1)
// entries in which they are already repeated for every value of bit l. So
// each short code is written once, not once per entry it covers.
func buildTable(t []uint32, root uint, lens []uint8, used []uint16, count *[16]uint16, syms []uint32) bool {
	minLen, maxLen := uint(0), uint(0)
	for l := uint(1); l <= 15; l++ {
		if count[l] != 0 {
			if minLen == 0 {
				minLen = l
			}
			maxLen = l
		}
	}
	rootSize := uint32(1) << root
	if maxLen == 0 {
		for i := range rootSize {
			t[i] = kindInvalid
		}
		return true
	}
	left := 1
	for l := 1; l <= 15; l++ {
		left = left<<1 - int(count[l])
		if left < 0 {
			return false
		}
	}
	incomplete := left > 0
	if incomplete && (maxLen != 1 || count[1] != 1) {
		return false
	}

	// Sort symbols by (length, symbol) and give them canonical codes.
	var offs, next [16]uint16
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + count[l]
		next[l+1] = (next[l] + count[l]) << 1
	}
	n := len(used)
	var sorted, codes [288]uint16
	for _, s := range used {
		l := lens[s] & 15
		sorted[offs[l]] = s
		codes[offs[l]] = next[l]
		offs[l]++
		next[l]++
	}

	// Root table.
	l := min(minLen, root)
	size := uint32(1) << l
	if incomplete {
		t[0], t[1] = kindInvalid, kindInvalid
	}
	k := 0
	for {
		for ; k < n && uint(lens[sorted[k]]) == l; k++ {
			t[uint32(bits.Reverse16(codes[k]))>>(16-l)] = syms[sorted[k]] | uint32(l)
		}
		if l == root {
			break
		}
		copy(t[size:2*size], t[:size])
		size *= 2
		l++
	}

	// Subtables for the codes longer than the root.
	usedSize := rootSize
	rootMask := rootSize - 1
	curPrefix, subOff, subBits := ^uint32(0), uint32(0), uint(0)
	for ; k < n; k++ {
		s := sorted[k]
		l := uint(lens[s])
		rev := uint32(bits.Reverse16(codes[k])) >> (16 - l)
		if prefix := rev & rootMask; prefix != curPrefix {
			// Codes sharing their first root bits are consecutive in
			// canonical order, and the last one is the longest.
			maxl := l
			for j := k + 1; j < n; j++ {
				lj := uint(lens[sorted[j]])
				if uint32(bits.Reverse16(codes[j]))>>(16-lj)&rootMask != prefix {
					break
				}
				maxl = lj
			}
			subBits = maxl - root
			subOff = usedSize
			usedSize += 1 << subBits
			if usedSize > uint32(len(t)) {
				return false
			}
			t[prefix] = entry(kindLink, uint32(subBits), subOff)
			curPrefix = prefix
		}
		e := syms[s] | uint32(l)
		for i := rev >> root; i < 1<<subBits; i += 1 << (l - root) {
			t[subOff+i] = e
		}
	}
	return true
}

// codeStats returns the used symbols and the length counts buildTable needs
// for lens, for the tables not read from a dynamic block header.
func codeStats(lens []uint8) (used []uint16, count [16]uint16) {
	for s, l := range lens {
		if l != 0 {
			used = append(used, uint16(s))
			count[l&15]++
		}
	}
	return used, count
}

// huffTables is the per-call scratch of an inflate: the dynamic tables are
// rebuilt for every block, and zlib-stream blocks never span payloads, so
// nothing here outlives one Decode. It is pooled rather than kept per
// connection (it is about 18 KiB).
type huffTables struct {
	lit      [litTableSize]uint32
	dist     [distTableSize]uint32
	cl       [1 << clRoot]uint32
	lens     [maxLitCodes + maxDistCodes]uint8
	litUsed  [maxLitCodes]uint16
	distUsed [maxDistCodes]uint16
}

var huffPool = sync.Pool{New: func() any { return new(huffTables) }}

// errShort is returned by inflate when the input ends inside a block: the
// payload is incomplete, and nothing has been committed.
var errShort = errors.New("codec: deflate input ends inside a block")

func corrupt(what string) error { return fmt.Errorf("%w: deflate: %s", ErrCorrupt, what) }

// inflater is the state a zlib-stream keeps between payloads.
type inflater struct {
	// hist is allocated on its own: exactly 32 KiB is the largest small
	// allocation size, while a struct a few bytes larger would be rounded up
	// to a 40 KiB span. It is nil before the first Decode and while the
	// inflater sleeps.
	hist   *[windowSize]byte // ring of the last output bytes
	hpos   int               // next write position in hist
	hlen   int               // valid bytes in hist, at most windowSize
	carry  uint64            // unread bits of the last input byte
	ncarry uint              // how many (0-7)
	packed []byte            // while asleep: the window's hlen bytes, oldest first, S2-encoded; awake: its spare memory
}

// windowPool holds the windows of sleeping inflaters, and scratch windows.
var windowPool = sync.Pool{New: func() any { return new([windowSize]byte) }}

// packPool holds buffers large enough for any S2-encoded window. S2 packs
// gateway JSON about 4.5:1 in 15-20 µs and unpacks it in 5 µs; zstd packs
// it a third smaller but costs five times as much CPU per quiet spell.
var packPool = sync.Pool{New: func() any { b := make([]byte, s2.MaxEncodedLen(windowSize)); return &b }}

func (f *inflater) reset() {
	f.hpos, f.hlen, f.carry, f.ncarry = 0, 0, 0, 0
	f.packed = nil // a sleeping inflater gets its window at the next Decode
}

// sleep packs the window and gives it back to windowPool. Between payloads
// the window and the carried bits are the inflater's whole state, so wake
// restores it exactly.
func (f *inflater) sleep() {
	if f.hist == nil {
		return
	}
	if f.hlen > 0 {
		src := f.hist[:f.hlen]
		var lin *[windowSize]byte
		if f.hlen == windowSize && f.hpos != 0 {
			lin = windowPool.Get().(*[windowSize]byte)
			n := copy(lin[:], f.hist[f.hpos:])
			copy(lin[n:], f.hist[:f.hpos])
			src = lin[:]
		}
		bp := packPool.Get().(*[]byte)
		enc := s2.Encode(*bp, src)
		if cap(f.packed) < len(enc) || cap(f.packed) > 2*len(enc) {
			// Keep a little room: an idle shard packs again after every
			// heartbeat, each time a few bytes more.
			f.packed = make([]byte, 0, len(enc)+len(enc)/16)
		}
		f.packed = append(f.packed[:0], enc...)
		packPool.Put(bp)
		if lin != nil {
			windowPool.Put(lin)
		}
	}
	windowPool.Put(f.hist)
	f.hist = nil
}

// wake takes a window from windowPool and unpacks the packed one into it.
func (f *inflater) wake() error {
	h := windowPool.Get().(*[windowSize]byte)
	if f.hlen > 0 {
		out, err := s2.Decode(h[:], f.packed)
		if err != nil || len(out) != f.hlen || &out[0] != &h[0] {
			windowPool.Put(h)
			return fmt.Errorf("%w: unpacking the idle window failed", ErrCorrupt)
		}
	}
	// packed keeps its memory for the next sleep; hist is what counts now.
	f.hist, f.packed = h, f.packed[:0]
	f.hpos = f.hlen % windowSize
	return nil
}

// inflateRun is one call of inflate: a bit reader over in and an output
// buffer. The hot loop copies the fields into locals.
type inflateRun struct {
	in   []byte
	pos  int    // next unread byte of in
	bits uint64 // bit buffer, next bit lowest; bits above nb are the bytes after pos
	nb   uint   // valid bits in bits

	out    []byte // the output, len == cap
	o      int    // write position in out
	base   int    // where this payload's output starts in out
	limit  int    // o may grow to limit without a check: min(len(out), base+maxOut)
	maxOut int

	f *inflater
	h *huffTables
}

// inflate decodes the deflate blocks in in, which continue the stream f has
// seen so far, and appends their output to dst. It returns errShort, and dst
// unchanged in length, when in ends inside a block. On success it commits the
// window and the left-over bits.
func (f *inflater) inflate(dst, in []byte, maxOut int) ([]byte, error) {
	h := huffPool.Get().(*huffTables)
	r := inflateRun{
		in:     in,
		bits:   f.carry,
		nb:     f.ncarry,
		out:    dst[:cap(dst)],
		o:      len(dst),
		base:   len(dst),
		maxOut: maxOut,
		f:      f,
		h:      h,
	}
	r.setLimit()
	err := r.blocks()
	huffPool.Put(h)
	if err != nil {
		return dst, err
	}
	out := r.out[:r.o]
	f.commit(out[r.base:])
	f.carry, f.ncarry = r.bits&(1<<r.nb-1), r.nb
	return out, nil
}

// commit appends a payload's output to the window.
func (f *inflater) commit(p []byte) {
	if len(p) >= windowSize {
		copy(f.hist[:], p[len(p)-windowSize:])
		f.hpos, f.hlen = 0, windowSize
		return
	}
	n := copy(f.hist[f.hpos:], p)
	if n < len(p) {
		copy(f.hist[:], p[n:])
	}
	f.hpos = (f.hpos + len(p)) % windowSize
	f.hlen = min(f.hlen+len(p), windowSize)
}

func (r *inflateRun) setLimit() {
	r.limit = min(len(r.out), r.base+r.maxOut)
}

// room makes room for need more output bytes at r.o.
func (r *inflateRun) room(need int) error {
	if r.o+need-r.base > r.maxOut {
		return fmt.Errorf("%w: more than %d bytes", ErrPayloadTooLarge, r.maxOut)
	}
	if r.o+need > len(r.out) {
		r.out = slices.Grow(r.out[:r.o], need)
		r.out = r.out[:cap(r.out)]
	}
	r.setLimit()
	return nil
}

// need makes sure at least n ≤ 56 bits are buffered. It reports false when the
// input ends first.
func (r *inflateRun) need(n uint) bool {
	for r.nb < n {
		if r.pos >= len(r.in) {
			return false
		}
		r.bits |= uint64(r.in[r.pos]) << r.nb
		r.pos++
		r.nb += 8
	}
	return true
}

// take consumes n buffered bits.
func (r *inflateRun) take(n uint) uint32 {
	v := uint32(r.bits & (1<<n - 1))
	r.bits >>= n
	r.nb -= n
	return v
}

// blocks decodes blocks until the input ends on a block boundary.
func (r *inflateRun) blocks() error {
	for {
		// Fewer than 8 bits left: the rest of the last byte, padding or the
		// start of a block the next message continues. Keep them.
		if r.nb+8*uint(len(r.in)-r.pos) < 8 {
			return nil
		}
		if !r.need(3) {
			return errShort
		}
		hdr := r.take(3)
		if hdr&1 != 0 {
			// A final block would end the stream, which zlib-stream never does.
			return corrupt("final block in a zlib-stream")
		}
		var err error
		switch hdr >> 1 {
		case 0:
			err = r.stored()
		case 1:
			err = r.huffman(fixedLit[:], fixedDist[:])
		case 2:
			if err = r.dynamic(); err == nil {
				err = r.huffman(r.h.lit[:], r.h.dist[:])
			}
		default:
			err = corrupt("reserved block type")
		}
		if err != nil {
			return err
		}
	}
}

// stored copies an uncompressed block.
func (r *inflateRun) stored() error {
	// Skip to the byte boundary and give back the whole bytes buffered.
	r.take(r.nb & 7)
	r.pos -= int(r.nb >> 3)
	r.bits, r.nb = 0, 0
	if len(r.in)-r.pos < 4 {
		return errShort
	}
	n := binary.LittleEndian.Uint16(r.in[r.pos:])
	if ^n != binary.LittleEndian.Uint16(r.in[r.pos+2:]) {
		return corrupt("stored block length check")
	}
	r.pos += 4
	if len(r.in)-r.pos < int(n) {
		return errShort
	}
	if r.o+int(n) > r.limit {
		if err := r.room(int(n)); err != nil {
			return err
		}
	}
	r.o += copy(r.out[r.o:], r.in[r.pos:r.pos+int(n)])
	r.pos += int(n)
	return nil
}

// dynamic reads the code tables of a dynamic block into r.h.
func (r *inflateRun) dynamic() error {
	if !r.need(14) {
		return errShort
	}
	nlit := int(r.take(5)) + 257
	ndist := int(r.take(5)) + 1
	nclen := int(r.take(4)) + 4
	if nlit > maxLitCodes || ndist > maxDistCodes {
		return corrupt("too many length or distance codes")
	}
	var clLens [19]uint8
	var clCount [16]uint16
	for i := range nclen {
		if !r.need(3) {
			return errShort
		}
		l := uint8(r.take(3))
		clLens[clOrder[i]] = l
		clCount[l]++
	}
	var clUsed [19]uint16
	nused := 0
	for s, l := range clLens {
		clUsed[nused] = uint16(s)
		nused += int((l | -l) >> 7) // 1 when l != 0
	}
	cl := r.h.cl[:]
	if !buildTable(cl, clRoot, clLens[:], clUsed[:nused], &clCount, clSymbols[:]) {
		return corrupt("invalid code-length code")
	}

	// Read the lengths, noting which symbols are used and how many codes
	// of each length there are, for buildTable.
	lens := r.h.lens[:nlit+ndist]
	var litCount, distCount [16]uint16
	litUsed, distUsed := r.h.litUsed[:0], r.h.distUsed[:0]
	for i := 0; i < len(lens); {
		r.need(clRoot)
		e := cl[r.bits&(1<<clRoot-1)]
		if e&kindMask == kindInvalid {
			return corrupt("invalid code-length symbol")
		}
		n := uint(e & nbitMask)
		if n > r.nb {
			return errShort
		}
		r.take(n)
		sym := e >> 16
		rep, val := 1, uint8(sym)
		switch sym {
		case 16:
			if i == 0 {
				return corrupt("repeat with no previous length")
			}
			if !r.need(2) {
				return errShort
			}
			rep, val = 3+int(r.take(2)), lens[i-1]
		case 17:
			if !r.need(3) {
				return errShort
			}
			rep, val = 3+int(r.take(3)), 0
		case 18:
			if !r.need(7) {
				return errShort
			}
			rep, val = 11+int(r.take(7)), 0
		}
		if i+rep > len(lens) {
			return corrupt("code lengths overrun")
		}
		if val == 0 {
			clear(lens[i : i+rep])
			i += rep
			continue
		}
		for range rep {
			lens[i] = val
			if i < nlit {
				litCount[val]++
				litUsed = append(litUsed, uint16(i))
			} else {
				distCount[val]++
				distUsed = append(distUsed, uint16(i-nlit))
			}
			i++
		}
	}
	if lens[256] == 0 {
		return corrupt("no end-of-block code")
	}
	if !buildTable(r.h.lit[:], litRoot, lens[:nlit], litUsed, &litCount, litSymbols[:]) {
		return corrupt("invalid literal/length code")
	}
	if !buildTable(r.h.dist[:], distRoot, lens[nlit:], distUsed, &distCount, distSymbols[:]) {
		return corrupt("invalid distance code")
	}
	return nil
}

// huffman decodes the data of a compressed block with the given tables.
func (r *inflateRun) huffman(lit, dist []uint32) error {
	in, pos, bb, nb := r.in, r.pos, r.bits, r.nb
	out, o, limit := r.out, r.o, r.limit
	var err error
	for {
		// A symbol with its extra bits and a distance with its extra bits
		// need at most 15+5+15+13 = 48 bits.
		if nb < 48 {
			if pos+8 <= len(in) {
				bb |= binary.LittleEndian.Uint64(in[pos:]) << nb
				pos += int((63 - nb) >> 3)
				nb |= 56
			} else {
				for nb <= 56 && pos < len(in) {
					bb |= uint64(in[pos]) << nb
					pos++
					nb += 8
				}
			}
		}
		e := lit[bb&(1<<litRoot-1)]
		if e&kindMask == kindLink {
			e = lit[e>>16+uint32(bb>>litRoot)&(1<<(e>>8&0xff)-1)]
		}
		n := uint(e & nbitMask)
		if e&kindMask == kindLiteral {
			if n > nb {
				err = errShort
				break
			}
			bb >>= n
			nb -= n
			if o >= limit {
				r.out, r.o = out, o
				if err = r.room(1); err != nil {
					break
				}
				out, limit = r.out, r.limit
			}
			out[o] = byte(e >> 16)
			o++
			continue
		}
		if e&kindMask != kindBase {
			if e&kindMask == kindInvalid {
				err = corrupt("invalid literal/length symbol")
			} else if n > nb {
				err = errShort
			} else { // end of block
				bb >>= n
				nb -= n
			}
			break
		}
		// A length, then a distance.
		x := uint(e >> 8 & 0xff)
		if n+x > nb {
			err = errShort
			break
		}
		length := int(e>>16) + int(bb>>n&(1<<x-1))
		bb >>= n + x
		nb -= n + x

		e = dist[bb&(1<<distRoot-1)]
		if e&kindMask == kindLink {
			e = dist[e>>16+uint32(bb>>distRoot)&(1<<(e>>8&0xff)-1)]
		}
		if e&kindMask != kindBase {
			err = corrupt("invalid distance symbol")
			break
		}
		n, x = uint(e&nbitMask), uint(e>>8&0xff)
		if n+x > nb {
			err = errShort
			break
		}
		d := int(e>>16) + int(bb>>n&(1<<x-1))
		bb >>= n + x
		nb -= n + x

		if o+length > limit {
			r.out, r.o = out, o
			if err = r.room(length); err != nil {
				break
			}
			out, limit = r.out, r.limit
		}
		if back := d - (o - r.base); back > 0 {
			// The match starts before this payload: copy from the window.
			f := r.f
			if back > f.hlen {
				err = corrupt("distance beyond the window")
				break
			}
			start := f.hpos - back
			if start < 0 {
				start += windowSize
			}
			k := min(length, back)
			c := copy(out[o:o+k], f.hist[start:])
			copy(out[o+c:o+k], f.hist[:k-c])
			o += k
			length -= k
		}
		// Forward copy; when the match overlaps its own output each round
		// doubles the chunk.
		src := o - d
		for length > 0 {
			c := copy(out[o:o+length], out[src:o])
			o += c
			length -= c
		}
	}
	r.pos, r.bits, r.nb = pos, bb, nb
	r.out, r.o = out, o
	return err
}
