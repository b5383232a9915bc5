// Connects an Oceanic.js Client to a Discord gateway simulator and prints one
// JSON summary line. Only public options are used: `rest.baseURL` points the
// REST client at the simulator; the gateway URL, shard count and
// max_concurrency come from its GET /gateway/bot.
import { Client } from 'oceanic.js';
import { parseOptions, Recorder, logTo, FATAL_CLOSE_CODES } from './probe.mjs';

const o = parseOptions();
const rec = new Recorder('oceanic.js', 'oceanic.js', o.events);
const log = logTo(o.verbose);

const gateway = { intents: o.intents, concurrency: 'auto' };
if (o.shardCount) gateway.maxShards = o.shardCount;
else gateway.maxShards = 'auto';
if (o.shardIds.length) {
	gateway.firstShardID = Math.min(...o.shardIds);
	gateway.lastShardID = Math.max(...o.shardIds);
}
const client = new Client({
	auth: `Bot ${o.token}`,
	rest: { baseURL: `${o.base}/api/v10` },
	gateway,
});

let failFatal;
const fatal = new Promise((resolve) => {
	failFatal = resolve;
});
client.on('shardReady', (id) => rec.ready(id));
client.on('packet', (packet, id) => rec.event(id, packet.t));
client.on('warn', (msg, id) => {
	// op 9 is reported as a warning: "Session Invalidated. ..."
	if (String(msg).startsWith('Session Invalidated')) {
		rec.invalidSession(id ?? -1, String(msg).includes('not resumable') ? 'false' : 'true');
	}
	log(`[shard ${id}] warn: ${msg}`);
});
client.on('debug', (msg, id) => {
	log(`[shard ${id}] ${msg}`);
	// Close codes reach the user only as debug text: "Unclean WS close: 4004: ...".
	const m = /WS close: (\d+)/.exec(String(msg));
	if (m && FATAL_CLOSE_CODES.has(Number(m[1]))) failFatal(new Error(`shard ${id} closed with ${m[1]}`));
});
client.on('error', (err, id) => log(`[shard ${id}] error`, err));

try {
	let count = o.shardCount;
	let ids = o.shardIds;
	if (!count || !ids.length) {
		const gb = await client.rest.getBotGateway();
		count ||= gb.shards;
		if (!ids.length) ids = [...Array(count).keys()];
	}
	if (o.shardIds.length && ids.length !== gateway.lastShardID - gateway.firstShardID + 1) {
		throw new Error('oceanic.js runs a contiguous shard range; --shard-ids must be contiguous');
	}
	rec.note('compression', client.shards.options.compress || 'none');
	rec.expect(count, ids);
	client.connect().catch((err) => failFatal(err));
	const err = await rec.wait(o.timeoutMs, fatal);
	client.disconnect(false);
	rec.finish(err);
} catch (err) {
	rec.finish(err);
}
