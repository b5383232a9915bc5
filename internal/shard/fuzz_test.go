package shard

import (
	"slices"
	"testing"
)

// FuzzParseSet checks that ParseSet never panics, that a set it accepts is
// sorted, unique and in range, and that FormatSet writes it back in a form
// ParseSet reads as the same set.
func FuzzParseSet(f *testing.F) {
	for _, s := range []string{"all", "", "0", "0,2,5-7", "5-7,0,2", " 1 - 3 ", "7-5", "1,,2", "-1", "+1", "99999999999999999999", "0-1048575", "1-2-3", "٣"} {
		f.Add(s, 8)
		f.Add(s, 1)
	}
	f.Add("0-100000,0-100000,0-100000", 1<<17)
	f.Fuzz(func(t *testing.T, s string, total int) {
		got, err := ParseSet(s, total)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseSet(%q, %d) = %v with error %v", s, total, got, err)
			}
			return
		}
		if total < 1 || total > MaxCount {
			t.Fatalf("ParseSet(%q, %d) accepted an invalid total", s, total)
		}
		if len(got) == 0 {
			t.Fatalf("ParseSet(%q, %d) = empty set without error", s, total)
		}
		for i, id := range got {
			if id < 0 || id >= total {
				t.Fatalf("ParseSet(%q, %d) = %v: %d out of range", s, total, got, id)
			}
			if i > 0 && got[i-1] >= id {
				t.Fatalf("ParseSet(%q, %d) = %v: not sorted and unique at %d", s, total, got, i)
			}
		}
		back, err := ParseSet(FormatSet(got), total)
		if err != nil || !slices.Equal(back, got) {
			t.Fatalf("ParseSet(FormatSet(%v) = %q, %d) = %v, %v", got, FormatSet(got), total, back, err)
		}
	})
}
