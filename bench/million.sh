#!/usr/bin/env bash
# bench/million.sh — admin pages and API lists at a million members. See docs/PERFORMANCE.md.
#
#   bash bench/million.sh
#
# 1. installs the PostgreSQL packages with apt-get when missing; builds Shoal in a release
#    profile without LTO (`--profile million`: the release profile with lto = false and
#    codegen-units = 16, in target/million/, so that the fat-LTO release binary is untouched);
# 2. starts Shoal with its embedded cluster in a temporary directory;
# 3. generates the data with SQL (generate_series, straight into the database): MEMBERS members,
#    1.5 memberships each on average over NGROUPS groups (plus one big Telegram group), SCANS
#    scan events with their daily counters, CHECKIN_DAYS days of check-ins (about 5 M at the
#    defaults), a ledger entry per check-in plus one adjustment per member (about 6 M), the
#    balances and the ledger's day totals; then VACUUM ANALYZE;
# 4. logs in with a session cookie (an admin, and two operators of one group each), creates an
#    API token, and requests each admin page (some also as the two operators) and API list
#    REQUESTS times, one after the other, with curl; reports p50 / p95 / max per route;
# 5. downloads the member CSV export, timing it and sampling Shoal's resident memory (VmRSS)
#    every 20 ms during it, and checks the file has one line per open membership (+ members
#    without one, + the header);
# 6. prints a Markdown report and appends it to bench/results/million-<date>.md.
#
# Knobs: MEMBERS (1000000), NGROUPS (1000), SCANS (10000000), CHECKIN_DAYS (100), REQUESTS (50),
#        SKIP_BUILD=1 (use target/million/shoal as it is), SHOAL_BIN=path (use that binary, no
#        build; e.g. target/debug/shoal), KEEP=1 (leave the temporary dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEMBERS=${MEMBERS:-1000000}
NGROUPS=${NGROUPS:-1000}
SCANS=${SCANS:-10000000}
CHECKIN_DAYS=${CHECKIN_DAYS:-100}
REQUESTS=${REQUESTS:-50}
PASSWORD='bench password 12345'
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/million.sh: %s\n' "$*" >&2; exit 1; }

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
PROFILE=(--config 'profile.million.inherits="release"' --config 'profile.million.lto=false'
         --config 'profile.million.codegen-units=16' --profile million)
if [ -z "${SHOAL_BIN:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build ${PROFILE[*]}"
  (cd "$ROOT" && cargo build "${PROFILE[@]}" >&2)
fi
SHOAL_BIN=${SHOAL_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/million/shoal}
BUILD_NOTE="profile \`million\` (release, lto = false, codegen-units = 16)"
case "$SHOAL_BIN" in
  */debug/*) BUILD_NOTE="debug build ($SHOAL_BIN: Shoal at opt-level 0, dependencies at 1)" ;;
  */release/*) BUILD_NOTE="release build ($SHOAL_BIN: fat LTO, built $(date -u -r "$SHOAL_BIN" '+%Y-%m-%d %H:%M UTC'))" ;;
esac
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench-million.XXXXXX")
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
  if [ "${KEEP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

psql_q() { psql -X -q -t -A -h "$PGSOCK" -U postgres -d shoal -v ON_ERROR_STOP=1 -c "$1"; }
unset DATABASE_URL RUST_LOG
for v in $(env | sed -n 's/^\(SHOAL_[A-Z_]*\)=.*/\1/p' | grep -vx SHOAL_BIN); do unset "$v"; done

log "starting Shoal (embedded PostgreSQL in $tmp)"
mkdir -p "$tmp/config"
SHOAL_DATA_DIR=$tmp/data SHOAL_LISTEN=127.0.0.1:0 SHOAL_LOG_FORMAT=json SHOAL_LOG_FILTER=warn \
  "$SHOAL_BIN" --config-dir "$tmp/config" serve >"$tmp/shoal.out" 2>"$tmp/shoal.err" &
shoal_pid=$!
for _ in $(seq 1 600); do grep -q 'Shoal is listening on' "$tmp/shoal.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^Shoal is listening on http:\/\///p' "$tmp/shoal.out")
[ -n "$ADDR" ] || { cat "$tmp/shoal.err" >&2; die "Shoal did not start"; }
BASE=http://$ADDR

# ------------------------------------------------------------------ data
t0=$(date +%s)
log "generating $NGROUPS groups and $MEMBERS members"
psql_q "
INSERT INTO groups (name, platform, capacity, external_chat_id, timezone)
SELECT CASE WHEN i = 1 THEN 'Telegram 大群' ELSE 'QQ 群 ' || i END, CASE WHEN i = 1 THEN 'telegram' ELSE 'qq' END,
       CASE WHEN i = 1 THEN 200000 ELSE 3000 END, (900000 + i)::text, 'Asia/Shanghai'
FROM generate_series(1, $NGROUPS) i;
-- Chinese name + nickname + number, drawn by hash so that nothing else (groups, tags) follows
-- the name order; names repeat, so the name order has ties.
INSERT INTO members (platform, external_user_id, display_name, tags, created_at, last_active_at)
SELECT 'qq', (10000000 + i)::text,
       (ARRAY['张','王','李','赵','刘','陈','杨','黄','周','吴'])[1 + abs(hashint4(i)::bigint) % 10]
         || (ARRAY['伟','芳','娜','敏','静','丽','强','磊','军','洋'])[1 + abs(hashint4(i + 7)::bigint) % 10] || ' '
         || (ARRAY['Lucky','Sunny','Amy','Leo','Coco','Kiki','Momo','Tony','Vivian','Jack',
                   'Lily','Kevin','Nana','Eric','Luna','Max','Yoyo','Ben','Cici','Dora'])[1 + abs(hashint4(i + 13)::bigint) % 20]
         || (abs(hashint4(i + 29)::bigint) % 10000)::text,
       CASE WHEN abs(hashint4(i + 41)::bigint) % 10 = 0 THEN ARRAY['vip'] ELSE '{}' END,
       now() - (i % 1000) * interval '1 hour', now() - (i % 100) * interval '1 hour'
FROM generate_series(1, $MEMBERS) i;" >/dev/null
log "memberships"
# Member i is in group 1 + i mod NGROUPS; every second member also in a second group; members
# up to 50 000 are also in the big group (1).
psql_q "
INSERT INTO memberships (member_id, group_id, joined_at)
SELECT m.id, 1 + m.id % $NGROUPS, m.created_at FROM members m;
INSERT INTO memberships (member_id, group_id, joined_at)
SELECT m.id, 1 + (m.id * 7 + 3) % $NGROUPS, m.created_at FROM members m
WHERE m.id % 2 = 0 AND (m.id * 7 + 3) % $NGROUPS <> m.id % $NGROUPS;
INSERT INTO memberships (member_id, group_id, joined_at)
SELECT m.id, 1, m.created_at FROM members m WHERE m.id <= 50000 AND m.id % $NGROUPS <> 0;
-- A few who left.
UPDATE memberships SET left_at = joined_at + interval '1 day', left_reason = 'leave' WHERE id % 50 = 0;" >/dev/null

log "$SCANS scan events and their daily counters"
LC=$(psql_q "INSERT INTO live_codes (slug, name) VALUES ('bench', '活码 bench') RETURNING id")
psql_q "INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit, used)
        SELECT $LC, g, g, 1000000000, 0 FROM generate_series(2, 11) g;
        INSERT INTO live_code_channels (live_code_id, key, name) VALUES ($LC, 'poster-a', '海报 A'), ($LC, 'flyer', '传单');" >/dev/null
T1=$(psql_q "SELECT min(id) FROM live_code_targets WHERE live_code_id = $LC")
psql_q "
INSERT INTO scan_events (at, live_code_id, channel, target_id, group_id, outcome, visitor, ref, ua_class, ip_anon)
SELECT now() - (i % 90) * interval '1 day' - (i % 86400) * interval '1 second', $LC,
       (ARRAY['', 'poster-a', 'flyer'])[1 + i % 3], $T1 + i % 10, 2 + i % 10,
       CASE WHEN i % 10 = 0 THEN 'sticky' ELSE 'new' END, md5(i::text), '', 'mobile', '10.0.0.0'
FROM generate_series(1, $SCANS) i;
INSERT INTO scan_daily (live_code_id, day, channel, target_id, outcome, scans)
SELECT live_code_id, (at AT TIME ZONE 'Asia/Shanghai')::date, channel, coalesce(target_id, 0), outcome, count(*)
FROM scan_events GROUP BY 1, 2, 3, 4, 5;
UPDATE live_code_targets t SET used = s.n FROM (SELECT target_id, count(*) AS n FROM scan_events GROUP BY 1) s
WHERE s.target_id = t.id;" >/dev/null

log "check-ins over $CHECKIN_DAYS days, their ledger entries, adjustments, balances"
# Each day a thirtieth of every group's members check in (about 50 000 a day), and in the big
# group a twenty-fifth of its 50 000. Streaks are not meaningful here, only sizes.
psql_q "
INSERT INTO checkins (member_id, group_id, day, at, streak)
SELECT s.member_id, s.group_id, d.day, d.day + time '08:00' + (s.member_id % 3600) * interval '1 second',
       1 + (d.n % 30)
FROM (SELECT n, (now() AT TIME ZONE 'Asia/Shanghai')::date - n AS day FROM generate_series(0, $CHECKIN_DAYS - 1) n) d
JOIN memberships s ON s.left_at IS NULL AND s.group_id <> 1 AND s.member_id % 30 = d.n % 30
UNION ALL
SELECT s.member_id, 1, d.day, d.day + time '08:00' + (s.member_id % 3600) * interval '1 second', 1 + (d.n % 30)
FROM (SELECT n, (now() AT TIME ZONE 'Asia/Shanghai')::date - n AS day FROM generate_series(0, $CHECKIN_DAYS - 1) n) d
JOIN memberships s ON s.left_at IS NULL AND s.group_id = 1 AND s.member_id % 25 = d.n % 25;
INSERT INTO checkin_days (group_id, day, checkins)
SELECT group_id, day, count(*) FROM checkins GROUP BY 1, 2;" >/dev/null
psql_q "
INSERT INTO points_ledger (member_id, delta, kind, reference, idempotency_key, at)
SELECT member_id, 1, 'checkin', 'checkin:' || id, 'checkin:' || member_id || ':' || group_id || ':' || day, at
FROM checkins;
INSERT INTO points_ledger (member_id, delta, kind, idempotency_key, note, at)
SELECT id, 10 + id % 90, 'adjustment', 'bench-adjust:' || id, '活动奖励', now() - (id % 60) * interval '1 day'
FROM members;
INSERT INTO points_accounts (member_id, balance)
SELECT member_id, sum(delta) FROM points_ledger GROUP BY member_id;
INSERT INTO points_daily (day, kind, slot, entries, earned, spent)
SELECT (at AT TIME ZONE 'UTC')::date, kind, 0, count(*),
       COALESCE(sum(delta) FILTER (WHERE delta > 0), 0), COALESCE(-sum(delta) FILTER (WHERE delta < 0), 0)
FROM points_ledger GROUP BY 1, 2;" >/dev/null
log "VACUUM ANALYZE"
psql_q "VACUUM ANALYZE" >/dev/null
GEN_SECS=$(( $(date +%s) - t0 ))
COUNTS=$(psql_q "SELECT (SELECT count(*) FROM members) || ' members, ' || (SELECT count(*) FROM memberships) || ' memberships, '
  || (SELECT count(*) FROM scan_events) || ' scan events, ' || (SELECT count(*) FROM checkins) || ' check-ins, '
  || (SELECT count(*) FROM points_ledger) || ' ledger entries'")
DBSIZE=$(psql_q "SELECT pg_size_pretty(pg_database_size('shoal'))")
log "$COUNTS ($DBSIZE) in ${GEN_SECS}s"

# ------------------------------------------------------------------ log in, token
printf '%s\n' "$PASSWORD" | SHOAL_DATA_DIR=$tmp/data "$SHOAL_BIN" --config-dir "$tmp/config" \
  operator create --username bench --role admin --all-groups --password-stdin >/dev/null
TOKEN=$(SHOAL_DATA_DIR=$tmp/data "$SHOAL_BIN" --config-dir "$tmp/config" token create --name bench --role admin | tail -n1)
[ -n "$TOKEN" ] || die "no API token"
JAR=$tmp/cookies
CSRF=$(curl -s -c "$JAR" -b "$JAR" "$BASE/login" | sed -n 's/.*name="_csrf" value="\([^"]*\)".*/\1/p' | head -n1)
code=$(curl -s -o /dev/null -w '%{http_code}' -c "$JAR" -b "$JAR" --data-urlencode "_csrf=$CSRF" \
  --data-urlencode "username=bench" --data-urlencode "password=$PASSWORD" "$BASE/login")
[ "$code" = 303 ] || die "login answered $code"
# Two scoped operators, operators (not admins) of one group each, as a community's own operators
# would be; their pages see only that group's members: `scoped` has an ordinary group (2 000
# members), `bigscope` the big Telegram group (50 000).
SCOPED_GROUP=$((NGROUPS / 2))
login_operator() { # username group jar
  printf '%s\n' "$PASSWORD" | SHOAL_DATA_DIR=$tmp/data "$SHOAL_BIN" --config-dir "$tmp/config" \
    operator create --username "$1" --role operator --password-stdin >/dev/null
  psql_q "INSERT INTO operator_groups (operator_id, group_id) SELECT id, $2 FROM operators WHERE username = '$1'" >/dev/null
  local csrf code
  csrf=$(curl -s -c "$3" -b "$3" "$BASE/login" | sed -n 's/.*name="_csrf" value="\([^"]*\)".*/\1/p' | head -n1)
  code=$(curl -s -o /dev/null -w '%{http_code}' -c "$3" -b "$3" --data-urlencode "_csrf=$csrf" \
    --data-urlencode "username=$1" --data-urlencode "password=$PASSWORD" "$BASE/login")
  [ "$code" = 303 ] || die "$1's login answered $code"
}
SJAR=$tmp/cookies-scoped
BJAR=$tmp/cookies-bigscope
login_operator scoped "$SCOPED_GROUP" "$SJAR"
login_operator bigscope 1 "$BJAR"

# ------------------------------------------------------------------ routes
MID=$(psql_q "SELECT id FROM members ORDER BY id OFFSET $((MEMBERS / 2)) LIMIT 1")
DEEP=$(psql_q "SELECT id FROM members ORDER BY display_name, id OFFSET $((MEMBERS / 4)) LIMIT 1")
GROUP=$((NGROUPS / 2))
NAME_Q=$(psql_q "SELECT substring(display_name from ' (.*)$') FROM members WHERE id = $MID")
# Half-way through the members whose names begin with 张 (a one-character search's deep page).
ZHANG_DEEP=$(psql_q "SELECT id FROM members WHERE display_name LIKE '张%' ORDER BY display_name, id OFFSET $((MEMBERS / 20)) LIMIT 1")
API_CURSOR=$(printf 'id:%s' "$MID" | base64 | tr '+/' '-_' | tr -d '=')
ROUTES=(
  "web /"
  "web /groups"
  "web /groups/$GROUP"
  "web /groups/$GROUP/checkins"
  "web /groups/1/checkins"
  "web /groups/1/checkins?today_page=10&calendar_page=20"
  "web /members"
  "web /members?after=$DEEP"
  "web /members?before=$DEEP"
  "web /members?q=$NAME_Q"
  "web /members?q=$((10000000 + MID))"
  "web /members?q=%E5%BC%A0%E4%BC%9F"
  "web /members?q=%E4%BC%9F%E5%BC%A0"
  "web /members?q=%E5%BC%A0"
  "web /members?q=%E5%BC%A0&after=$ZHANG_DEEP"
  "web /members?q=%E9%9D%99"
  "web /members?q=l"
  "web /members?tag=vip"
  "web /members?group=$GROUP"
  "web /members?platform=qq&tag=vip&after=$DEEP"
  "web /members/$MID"
  "web /points"
  "web /live-codes"
  "web /live-codes/$LC"
  "web /settings/audit"
  "scoped /"
  "scoped /groups"
  "scoped /members"
  "scoped /members?q=$NAME_Q"
  "scoped /members?q=%E5%BC%A0"
  "scoped /members?q=%E9%9D%99"
  "scoped /points"
  "scoped /live-codes"
  "bigscope /"
  "bigscope /members"
  "bigscope /members?q=$NAME_Q"
  "bigscope /members?q=%E5%BC%A0"
  "bigscope /points"
  "api /api/v1/members"
  "api /api/v1/members?cursor=$API_CURSOR"
  "api /api/v1/members?q=$NAME_Q"
  "api /api/v1/members?q=%E5%BC%A0"
  "api /api/v1/members?group_id=$GROUP"
  "api /api/v1/members/$MID"
  "api /api/v1/members/$MID/points"
  "api /api/v1/groups"
  "api /api/v1/live-codes"
)
: >"$tmp/table.md"
for entry in "${ROUTES[@]}"; do
  kind=${entry%% *}; path=${entry#* }
  auth=(-b "$JAR")
  [ "$kind" = api ] && auth=(-H "Authorization: Bearer $TOKEN")
  [ "$kind" = scoped ] && auth=(-b "$SJAR")
  [ "$kind" = bigscope ] && auth=(-b "$BJAR")
  # One warm-up request (plans, caches), then the measured ones.
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' "${auth[@]}" "$BASE$path")
  size=$(stat -c %s "$tmp/body")
  : >"$tmp/times"
  for _ in $(seq 1 "$REQUESTS"); do
    curl -s -o /dev/null -w '%{time_total}\n' "${auth[@]}" "$BASE$path" >>"$tmp/times"
  done
  stats=$(sort -n "$tmp/times" | awk '{ v[NR] = $1 * 1000 } END {
    p50 = v[int((NR + 1) * 0.50)]; p95 = v[int(NR * 0.95 + 0.999)]; printf "%.1f|%.1f|%.1f", p50, p95, v[NR] }')
  IFS='|' read -r p50 p95 max <<<"$stats"
  ok=$(awk -v p="$p95" 'BEGIN { print (p <= 100) ? "yes" : "**no**" }')
  label="\`$path\`"
  [ "$kind" = scoped ] && label="$label (operator of a 2 000-member group)"
  [ "$kind" = bigscope ] && label="$label (operator of the 50 000-member group)"
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$code" "$size" "$p50" "$p95" "$max" "$ok" >>"$tmp/table.md"
  log "$path: $code, p50 $p50 ms, p95 $p95 ms"
done

# ------------------------------------------------------------------ export
rss() { awk '/VmRSS/ { print $2 }' "/proc/$shoal_pid/status"; }
RSS_BEFORE=$(rss)
( peak=0; while kill -0 "$shoal_pid" 2>/dev/null && [ ! -f "$tmp/export.done" ]; do
    r=$(rss); [ "$r" -gt "$peak" ] && peak=$r; echo "$peak" >"$tmp/rss.peak"; sleep 0.02; done ) &
sampler=$!
EXPORT_STATS=$(curl -s -o "$tmp/members.csv" -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' -b "$JAR" "$BASE/members/export.csv")
touch "$tmp/export.done"; wait "$sampler" 2>/dev/null || true
sleep 1
RSS_AFTER=$(rss)
RSS_PEAK=$(cat "$tmp/rss.peak")
read -r EXPORT_CODE EXPORT_TTFB EXPORT_SECS EXPORT_BYTES <<<"$EXPORT_STATS"
EXPORT_LINES=$(wc -l <"$tmp/members.csv")
EXPECTED_LINES=$(psql_q "SELECT 1 + (SELECT count(*) FROM memberships WHERE left_at IS NULL)
  + (SELECT count(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM memberships s WHERE s.member_id = m.id AND s.left_at IS NULL))")

CPU=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)
PGV=$(psql_q "SHOW server_version")
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD)
DIRTY=$(cd "$ROOT" && git status --porcelain -- src migrations templates locales Cargo.toml | wc -l)
kb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
report=$(cat <<MD
## Admin pages at a million members — $(date -u '+%Y-%m-%d %H:%M:%S UTC')

**Machine:** $CPU, $(nproc) cores, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r),
PostgreSQL $PGV (embedded cluster, default settings), load average before the timing: $(cut -d' ' -f1-3 /proc/loadavg).
**Build:** commit $COMMIT$( [ "$DIRTY" -gt 0 ] && echo " + $DIRTY uncommitted files" ), $BUILD_NOTE.
**Data:** $COUNTS; database $DBSIZE; generated with SQL in ${GEN_SECS} s.
**Method:** curl, one request at a time, $REQUESTS timed requests per route after one warm-up; admin pages with a
session cookie (an admin, or where marked an operator of one group: group $SCOPED_GROUP or group 1), API lists with a bearer token (admin). Times are curl's \`time_total\` (connect included).

| route | status | bytes | p50 ms | p95 ms | max ms | p95 ≤ 100 ms |
| --- | ---: | ---: | ---: | ---: | ---: | --- |
$(cat "$tmp/table.md")

**Member export** (\`/members/export.csv\`): status $EXPORT_CODE, first byte after ${EXPORT_TTFB} s, whole file in
${EXPORT_SECS} s, $EXPORT_BYTES bytes, $EXPORT_LINES lines (expected $EXPECTED_LINES). Shoal's resident memory:
$(kb "$RSS_BEFORE") before, $(kb "$RSS_PEAK") at most during, $(kb "$RSS_AFTER") one second after.
MD
)
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" | tee -a "$ROOT/bench/results/million-$(date -u +%F).md"
[ "$EXPORT_LINES" = "$EXPECTED_LINES" ]
