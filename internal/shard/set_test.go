package shard

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSet(t *testing.T) {
	for _, tc := range []struct {
		in    string
		total int
		want  []int
	}{
		{"all", 4, []int{0, 1, 2, 3}},
		{"", 3, []int{0, 1, 2}},
		{"  all ", 1, []int{0}},
		{"0", 1, []int{0}},
		{"7", 8, []int{7}},
		{"2-5", 8, []int{2, 3, 4, 5}},
		{"3-3", 8, []int{3}},
		{"0,2,5-7", 8, []int{0, 2, 5, 6, 7}},
		{"5-7,0,2", 8, []int{0, 2, 5, 6, 7}},
		{"1,1,0-2,2", 8, []int{0, 1, 2}},
		{" 0 , 2 , 5 - 7 ", 8, []int{0, 2, 5, 6, 7}},
		{"007", 8, []int{7}},
		{"60-70", 200, []int{60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70}},
	} {
		got, err := ParseSet(tc.in, tc.total)
		if err != nil {
			t.Errorf("ParseSet(%q, %d) error: %v", tc.in, tc.total, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseSet(%q, %d) mismatch (-want +got):\n%s", tc.in, tc.total, diff)
		}
	}
}

func TestParseSetErrors(t *testing.T) {
	for _, tc := range []struct {
		in    string
		total int
		want  string
	}{
		{"9", 8, "shard 9 is out of range for 8 shards"},
		{"8", 8, "shard 8 is out of range for 8 shards"},
		{"1", 1, "shard 1 is out of range for 1 shard"},
		{"5-9", 8, "shard 9 is out of range for 8 shards"},
		{"0,2,5-7", 6, "shard 7 is out of range for 6 shards"},
		{"99999999999999999999999", 8, "shard 99999999999999999999999 is out of range for 8 shards"},
		{"7-5", 8, `"7-5": a range is A-B with A <= B`},
		{"x", 8, `"x": want all, A-B or a list like 0,2,5-7`},
		{"5-x", 8, `"5-x": want all, A-B or a list like 0,2,5-7`},
		{"-1", 8, `"-1": want all, A-B or a list like 0,2,5-7`},
		{"+1", 8, `"+1": want all, A-B or a list like 0,2,5-7`},
		{"1-2-3", 8, `"1-2-3": want all, A-B or a list like 0,2,5-7`},
		{"1,,2", 8, `"": want all, A-B or a list like 0,2,5-7`},
		{"1,", 8, `"": want all, A-B or a list like 0,2,5-7`},
		{"5-", 8, `"5-": want all, A-B or a list like 0,2,5-7`},
		{"ALL", 8, `"ALL": want all, A-B or a list like 0,2,5-7`},
		{"assigned", 8, `"assigned": want all, A-B or a list like 0,2,5-7`},
		{"1 2", 8, `"1 2": want all, A-B or a list like 0,2,5-7`},
		{"0", 0, "the shard count must be between 1 and 1048576, not 0"},
		{"all", -1, "the shard count must be between 1 and 1048576, not -1"},
		{"all", MaxCount + 1, "the shard count must be between 1 and 1048576, not 1048577"},
	} {
		got, err := ParseSet(tc.in, tc.total)
		if err == nil {
			t.Errorf("ParseSet(%q, %d) = %v, want error %q", tc.in, tc.total, got, tc.want)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("ParseSet(%q, %d) error = %q, want %q", tc.in, tc.total, err, tc.want)
		}
	}
}

func TestFormatSet(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{3}, "3"},
		{[]int{0, 1}, "0,1"},
		{[]int{0, 1, 2}, "0-2"},
		{[]int{7, 6, 5, 2, 0}, "0,2,5-7"},
		{[]int{4, 4, 5, 5, 6}, "4-6"},
		{[]int{-2, -1, 0, 1, 2, 9}, "0-2,9"},
		{[]int{-1}, ""},
	} {
		if got := FormatSet(tc.in); got != tc.want {
			t.Errorf("FormatSet(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	in := []int{3, 1, 2}
	FormatSet(in)
	if diff := cmp.Diff([]int{3, 1, 2}, in); diff != "" {
		t.Errorf("FormatSet changed its argument (-want +got):\n%s", diff)
	}
}

// TestSetRange compares the word-at-a-time range with setting bit by bit.
func TestSetRange(t *testing.T) {
	for a := 0; a < 200; a += 7 {
		for b := a; b < 300; b += 13 {
			got := make([]uint64, 5)
			want := make([]uint64, 5)
			setRange(got, a, b)
			for i := a; i <= b; i++ {
				want[i/64] |= 1 << (i % 64)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("setRange(%d, %d) = %x, want %x", a, b, got, want)
			}
		}
	}
}

func BenchmarkParseSetRepeatedWideRanges(b *testing.B) {
	s := strings.Repeat("0-1048575,", 1000) + "0"
	for b.Loop() {
		if _, err := ParseSet(s, MaxCount); err != nil {
			b.Fatal(err)
		}
	}
}
