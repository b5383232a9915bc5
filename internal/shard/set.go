package shard

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// setSyntax is the hint errors give for a part ParseSet cannot read.
const setSyntax = "want all, A-B or a list like 0,2,5-7"

// ParseSet parses a selection of shards out of total: "all" (or an empty
// string) for every shard, a range "A-B" with A <= B, or a comma-separated
// list of IDs and ranges such as "0,2,5-7". Spaces around parts and around
// the dash are ignored; IDs are decimal digits only. It returns the
// selected shards sorted and without duplicates.
//
// Errors are written for a person at a command line and name the part
// that is wrong, for example
//
//	shard 9 is out of range for 8 shards
//	"5-x": want all, A-B or a list like 0,2,5-7
//	"7-5": a range is A-B with A <= B
//
// total must be between 1 and MaxCount.
func ParseSet(s string, total int) ([]int, error) {
	if total < 1 || total > MaxCount {
		return nil, fmt.Errorf("the shard count must be between 1 and %d, not %d", MaxCount, total)
	}
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		out := make([]int, total)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	// A bit per shard: at most MaxCount/8 bytes, however many parts repeat
	// the same range, and the result comes out sorted and unique.
	set := make([]uint64, (total+63)/64)
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseID(part, lo, total)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseID(part, hi, total); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("%q: a range is A-B with A <= B", part)
			}
		}
		setRange(set, a, b)
	}
	var out []int
	for w, word := range set {
		for word != 0 {
			out = append(out, w*64+bits.TrailingZeros64(word))
			word &= word - 1
		}
	}
	return out, nil
}

// setRange sets bits a..b of set, a word at a time, so a part costs at
// most total/64 steps however wide its range.
func setRange(set []uint64, a, b int) {
	for a <= b {
		w, off := a/64, a%64
		n := min(64-off, b-a+1) // bits to set in this word
		mask := ^uint64(0)
		if n < 64 {
			mask = (1<<n - 1) << off
		}
		set[w] |= mask
		a += n
	}
}

// parseID parses one shard ID of part: decimal digits, in 0..total-1.
func parseID(part, s string, total int) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q: %s", part, setSyntax)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n >= total {
		// Atoi fails here only when s is too long for an int, which is
		// out of range too; s is all digits, so it prints as it is.
		if err == nil {
			s = strconv.Itoa(n)
		}
		return 0, fmt.Errorf("shard %s is out of range for %s", s, shardCount(total))
	}
	return n, nil
}

// shardCount writes n shards, singular for one.
func shardCount(n int) string {
	if n == 1 {
		return "1 shard"
	}
	return strconv.Itoa(n) + " shards"
}

// FormatSet writes shard IDs in the syntax ParseSet reads: sorted, without
// duplicates, with runs of three or more as ranges, as in "0,2,5-7". ids
// need not be sorted and is not modified. Negative IDs name no shard and
// are left out; an empty set gives "".
func FormatSet(ids []int) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	first, _ := slices.BinarySearch(ids, 0)
	ids = ids[first:]
	var b strings.Builder
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		start := i
		i = j + 1
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		switch j - start {
		case 0:
			b.WriteString(strconv.Itoa(ids[start]))
		case 1:
			fmt.Fprintf(&b, "%d,%d", ids[start], ids[j])
		default:
			fmt.Fprintf(&b, "%d-%d", ids[start], ids[j])
		}
	}
	return b.String()
}
