#!/usr/bin/env bash
# bench/checkins.sh — check-ins per second through the OneBot v11 webhook, against pgbench
# (TPC-B) on the same PostgreSQL with the same number of clients, in one run. See
# docs/PERFORMANCE.md.
#
#   bash bench/checkins.sh
#
# 1. installs wrk and the PostgreSQL packages with apt-get when missing; builds Shoal (release);
# 2. starts Shoal with its embedded cluster in a temporary dir (synchronous_commit on, the
#    default), creates a OneBot bridge and NGROUPS groups linked to chat ids;
# 3. writes REQUESTS distinct check-in deliveries (distinct members over the groups), each
#    HMAC-SHA1-signed as a real bridge signs them, split over ROUNDS rounds; after a warm-up of
#    both loads, ROUNDS times: replays one round's deliveries with wrk (CLIENTS connections) for
#    DURATION seconds, then runs `pgbench -c CLIENTS -j THREADS -T DURATION` (TPC-B, scale 10) on
#    the same cluster, each from a CHECKPOINT. Taking turns puts the machine's drift (a noisy
#    neighbour, the disk) on both loads alike; the figures are the rounds' totals, the p99s those
#    of every request of every round (wrk's quantiles merged) and of every logged transaction;
# 4. checks that check-ins == 200 answers and balance == sum(ledger) for every member;
# 5. prints a Markdown report (each round and all of them) and appends it to
#    bench/results/checkins-<date>.md.
#
# Also reports the WAL written and the CPU time spent per check-in and per pgbench transaction
# (Shoal's process; the cluster's postmaster with its backends, exited ones included).
# MEMBERS=returning (the default, the everyday case): every member checking in is already known —
# member, membership, yesterday's check-in, an account with yesterday's points — as after a day of
# use, so a check-in continues a streak; MEMBERS=new: every check-in is also the member's first
# message (member, membership and account created by the check-in), the worst case.
# Knobs: DURATION (20), WARMUP (5), CLIENTS (16), THREADS (2), NGROUPS (100), REQUESTS (200000), ROUNDS (3), MEMBERS, SKIP_BUILD=1, BEFORE_SQL, TABLE_STATS=1,
# SHOAL_BIN=path (time that binary, no build; e.g. target/million/shoal from bench/million.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
NGROUPS=${NGROUPS:-100}
REQUESTS=${REQUESTS:-200000}
ROUNDS=${ROUNDS:-3}
MEMBERS=${MEMBERS:-returning}
case "$MEMBERS" in returning|new) ;; *) echo "bench/checkins.sh: MEMBERS is returning or new" >&2; exit 2 ;; esac
SECRET=bench-secret
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/checkins.sh: %s\n' "$*" >&2; exit 1; }

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
if [ -z "${SHOAL_BIN:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release >&2)
fi
SHOAL_BIN=${SHOAL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/shoal}
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-ci.XXXXXX")
chmod 755 "$tmp"
PGSOCK=$tmp/data/postgres
shoal_pid=""
cleanup() {
  set +e
  if [ -n "$shoal_pid" ]; then
    kill -TERM "$shoal_pid" 2>/dev/null
    for _ in $(seq 1 600); do kill -0 "$shoal_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$shoal_pid" 2>/dev/null
    wait "$shoal_pid" 2>/dev/null
    # The watchdog stops the cluster once Shoal is gone.
    for _ in $(seq 1 300); do [ -f "$PGSOCK/postmaster.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

HZ=$(getconf CLK_TCK)
# utime+stime of a process in clock ticks; with "all", its waited-for children's too.
ticks() { # pid [all]
  local line
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
  if [ "${2:-}" = all ]; then awk '{ print $12 + $13 + $14 + $15 }' <<<"${line##*) }"; else awk '{ print $12 + $13 }' <<<"${line##*) }"; fi
}
# CPU ticks of the whole cluster: the postmaster with its exited backends, plus the live ones.
pg_ticks() {
  local pm total f line st ppid
  pm=$(head -n1 "$PGSOCK/postmaster.pid")
  total=$(ticks "$pm" all)
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -r st ppid _ <<<"${line##*) }"
    if [ "$ppid" = "$pm" ]; then f=${f#/proc/}; total=$((total + $(ticks "${f%/stat}"))); fi
  done
  echo "$total"
}
per_tx_us() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }'; }

psql_q() { psql -X -q -t -A -h "$PGSOCK" -U postgres -d "${DB:-shoal}" -v ON_ERROR_STOP=1 -c "$1"; }

log "starting Shoal (embedded PostgreSQL in $tmp)"
SHOAL_DATA_DIR=$tmp/data SHOAL_LISTEN=127.0.0.1:0 SHOAL_LOG_FORMAT=json RUST_LOG=warn \
  "$SHOAL_BIN" --config-dir "$ROOT/config" serve >"$tmp/shoal.out" 2>"$tmp/shoal.err" &
shoal_pid=$!
for _ in $(seq 1 600); do grep -q 'Shoal is listening on' "$tmp/shoal.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^Shoal is listening on http:\/\///p' "$tmp/shoal.out")
[ -n "$ADDR" ] || { cat "$tmp/shoal.err" >&2; die "Shoal did not start"; }

BRIDGE=$(psql_q "INSERT INTO bridges (kind, platform, name, secret) VALUES ('onebot11', 'qq', 'bench', '$SECRET') RETURNING id")
psql_q "INSERT INTO groups (name, platform, capacity, external_chat_id)
        SELECT 'bench ' || i, 'qq', 2000, (900000 + i)::text FROM generate_series(1, $NGROUPS) i" >/dev/null
if [ "$MEMBERS" = returning ]; then
  # The members of the measured and warm-up deliveries (ids and names as the deliveries carry
  # them), each in the group its deliveries go to, with yesterday's check-in and its point.
  log "seeding $((REQUESTS + REQUESTS / 4)) returning members"
  psql_q "
    INSERT INTO members (platform, external_user_id, display_name, last_active_at)
      SELECT 'qq', (20000000 + i)::text, 'm' || i, now() - interval '1 day' FROM generate_series(0, $REQUESTS + $REQUESTS / 4 - 1) i;
    INSERT INTO memberships (member_id, group_id, role, joined_at)
      SELECT m.id, g.id, 'member', now() - interval '2 days' FROM members m
      JOIN groups g ON g.external_chat_id = (900001 + (m.external_user_id::bigint - 20000000) % $NGROUPS)::text;
    INSERT INTO checkins (member_id, group_id, day, at, streak)
      SELECT s.member_id, s.group_id, (now() AT TIME ZONE g.timezone)::date - 1, now() - interval '1 day', 1
      FROM memberships s JOIN groups g ON g.id = s.group_id;
    INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, note)
      SELECT c.member_id, 1, 'checkin', 'checkin:' || c.id, 'seed:' || c.id, '' FROM checkins c;
    INSERT INTO points_accounts (member_id, balance) SELECT member_id, 1 FROM points_ledger;" >/dev/null
  psql_q "VACUUM ANALYZE" >/dev/null
fi
SEEDED=$(psql_q "SELECT count(*) FROM checkins")
# BEFORE_SQL: statements run on Shoal's database before the warm-up, for experiments (e.g.
# "DROP INDEX members_search_trgm" to see what one index costs).
[ -z "${BEFORE_SQL:-}" ] || psql_q "$BEFORE_SQL" >/dev/null
log "bridge $BRIDGE, $NGROUPS groups; writing $REQUESTS signed deliveries"

python3 - "$tmp" "$REQUESTS" "$NGROUPS" "$SECRET" "$ROUNDS" <<'PY'
import hashlib, hmac, json, sys, time
tmp, n, groups, secret = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
now = int(time.time())
# The warm-up's deliveries (other members) come after the measured ones' ids.
rounds = int(sys.argv[5])
files = [(f"{tmp}/requests_{r + 1}.txt", range(r * n // rounds, (r + 1) * n // rounds)) for r in range(rounds)]
for path, ids in files + [(tmp + "/warmup.txt", range(n, n + n // 4))]:
  with open(path, "w") as f:
    for i in ids:
        body = json.dumps({"time": now, "self_id": 10001000, "post_type": "message", "message_type": "group",
            "sub_type": "normal", "message_id": 5_000_000 + i, "group_id": 900001 + i % groups,
            "user_id": 20_000_000 + i, "anonymous": None, "message": [{"type": "text", "data": {"text": "签到"}}],
            "raw_message": "签到", "font": 0, "sender": {"user_id": 20_000_000 + i, "nickname": f"m{i}", "card": "", "role": "member"}},
            ensure_ascii=False, separators=(",", ":")).encode()
        sig = hmac.new(secret, body, hashlib.sha1).hexdigest()
        f.write(sig + "\t" + body.decode() + "\n")
PY

cat >"$tmp/post.lua" <<LUA
-- Each wrk thread replays its own slice of the pre-signed deliveries in \$DELIVERIES.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local lines, i = {}, 0
function init(args)
  local k = 0
  for line in io.lines(os.getenv("DELIVERIES")) do
    if k % $THREADS == id then table.insert(lines, line) end
    k = k + 1
  end
end
function request()
  i = i + 1
  local line = lines[((i - 1) % #lines) + 1]
  local tab = string.find(line, "\t", 1, true)
  return wrk.format("POST", "/hooks/onebot11/$BRIDGE",
    {["Content-Type"] = "application/json", ["X-Self-ID"] = "10001000", ["X-Signature"] = "sha1=" .. string.sub(line, 1, tab - 1)},
    string.sub(line, tab + 1))
end
function done(summary, latency, requests)
  io.write(string.format("P50_US %d\nP99_US %d\nREQS %d\nRPS %.1f\n", latency:percentile(50), latency:percentile(99),
    summary.requests, summary.requests / (summary.duration / 1e6)))
  -- A thousand quantiles, so that the rounds' latencies can be merged into one distribution.
  for q = 1, 1000 do io.write(string.format("Q %d\n", latency:percentile(q / 10))) end
  io.write(string.format("ERRORS %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# Both loads run warm: a few seconds of other members' check-ins first (caches, prepared
# statements, WAL segments to recycle), and pgbench's own warm-up after its initialisation.
log "warm-up: ${WARMUP}s"
DELIVERIES=$tmp/warmup.txt wrk -t"$THREADS" -c"$CLIENTS" -d"${WARMUP}s" -s "$tmp/post.lua" "http://$ADDR" >/dev/null 2>&1
# Statistics as a running database has them (autovacuum would analyze within its minute): plans
# prepared while bridge_events was empty scan it whole for the dedupe guard until then.
psql_q "ANALYZE" >/dev/null
log "pgbench: initialising scale 10, warm-up ${WARMUP}s"
psql_q "CREATE DATABASE pgbench" >/dev/null
pgbench -q -i -s 10 -h "$PGSOCK" -U postgres pgbench >/dev/null 2>&1
pgbench -c "$CLIENTS" -j "$THREADS" -T "$WARMUP" -h "$PGSOCK" -U postgres pgbench >/dev/null 2>&1
SYNC=$(DB=pgbench psql_q "SHOW synchronous_commit")

# The loads take turns, ROUNDS times each, every turn from a checkpoint: the machine's drift
# (a neighbour, the disk) then falls on both alike, and the figures are the rounds' totals.
[ "${TABLE_STATS:-0}" != 1 ] || psql_q "SELECT pg_stat_reset()" >/dev/null
kv() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
ROWS=""; S_TICKS=0; P_TICKS=0; S_WAL=0; S_N=0; S_SECS=0; S_REQS=0; S_ERRS=0
PB_TICKS=0; PB_WAL=0; PB_N=0; PB_SECS=0
for r in $(seq 1 "$ROUNDS"); do
  psql_q "CHECKPOINT" >/dev/null
  W0=$(psql_q "SELECT pg_current_wal_lsn()"); C0=$(psql_q "SELECT count(*) FROM checkins")
  S_T0=$(ticks "$shoal_pid"); P_T0=$(pg_ticks)
  log "round $r/$ROUNDS: wrk, $CLIENTS connections, $THREADS threads, ${DURATION}s"
  DELIVERIES=$tmp/requests_$r.txt wrk -t"$THREADS" -c"$CLIENTS" -d"${DURATION}s" --latency -s "$tmp/post.lua" "http://$ADDR" >"$tmp/wrk_$r.txt" 2>&1
  S_T1=$(ticks "$shoal_pid"); P_T1=$(pg_ticks)
  grep -qE '^RPS ' "$tmp/wrk_$r.txt" || { cat "$tmp/wrk_$r.txt" >&2; die "wrk failed"; }
  sleep 1
  N=$(( $(psql_q "SELECT count(*) FROM checkins") - C0 ))
  S_WAL=$((S_WAL + $(psql_q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$W0')::bigint")))
  S_TICKS=$((S_TICKS + S_T1 - S_T0)); P_TICKS=$((P_TICKS + P_T1 - P_T0)); S_N=$((S_N + N)); S_SECS=$((S_SECS + DURATION))
  S_REQS=$((S_REQS + $(kv "$tmp/wrk_$r.txt" REQS))); S_ERRS=$((S_ERRS + $(kv "$tmp/wrk_$r.txt" ERRORS)))

  psql_q "CHECKPOINT" >/dev/null
  PGW0=$(psql_q "SELECT pg_current_wal_lsn()"); PB_T0=$(pg_ticks)
  log "round $r/$ROUNDS: pgbench, $CLIENTS clients, ${DURATION}s"
  pgbench -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -l --log-prefix="$tmp/pglog_$r" -h "$PGSOCK" -U postgres pgbench >"$tmp/pgbench_$r.txt" 2>&1 || { cat "$tmp/pgbench_$r.txt" >&2; die "pgbench failed"; }
  PB_T1=$(pg_ticks)
  TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$tmp/pgbench_$r.txt" | head -n1)
  PB_WAL=$((PB_WAL + $(psql_q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$PGW0')::bigint")))
  PB_TICKS=$((PB_TICKS + PB_T1 - PB_T0)); PB_N=$((PB_N + TX)); PB_SECS=$((PB_SECS + DURATION))
  TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$tmp/pgbench_$r.txt" | head -n1)
  # Per-transaction log: client, transaction, latency (µs), …
  PB_P99=$(cat "$tmp"/pglog_"$r"* | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR * 0.99)] / 1000 }')
  RPS=$(awk -v n="$N" -v d="$DURATION" 'BEGIN { printf "%.1f", n / d }')
  ROWS="$ROWS| $r | $RPS | $(awk -v v="$(kv "$tmp/wrk_$r.txt" P50_US)" 'BEGIN { printf "%.2f ms", v / 1000 }') | $(awk -v v="$(kv "$tmp/wrk_$r.txt" P99_US)" 'BEGIN { printf "%.2f ms", v / 1000 }') | $TPS | $PB_P99 ms | $(awk -v a="$RPS" -v b="$TPS" 'BEGIN { printf "%.2f ×", a / b }') |
"
done
# TABLE_STATS=1: what the measured loads did to each table (rows written, HOT updates, scans).
[ "${TABLE_STATS:-0}" != 1 ] || psql -X -h "$PGSOCK" -U postgres -d shoal -c "SELECT relname, n_tup_ins ins, n_tup_upd upd,
  n_tup_hot_upd hot, seq_scan, idx_scan FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + seq_scan + idx_scan > 0
  ORDER BY relname" >&2

# Over all rounds: the check-ins made (each answered delivery made one) and pgbench's
# transactions, per second of load; p99 of every request of every round (wrk's thousand
# quantiles of each round, weighted by its requests) and of every pgbench transaction.
RATE=$(awk -v n="$S_N" -v d="$S_SECS" 'BEGIN { printf "%.1f", n / d }')
PG_TPS=$(awk -v n="$PB_N" -v d="$PB_SECS" 'BEGIN { printf "%.1f", n / d }')
P99=$(for r in $(seq 1 "$ROUNDS"); do w=$(kv "$tmp/wrk_$r.txt" REQS); awk -v w="$w" '$1 == "Q" { print $2, w / 1000 }' "$tmp/wrk_$r.txt"; done \
  | sort -n | awk '{ v[NR] = $1; c[NR] = $2; t += $2 } END { for (i = 1; i <= NR; i++) { s += c[i]; if (s >= 0.99 * t) { print v[i]; exit } } }')
P50=$(for r in $(seq 1 "$ROUNDS"); do w=$(kv "$tmp/wrk_$r.txt" REQS); awk -v w="$w" '$1 == "Q" { print $2, w / 1000 }' "$tmp/wrk_$r.txt"; done \
  | sort -n | awk '{ v[NR] = $1; c[NR] = $2; t += $2 } END { for (i = 1; i <= NR; i++) { s += c[i]; if (s >= 0.5 * t) { print v[i]; exit } } }')
PG_P99=$(cat "$tmp"/pglog_* | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR * 0.99)] / 1000 }')
SHOAL_CPU=$(per_tx_us "$S_TICKS" "$S_N"); PG_CPU=$(per_tx_us "$P_TICKS" "$S_N"); PB_CPU=$(per_tx_us "$PB_TICKS" "$PB_N")
WAL_PER=$(awk -v w="$S_WAL" -v n="$S_N" 'BEGIN { printf "%.0f", w / n }'); PG_WAL_PER=$(awk -v w="$PB_WAL" -v n="$PB_N" 'BEGIN { printf "%.0f", w / n }')

CHECKINS=$(( $(psql_q "SELECT count(*) FROM checkins") - SEEDED ))
DUPES=$(psql_q "SELECT count(*) FROM (SELECT member_id, group_id, day FROM checkins GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
BAD_BALANCE=$(psql_q "SELECT count(*) FROM points_accounts a WHERE a.balance <> (SELECT COALESCE(sum(delta), 0) FROM points_ledger l WHERE l.member_id = a.member_id)")
# Every check-in since the seed (the warm-up's too) and every answer with a reply.
OK_ANSWERS=$(psql_q "SELECT count(*) FROM bridge_events WHERE status = 200")

RATIO=$(awk -v a="$RATE" -v b="$PG_TPS" 'BEGIN { printf "%.2f", a / b }')
verdict() { if [ "$1" = 1 ]; then echo met; else echo '**missed**'; fi; }
RATIO_OK=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.5) ? 1 : 0 }')
P99_OK=$(awk -v p="$P99" 'BEGIN { print (p <= 20000) ? 1 : 0 }')
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)
ms() { awk -v v="$1" 'BEGIN { printf "%.2f ms", v / 1000 }'; }
report=$(cat <<MD
## Check-in benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')

**Machine:** $CPU, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r).
**Method:** $ROUNDS rounds, each wrk ($CLIENTS connections / $THREADS threads / ${DURATION} s; every request a distinct signed OneBot v11
check-in, distinct members over $NGROUPS groups; members: **$MEMBERS**) to \`/hooks/onebot11/{id}\`, then \`pgbench -c $CLIENTS -j $THREADS -T $DURATION\`
(TPC-B, scale 10) on the same embedded PostgreSQL, synchronous_commit = $SYNC, each from a checkpoint.

| round | Shoal check-ins/s | p50 | p99 | pgbench tps | pgbench p99 | ratio |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |
$ROWS| **all** | **$RATE** | $(ms "$P50") | **$(ms "$P99")** | **$PG_TPS** | $PG_P99 ms | **$RATIO ×** |

| load | WAL per transaction | CPU per transaction: server / PostgreSQL |
| --- | ---: | ---: |
| Shoal check-ins | $WAL_PER B | $SHOAL_CPU µs / $PG_CPU µs |
| pgbench TPC-B | $PG_WAL_PER B | – / $PB_CPU µs |

| target | figure | verdict |
| --- | --- | --- |
| Shoal ≥ 0.5 × pgbench tps | ${RATIO} × | $(verdict "$RATIO_OK") |
| p99 ≤ 20 ms | $(ms "$P99") | $(verdict "$P99_OK") |

Checks: check-ins $CHECKINS = answered with a reply $OK_ANSWERS (wrk requests $S_REQS, errors $S_ERRS);
duplicate check-ins $DUPES; members whose balance ≠ sum(ledger): $BAD_BALANCE.
MD
)
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" | tee -a "$ROOT/bench/results/checkins-$(date -u +%F).md"
[ "$DUPES" = 0 ] && [ "$BAD_BALANCE" = 0 ] && [ "$CHECKINS" = "$OK_ANSWERS" ]
