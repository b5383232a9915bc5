#!/usr/bin/env bash
# Compatibility suite: well-known Go and JavaScript Discord gateway clients,
# unchanged except for their REST base URL, against `gatehouse sim`.
#
# Usage: compat/run.sh [SCENARIO-PREFIX ...]
#   With no arguments every scenario runs; otherwise only those whose name
#   starts with one of the prefixes (e.g. `compat/run.sh happy/disgo limit/`).
#
# Needs Go, node >= 20 and npm (no curl or jq). Prints one line per check,
# "PASS name" or "FAIL name: why", and ends with exactly "N passed, M failed".
# Exits 1 when any check failed. Set COMPAT_VERBOSE=1 for client debug logs
# (they go to the per-run log files, kept when something fails), and
# COMPAT_GATEHOUSE=FILE to test a prebuilt gatehouse binary instead of
# building the one in this checkout. COMPAT_KEEP=1 keeps the logs even when
# everything passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=$(mktemp -d -t gatehouse-compat.XXXXXX)
JS="$HERE/js"

# A token shaped like Discord's: base64(bot user id) . timestamp . hmac.
# disgo derives the application id from the first part, so it must decode.
BOT_ID=123456789012345678
TOKEN="$(printf '%s' "$BOT_ID" | base64 | tr -d '=\n').GhOuSe.c2ltdWxhdG9yLW9ubHktdG9rZW4tbm90LXJlYWw"

PASSED=0
FAILED=0
SIM_PID=""
SIM_URL=""
KEEP=${COMPAT_KEEP:-0}

VERBOSE_GO=()
VERBOSE_JS=()
if [[ "${COMPAT_VERBOSE:-}" == 1 ]]; then
	VERBOSE_GO=(-v)
	VERBOSE_JS=(--verbose)
fi

cleanup() {
	stop_sim
	if [[ $KEEP == 1 ]]; then
		echo "  # logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

pass() {
	echo "PASS $1"
	PASSED=$((PASSED + 1))
}

fail() {
	echo "FAIL $1${2:+: $2}"
	FAILED=$((FAILED + 1))
	KEEP=1
}

info() {
	echo "  # $*"
}

finish() {
	echo "$PASSED passed, $FAILED failed"
	if [[ $FAILED -gt 0 ]]; then
		exit 1
	fi
	exit 0
}

# selected NAME: whether the scenario NAME was asked for.
selected() {
	[[ ${#FILTERS[@]} -eq 0 ]] && return 0
	local f
	for f in "${FILTERS[@]}"; do
		[[ $1 == "$f"* ]] && return 0
	done
	return 1
}

# expect NAME FILE EXPR: one check; EXPR is a JavaScript expression over s,
# the JSON in FILE (see js/expect.mjs).
expect() {
	local name=$1 file=$2 expr=$3
	if [[ -s $file ]] && node "$JS/expect.mjs" check "$file" "$expr" 2>/dev/null; then
		pass "$name"
	else
		local got="(no output)"
		[[ -s $file ]] && got=$(node "$JS/expect.mjs" brief "$file" 2>/dev/null | head -c 700 | tr '\n' ' ')
		fail "$name" "want $expr; got $got"
	fi
}

show() {
	node "$JS/expect.mjs" show "$1" "$2" 2>/dev/null || echo "?"
}

# start_sim RUN [sim flags...]: starts the simulator in the background and
# sets SIM_PID and SIM_URL from its first stdout line.
start_sim() {
	local run=$1
	shift
	local out="$WORK/$run.sim.out"
	"$WORK/gatehouse" sim -addr 127.0.0.1:0 -token "$TOKEN" "$@" >"$out" 2>"$WORK/$run.sim.log" &
	SIM_PID=$!
	local line re='^gatehouse sim listening on (http://[^ ]+) \(REST '
	for _ in $(seq 100); do
		line=$(head -n 1 "$out" 2>/dev/null || true)
		if [[ $line =~ $re ]]; then
			SIM_URL=${BASH_REMATCH[1]}
			return 0
		fi
		if ! kill -0 "$SIM_PID" 2>/dev/null; then
			break
		fi
		sleep 0.1
	done
	stop_sim
	return 1
}

# stop_sim: stops the simulator this script started (by its PID only).
stop_sim() {
	if [[ -n $SIM_PID ]]; then
		kill -TERM "$SIM_PID" 2>/dev/null || true
		wait "$SIM_PID" 2>/dev/null || true
		SIM_PID=""
	fi
}

# sim_stats RUN: saves GET /sim/stats to $WORK/RUN.stats.json.
sim_stats() {
	node "$JS/expect.mjs" get "$SIM_URL/sim/stats" >"$WORK/$1.stats.json" 2>>"$WORK/$1.sim.log" || true
}

# client_cmd CLIENT: the command line that runs CLIENT, without its options.
client_cmd() {
	case $1 in
	disgo | discordgo | arikawa) echo "$WORK/bin/$1" ;;
	discordjs-ws | discordjs | oceanic) echo "node $JS/$1.mjs" ;;
	*) return 1 ;;
	esac
}

# client_args CLIENT ARGS...: ARGS with Go-style flags turned into the
# scripts' --flags for the JavaScript clients.
client_args() {
	local c=$1
	shift
	local a
	case $c in
	disgo | discordgo | arikawa)
		for a in "$@" "${VERBOSE_GO[@]}"; do
			printf '%s\n' "$a"
		done
		;;
	*)
		for a in "$@" "${VERBOSE_JS[@]}"; do
			[[ $a == -[a-z]* ]] && a="-$a"
			printf '%s\n' "$a"
		done
		;;
	esac
}

# run_client RUN CLIENT TIMEOUT ARGS...: runs CLIENT against the simulator;
# its last stdout line (the JSON summary) goes to $WORK/RUN.json.
run_client() {
	local run=$1 c=$2 t=$3
	shift 3
	local cmd args
	read -r -a cmd <<<"$(client_cmd "$c")"
	mapfile -t args < <(client_args "$c" -base "$SIM_URL" -token "$TOKEN" -timeout "${t}s" "$@")
	# The client enforces -timeout itself; the outer limit only catches hangs.
	timeout -k 5 "$((t + 15))" "${cmd[@]}" "${args[@]}" >"$WORK/$run.out" 2>"$WORK/$run.log" || true
	grep '^{' "$WORK/$run.out" | tail -n 1 >"$WORK/$run.json" || true
}

# ---------------------------------------------------------------------------
# Scenarios.

GO_CLIENTS=(disgo discordgo arikawa)
JS_CLIENTS=(discordjs-ws discordjs oceanic)

# World for every run: 2 recommended shards, 100 guilds, events at RATE per
# shard per second. The heartbeat interval is short enough that most clients
# beat during a run, but longer than the 5 s identify window: Discord's is
# 41.25 s, and some clients (arikawa) do not heartbeat while they wait for
# their identify queue, so an interval below the identify window would get
# them closed for a missed heartbeat, which never happens against Discord.
GUILDS=100
SHARDS=2
RATE=20
EVENTS=20
WORLD=(-guilds "$GUILDS" -shards "$SHARDS" -rate "$RATE" -heartbeat-interval 6s)

# happy CLIENT: one process runs both shards, shard count and max_concurrency
# 1 from /gateway/bot, Discord's real 5 s identify window. The client's own
# identify queue must keep it within the limit: no violation of any rule.
# Clients that pace exactly 5 s apart (arikawa) would fail whenever a busy
# machine reads one IDENTIFY a few milliseconds late, so the window has 250 ms
# of slack; the limit/ scenario checks what a real violation does.
#
# happy CLIENT VARIANT CLIENT-ARGS...: the same with extra client options,
# reported as happy/CLIENT+VARIANT.
happy() {
	local c=$1 run="happy-$1" name="happy/$1"
	shift
	if [[ $# -gt 0 ]]; then
		run+="+$1" name+="+$1"
		shift
	fi
	selected "$name" || return 0
	if ! start_sim "$run" "${WORLD[@]}" -max-concurrency 1 -identify-interval 5s -identify-slack 250ms; then
		fail "$name/sim-start" "gatehouse sim did not print its address (see $WORK/$run.sim.log)"
		return 0
	fi
	run_client "$run" "$c" 40 -events "$EVENTS" "$@"
	sim_stats "$run"
	stop_sim
	expect "$name/client-ready-and-events" "$WORK/$run.json" \
		"s.ok && s.shard_count === $SHARDS && s.shards.length === $SHARDS && s.shards.every(x => x.ready) && s.events >= $EVENTS"
	expect "$name/sim-readies" "$WORK/$run.stats.json" \
		"s.readies === $SHARDS && s.identifies === $SHARDS && s.events >= $EVENTS"
	expect "$name/sim-one-connection-per-shard" "$WORK/$run.stats.json" \
		"s.connections_total === $SHARDS && s.resumes === 0"
	expect "$name/sim-no-violations" "$WORK/$run.stats.json" \
		"s.identify_violations === 0 && sum(values(s.violations)) === 0"
	info "$c $(show "$WORK/$run.json" 's.version') compression=$(show "$WORK/$run.json" 'JSON.stringify(s.notes?.compression)') ready_ms=$(show "$WORK/$run.json" 's.shards.map(x => x.ready_ms).join("/")') events=$(show "$WORK/$run.json" 's.events') types=$(show "$WORK/$run.json" 'Object.keys(s.event_types).sort().join(",")')"
	info "sim: $(show "$WORK/$run.stats.json" '`connections_total=${s.connections_total} identifies=${s.identifies} readies=${s.readies} resumes=${s.resumes} heartbeats=${s.heartbeats} events=${s.events} identify_violations=${s.identify_violations} violations=${JSON.stringify(Object.fromEntries(Object.entries(s.violations).filter(([, v]) => v)))}`')"
}

# limit CLIENT: the classic multi-process mistake. Two processes of the same
# client start at the same moment for shards 0 and 1 of 2 with
# max_concurrency 1; each one's identify queue is local, so they IDENTIFY
# together. Discord (and the simulator) answer the too-fast one with op 9
# d:false; the client must then re-identify and reach READY.
limit() {
	local c=$1 run="limit-$1" name="limit/$1"
	selected "$name" || return 0
	if ! start_sim "$run" "${WORLD[@]}" -max-concurrency 1 -identify-interval 2s; then
		fail "$name/sim-start" "gatehouse sim did not print its address (see $WORK/$run.sim.log)"
		return 0
	fi
	local want=$((EVENTS / 4))
	run_client "$run-0" "$c" 40 -shards "$SHARDS" -shard-ids 0 -events "$want" &
	local p0=$!
	run_client "$run-1" "$c" 40 -shards "$SHARDS" -shard-ids 1 -events "$want" &
	local p1=$!
	wait "$p0" "$p1" || true
	sim_stats "$run"
	stop_sim
	cat "$WORK/$run-0.json" "$WORK/$run-1.json" >"$WORK/$run.json" 2>/dev/null || true
	expect "$name/clients-ready-after-op9" "$WORK/$run.json" \
		"s.length === 2 && s.every(x => x.ok && x.shards.length === 1 && x.shards[0].ready)"
	expect "$name/client-saw-op9-false" "$WORK/$run.json" \
		"s.length === 2 && sum(s.map(x => x.invalid_sessions)) >= 1 && s.every(x => !x.invalid_session_d || !x.invalid_session_d.true)"
	expect "$name/sim-rejected-identify" "$WORK/$run.stats.json" \
		"s.identify_violations >= 1 && s.violations.identify_rate >= 1"
	expect "$name/sim-readies" "$WORK/$run.stats.json" "s.readies === $SHARDS"
	info "$c clients: $(show "$WORK/$run.json" 's.map(x => `shard ${x.shards.map(y => y.id)} ok=${x.ok} ready_ms=${x.shards.map(y => y.ready_ms)} op9=${x.invalid_sessions} ${JSON.stringify(x.invalid_session_d)}`).join("; ")')"
	info "sim: $(show "$WORK/$run.stats.json" '`connections_total=${s.connections_total} identifies=${s.identifies} readies=${s.readies} identify_violations=${s.identify_violations} violations=${JSON.stringify(Object.fromEntries(Object.entries(s.violations).filter(([, v]) => v)))}`')"
}

# ---------------------------------------------------------------------------
# Build, then run.

FILTERS=("$@")

echo "  # building gatehouse and the Go clients; npm ci for the JavaScript clients"
npm_log="$WORK/npm-ci.log"
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error) >"$npm_log" 2>&1 &
npm_pid=$!

build_ok=1
if [[ -n ${COMPAT_GATEHOUSE:-} ]]; then
	cp "$COMPAT_GATEHOUSE" "$WORK/gatehouse"
	info "using prebuilt $COMPAT_GATEHOUSE"
fi
if [[ -z ${COMPAT_GATEHOUSE:-} ]] && ! (cd "$ROOT" && go build -o "$WORK/gatehouse" ./cmd/gatehouse) >"$WORK/build.log" 2>&1; then
	fail "build/gatehouse" "$(tail -n 5 "$WORK/build.log" | tr '\n' ' ')"
	build_ok=0
else
	pass "build/gatehouse"
fi
mkdir -p "$WORK/bin"
if (cd "$HERE/go" && go build -o "$WORK/bin/" ./cmd/...) >"$WORK/build-go.log" 2>&1; then
	pass "build/go-clients"
	go_ok=1
else
	fail "build/go-clients" "$(tail -n 5 "$WORK/build-go.log" | tr '\n' ' ')"
	go_ok=0
fi
if wait "$npm_pid"; then
	pass "build/npm-ci"
	js_ok=1
else
	fail "build/npm-ci" "$(tail -n 5 "$npm_log" | tr '\n' ' ')"
	js_ok=0
fi
if [[ $build_ok == 0 ]]; then
	finish
fi

clients=()
[[ $go_ok == 1 ]] && clients+=("${GO_CLIENTS[@]}")
[[ $js_ok == 1 ]] && clients+=("${JS_CLIENTS[@]}")

for c in "${clients[@]}"; do
	happy "$c"
done
if [[ $js_ok == 1 ]]; then
	happy discordjs-ws zlib -compress zlib-stream
fi
for c in disgo discordgo discordjs-ws discordjs oceanic; do
	[[ " ${clients[*]} " == *" $c "* ]] && limit "$c"
done
info "not run: eris (its REST client always uses https on port 443; see compat/README.md)"

finish
