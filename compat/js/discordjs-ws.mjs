// Connects @discordjs/ws's WebSocketManager to a Discord gateway simulator
// and prints one JSON summary line. Only public options are used: a
// @discordjs/rest REST instance with `api` set to the simulator; the gateway
// URL, shard count and max_concurrency come from its GET /gateway/bot.
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';
import { parseOptions, Recorder, logTo, FATAL_CLOSE_CODES } from './probe.mjs';

const o = parseOptions();
const rec = new Recorder('@discordjs/ws', '@discordjs/ws', o.events);
const log = logTo(o.verbose);

const rest = new REST({ api: `${o.base}/api` }).setToken(o.token);
const manager = new WebSocketManager({
	token: o.token,
	intents: o.intents,
	rest,
	...(o.shardCount ? { shardCount: o.shardCount } : {}),
	...(o.shardIds.length ? { shardIds: o.shardIds } : {}),
	// --compress zlib-stream: transport compression inflated with node:zlib.
	...(o.compress === 'zlib-stream' ? { compression: CompressionMethod.ZlibNative } : {}),
});
if (o.compress && o.compress !== 'zlib-stream') throw new Error(`--compress ${o.compress}: @discordjs/ws supports zlib-stream only`);

let failFatal;
const fatal = new Promise((resolve) => {
	failFatal = resolve;
});
manager.on(WebSocketShardEvents.Ready, (_data, shardId) => rec.ready(shardId));
manager.on(WebSocketShardEvents.Dispatch, (payload, shardId) => rec.event(shardId, payload.t));
manager.on(WebSocketShardEvents.Debug, (msg, shardId) => {
	// The manager reports op 9 only through its debug stream.
	if (/Invalid session; will attempt to resume/.test(msg)) rec.invalidSession(shardId, /resume: (true|false)/.exec(msg)?.[1] ?? 'unknown');
	const compression = /compression: (\S+)/.exec(msg)?.[1];
	if (compression) rec.note('compression', compression);
	log(`[shard ${shardId}] ${msg}`);
});
manager.on(WebSocketShardEvents.Error, (err, shardId) => log(`[shard ${shardId}] error`, err));
manager.on(WebSocketShardEvents.Closed, (code, shardId) => {
	log(`[shard ${shardId}] closed ${code}`);
	if (FATAL_CLOSE_CODES.has(code)) failFatal(new Error(`shard ${shardId} closed with ${code}`));
});

try {
	const ids = await manager.getShardIds();
	rec.expect(await manager.getShardCount(), ids);
	manager.connect().catch((err) => failFatal(err));
	const err = await rec.wait(o.timeoutMs, fatal);
	await manager.destroy().catch(() => {});
	rec.finish(err);
} catch (err) {
	rec.finish(err);
}
