// Connects a discord.js Client to a Discord gateway simulator and prints one
// JSON summary line. Only public options are used: `rest.api` points the
// REST client at the simulator; the gateway URL, shard count and
// max_concurrency come from its GET /gateway/bot (with `shards: 'auto'`).
// discord.js asks for zlib-stream transport compression only when the
// optional zlib-sync package is installed (it is not here).
import { Client, Events, Routes } from 'discord.js';
import { parseOptions, Recorder, logTo, FATAL_CLOSE_CODES } from './probe.mjs';

const o = parseOptions();
const rec = new Recorder('discord.js', 'discord.js', o.events);
const log = logTo(o.verbose);

const client = new Client({
	intents: o.intents,
	rest: { api: `${o.base}/api` },
	// discord.js runs shard 0 of 1 unless told otherwise; 'auto' takes the
	// recommended count from /gateway/bot.
	shards: o.shardIds.length ? o.shardIds : o.shardCount ? [...Array(o.shardCount).keys()] : 'auto',
	...(o.shardCount ? { shardCount: o.shardCount } : {}),
});

let failFatal;
const fatal = new Promise((resolve) => {
	failFatal = resolve;
});
// ShardReady is discord.js's own signal: READY plus the GUILD_CREATEs of the
// guilds READY listed as unavailable (or waitGuildTimeout).
client.on(Events.ShardReady, (shardId) => rec.ready(shardId));
client.on(Events.Raw, (packet, shardId) => rec.event(shardId, packet.t));
client.on(Events.Debug, (msg) => {
	// op 9 shows up only in the debug stream: "[WS => Shard N] Invalid session; ..."
	if (/Invalid session; will attempt to resume/.test(msg)) {
		const m = /\[WS => Shard (\d+)\]/.exec(msg);
		rec.invalidSession(m ? Number(m[1]) : -1, /resume: (true|false)/.exec(msg)?.[1] ?? 'unknown');
	}
	const compression = /compression: (\S+)/.exec(msg)?.[1];
	if (compression) rec.note('compression', compression);
	log(msg);
});
client.on(Events.ShardError, (err, shardId) => log(`[shard ${shardId}] error`, err));
// ShardDisconnect means the shard will not reconnect.
client.on(Events.ShardDisconnect, (ev, shardId) => {
	log(`[shard ${shardId}] disconnect ${ev?.code}`);
	failFatal(new Error(`shard ${shardId} disconnected for good with ${ev?.code}`));
});
client.on(Events.Error, (err) => log('error', err));

try {
	let count = o.shardCount;
	let ids = o.shardIds;
	if (!count || !ids.length) {
		client.rest.setToken(o.token);
		const gb = await client.rest.get(Routes.gatewayBot());
		count ||= gb.shards;
		if (!ids.length) ids = [...Array(count).keys()];
	}
	rec.expect(count, ids);
	client.login(o.token).catch((err) => failFatal(err));
	const err = await rec.wait(o.timeoutMs, fatal);
	await client.destroy().catch(() => {});
	rec.finish(err);
} catch (err) {
	rec.finish(err);
}
