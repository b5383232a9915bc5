package shard

import (
	"math"
	"time"
)

// ForGuild returns the shard that receives a guild's events out of count
// shards: (guildID >> 22) % count. A count below 1 gives 0.
func ForGuild(guildID uint64, count int) int {
	if count < 1 {
		return 0
	}
	return int((guildID >> 22) % uint64(count))
}

// Bucket returns a shard's identify rate-limit bucket: shard %
// maxConcurrency. Discord allows one IDENTIFY per bucket per 5 seconds. A
// maxConcurrency below 1 counts as 1 and a negative shard has no bucket;
// both give 0.
func Bucket(shard, maxConcurrency int) int {
	if maxConcurrency < 1 || shard < 0 {
		return 0
	}
	return shard % maxConcurrency
}

// StartTime returns how long a fleet of count shards takes to identify
// when every bucket allows one IDENTIFY per interval: ceil(count /
// maxConcurrency) × interval. Shards start round by round, one shard of
// every bucket per round, so that is the number of rounds times the
// interval.
//
// A count below 1 or a negative interval gives 0, a maxConcurrency below
// 1 counts as 1, and a result too long for a time.Duration is capped at
// the longest one.
func StartTime(count, maxConcurrency int, interval time.Duration) time.Duration {
	if count < 1 || interval <= 0 {
		return 0
	}
	maxConcurrency = max(maxConcurrency, 1)
	rounds := int64(count / maxConcurrency)
	if count%maxConcurrency != 0 {
		rounds++
	}
	if rounds > math.MaxInt64/int64(interval) {
		return math.MaxInt64
	}
	return time.Duration(rounds) * interval
}
