// Package shard decides how many shards a bot runs, and holds the shard
// arithmetic the rest of Gatehouse shares: which shard receives a guild,
// which identify bucket a shard is in, how long a fleet takes to start,
// and the shard-set syntax of command-line flags.
//
// Everything here is pure. Nothing starts a goroutine, reads a clock or
// does I/O; time comes in as an argument, and invalid arguments are errors
// (or, for the small formulas, documented fallbacks), never panics. The
// package imports the standard library only.
//
// # Planning the shard count
//
// A Planner turns what the coordinator knows (Discord's recommended count
// and max_concurrency from GET /gateway/bot, the current count, and the
// guild count each shard reported) into a Decision: keep the count, start
// with a count, grow or shrink, with the count and a reason a person can
// read. Plan is a function of its Config, its Input and a State that the
// caller keeps between plans (the zero State is the start); it returns the
// next State instead of changing anything.
//
// The count the guilds call for, Decision.Needed, is
//
//	ceil(guilds / TargetGuilds), at least Discord's recommendation,
//	rounded up to a multiple of max_concurrency when that is above 1.
//
// where guilds is the sum of the reports, with shards that did not report
// counted at the mean of those that did. Discord closes a session that
// would hold more than MaxGuildsPerShard (2,500) guilds with 4011, and a
// large bot whose count is not a multiple of its assigned number with 4010.
//
// The planner does not follow Needed one for one: a reshard identifies
// every shard again and spends session starts from the daily budget, so
// the count moves only past thresholds with a gap between them.
//
//   - Grow when one shard holds more than HighWater guilds (2,250 by
//     default, 90% of the cap) or the mean exceeds GrowAverage (1,250 by
//     default, the target plus a quarter). Growth goes straight to Needed,
//     so the mean lands at or below the target, not just under the
//     threshold. When a hot shard forces growth that the total does not
//     call for, the count grows by the smallest step allowed: a reshard
//     moves every guild, so the hot shard's guilds spread over all shards.
//   - Shrink when the mean has stayed below ShrinkAverage (500 by default,
//     half the target) in every plan for ShrinkAfter (24 hours by default),
//     and only down to Needed, which is never below Discord's
//     recommendation.
//   - Otherwise keep the count.
//
// Both moves land on Needed: its mean is at most the target, well under
// the grow mark, and no shrink goes below it, so a count the planner chose
// is not undone by the small swings of guilds joining and leaving.
//
// Running fewer shards than Discord recommends is not by itself a reason
// to grow: the recommendation tracks guilds / 1000 one for one, so
// following it would undo the gap between the target and the grow mark.
// It is a floor for every count the planner chooses.
//
// # Shard sets
//
// ParseSet reads the shard selections of command-line flags: "all", a
// range "A-B", or a list of IDs and ranges "0,2,5-7". FormatSet writes a
// set back in the same syntax.
//
// # Routing and identify buckets
//
// ForGuild is Discord's routing formula (guild_id >> 22) % count. Bucket
// is a shard's identify rate-limit bucket, shard % max_concurrency; each
// bucket allows one IDENTIFY per interval (5 s), so StartTime, the time a
// whole fleet takes to identify, is ceil(count / max_concurrency) ×
// interval.
package shard
