#!/usr/bin/env bash
# bench/outbound.sh — the outbound dispatcher: bot sends queued as jobs, run by two Shoal
# processes against a fake Telegram Bot API (examples/fake_telegram.rs). See docs/PERFORMANCE.md.
#
#   bash bench/outbound.sh                                   # release build, full run
#   SHOAL_BIN=target/debug/shoal FAKE_BIN=target/debug/examples/fake_telegram \
#     SENDS=1000 CHATS=50 WINDOW_SECS=5 LIFTED_SENDS=2000 KILL_SENDS=2000 bash bench/outbound.sh   # smoke run
#
# 1. starts a "host" Shoal (workers = 0) that owns the embedded PostgreSQL in a temporary dir,
#    the fake Telegram server, and two worker Shoal processes attached to the same cluster;
# 2. limits: a Telegram bridge limited to LIMIT sends per chat in any WINDOW_SECS (bot limit off);
#    SENDS sends queued at once over CHATS chats (each to a pseudo-random chat, so some chats get
#    more than LIMIT and must wait for the next window); waits until every job is settled; the
#    fake's arrival times must show no chat with more than LIMIT sends in any WINDOW_SECS window;
# 3. lifted: a bridge without limits, LIFTED_SENDS sends queued at once; calls per second between
#    the fake's first and last arrival (and jobs settled per second);
# 4. SIGKILL: KILL_SENDS sends queued, one worker killed with SIGKILL once KILL_AT % of them are
#    done (mid-run however fast the machine is; the report says how many were done and held);
#    the other takes over the killed one's jobs when their lease (LEASE_SECS) ends. Every job must
#    end done or unknown (none lost); repeated calls (a text the fake got twice) are counted, and
#    the unknown jobs (sends in flight at the kill, never repeated) with how many of them arrived;
# 5. prints a Markdown report and appends it to bench/results/outbound-<date>.md.
#
# Knobs: SENDS (10000), CHATS (500), LIMIT (20), WINDOW_SECS (60: the real Telegram window; a
# shorter one makes the run quicker and changes nothing else), LIFTED_SENDS (20000), KILL_SENDS
# (20000), KILL_AT (30), WORKERS (jobs per process, 64), POOL (connections per process, 16),
# LEASE_SECS (5), SKIP_BUILD=1, SHOAL_BIN, FAKE_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SENDS=${SENDS:-10000}
CHATS=${CHATS:-500}
LIMIT=${LIMIT:-20}
WINDOW_SECS=${WINDOW_SECS:-60}
LIFTED_SENDS=${LIFTED_SENDS:-20000}
KILL_SENDS=${KILL_SENDS:-20000}
KILL_AT=${KILL_AT:-30}
WORKERS=${WORKERS:-64}
POOL=${POOL:-16}
LEASE_SECS=${LEASE_SECS:-5}
TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/outbound.sh: %s\n' "$*" >&2; exit 1; }

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
  log "cargo build --release --bin shoal --example fake_telegram"
  (cd "$ROOT" && cargo build --release --bin shoal --example fake_telegram >&2)
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SHOAL_BIN=${SHOAL_BIN:-$TARGET/release/shoal}
FAKE_BIN=${FAKE_BIN:-$(dirname "$SHOAL_BIN")/examples/fake_telegram}
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"
[ -x "$FAKE_BIN" ] || die "$FAKE_BIN does not exist (cargo build [--release] --example fake_telegram)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-out.XXXXXX")
chmod 755 "$tmp"
PGSOCK=$tmp/data/postgres
host_pid="" fake_pid="" w1_pid="" w2_pid=""
stop() { # pid: TERM, wait up to 60 s, then KILL
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 600); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  stop "$w1_pid"; stop "$w2_pid"; stop "$fake_pid"
  if [ -n "$host_pid" ]; then
    stop "$host_pid"
    # The watchdog stops the cluster once its Shoal is gone.
    for _ in $(seq 1 300); do [ -f "$PGSOCK/postmaster.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

psql_q() { psql -X -q -t -A -h "$PGSOCK" -U postgres -d shoal -v ON_ERROR_STOP=1 -c "$1"; }
listening() { # file → address once the process has printed it
  for _ in $(seq 1 600); do
    a=$(sed -n "s/^$2 http:\/\///p" "$1" 2>/dev/null | head -n1)
    [ -n "$a" ] && { echo "$a"; return 0; }
    sleep 0.1
  done
  return 1
}

log "host Shoal (embedded PostgreSQL in $tmp, runs no jobs)"
SHOAL_DATA_DIR=$tmp/data SHOAL_LISTEN=127.0.0.1:0 SHOAL_LOG_FORMAT=json RUST_LOG=warn SHOAL_JOBS__WORKERS=0 \
  "$SHOAL_BIN" --config-dir "$ROOT/config" serve >"$tmp/host.out" 2>"$tmp/host.err" &
host_pid=$!
listening "$tmp/host.out" 'Shoal is listening on' >/dev/null || { cat "$tmp/host.err" >&2; die "Shoal did not start"; }

"$FAKE_BIN" --listen 127.0.0.1:0 --threads 1 >"$tmp/fake.out" 2>"$tmp/fake.err" &
fake_pid=$!
FAKE=$(listening "$tmp/fake.out" 'fake telegram listening on') || die "the fake Telegram server did not start"
log "fake Telegram Bot API on $FAKE"

worker() { # n → pid; a job-running Shoal attached to the host's cluster
  SHOAL_DATA_DIR=$tmp/data SHOAL_LISTEN=127.0.0.1:0 SHOAL_LOG_FORMAT=json RUST_LOG=warn \
    SHOAL_JOBS__WORKERS=$WORKERS SHOAL_JOBS__POLL_MS=50 SHOAL_JOBS__LEASE_SECS=$LEASE_SECS \
    SHOAL_DATABASE__MAX_CONNECTIONS=$POOL SHOAL_OUTBOUND__ALLOWED_HOSTS='["127.0.0.1"]' \
    SHOAL_OUTBOUND__BOT_TIMEOUT_MS=$(( LEASE_SECS * 1000 / 2 )) SHOAL_OUTBOUND__MEMBER_COUNT_INTERVAL_SECS=0 \
    "$SHOAL_BIN" --config-dir "$ROOT/config" serve >"$tmp/w$1.out" 2>"$tmp/w$1.err" &
  echo $!
}
bridge() { # chat limit, window ms → id
  psql_q "INSERT INTO bridges (kind, platform, name, secret, api_base_url, access_token, chat_rate_limit, chat_rate_window_ms, bot_rate_limit)
          VALUES ('telegram', 'telegram', 'bench', 'bench-secret_0123456789', 'http://$FAKE', '$TOKEN', $1, $2, 0) RETURNING id"
}
enqueue() { # bridge, count, tag: one statement, so the sends are queued at once
  psql_q "INSERT INTO jobs (kind, payload, max_attempts)
          SELECT 'bot_action', jsonb_build_object('bridge_id', $1, 'origin', '$3', 'action',
                 jsonb_build_object('action', 'send', 'chat_id', (-1000000000000 - (abs(hashint4(i * 7919 + 17)) % $CHATS))::text,
                                    'text', '$3 ' || i)), 5
          FROM generate_series(1, $2) i" >/dev/null
}
unsettled() { psql_q "SELECT count(*) FROM jobs WHERE kind = 'bot_action' AND state IN ('queued', 'running', 'failed')"; }
wait_settled() { # timeout seconds
  local t0; t0=$(date +%s.%N)
  for _ in $(seq 1 $(( $1 * 10 ))); do
    [ "$(unsettled)" = 0 ] && { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; return 0; }
    sleep 0.1
  done
  die "jobs still unsettled after $1 s: $(psql_q "SELECT state, count(*) FROM jobs GROUP BY 1")"
}
states() { psql_q "SELECT string_agg(state || ' ' || n, ', ' ORDER BY state) FROM (SELECT state::text, count(*) n FROM jobs WHERE payload->>'origin' = '$1' GROUP BY 1) s"; }
stats() { curl -sf "http://$FAKE/_stats?window_ms=$1&limit=$2"; }

w1_pid=$(worker 1); w2_pid=$(worker 2)
listening "$tmp/w1.out" 'Shoal is listening on' >/dev/null || { cat "$tmp/w1.err" >&2; die "worker 1 did not start"; }
listening "$tmp/w2.out" 'Shoal is listening on' >/dev/null || { cat "$tmp/w2.err" >&2; die "worker 2 did not start"; }

# ---- 1. limits
WINDOW_MS=$(( WINDOW_SECS * 1000 ))
B1=$(bridge "$LIMIT" "$WINDOW_MS")
log "limits: $SENDS sends over $CHATS chats, at most $LIMIT per chat in any ${WINDOW_SECS} s"
MOST_QUEUED=$(psql_q "SELECT max(n) FROM (SELECT count(*) n FROM generate_series(1, $SENDS) i GROUP BY abs(hashint4(i * 7919 + 17)) % $CHATS) c")
enqueue "$B1" "$SENDS" limits
T_LIMITS=$(wait_settled $(( WINDOW_SECS * (MOST_QUEUED / LIMIT + 2) + 120 )))
S1=$(stats "$WINDOW_MS" "$LIMIT")
ST1=$(states limits)
log "limits: $S1"

# ---- 2. limits lifted
curl -sf -X POST "http://$FAKE/_reset" >/dev/null
B2=$(bridge 0 1000)
log "lifted: $LIFTED_SENDS sends, no limits, two processes"
enqueue "$B2" "$LIFTED_SENDS" lifted
T_LIFTED=$(wait_settled 1200)
S2=$(stats 1000 1000000)
ST2=$(states lifted)
log "lifted: $S2 (settled in $T_LIFTED s)"

# ---- 3. SIGKILL mid-run
curl -sf -X POST "http://$FAKE/_reset" >/dev/null
B3=$(bridge 0 1000)
log "SIGKILL: $KILL_SENDS sends, worker 1 killed once ${KILL_AT} % are done"
enqueue "$B3" "$KILL_SENDS" kill
# A fixed delay is no good: on a fast machine every job was done before it ran out.
KILL_TARGET=$(( KILL_SENDS * KILL_AT / 100 ))
DONE_AT_KILL=0
for _ in $(seq 1 12000); do
  DONE_AT_KILL=$(psql_q "SELECT count(*) FROM jobs WHERE payload->>'origin' = 'kill' AND state = 'done'")
  [ "$DONE_AT_KILL" -ge "$KILL_TARGET" ] && break
  sleep 0.005
done
KILLED=$w1_pid
kill -KILL "$w1_pid"; wait "$w1_pid" 2>/dev/null || true; w1_pid=""
sleep 0.5
# In flight at the kill: claimed by the killed process and never settled.
HELD=$(psql_q "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE '%:$KILLED:%'")
T_KILL=$(wait_settled $(( LEASE_SECS * 4 + 1200 )))
S3=$(stats 1000 1000000)
ST3=$(states kill)
curl -sf "http://$FAKE/_texts" >"$tmp/texts.txt"
psql -X -q -h "$PGSOCK" -U postgres -d shoal -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE bench_got (text text);
\copy bench_got FROM '$tmp/texts.txt'
SQL
LOST=$(psql_q "SELECT $KILL_SENDS - count(*) FROM jobs WHERE payload->>'origin' = 'kill' AND state IN ('done', 'unknown')")
UNKNOWN=$(psql_q "SELECT count(*) FROM jobs WHERE payload->>'origin' = 'kill' AND state = 'unknown'")
UNKNOWN_ARRIVED=$(psql_q "SELECT count(*) FROM jobs j JOIN bench_got g ON g.text = j.payload->'action'->>'text'
                          WHERE j.payload->>'origin' = 'kill' AND j.state = 'unknown'")
NOT_ARRIVED=$(psql_q "SELECT count(*) FROM jobs j WHERE j.payload->>'origin' = 'kill' AND j.state = 'done'
                      AND NOT EXISTS (SELECT 1 FROM bench_got g WHERE g.text = j.payload->'action'->>'text')")
log "SIGKILL: $S3; $ST3"

j() { echo "$1" | jq -r "$2"; }
verdict() { if [ "$1" = 1 ]; then echo met; else echo '**missed**'; fi; }
RATE=$(j "$S2" '.calls_per_sec | floor')
SETTLED_RATE=$(awk -v n="$LIFTED_SENDS" -v t="$T_LIFTED" 'BEGIN { printf "%.0f", n / t }')
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)
BIN_KIND=$(case "$SHOAL_BIN" in *release*) echo release;; *debug*) echo "debug (smoke run: not the figure)";; *) echo "$SHOAL_BIN";; esac)
report=$(cat <<MD
## Outbound dispatcher — $(date -u '+%Y-%m-%d %H:%M:%S UTC')

**Machine:** $CPU, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r).
**Build:** $BIN_KIND. **Setup:** two worker processes ($WORKERS jobs and $POOL connections each, lease $LEASE_SECS s)
attached to one embedded PostgreSQL (synchronous_commit on), the fake Telegram Bot API on one thread, all on this machine.

| run | sends | figure | checks |
| --- | ---: | --- | --- |
| limits ($LIMIT per chat in any ${WINDOW_SECS} s) | $SENDS over $CHATS chats (at most $MOST_QUEUED queued for one chat) | all settled in $T_LIMITS s | most in one chat in any ${WINDOW_SECS} s: **$(j "$S1" .max_per_chat_in_window)**; chats over the limit: **$(j "$S1" .chats_over_limit)**; arrived $(j "$S1" .calls), repeated $(j "$S1" .repeated_calls); jobs: $ST1 |
| limits lifted | $LIFTED_SENDS | **$RATE calls/s** at the fake (first to last arrival), $SETTLED_RATE jobs/s settled | arrived $(j "$S2" .calls), repeated $(j "$S2" .repeated_calls); jobs: $ST2 |
| SIGKILL of one worker with $DONE_AT_KILL of them done | $KILL_SENDS | settled in $T_KILL s | jobs lost: **$LOST**; repeated calls: **$(j "$S3" .repeated_calls)**; jobs held by the killed process: $HELD, ended unknown: $UNKNOWN (of which the fake got $UNKNOWN_ARRIVED); done but never arrived: $NOT_ARRIVED; jobs: $ST3 |

| target | figure | verdict |
| --- | --- | --- |
| no chat over $LIMIT in any ${WINDOW_SECS} s | $(j "$S1" .max_per_chat_in_window) at most | $(verdict "$([ "$(j "$S1" .chats_over_limit)" = 0 ] && echo 1 || echo 0)") |
| ≥ 2 000 calls/s with two processes, limits lifted | $RATE calls/s | $(verdict "$([ "$RATE" -ge 2000 ] && echo 1 || echo 0)") |
| SIGKILL loses no job | $LOST lost | $(verdict "$([ "$LOST" = 0 ] && echo 1 || echo 0)") |
| repeats at most the calls in flight | $(j "$S3" .repeated_calls) repeated, $HELD in flight | $(verdict "$([ "$(j "$S3" .repeated_calls)" -le "$HELD" ] && echo 1 || echo 0)") |
| the kill came mid-run (jobs left to do, some held by the killed process) | $DONE_AT_KILL of $KILL_SENDS done, $HELD held | $(verdict "$([ "$DONE_AT_KILL" -lt "$KILL_SENDS" ] && [ "$HELD" -gt 0 ] && echo 1 || echo 0)") |
MD
)
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" | tee -a "$ROOT/bench/results/outbound-$(date -u +%F).md"
[ "$(j "$S1" .chats_over_limit)" = 0 ] && [ "$LOST" = 0 ] && [ "$DONE_AT_KILL" -lt "$KILL_SENDS" ] && [ "$HELD" -gt 0 ]
