package shard

import (
	"math"
	"testing"
	"time"
)

func TestForGuild(t *testing.T) {
	for _, tc := range []struct {
		guild uint64
		count int
		want  int
	}{
		// 81384788765712384 >> 22 = 19403645698 (milliseconds since
		// 2015-01-01, in August 2015), and 19403645698 = 16 ×
		// 1212727856 + 2.
		{81384788765712384, 16, 2},
		// Discord's documented example: 41771983423143937 >> 22 =
		// 9959216934 = 16 × 622451058 + 6.
		{41771983423143937, 16, 6},
		// 175928847299117063 >> 22 = 41944705796 = 16 × 2621544112 + 4
		// = 10 × 4194470579 + 6.
		{175928847299117063, 16, 4},
		{175928847299117063, 10, 6},
		{81384788765712384, 1, 0},
		// The largest snowflake: (2^64-1) >> 22 = 2^42-1 = 4398046511103,
		// which 7 divides.
		{math.MaxUint64, 7, 0},
		// Guilds made in the same millisecond share a shard: the low 22
		// bits (worker, process, increment) are shifted out.
		{81384788765712384 | (1<<22 - 1), 16, 2},
		{81384788765712384 | (1<<22 - 1) + 1, 16, 3},
		{81384788765712384, 0, 0},
		{81384788765712384, -3, 0},
	} {
		if got := ForGuild(tc.guild, tc.count); got != tc.want {
			t.Errorf("ForGuild(%d, %d) = %d, want %d", tc.guild, tc.count, got, tc.want)
		}
	}
}

func TestBucket(t *testing.T) {
	for _, tc := range []struct {
		shard, mc, want int
	}{
		{0, 1, 0},
		{5, 1, 0},
		{15, 16, 15},
		{16, 16, 0},
		{33, 16, 1},
		{7, 0, 0},
		{7, -4, 0},
		{-1, 16, 0},
	} {
		if got := Bucket(tc.shard, tc.mc); got != tc.want {
			t.Errorf("Bucket(%d, %d) = %d, want %d", tc.shard, tc.mc, got, tc.want)
		}
	}
}

func TestStartTime(t *testing.T) {
	const i = 5 * time.Second
	for _, tc := range []struct {
		count, mc int
		interval  time.Duration
		want      time.Duration
	}{
		{1, 1, i, 5 * time.Second},
		{10, 1, i, 50 * time.Second},
		{32, 16, i, 10 * time.Second},
		{33, 16, i, 15 * time.Second},
		{160, 16, i, 50 * time.Second},
		{1000, 1, i, 5000 * time.Second},
		{10, 0, i, 50 * time.Second},
		{10, -1, i, 50 * time.Second},
		{0, 16, i, 0},
		{-5, 16, i, 0},
		{10, 1, 0, 0},
		{10, 1, -i, 0},
		{math.MaxInt, 1, time.Hour, math.MaxInt64},
		{math.MaxInt, math.MaxInt, i, i},
	} {
		if got := StartTime(tc.count, tc.mc, tc.interval); got != tc.want {
			t.Errorf("StartTime(%d, %d, %v) = %v, want %v", tc.count, tc.mc, tc.interval, got, tc.want)
		}
	}
}

// TestStartTimeReference checks StartTime against a simulated start: every
// shard waits for the previous shard of its bucket, and the fleet is done
// one interval after the last IDENTIFY.
func TestStartTimeReference(t *testing.T) {
	const i = 5 * time.Second
	for count := 1; count <= 70; count++ {
		for _, mc := range []int{1, 2, 3, 16, 32, 100} {
			next := map[int]time.Duration{} // bucket → its next free slot
			var last time.Duration
			for s := range count {
				b := Bucket(s, mc)
				last = max(last, next[b])
				next[b] += i
			}
			if got, want := StartTime(count, mc, i), last+i; got != want {
				t.Errorf("StartTime(%d, %d, %v) = %v, want %v", count, mc, i, got, want)
			}
		}
	}
}
