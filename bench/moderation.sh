#!/usr/bin/env bash
# bench/moderation.sh — moderation while answering webhooks: a flood of RATE messages/s over two
# bridges (OneBot v11 and Telegram), NGROUPS groups each, VIOLATING % of them breaking a rule,
# judged while the webhook is answered; every violation must be acted on. See docs/PERFORMANCE.md.
#
#   bash bench/moderation.sh                                  # release build, full run
#   SHOAL_BIN=target/debug/shoal LOAD_BIN=target/debug/examples/moderation_load \
#     RATE=200 SECONDS_=3 bash bench/moderation.sh            # smoke run
#
# 1. starts Shoal (embedded PostgreSQL in a temporary dir, job workers on) and the fake bots
#    (examples/moderation_load.rs `bots`: OneBot v11 and Telegram APIs that count every call);
# 2. a OneBot and a Telegram bridge without rate limits, NGROUPS groups linked on each, one rule
#    set attached to all of them with the rules an operator starts from: links outside an
#    allow-list (warn along the ladder warn → warn → mute 1 h → kick), keywords, phone numbers,
#    QQ/WeChat contacts, other groups' invites, a flood rule (20 in 10 s) and a quarantine;
# 3. a warm-up of WARMUP seconds at WARMUP_RATE (the full rate by default: every pool connection
#    opened and its statements prepared, the batch writer at its working size), then
#    `moderation_load load` posts RATE signed deliveries a second for SECONDS_ seconds, half per
#    bridge, over 50 members per group, every (100 / VIOLATING)-th with a link outside the
#    allow-list, and reports the webhooks' p50/p99 measured from when each was due;
# 4. waits until every outbound job is settled and the batch writer of plain chat has drained,
#    then checks that every delivery sent has its row in bridge_events, every violating delivery
#    its moderation_actions row, and that the fake bots got one deletion per violation;
# 5. prints a Markdown report and appends it to bench/results/moderation-<date>.md.
#
# Knobs: RATE (5000), SECONDS_ (20), WARMUP (5), WARMUP_RATE (RATE), NGROUPS (50 per bridge = 100 groups), VIOLATING
# (10), CONNECTIONS (64), WORKERS (jobs per process, 64), POOL (connections, 32), SKIP_BUILD=1,
# SHOAL_BIN, LOAD_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RATE=${RATE:-5000}
SECONDS_=${SECONDS_:-20}
WARMUP=${WARMUP:-5}
WARMUP_RATE=${WARMUP_RATE:-$RATE}
NGROUPS=${NGROUPS:-50}
VIOLATING=${VIOLATING:-10}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-64}
POOL=${POOL:-32}
SECRET=bench-secret_0123456789
TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/moderation.sh: %s\n' "$*" >&2; exit 1; }

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if [ -z "${SHOAL_BIN:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release --bin shoal --example moderation_load"
  (cd "$ROOT" && cargo build --release --bin shoal --example moderation_load >&2)
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHOAL_BIN=${SHOAL_BIN:-$TARGET/release/shoal}
LOAD_BIN=${LOAD_BIN:-$(dirname "$SHOAL_BIN")/examples/moderation_load}
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"
[ -x "$LOAD_BIN" ] || die "$LOAD_BIN does not exist (cargo build [--release] --example moderation_load)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-mod.XXXXXX")
chmod 755 "$tmp"
PGSOCK=$tmp/data/postgres
shoal_pid="" bots_pid=""
stop() { # pid: TERM, wait up to 60 s, then KILL
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  stop "$bots_pid"
  if [ -n "$shoal_pid" ]; then
    stop "$shoal_pid"
    # The watchdog stops the cluster once its Shoal is gone.
    for _ in $(seq 1 300); do [ -f "$PGSOCK/postmaster.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

psql_q() { psql -X -q -t -A -h "$PGSOCK" -U postgres -d shoal -v ON_ERROR_STOP=1 -c "$1"; }
listening() { # file, prefix → address once the process has printed it
  for _ in $(seq 1 600); do
    a=$(sed -n "s/^$2 http:\/\///p" "$1" 2>/dev/null | head -n1)
    [ -n "$a" ] && { echo "$a"; return 0; }
    sleep 0.1
  done
  return 1
}

"$LOAD_BIN" bots --listen 127.0.0.1:0 >"$tmp/bots.out" 2>"$tmp/bots.err" &
bots_pid=$!
BOTS=$(listening "$tmp/bots.out" 'fake bots listening on') || die "the fake bots did not start"
log "fake bots on $BOTS"

log "Shoal (embedded PostgreSQL in $tmp)"
SHOAL_DATA_DIR=$tmp/data SHOAL_LISTEN=127.0.0.1:0 SHOAL_LOG_FORMAT=json RUST_LOG=warn \
  SHOAL_JOBS__WORKERS=$WORKERS SHOAL_JOBS__POLL_MS=50 SHOAL_DATABASE__MAX_CONNECTIONS=$POOL \
  SHOAL_OUTBOUND__ALLOWED_HOSTS='["127.0.0.1"]' SHOAL_OUTBOUND__MEMBER_COUNT_INTERVAL_SECS=0 \
  "$SHOAL_BIN" --config-dir "$ROOT/config" serve >"$tmp/shoal.out" 2>"$tmp/shoal.err" &
shoal_pid=$!
ADDR=$(listening "$tmp/shoal.out" 'Shoal is listening on') || { cat "$tmp/shoal.err" >&2; die "Shoal did not start"; }

OB=$(psql_q "INSERT INTO bridges (kind, platform, name, secret, api_base_url, chat_rate_limit, bot_rate_limit)
             VALUES ('onebot11', 'qq', 'bench qq', '$SECRET', 'http://$BOTS/onebot', 0, 0) RETURNING id")
TG=$(psql_q "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, bot_rate_limit)
             VALUES ('telegram', 'telegram', 'bench tg', '$SECRET', 'http://$BOTS', '$TOKEN', 0, 0) RETURNING id")
psql_q "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id, tags)
        SELECT 'qq ' || i, 'qq', 2000, (700000 + i)::text, $OB, '{bench}' FROM generate_series(0, $NGROUPS - 1) i" >/dev/null
psql_q "INSERT INTO groups (name, platform, capacity, external_chat_id, bridge_id, tags)
        SELECT 'tg ' || i, 'telegram', 2000, (-1007000000 - i)::text, $TG, '{bench}' FROM generate_series(0, $NGROUPS - 1) i" >/dev/null
RS=$(psql_q "INSERT INTO rule_sets (name) VALUES ('bench') RETURNING id")
psql_q "INSERT INTO rule_set_tags (tag, rule_set_id) VALUES ('bench', $RS)" >/dev/null
psql_q "INSERT INTO moderation_settings (rule_set_id, ladder, warn_days) VALUES ($RS, 'warn, warn, mute:3600, kick', 30)" >/dev/null
psql_q "INSERT INTO moderation_rules (rule_set_id, position, kind, words, flood_count, flood_seconds, consecutive,
          quarantine_hours, delete_message, response, mute_seconds) VALUES
        ($RS, 0, 'flood', '{}', 20, 10, 0, 0, true, 'mute', 600),
        ($RS, 1, 'invite', '{}', 0, 0, 0, 0, true, 'warn', 0),
        ($RS, 2, 'contact', '{}', 0, 0, 0, 0, true, 'warn', 0),
        ($RS, 3, 'phone', '{}', 0, 0, 0, 0, true, 'warn', 0),
        ($RS, 4, 'keywords', '{代开发票,赌场,casino,刷单}', 0, 0, 0, 0, true, 'warn', 0),
        ($RS, 5, 'quarantine', '{example.org}', 0, 0, 0, 1, true, 'nothing', 0),
        ($RS, 6, 'links', '{example.org,shoal.dev}', 0, 0, 0, 0, true, 'warn', 0)" >/dev/null
log "bridges $OB (OneBot) and $TG (Telegram), $NGROUPS groups each, rule set $RS"

run_load() { # run, rate, seconds → the load's key/value output
  "$LOAD_BIN" load --shoal "http://$ADDR" --onebot "$OB" --telegram "$TG" --secret "$SECRET" --groups "$NGROUPS" \
    --rate "$2" --seconds "$3" --violating "$VIOLATING" --connections "$CONNECTIONS" --run "$1"
}
log "warm-up: ${WARMUP}s at $WARMUP_RATE/s"
run_load 1 "$WARMUP_RATE" "$WARMUP" >"$tmp/warmup.kv"
wval() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/warmup.kv"; }
A0=$(psql_q "SELECT count(*) FROM moderation_actions")
E0=$(psql_q "SELECT count(*) FROM bridge_events")
DELETED0=$(curl -sf "http://$BOTS/_stats" | jq -r '.deleted')
# Statistics as a running database has them (autovacuum would analyze within its minute).
psql_q "ANALYZE" >/dev/null
psql_q "CHECKPOINT" >/dev/null
log "load: $RATE/s for ${SECONDS_}s, $VIOLATING % violating"
run_load 2 "$RATE" "$SECONDS_" >"$tmp/load.kv"
cat "$tmp/load.kv" >&2
val() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/load.kv"; }

log "waiting for the bots' jobs"
T0=$(date +%s)
for _ in $(seq 1 6000); do
  [ "$(psql_q "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running', 'failed')")" = 0 ] && break
  sleep 0.1
done
DRAIN=$(( $(date +%s) - T0 ))
# Plain chat is written behind the answer in batches: wait until every delivery answered has
# its row, or the count has stood still for 5 s.
SENT=$(val SENT); EVENTS=0; still=0
while [ "$still" -lt 50 ]; do
  n=$(( $(psql_q "SELECT count(*) FROM bridge_events") - E0 ))
  [ "$n" -ge "$SENT" ] && { EVENTS=$n; break; }
  if [ "$n" = "$EVENTS" ]; then still=$((still + 1)); else still=0; EVENTS=$n; fi
  sleep 0.1
done
ACTIONS=$(( $(psql_q "SELECT count(*) FROM moderation_actions") - A0 ))
JOBS=$(psql_q "SELECT string_agg(state || ' ' || n, ', ' ORDER BY state) FROM (SELECT state::text, count(*) n FROM jobs GROUP BY 1) s")
STATS=$(curl -sf "http://$BOTS/_stats")
DELETED=$(( $(echo "$STATS" | jq -r '.deleted') - DELETED0 ))
METHODS=$(echo "$STATS" | jq -c '.methods')
BY_STEP=$(psql_q "SELECT string_agg(step || ' ' || n, ', ' ORDER BY step) FROM (SELECT step, count(*) n FROM moderation_actions GROUP BY 1) s")

VIOL=$(val VIOLATING); P50=$(val P50_US); P99=$(val P99_US)
verdict() { if [ "$1" = 1 ]; then echo met; else echo '**missed**'; fi; }
P99_OK=$(awk -v p="$P99" 'BEGIN { print (p <= 20000) ? 1 : 0 }')
ACTED_OK=$([ "$ACTIONS" -ge "$VIOL" ] && [ "$DELETED" -ge "$VIOL" ] && echo 1 || echo 0)
RECORDED_OK=$([ "$EVENTS" = "$SENT" ] && echo 1 || echo 0)
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)
BIN_KIND=$(case "$SHOAL_BIN" in *release*) echo release;; *debug*) echo "debug (smoke run: not the figure)";; *) echo "$SHOAL_BIN";; esac)
ms() { awk -v v="$1" 'BEGIN { printf "%.2f ms", v / 1000 }'; }
report=$(cat <<MD
## Moderation benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')

**Machine:** $CPU, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r).
**Build:** $BIN_KIND. **Method:** \`moderation_load load\`, $RATE deliveries/s for ${SECONDS_} s ($CONNECTIONS connections at most),
half OneBot v11 and half Telegram, $NGROUPS groups per bridge, 50 members per group, $VIOLATING % with a link outside the
allow-list (requests built and signed before the clock starts); one rule set (7 rules: flood, invite, contact, phone, keywords, quarantine, links) on every group; latency
counted from when each delivery was due, after a warm-up of ${WARMUP} s at $WARMUP_RATE/s. One Shoal process ($WORKERS job workers, $POOL connections), embedded
PostgreSQL (synchronous_commit on), the fake bots on the same machine.

| figure | value |
| --- | ---: |
| deliveries sent / per second reached | $SENT / $(val RPS) |
| webhook p50 / p99 / max | $(ms "$P50") / $(ms "$P99") / $(ms "$(val MAX_US)") |
| clean deliveries p50 / p99 | $(ms "$(val P50_CLEAN_US)") / $(ms "$(val P99_CLEAN_US)") |
| violating deliveries p50 / p99 | $(ms "$(val P50_VIOLATING_US)") / $(ms "$(val P99_VIOLATING_US)") |
| warm-up (${WARMUP} s at $WARMUP_RATE/s, from cold) p50 / p99 | $(ms "$(wval P50_US)") / $(ms "$(wval P99_US)") |
| errors / requests started over 100 ms late | $(val ERRORS) / $(val LATE) |
| deliveries recorded (after the batch writer drained) | $EVENTS |
| violating deliveries sent | $VIOL |
| moderation actions recorded | $ACTIONS |
| distinct messages the bots were asked to delete | $DELETED |
| bot jobs drained after the load | ${DRAIN} s |

Steps taken (whole run): $BY_STEP. Jobs: $JOBS. Bot calls: \`$METHODS\`.

| target | figure | verdict |
| --- | --- | --- |
| webhook p99 ≤ 20 ms at $RATE/s | $(ms "$P99") | $(verdict "$P99_OK") |
| every violation acted on | $ACTIONS actions, $DELETED deletions for $VIOL violations | $(verdict "$ACTED_OK") |
| every delivery recorded once | $EVENTS of $SENT | $(verdict "$RECORDED_OK") |
MD
)
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" | tee -a "$ROOT/bench/results/moderation-$(date -u +%F).md"
[ "$ACTED_OK" = 1 ] && [ "$RECORDED_OK" = 1 ]
