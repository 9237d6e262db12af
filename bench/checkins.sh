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
#    HMAC-SHA1-signed as a real bridge signs them, and replays them with wrk (CLIENTS connections)
#    for DURATION seconds: every request is a first check-in (dedupe row, member, membership,
#    activity, check-in, ledger entry, balance) answered with a reply;
# 4. checks that check-ins == 200 answers and balance == sum(ledger) for every member;
# 5. runs `pgbench -c CLIENTS -j THREADS -T DURATION` (TPC-B, scale 10) on the same cluster,
#    logging each transaction for its p99 (both loads run after a warm-up, an ANALYZE and a CHECKPOINT);
# 6. prints a Markdown report and appends it to bench/results/checkins-<date>.md.
#
# Also reports the WAL written and the CPU time spent per check-in and per pgbench transaction
# (Shoal's process; the cluster's postmaster with its backends, exited ones included).
# MEMBERS=returning (the default, the everyday case): every member checking in is already known —
# member, membership, yesterday's check-in, an account with yesterday's points — as after a day of
# use, so a check-in continues a streak; MEMBERS=new: every check-in is also the member's first
# message (member, membership and account created by the check-in), the worst case.
# Knobs: DURATION (20), WARMUP (5), CLIENTS (16), THREADS (2), NGROUPS (100), REQUESTS (200000), MEMBERS, SKIP_BUILD=1, BEFORE_SQL,
# SHOAL_BIN=path (time that binary, no build; e.g. target/million/shoal from bench/million.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CLIENTS=${CLIENTS:-16}
THREADS=${THREADS:-2}
NGROUPS=${NGROUPS:-100}
REQUESTS=${REQUESTS:-200000}
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

python3 - "$tmp" "$REQUESTS" "$NGROUPS" "$SECRET" <<'PY'
import hashlib, hmac, json, sys, time
tmp, n, groups, secret = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
now = int(time.time())
# The warm-up's deliveries (other members) come after the measured ones' ids.
for path, ids in ((tmp + "/requests.txt", range(n)), (tmp + "/warmup.txt", range(n, n + n // 4))):
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
  io.write(string.format("ERRORS %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

# Both loads run warm and start from a checkpoint: a few seconds of other members' check-ins
# first (caches, prepared statements, WAL segments to recycle), as pgbench's initialisation
# warms its tables.
log "warm-up: ${WARMUP}s"
DELIVERIES=$tmp/warmup.txt wrk -t"$THREADS" -c"$CLIENTS" -d"${WARMUP}s" -s "$tmp/post.lua" "http://$ADDR" >/dev/null 2>&1
# Statistics as a running database has them (autovacuum would analyze within its minute): plans
# prepared while bridge_events was empty scan it whole for the dedupe guard until then.
psql_q "ANALYZE" >/dev/null
psql_q "CHECKPOINT" >/dev/null
WAL0=$(psql_q "SELECT pg_current_wal_lsn()")
C0=$(psql_q "SELECT count(*) FROM checkins")
S_T0=$(ticks "$shoal_pid"); P_T0=$(pg_ticks)
log "wrk: $CLIENTS connections, $THREADS threads, ${DURATION}s"
DELIVERIES=$tmp/requests.txt wrk -t"$THREADS" -c"$CLIENTS" -d"${DURATION}s" --latency -s "$tmp/post.lua" "http://$ADDR" >"$tmp/wrk.txt" 2>&1
S_T1=$(ticks "$shoal_pid"); P_T1=$(pg_ticks)
grep -E '^(P50_US|P99_US|REQS|RPS|ERRORS) ' "$tmp/wrk.txt" >"$tmp/wrk.kv" || { cat "$tmp/wrk.txt" >&2; die "wrk failed"; }
val() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/wrk.kv"; }
sleep 1
# WAL written per check-in (the machine's commits wait on WAL: bytes per transaction explain a ratio).
WAL_PER=$(psql_q "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$WAL0') / NULLIF(count(*) - $C0, 0)) FROM checkins")
CHECKINS=$(( $(psql_q "SELECT count(*) FROM checkins") - SEEDED ))
MEASURED=$((CHECKINS + SEEDED - C0))
SHOAL_CPU=$(per_tx_us $((S_T1 - S_T0)) "$MEASURED"); PG_CPU=$(per_tx_us $((P_T1 - P_T0)) "$MEASURED")
DUPES=$(psql_q "SELECT count(*) FROM (SELECT member_id, group_id, day FROM checkins GROUP BY 1, 2, 3 HAVING count(*) > 1) d")
BAD_BALANCE=$(psql_q "SELECT count(*) FROM points_accounts a WHERE a.balance <> (SELECT COALESCE(sum(delta), 0) FROM points_ledger l WHERE l.member_id = a.member_id)")
OK_ANSWERS=$(psql_q "SELECT count(*) FROM bridge_events WHERE status = 200")

log "pgbench: initialising scale 10, then $CLIENTS clients for ${DURATION}s"
psql_q "CREATE DATABASE pgbench" >/dev/null
pgbench -q -i -s 10 -h "$PGSOCK" -U postgres pgbench >/dev/null 2>&1
psql_q "CHECKPOINT" >/dev/null
SYNC=$(DB=pgbench psql_q "SHOW synchronous_commit")
PGWAL0=$(psql_q "SELECT pg_current_wal_lsn()")
PB_T0=$(pg_ticks)
pgbench -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -l --log-prefix="$tmp/pglog" -h "$PGSOCK" -U postgres pgbench >"$tmp/pgbench.txt" 2>&1 || { cat "$tmp/pgbench.txt" >&2; die "pgbench failed"; }
# Per-transaction log: client, transaction, latency (µs), …
PG_P99=$(cat "$tmp"/pglog* | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int(NR * 0.99)] / 1000 }')
PB_T1=$(pg_ticks)
PG_TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$tmp/pgbench.txt" | head -n1)
PG_WAL_PER=$(psql_q "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$PGWAL0') / NULLIF($PG_TX, 0))")
PB_CPU=$(per_tx_us $((PB_T1 - PB_T0)) "$PG_TX")
PG_TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$tmp/pgbench.txt" | head -n1)
PG_LAT=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$tmp/pgbench.txt" | head -n1)

RPS=$(val RPS); P50=$(val P50_US); P99=$(val P99_US)
RATIO=$(awk -v a="$RPS" -v b="$PG_TPS" 'BEGIN { printf "%.2f", a / b }')
verdict() { if [ "$1" = 1 ]; then echo met; else echo '**missed**'; fi; }
RATIO_OK=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.5) ? 1 : 0 }')
P99_OK=$(awk -v p="$P99" 'BEGIN { print (p <= 20000) ? 1 : 0 }')
CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)
report=$(cat <<MD
## Check-in benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')

**Machine:** $CPU, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r).
**Method:** wrk, $CLIENTS connections / $THREADS threads / ${DURATION} s, each request a distinct signed OneBot v11 check-in
(distinct members over $NGROUPS groups; members: **$MEMBERS**) to \`/hooks/onebot11/{id}\`; baseline \`pgbench -c $CLIENTS -j $THREADS -T $DURATION\`
(TPC-B, scale 10) on the same embedded PostgreSQL, synchronous_commit = $SYNC.

| load | per second | p50 | p99 | WAL per transaction | CPU per transaction: server / PostgreSQL |
| --- | ---: | ---: | ---: | ---: | ---: |
| Shoal check-ins | $RPS | $(awk -v v="$P50" 'BEGIN { printf "%.2f ms", v / 1000 }') | $(awk -v v="$P99" 'BEGIN { printf "%.2f ms", v / 1000 }') | $WAL_PER B | $SHOAL_CPU µs / $PG_CPU µs |
| pgbench TPC-B | $PG_TPS | avg $PG_LAT ms | $PG_P99 ms | $PG_WAL_PER B | – / $PB_CPU µs |

| target | figure | verdict |
| --- | --- | --- |
| Shoal ≥ 0.5 × pgbench tps | ${RATIO} × | $(verdict "$RATIO_OK") |
| p99 ≤ 20 ms | $(awk -v v="$P99" 'BEGIN { printf "%.2f ms", v / 1000 }') | $(verdict "$P99_OK") |

Checks: check-ins $CHECKINS = answers with a reply $OK_ANSWERS (wrk requests $(val REQS), errors $(val ERRORS));
duplicate check-ins $DUPES; members whose balance ≠ sum(ledger): $BAD_BALANCE.
MD
)
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" | tee -a "$ROOT/bench/results/checkins-$(date -u +%F).md"
[ "$DUPES" = 0 ] && [ "$BAD_BALANCE" = 0 ] && [ "$CHECKINS" = "$OK_ANSWERS" ]
