package codec

import (
	"errors"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

// randomCode returns code lengths of a random complete prefix code with n
// symbols and codes of at most 15 bits, grown by splitting random leaves;
// deep favours splitting deep leaves, which makes long codes and subtables.
func randomCode(rng *rand.Rand, n int, deep bool) []uint8 {
	depths := []uint8{0}
	for len(depths) < n {
		i := rng.IntN(len(depths))
		if deep && rng.IntN(3) > 0 {
			// Pick the deepest of a few.
			for range 3 {
				if j := rng.IntN(len(depths)); depths[j] > depths[i] {
					i = j
				}
			}
		}
		if depths[i] >= 15 {
			continue
		}
		depths[i]++
		depths = append(depths, depths[i])
	}
	rng.Shuffle(len(depths), func(i, j int) { depths[i], depths[j] = depths[j], depths[i] })
	return depths
}

// canonicalCodes returns each symbol's canonical code (RFC 1951 3.2.2).
func canonicalCodes(lens []uint8) []uint16 {
	var count [16]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [17]int
	code := 0
	for l := 1; l <= 15; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	codes := make([]uint16, len(lens))
	for s, l := range lens {
		if l != 0 {
			codes[s] = uint16(next[l])
			next[l]++
		}
	}
	return codes
}

// lookup decodes one symbol from the low bits of b as huffman does.
func lookup(t []uint32, root uint, b uint64) uint32 {
	e := t[b&(1<<root-1)]
	if e&kindMask == kindLink {
		e = t[e>>16+uint32(b>>root)&(1<<(e>>8&0xff)-1)]
	}
	return e
}

// TestBuildTable builds tables for random complete codes, with many long
// codes, and checks that every symbol's code, followed by random bits, looks
// up that symbol and its length, and that the tables fit.
func TestBuildTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	type kind struct {
		name     string
		root     uint
		size     int
		syms     []uint32
		min, max int
	}
	kinds := []kind{
		{"literal/length", litRoot, litTableSize, litSymbols[:286], 257, 286},
		{"distance", distRoot, distTableSize, distSymbols[:30], 2, 30},
	}
	for _, k := range kinds {
		for i := range 3000 {
			n := k.min + rng.IntN(k.max-k.min+1)
			lens := randomCode(rng, n, i%2 == 0)
			table := make([]uint32, k.size)
			used, count := codeStats(lens)
			if !buildTable(table, k.root, lens, used, &count, k.syms) {
				t.Fatalf("%s: buildTable(%v) = false, want true", k.name, lens)
			}
			codes := canonicalCodes(lens)
			for s, l := range lens {
				rev := uint64(bits.Reverse16(codes[s]) >> (16 - l))
				b := rev | rng.Uint64()<<l
				got := lookup(table, k.root, b)
				if want := k.syms[s] | uint32(l); got != want {
					t.Fatalf("%s code %v: symbol %d (length %d) looks up %#x, want %#x", k.name, lens, s, l, got, want)
				}
			}
		}
	}
}

func TestBuildTableRejects(t *testing.T) {
	tests := []struct {
		name string
		lens []uint8
		want bool
	}{
		{"over-subscribed", []uint8{1, 1, 1}, false},
		{"incomplete", []uint8{1, 2}, false},
		{"single one-bit code", []uint8{0, 1, 0}, true},
		{"single two-bit code", []uint8{2}, false},
		{"empty", []uint8{0, 0, 0}, true},
		{"complete", []uint8{1, 2, 3, 3}, true},
	}
	for _, tt := range tests {
		table := make([]uint32, distTableSize)
		used, count := codeStats(tt.lens)
		if got := buildTable(table, distRoot, tt.lens, used, &count, distSymbols[:len(tt.lens)]); got != tt.want {
			t.Errorf("buildTable(%s %v) = %v, want %v", tt.name, tt.lens, got, tt.want)
		}
	}
}

// TestFixedTables checks a few codes of the fixed Huffman code (RFC 1951
// 3.2.6).
func TestFixedTables(t *testing.T) {
	tests := []struct {
		code uint16
		len  uint
		want uint32
	}{
		{0b00110000, 8, litSymbols[0]},
		{0b10111111, 8, litSymbols[143]},
		{0b110010000, 9, litSymbols[144]},
		{0b0000000, 7, litSymbols[256]},
		{0b0010111, 7, litSymbols[279]},
		{0b11000101, 8, litSymbols[285]},
		{0b11000110, 8, kindInvalid},
	}
	for _, tt := range tests {
		rev := uint64(bits.Reverse16(tt.code) >> (16 - tt.len))
		got := lookup(fixedLit[:], litRoot, rev)
		if got&^nbitMask != tt.want || uint(got&nbitMask) != tt.len && tt.want != kindInvalid {
			t.Errorf("fixed code %0*b = %#x, want %#x with length %d", tt.len, tt.code, got, tt.want, tt.len)
		}
	}
	if got := lookup(fixedDist[:], distRoot, uint64(bits.Reverse16(29)>>11)); got != distSymbols[29]|5 {
		t.Errorf("fixed distance 29 = %#x, want %#x", got, distSymbols[29]|5)
	}
}

// BenchmarkBuildTable builds the literal/length table of a typical dynamic
// block: every block of every payload pays for one.
func BenchmarkBuildTable(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	lens := randomCode(rng, 200, false)
	lens = append(lens, make([]uint8, 86)...)
	rng.Shuffle(len(lens), func(i, j int) { lens[i], lens[j] = lens[j], lens[i] })
	var table [litTableSize]uint32
	used, count := codeStats(lens)
	for b.Loop() {
		buildTable(table[:], litRoot, lens, used, &count, litSymbols[:286])
	}
}

// bitWriter writes deflate bit fields, least significant bit first.
type bitWriter struct {
	b    []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) bits(v uint64, n uint) *bitWriter {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.b = append(w.b, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
	return w
}

// message pads to a byte and ends the payload with a sync-flush marker,
// behind the zlib header.
func (w *bitWriter) message() []byte {
	if w.nacc > 0 {
		w.bits(0, 8-w.nacc)
	}
	return append(append([]byte{0x78, 0x9c}, w.b...), 0, 0, 0xff, 0xff)
}

// dynamicHeader starts a dynamic block whose code-length code gives symbols
// a and b one bit each (a, the smaller, is code 0).
func dynamicHeader(hlit, hdist uint64, a, b int) *bitWriter {
	w := new(bitWriter)
	w.bits(0, 1).bits(2, 2).bits(hlit, 5).bits(hdist, 5).bits(14, 4) // 18 code-length lengths
	for _, sym := range clOrder[:18] {
		l := uint64(0)
		if int(sym) == a || int(sym) == b {
			l = 1
		}
		w.bits(l, 3)
	}
	return w
}

// TestZlibCorruptDynamic feeds dynamic block headers that are wrong in each
// way the decoder checks.
func TestZlibCorruptDynamic(t *testing.T) {
	tests := []struct {
		name, want string
		msg        []byte
	}{
		{"too many length codes", "too many length or distance codes", dynamicHeader(30, 0, 1, 18).message()},
		{"too many distance codes", "too many length or distance codes", dynamicHeader(0, 30, 1, 18).message()},
		{"repeat with no previous length", "repeat with no previous length", dynamicHeader(0, 0, 0, 16).bits(1, 1).message()},
		{"no end-of-block code", "no end-of-block code", dynamicHeader(0, 0, 1, 18).bits(1, 1).bits(127, 7).bits(1, 1).bits(109, 7).message()},
		{"code lengths overrun", "code lengths overrun", dynamicHeader(0, 0, 1, 18).bits(1, 1).bits(127, 7).bits(1, 1).bits(127, 7).message()},
		{"over-subscribed literal code", "invalid literal/length code", dynamicHeader(0, 0, 1, 18).
			bits(0, 1).bits(0, 1).bits(0, 1). // symbols 0-2: length 1
			bits(1, 1).bits(127, 7).          // 3-140: unused
			bits(1, 1).bits(104, 7).          // 141-255: unused
			bits(0, 1).bits(0, 1).            // 256 and distance 0: length 1
			message()},
		{"invalid code-length code", "invalid code-length code", func() []byte {
			w := new(bitWriter)
			w.bits(0, 1).bits(2, 2).bits(0, 5).bits(0, 5).bits(0, 4)
			w.bits(1, 3).bits(1, 3).bits(1, 3).bits(0, 3) // three one-bit codes
			return w.message()
		}()},
	}
	for _, tt := range tests {
		dec := newZlib(t, DecoderConfig{})
		if _, _, err := dec.Decode(nil, tt.msg); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%s) error = %v, want ErrCorrupt: %s", tt.name, err, tt.want)
		}
	}
}
