package discord

// MaxGuildsPerShard is the most guilds one shard may hold; an IDENTIFY whose
// session would hold more is closed with 4011.
const MaxGuildsPerShard = 2500

// IdentifyIntervalMillis is Discord's identify rate-limit window in milliseconds:
// one IDENTIFY per bucket per window.
const IdentifyIntervalMillis = 5000

// ShardForGuild returns the shard that receives a guild's events:
// (guild_id >> 22) % numShards. numShards below 1 is treated as 1.
func ShardForGuild(guild Snowflake, numShards int) int {
	if numShards < 1 {
		return 0
	}
	return int(uint64(guild>>22) % uint64(numShards))
}

// ShardBucket returns the identify rate-limit bucket of a shard:
// shard % maxConcurrency. maxConcurrency below 1 is treated as 1.
func ShardBucket(shard, maxConcurrency int) int {
	if maxConcurrency < 1 {
		return 0
	}
	return shard % maxConcurrency
}
