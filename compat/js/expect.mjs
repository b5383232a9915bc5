// Small helpers for run.sh, which may not have curl or jq:
//   node expect.mjs get URL                 print the body of GET URL
//   node expect.mjs check FILE EXPR         exit 0 when EXPR is truthy, with s = JSON of FILE
//   node expect.mjs show FILE EXPR          print the value of EXPR
//   node expect.mjs brief FILE              print FILE compactly: no zero, false,
//                                            empty or per-type fields
// FILE holds one JSON document, or JSON lines (then s is an array of them).
import { readFileSync } from 'node:fs';

const [cmd, a, expr] = process.argv.slice(2);

function load(file) {
	const text = readFileSync(file, 'utf8').trim();
	try {
		return JSON.parse(text);
	} catch {
		return text
			.split('\n')
			.filter((l) => l.trim().startsWith('{'))
			.map((l) => JSON.parse(l));
	}
}

function evaluate(file, e) {
	const s = load(file);
	// Helpers usable in expressions.
	const sum = (xs) => xs.reduce((t, x) => t + (Number(x) || 0), 0);
	const values = (o) => Object.values(o ?? {});
	return new Function('s', 'sum', 'values', `return (${e});`)(s, sum, values);
}

// brief drops what rarely explains a failure: zero, false and empty values,
// and the long per-type and per-shard breakdowns of the simulator's stats.
function brief(v, key = '') {
	if (Array.isArray(v)) return v.map((x) => brief(x));
	if (v && typeof v === 'object') {
		const out = {};
		for (const [k, x] of Object.entries(v)) {
			if (k === 'event_types' || (k === 'shards' && key === '' && !('client' in v))) continue;
			const b = brief(x, k);
			const keep = k === 'id' || k === 'ok';
			if (!keep && (b === 0 || b === false || b === '' || b == null)) continue;
			if (typeof b === 'object' && Object.keys(b).length === 0) continue;
			out[k] = b;
		}
		return out;
	}
	return v;
}

try {
	switch (cmd) {
		case 'get': {
			const res = await fetch(a, { signal: AbortSignal.timeout(5000) });
			if (!res.ok) throw new Error(`GET ${a}: ${res.status}`);
			process.stdout.write(await res.text());
			break;
		}
		case 'check':
			process.exitCode = evaluate(a, expr) ? 0 : 1;
			break;
		case 'show': {
			const v = evaluate(a, expr);
			process.stdout.write(`${typeof v === 'string' ? v : JSON.stringify(v)}\n`);
			break;
		}
		case 'brief':
			process.stdout.write(`${JSON.stringify(brief(load(a)))}\n`);
			break;
		default:
			throw new Error(`unknown command ${cmd}`);
	}
} catch (err) {
	console.error(String(err.message ?? err));
	process.exitCode = 2;
}
