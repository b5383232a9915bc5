// Shared by the per-package scripts: command-line options, a recorder of
// READY and dispatch events per shard, and the one-line JSON summary each
// script prints on stdout. Mirrors compat/go/internal/probe.
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// GUILDS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS | GUILD_MESSAGE_TYPING | MESSAGE_CONTENT
export const DEFAULT_INTENTS = 1 | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 15);

// parseOptions reads --base, --token, --shards, --shard-ids, --events,
// --timeout (a duration such as 40s), --intents, --compress and --verbose.
export function parseOptions(argv = process.argv.slice(2)) {
	const { values } = parseArgs({
		args: argv,
		options: {
			base: { type: 'string', default: 'http://127.0.0.1:8787' },
			token: { type: 'string' },
			shards: { type: 'string', default: '0' },
			'shard-ids': { type: 'string', default: '' },
			events: { type: 'string', default: '10' },
			timeout: { type: 'string', default: '60' },
			intents: { type: 'string', default: String(DEFAULT_INTENTS) },
			verbose: { type: 'boolean', short: 'v', default: false },
			compress: { type: 'string', default: '' },
		},
		strict: true,
	});
	if (!values.token) throw new Error('--token is required');
	const shardIds = values['shard-ids']
		.split(',')
		.map((s) => s.trim())
		.filter((s) => s !== '')
		.map((s) => {
			const n = Number(s);
			if (!Number.isInteger(n) || n < 0) throw new Error(`--shard-ids: bad shard id ${s}`);
			return n;
		});
	const shardCount = Number(values.shards);
	if (shardIds.length > 0 && !shardCount) throw new Error('--shard-ids needs --shards');
	return {
		base: values.base.replace(/\/+$/, ''),
		token: values.token,
		shardCount,
		shardIds,
		events: Number(values.events),
		timeoutMs: parseDuration(values.timeout),
		intents: Number(values.intents),
		verbose: values.verbose,
		// Transport compression to ask for ('' = the client's default).
		compress: values.compress,
	};
}

// parseDuration accepts Go-style durations ("40s", "1500ms", "2m") and plain
// numbers of seconds.
function parseDuration(v) {
	const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(v.trim());
	if (!m) throw new Error(`--timeout: bad duration ${v}`);
	return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2] ?? 's'];
}

// packageVersion returns the installed version of npm package name, as
// resolved from this directory.
export function packageVersion(name) {
	const require = createRequire(import.meta.url);
	try {
		return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
	} catch {
		// Packages whose "exports" hide package.json: find it next to the entry.
		try {
			let dir = require.resolve(name);
			while (dir.includes('node_modules')) {
				dir = dir.slice(0, dir.lastIndexOf('/'));
				try {
					const pkg = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8'));
					if (pkg.name === name) return pkg.version;
				} catch {}
			}
		} catch {}
		return 'unknown';
	}
}

// Recorder counts READYs, dispatches and invalid sessions per shard and
// resolves done() when every expected shard is READY and enough dispatches
// (other than READY, RESUMED and GUILD_CREATE) arrived.
export class Recorder {
	constructor(client, pkg, wantEvents) {
		this.client = client;
		this.version = packageVersion(pkg);
		this.want = wantEvents;
		this.start = Date.now();
		this.shardCount = 0;
		this.shards = new Map();
		this.events = 0;
		this.invalid = 0;
		this.invalidD = {};
		this.types = {};
		this.notes = {};
		this.finished = false;
		this.donePromise = new Promise((resolve) => {
			this.resolveDone = resolve;
		});
	}

	shard(id) {
		let s = this.shards.get(id);
		if (!s) {
			s = { id, ready: false, readies: 0, events: 0, invalid_sessions: 0 };
			this.shards.set(id, s);
		}
		return s;
	}

	expect(shardCount, ids) {
		this.shardCount = shardCount;
		for (const id of ids) this.shard(id);
		this.check();
	}

	ready(id) {
		const s = this.shard(id);
		if (!s.ready) s.ready_ms = Date.now() - this.start;
		s.ready = true;
		s.readies++;
		this.check();
	}

	// invalidSession records an op 9 the client reported; d is its d value as
	// the client reported it ('true', 'false' or 'unknown').
	invalidSession(id, d = 'unknown') {
		this.invalid++;
		this.invalidD[d] = (this.invalidD[d] ?? 0) + 1;
		if (id >= 0) this.shard(id).invalid_sessions++;
	}

	// note records a fact the client reported about itself, such as the
	// transport compression it negotiated.
	note(key, value) {
		this.notes[key] = value;
	}

	event(id, type) {
		this.types[type] = (this.types[type] ?? 0) + 1;
		if (type === 'READY' || type === 'RESUMED' || type === 'GUILD_CREATE' || !type) return;
		this.shard(id).events++;
		this.events++;
		this.check();
	}

	met() {
		if (this.shards.size === 0 || this.events < this.want) return false;
		for (const s of this.shards.values()) if (!s.ready) return false;
		return true;
	}

	check() {
		if (this.shardCount > 0 && this.met()) this.resolveDone(null);
	}

	// wait resolves with null when done, or with an Error on timeout or when
	// fatal (a promise the caller rejects/resolves with an error) settles.
	wait(timeoutMs, fatal = new Promise(() => {})) {
		let timer;
		const timeout = new Promise((resolve) => {
			timer = setTimeout(() => resolve(new Error(`gave up: timeout after ${timeoutMs / 1000}s`)), timeoutMs);
		});
		return Promise.race([this.donePromise, timeout, fatal.then((e) => e, (e) => e)]).finally(() => clearTimeout(timer));
	}

	summary(err) {
		const ok = !err && this.met();
		return {
			client: this.client,
			version: this.version,
			ok,
			shard_count: this.shardCount,
			shards: [...this.shards.values()].sort((a, b) => a.id - b.id),
			events: this.events,
			invalid_sessions: this.invalid,
			invalid_session_d: this.invalidD,
			event_types: this.types,
			notes: this.notes,
			elapsed_ms: Date.now() - this.start,
			...(err ? { error: String(err.message ?? err) } : ok ? {} : { error: 'goal not met' }),
		};
	}

	// finish prints the summary once and exits with 0 when it is ok.
	finish(err) {
		if (this.finished) return;
		this.finished = true;
		const s = this.summary(err);
		process.stdout.write(`${JSON.stringify(s)}\n`, () => process.exit(s.ok ? 0 : 1));
	}
}

// FATAL_CLOSE_CODES are the close codes Discord documents as "do not
// reconnect"; a client closed with one of them will not recover by itself.
export const FATAL_CLOSE_CODES = new Set([4004, 4010, 4011, 4012, 4013, 4014]);

// logTo returns a stderr logger that is silent unless verbose.
export function logTo(verbose) {
	return (...a) => {
		if (verbose) console.error(...a);
	};
}
