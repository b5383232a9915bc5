// The JavaScript side of the ingest benchmark: @discordjs/ws's
// WebSocketManager (the fastest JavaScript gateway library we measured)
// holding N shards of a Discord gateway simulator, counting dispatches and
// doing nothing else with them, no parsing beyond what the library does
// itself and no publishing.
//
//   node ingest.mjs --base http://127.0.0.1:8787 --token sim-token --shards 16 [--compress zlib-stream]
//
// Options:
//   --base URL         the simulator's HTTP base; REST calls go to URL/api (default http://127.0.0.1:8787)
//   --token TOKEN      bot token (required)
//   --shards N         shard count; shards 0..N-1 run in this process (required)
//   --compress MODE    transport compression: none (default) or zlib-stream
//   --inflate HOW      zlib-stream decompressor: auto (default: zlib-sync when installed, the
//                      library's recommended fast path, else node:zlib), sync or native
//   --intents BITS     IDENTIFY intents (default 513: GUILDS | GUILD_MESSAGES)
//   --interval MS      progress line period (default 1000)
//   --verbose, -v      copy the library's debug messages to stderr
//
// The gateway URL and max_concurrency (the identify buckets) come from the
// simulator's GET /gateway/bot, through the library's default throttler.
//
// Output on stdout, one JSON object a line:
//   {"ready":true,"shards":N,"t_ms":…,"events":…,"compression":…,"library":"@discordjs/ws","version":…}
//       once, when every shard has received READY;
//   {"t_ms":…,"events":…,"closes":…,"destroys":…,"ready_shards":…}
//       then every interval: t_ms since the script started, events the
//       cumulative number of dispatches received (READY and GUILD_CREATE
//       included), closes the cumulative number of shard connections closed,
//       destroys the cumulative number of times the library began tearing a
//       shard down (a zombie connection, a timeout, a close from the server).
// Logs and errors go to stderr. SIGTERM or SIGINT destroys the manager and
// exits 0.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { REST } from '@discordjs/rest';
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from '@discordjs/ws';

const { values } = parseArgs({
	options: {
		base: { type: 'string', default: 'http://127.0.0.1:8787' },
		token: { type: 'string' },
		shards: { type: 'string' },
		compress: { type: 'string', default: 'none' },
		intents: { type: 'string', default: String(1 | (1 << 9)) },
		interval: { type: 'string', default: '1000' },
		inflate: { type: 'string', default: 'auto' },
		verbose: { type: 'boolean', short: 'v', default: false },
	},
	strict: true,
});

function fail(msg) {
	process.stderr.write(`ingest: ${msg}\n`);
	process.exit(2);
}

const base = values.base.replace(/\/+$/, '');
const token = values.token ?? fail('--token is required');
const shards = Number(values.shards);
if (!Number.isInteger(shards) || shards < 1) fail(`--shards: want a positive integer, got ${values.shards}`);
const intents = Number(values.intents);
if (!Number.isInteger(intents) || intents < 0) fail(`--intents: bad value ${values.intents}`);
const interval = Number(values.interval);
if (!(interval >= 10)) fail(`--interval: want at least 10 (ms), got ${values.interval}`);
if (values.compress !== 'none' && values.compress !== '' && values.compress !== 'zlib-stream') {
	fail(`--compress ${values.compress}: @discordjs/ws supports none and zlib-stream`);
}
const zlib = values.compress === 'zlib-stream';
if (!['auto', 'sync', 'native'].includes(values.inflate)) fail(`--inflate ${values.inflate}: want auto, sync or native`);
const haveZlibSync = await import('zlib-sync').then(() => true).catch(() => false);
let inflate = values.inflate;
if (inflate === 'auto') inflate = haveZlibSync ? 'sync' : 'native';
if (zlib && inflate === 'sync' && !haveZlibSync) fail('--inflate sync: zlib-sync is not installed');
const compressionOption = !zlib ? {} : { compression: inflate === 'sync' ? CompressionMethod.ZlibSync : CompressionMethod.ZlibNative };
const compressionName = !zlib ? 'none' : inflate === 'sync' ? 'zlib-stream (zlib-sync)' : 'zlib-stream (node:zlib)';

function version() {
	try {
		const require = createRequire(import.meta.url);
		let dir = require.resolve('@discordjs/ws');
		dir = dir.slice(0, dir.lastIndexOf('/dist/'));
		return JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')).version;
	} catch {
		return 'unknown';
	}
}

const start = performance.now();
const now = () => Math.round(performance.now() - start);
const line = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const rest = new REST({ api: `${base}/api` }).setToken(token);
const manager = new WebSocketManager({
	token,
	intents,
	rest,
	shardCount: shards,
	shardIds: { start: 0, end: shards - 1 },
	...compressionOption,
});

let events = 0;
let closes = 0;
let destroys = 0;
const ready = new Set();
let announced = false;

manager.on(WebSocketShardEvents.Dispatch, () => {
	events++;
});
manager.on(WebSocketShardEvents.Ready, (_data, shardId) => {
	ready.add(shardId);
	if (!announced && ready.size === shards) {
		announced = true;
		line({ ready: true, shards, t_ms: now(), events, compression: compressionName, library: '@discordjs/ws', version: version() });
	}
});
manager.on(WebSocketShardEvents.Closed, (code, shardId) => {
	closes++;
	if (!stopping) process.stderr.write(`ingest: shard ${shardId} closed with ${code}\n`);
});
manager.on(WebSocketShardEvents.Debug, (msg, shardId) => {
	// Debug messages come with lifecycle changes only, never per dispatch.
	if (msg.includes('Destroying shard')) {
		destroys++;
		if (!values.verbose && !stopping) process.stderr.write(`ingest: shard ${shardId}: ${msg.replaceAll('\n', '; ')}\n`);
	}
	if (values.verbose) process.stderr.write(`ingest: shard ${shardId}: ${msg}\n`);
});
manager.on(WebSocketShardEvents.Error, (err, shardId) => {
	process.stderr.write(`ingest: shard ${shardId} error: ${err?.stack ?? err}\n`);
});

const ticker = setInterval(() => {
	line({ t_ms: now(), events, closes, destroys, ready_shards: ready.size });
}, interval);

let stopping = false;
async function stop(code) {
	if (stopping) return;
	stopping = true;
	clearInterval(ticker);
	// The REST client keeps sweeper timers; exit rather than wait for them.
	const guard = setTimeout(() => process.exit(code), 5000);
	guard.unref();
	try {
		await manager.destroy({ code: 1000, reason: 'benchmark over' });
	} catch (err) {
		process.stderr.write(`ingest: destroy: ${err?.stack ?? err}\n`);
	}
	process.exit(code);
}
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));

try {
	await manager.connect();
} catch (err) {
	process.stderr.write(`ingest: connect: ${err?.stack ?? err}\n`);
	await stop(1);
}
