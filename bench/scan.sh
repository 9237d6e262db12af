#!/usr/bin/env bash
# bench/scan.sh — throughput and latency of the live-code scan path `GET /l/{slug}`, against
# nginx answering `return 302` on the same machine, in one run. See docs/PERFORMANCE.md.
#
#   bash bench/scan.sh
#
# What it does:
#   1. installs wrk and nginx-light (and the PostgreSQL packages Shoal needs) with apt-get, only
#      when they are missing; builds Shoal with `cargo build --release`;
#   2. starts Shoal with its embedded PostgreSQL in a temporary data dir, creates one group
#      (capacity 1 000 000), one live code `bench` and one target with scan_limit 1 000 000 000;
#   3. starts nginx (`return 302`) with a minimal config in the temporary dir; warms both up, then
#      ROUNDS times runs wrk (64 connections, 2 threads, 20 s, --latency) against Shoal's /l/bench
#      with a phone User-Agent and no cookies, so every request is a new visitor that takes a slot
#      and writes a scan event, and then the identical wrk command against nginx. Taking turns
#      puts the machine's drift (a neighbour, a slower hour) on both servers alike; the figures
#      are the rounds' totals, the percentiles those of every request of every round (wrk's
#      thousand quantiles per round, merged by weight). Samples each server's resident memory;
#   4. checks exactness: scan_events rows == 302 answers Shoal counted (/metrics); the target's
#      `used` counter; then a short burst at the same rate against a second code whose target has
#      a limit far below the number of requests: exactly `limit` scans get the redirect;
#   5. stops Shoal with SIGTERM (queued events written, unused slots given back), starts it again
#      on the same data to check that `used` equals the number of scans, stops it again;
#   6. prints a Markdown report to stdout and appends it to bench/results/scan-<date>.md.
# Progress goes to stderr. Exit status: 0 when the run completed and every exactness check held
# (performance targets missed are reported, not failed), 1 otherwise.
#
# Knobs (environment): DURATION (s per round, default 20), ROUNDS (3), WARMUP (s, 5),
# CONNECTIONS (64), THREADS (2), SKIP_BUILD=1 (use the existing target/release/shoal as is).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
SLUG=bench
EXACT_SLUG=bench-exact
JOIN_URL=https://qm.qq.com/q/bench
PHONE_UA='Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36'
RSS_LIMIT_KB=97657       # 100 MB (10^8 bytes) in KiB
P99_LIMIT_US=5000
RATIO_MIN=0.5

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/scan.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
fi

find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }
have_pg_server() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -n "$(find_nginx)" ] || missing+=(nginx-light)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
have_pg_server || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    die "missing packages (${missing[*]}) and no sudo to install them: apt-get install ${missing[*]}"
  fi
  log "installing ${missing[*]} with apt-get"
  "${SUDO[@]}" apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
NGINX=$(find_nginx)
[ -n "$NGINX" ] || die "nginx not found after installing it"

CARGO=$(command -v cargo 2>/dev/null || echo "$HOME/.cargo/bin/cargo")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SHOAL_BIN=$TARGET_DIR/release/shoal
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -x "$CARGO" ] || die "cargo not found (install Rust: https://rustup.rs)"
  log "cargo build --release (this may take minutes)"
  (cd "$ROOT" && "$CARGO" build --release >&2)
fi
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"

# ---------------------------------------------------------------------------------------------
# Temporary directory and cleanup
# ---------------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")
# As root the embedded cluster runs as `postgres`, which must be able to reach the data dir.
chmod 755 "$tmp"
mkdir -p "$tmp/config" "$tmp/nginx"
mkfifo "$tmp/tick" # never written: reading it with a timeout pauses the RSS sampler
PGSOCK=$tmp/data/postgres

shoal_pid=""
nginx_pid=""
sampler_pid=""
wrk_pid=""

# Whether a process still runs (a zombie counts as gone).
alive() {
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Waits up to $2 seconds for process $1 to end.
wait_gone() {
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

postmaster_pid() { [ -f "$PGSOCK/postmaster.pid" ] && head -n1 "$PGSOCK/postmaster.pid" || true; }

# SIGTERM Shoal and wait for it (and, through its watchdog, its cluster) to stop; SIGKILL
# as a last resort. Sets shoal_status to Shoal's exit status.
shoal_status=""
stop_shoal() {
  [ -n "$shoal_pid" ] || return 0
  local pid=$shoal_pid pm
  pm=$(postmaster_pid)
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 60; then
    log "Shoal did not stop within 60 s of SIGTERM: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  shoal_status=0
  wait "$pid" 2>/dev/null || shoal_status=$?
  shoal_pid=""
  # The watchdog stops the cluster once Shoal is gone.
  if [ -n "$pm" ] && ! wait_gone "$pm" 60; then
    log "the embedded cluster did not stop: stopping postmaster $pm"
    kill -TERM "$pm" 2>/dev/null || true
    wait_gone "$pm" 30 || kill -KILL "$pm" 2>/dev/null || true
  fi
}

stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  kill -TERM "$nginx_pid" 2>/dev/null || true
  wait_gone "$nginx_pid" 20 || kill -KILL "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
}

stop_bg() { # pid
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Processes still tied to the temporary dir (by working directory or command line): postgres
# backends work in the data dir, the postmaster, Shoal, nginx and wrk name it in their arguments.
leftovers() {
  local d pid cwd args
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
    cwd=$(readlink "$d/cwd" 2>/dev/null) || cwd=""
    case $cwd in "$tmp" | "$tmp"/*) echo "$pid"; continue ;; esac
    args=()
    { mapfile -d '' args <"$d/cmdline"; } 2>/dev/null || continue
    [[ "${args[*]}" == *"$tmp"* ]] && echo "$pid"
  done
  return 0
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_bg "$sampler_pid"; sampler_pid=""
  stop_bg "$wrk_pid"; wrk_pid=""
  stop_nginx
  stop_shoal
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    log "processes left behind, stopping them: $(echo $left)"
    kill -TERM $left 2>/dev/null; sleep 2
    left=$(leftovers); [ -n "$left" ] && kill -KILL $left 2>/dev/null
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
# A GET over bash's /dev/tcp (no curl needed): the raw response on stdout.
http_get() { # host port path
  local fd
  exec {fd}<>"/dev/tcp/$1/$2"
  printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n' "$3" "$1" "$2" "$PHONE_UA" >&"$fd"
  cat <&"$fd"
  exec {fd}<&-
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for p in $(seq "$1" $(($1 + 200))); do
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  die "no free TCP port from $1"
}

q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGSOCK" -p 5432 -U postgres -d shoal -c "$1"; }

# Shoal's count of answers on /l/{slug} with the given status, from /metrics.
shoal_status_count() { # status
  http_get "$shoal_host" "$shoal_port" /metrics | tr -d '\r' |
    awk -v st="status=\"$1\"" '/^http_requests_total\{/ && index($0, "route=\"/l/{slug}\"") && index($0, st) { n += $NF } END { printf "%d\n", n }'
}
shoal_metric() { # name (a counter without labels)
  http_get "$shoal_host" "$shoal_port" /metrics | tr -d '\r' |
    awk -v m="$1" '$1 == m { n += $NF } END { printf "%d\n", n }'
}

# Direct children of a process (nginx workers, postgres backends), without ps.
children_of() {
  local f line st ppid
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -r st ppid _ <<<"${line##*) }"
    [ "$ppid" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}
# utime+stime of a process in clock ticks (0 when gone).
cpu_ticks() {
  local line
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
  # after "pid (comm) ": state is field 1, utime field 12, stime field 13
  awk '{ print $12 + $13 }' <<<"${line##*) }"
}
# CPU ticks of a process and its direct children.
tree_ticks() {
  local total c
  total=$(cpu_ticks "$1")
  for c in $(children_of "$1"); do total=$((total + $(cpu_ticks "$c"))); done
  echo "$total"
}
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# Starts Shoal on the temporary data dir; sets shoal_pid, shoal_host, shoal_port.
start_shoal() { # name of the output files
  local out=$tmp/$1.out err=$tmp/$1.err i addr unset_env=()
  local v
  for v in $(compgen -e); do
    case $v in SHOAL_* | DATABASE_URL | RUST_LOG) unset_env+=(-u "$v") ;; esac
  done
  : >"$out"
  # Every wrk request comes from 127.0.0.1: the per-address limit on new slots is set out of
  # reach (not off), so that its counting is part of what is measured.
  (cd "$tmp" && exec env "${unset_env[@]}" SHOAL_DATA_DIR="$tmp/data" SHOAL_LISTEN=127.0.0.1:0 \
    SHOAL_SCAN__NEW_SCANS_PER_ADDRESS=4000000000 \
    "$SHOAL_BIN" --config-dir "$tmp/config" serve) >"$out" 2>"$err" &
  shoal_pid=$!
  for ((i = 0; i < 1800; i++)); do
    addr=$(sed -n 's#^Shoal is listening on http://##p' "$out" | head -n1)
    [ -n "$addr" ] && break
    if ! alive "$shoal_pid"; then
      tail -n 20 "$err" >&2 || true
      die "Shoal exited before it listened"
    fi
    sleep 0.1
  done
  [ -n "$addr" ] || die "Shoal did not listen within 180 s"
  shoal_host=${addr%:*}
  shoal_port=${addr##*:}
}

# wrk with the phone User-Agent, no cookies; `done` prints one machine-readable line.
cat >"$tmp/scan.lua" <<EOF
wrk.method = "GET"
wrk.headers["User-Agent"] = "$PHONE_UA"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
  for i = 1, 1000 do io.write(string.format("Q %d\n", latency:percentile(i / 10))) end
end
EOF

WRK_CMD_TEXT="wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -s scan.lua <url>"

# Parses "key=value" pairs of the BENCH line of a wrk output into an associative array.
declare -A R_shoal R_nginx R_exact
parse_bench() { # file array-name
  local -n arr=$2
  local line kv
  line=$(grep '^BENCH ' "$1" | tail -n1) || die "no result line in $1"
  for kv in ${line#BENCH }; do arr[${kv%%=*}]=${kv#*=}; done
}

# Runs wrk against a URL while sampling a process tree; fills the named array with wrk's figures
# plus rss_peak_kb, rss_hwm_kb (Shoal only), cpu_* (core-seconds).
run_measured() { # label url server-pid array-name [duration]
  local label=$1 url=$2 spid=$3 dur=${5:-$DURATION}
  local -n res=$4
  local out=$tmp/wrk-$label.txt peak_file=$tmp/peak-$label
  local pm t0 s0 p0 m0 c0 t1 s1 p1 m1 c1 w
  # nginx: the master and its workers; Shoal: the process alone (not its cluster watchdog).
  local pids=$spid
  [ "$label" = nginx ] && pids="$spid $(children_of "$spid" | tr '\n' ' ')"
  echo 0 >"$peak_file"
  # Sampler: peak VmRSS of the server every 100 ms, in shell builtins only, so that it takes
  # next to no CPU from the benchmark.
  (
    peak=0
    while :; do
      sum=0
      for p in $pids; do
        while read -r k v _; do
          if [ "$k" = VmRSS: ]; then sum=$((sum + v)); break; fi
        done 2>/dev/null <"/proc/$p/status" || true
      done
      if [ "$sum" -gt "$peak" ]; then peak=$sum; echo "$peak" >"$peak_file"; fi
      read -rt 0.1 -u 9 _ || true # a 100 ms pause without a sleep process
    done
  ) 9<>"$tmp/tick" &
  sampler_pid=$!
  pm=$(postmaster_pid)
  [ "$label" = nginx ] && pm=""
  times >"$tmp/times"; c0=$(tail -n1 "$tmp/times")
  server_ticks() { if [ "$label" = nginx ]; then tree_ticks "$spid"; else cpu_ticks "$spid"; fi; }
  t0=$(date +%s.%N); s0=$(server_ticks); p0=$([ -n "$pm" ] && tree_ticks "$pm" || echo 0); m0=$(machine_busy_ticks)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${dur}s" --latency -s "$tmp/scan.lua" "$url" >"$out" &
  wrk_pid=$!
  wait "$wrk_pid" || die "wrk failed against $url: $(cat "$out")"
  wrk_pid=""
  t1=$(date +%s.%N); s1=$(server_ticks); p1=$([ -n "$pm" ] && tree_ticks "$pm" || echo 0); m1=$(machine_busy_ticks)
  times >"$tmp/times"; c1=$(tail -n1 "$tmp/times")
  stop_bg "$sampler_pid"; sampler_pid=""
  parse_bench "$out" "$4"
  res[rss_peak_kb]=$(cat "$peak_file")
  res[rss_hwm_kb]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$spid/status" 2>/dev/null || echo 0)
  res[wall_s]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  res[cpu_server]=$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz }')
  res[cpu_pg]=$(awk -v a="$p0" -v b="$p1" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz }')
  res[cpu_machine]=$(awk -v a="$m0" -v b="$m1" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz }')
  # bash `times`, second line: children's user and system time, e.g. "0m12.345s 0m1.234s".
  w=$(awk -v a="$c0" -v b="$c1" 'function s(x,   m) { split(x, m, /[ms]/); return m[1] * 60 + m[2] }
        BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f", s(y[1]) + s(y[2]) - s(x[1]) - s(x[2]) }')
  res[cpu_wrk]=$w
  res[cpu_other]=$(awk -v m="${res[cpu_machine]}" -v s="${res[cpu_server]}" -v p="${res[cpu_pg]}" -v w="$w" \
    'BEGIN { o = m - s - p - w; if (o < 0) o = 0; printf "%.1f", o }')
  res[rps]=$(awk -v n="${res[requests]}" -v d="${res[duration_us]}" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
  log "$label: ${res[rps]} req/s, p50 ${res[p50_us]} µs, p99 ${res[p99_us]} µs, peak RSS ${res[rss_peak_kb]} KiB"
}

# The most slots one process holds at once ([scan] max_block of the shipped defaults).
MAX_BLOCK=$("$SHOAL_BIN" --config-dir "$tmp/config" config 2>/dev/null | sed -n 's/.*max_block: *\([0-9]*\).*/\1/p' | head -n1 || true)
MAX_BLOCK=${MAX_BLOCK:-100000}

# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------
started_at=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
kernel=$(uname -sr)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || echo unknown)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes (tracked or new files) outside bench/ are part of the build: count them.
dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -vc '^...bench/' || true)
wrk_version=$(wrk -v 2>&1 | head -n1 | awk '{ print $2 }' || true)
nginx_version=$("$NGINX" -v 2>&1 | sed 's#.*nginx/##')
pg_version=$(psql --version | awk '{ print $3 }')
run_user=$(id -un)

# ---------------------------------------------------------------------------------------------
# Shoal
# ---------------------------------------------------------------------------------------------
log "starting Shoal with an embedded cluster in $tmp/data"
start_shoal shoal
log "Shoal listens on $shoal_host:$shoal_port (pid $shoal_pid)"

ids=$(q "WITH g AS (
           INSERT INTO groups (name, platform, capacity, join_url)
           VALUES ('Bench group', 'qq', 1000000, '$JOIN_URL') RETURNING id),
         c AS (
           INSERT INTO live_codes (slug, name, mode, fallback_kind, fallback_message)
           VALUES ('$SLUG', 'Bench code', 'fill', 'none', 'Sorry, all full') RETURNING id)
         INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit)
         SELECT c.id, g.id, 1, 1000000000 FROM c, g RETURNING live_code_id || ' ' || id")
read -r code_id target_id <<<"$ids"

first=$(http_get "$shoal_host" "$shoal_port" "/l/$SLUG" | tr -d '\r')
head -n1 <<<"$first" | grep -q ' 302 ' || die "GET /l/$SLUG did not answer 302: $(head -n1 <<<"$first")"
grep -qi "^location: $JOIN_URL\$" <<<"$first" || die "GET /l/$SLUG did not redirect to $JOIN_URL"

log "warm-up: ${WARMUP} s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$tmp/scan.lua" "http://$shoal_host:$shoal_port/l/$SLUG" >"$tmp/wrk-warmup.txt"

# nginx, started now: the two servers take turns below.
nginx_port=$(free_port 18380)
ng=$tmp/nginx
temp_paths=""
for m in client_body proxy fastcgi uwsgi scgi; do
  if [ "$m" = client_body ] || ! "$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
    temp_paths+="    ${m}_temp_path $ng/$m;"$'\n'
  fi
done
cat >"$ng/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$temp_paths
    # hyper keeps a connection open for any number of requests; so does nginx here.
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 302 https://example.com/; }
    }
}
EOF
log "starting nginx on 127.0.0.1:$nginx_port"
"$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" -t >/dev/null 2>&1 ||
  die "nginx rejects its config: $("$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" -t 2>&1)"
"$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" 2>>"$ng/error.log" &
nginx_pid=$!
for _ in $(seq 1 100); do
  port_free "$nginx_port" || break
  alive "$nginx_pid" || die "nginx exited: $(cat "$ng/error.log")"
  sleep 0.1
done
http_get 127.0.0.1 "$nginx_port" /l/bench | head -n1 | grep -q ' 302 ' || die "nginx does not answer 302"
log "warm-up nginx: ${WARMUP} s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$tmp/scan.lua" "http://127.0.0.1:$nginx_port/l/$SLUG" >/dev/null

# The rounds: Shoal, then nginx, ROUNDS times. Each round's figures land in R_round; the totals
# in R_shoal / R_nginx, their latency quantiles (weighted by each round's requests) in q-<label>.
declare -A R_round
rounds_md=""
: >"$tmp/q-shoal.txt"; : >"$tmp/q-nginx.txt"
accumulate() { # label round-array total-array
  local label=$1 k
  local -n r=$2 t=$3
  for k in requests duration_us status_errors connect_errors read_errors write_errors timeouts bytes; do
    t[$k]=$((${t[$k]:-0} + r[$k]))
  done
  for k in cpu_server cpu_pg cpu_wrk cpu_other cpu_machine; do
    t[$k]=$(awk -v a="${t[$k]:-0}" -v b="${r[$k]}" 'BEGIN { printf "%.1f", a + b }')
  done
  for k in rss_peak_kb rss_hwm_kb max_us; do
    if [ "${r[$k]}" -gt "${t[$k]:-0}" ]; then t[$k]=${r[$k]}; fi
  done
  awk -v w="${r[requests]}" '$1 == "Q" { print $2, w / 1000 }' "$tmp/wrk-$label.txt" >>"$tmp/q-$label.txt"
}
# The p-th percentile (µs) of every request of every round of `label`.
merged() { # label p
  sort -n "$tmp/q-$1.txt" | awk -v p="$2" '{ v[NR] = $1; c[NR] = $2; t += $2 }
    END { for (i = 1; i <= NR; i++) { s += c[i]; if (s >= p / 100 * t) { print v[i]; exit } } }'
}
finish_totals() { # label total-array
  local -n t=$2
  t[p50_us]=$(merged "$1" 50); t[p90_us]=$(merged "$1" 90); t[p99_us]=$(merged "$1" 99); t[p999_us]=$(merged "$1" 99.9)
  t[rps]=$(awk -v n="${t[requests]}" -v d="${t[duration_us]}" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
}

sleep 0.5
before302=$(shoal_status_count 302)
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS, Shoal: $WRK_CMD_TEXT"
  R_round=()
  run_measured shoal "http://$shoal_host:$shoal_port/l/$SLUG" "$shoal_pid" R_round
  accumulate shoal R_round R_shoal
  s_rps=${R_round[rps]}; s_p99=${R_round[p99_us]}
  sleep 0.5 # let requests still in flight when wrk stopped finish
  log "round $r/$ROUNDS, nginx: $WRK_CMD_TEXT"
  R_round=()
  run_measured nginx "http://127.0.0.1:$nginx_port/l/$SLUG" "$nginx_pid" R_round
  accumulate nginx R_round R_nginx
  rounds_md+="| $r | $s_rps | $(awk -v u="$s_p99" 'BEGIN { printf "%.2f", u / 1000 }') ms | ${R_round[rps]} | $(awk -v u="${R_round[p99_us]}" 'BEGIN { printf "%.2f", u / 1000 }') ms | $(awk -v a="$s_rps" -v b="${R_round[rps]}" 'BEGIN { printf "%.3f", a / b }') × |"$'\n'
done
finish_totals shoal R_shoal
finish_totals nginx R_nginx
stop_nginx
after302=$(shoal_status_count 302)
other_status=$(http_get "$shoal_host" "$shoal_port" /metrics | tr -d '\r' |
  awk '/^http_requests_total\{/ && index($0, "route=\"/l/{slug}\"") && !index($0, "status=\"302\"") { n += $NF } END { printf "%d\n", n }')
run302=$((after302 - before302))

# ---- exactness at this rate ------------------------------------------------------------------
checks=()
failed=0
check() { # ok? description
  if [ "$1" = 1 ]; then checks+=("| ✅ | $2 |"); else checks+=("| ❌ | $2 |"); failed=1; fi
}
bool() { if eval "$1"; then echo 1; else echo 0; fi; }

# Wait for the batch writer (it writes every few hundred ms) to write what is queued.
sleep 2
for _ in $(seq 1 50); do
  events_new=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $code_id AND outcome = 'new'")
  [ "$events_new" -ge "$after302" ] && break
  sleep 0.2
done
events_all=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $code_id")
daily=$(q "SELECT coalesce(sum(scans), 0) FROM scan_daily WHERE live_code_id = $code_id")
used_live=$(q "SELECT used FROM live_code_targets WHERE id = $target_id")
dropped=$(shoal_metric scan_events_dropped_total)
wrk_ok=$((R_shoal[requests] - R_shoal[status_errors]))
held=$((used_live - events_new))

check "$(bool "[ $events_new -eq $after302 ]")" \
  "scan_events rows with outcome 'new' ($events_new) = 302 answers Shoal counted on /l/{slug} ($after302: sanity request + warm-up + run)"
check "$(bool "[ $other_status -eq 0 ] && [ $events_all -eq $events_new ]")" \
  "no other answers on /l/{slug} ($other_status) and no other outcomes ($((events_all - events_new)) fallback/sticky/preview events)"
check "$(bool "[ $dropped -eq 0 ]")" "no scan event dropped (scan_events_dropped_total = $dropped)"
check "$(bool "[ $daily -eq $events_all ]")" "daily counters (scan_daily: $daily) = events ($events_all)"
check "$(bool "[ $wrk_ok -le $run302 ] && [ $run302 -le $((wrk_ok + CONNECTIONS * ROUNDS)) ]")" \
  "302 answers during the rounds by Shoal's count ($run302) = wrk's 2xx/3xx responses ($wrk_ok) plus at most the $CONNECTIONS requests in flight when wrk stopped, per round ($((run302 - wrk_ok)))"
# A process holds at most the half block left when it reserved the next one, plus that block.
HELD_MAX=$((MAX_BLOCK + MAX_BLOCK / 2))
check "$(bool "[ $held -ge 0 ] && [ $held -le $HELD_MAX ]")" \
  "while running, target.used ($used_live) = scans ($events_new) + slots held in memory ($held, at most half a block plus one block of $MAX_BLOCK: $HELD_MAX)"

# A short burst at the same rate against a target with a small limit: exactly `limit` redirects.
exact_limit=$(awk -v r="${R_shoal[rps]}" 'BEGIN { n = int(r * 2); if (n < 1000) n = 1000; print n }')
exact_ids=$(q "WITH g AS (
           INSERT INTO groups (name, platform, capacity, join_url)
           VALUES ('Bench exact group', 'qq', 1000000, '${JOIN_URL}-exact') RETURNING id),
         c AS (
           INSERT INTO live_codes (slug, name, mode, fallback_kind, fallback_message)
           VALUES ('$EXACT_SLUG', 'Bench exact code', 'fill', 'none', 'Sorry, all full') RETURNING id)
         INSERT INTO live_code_targets (live_code_id, group_id, position, scan_limit)
         SELECT c.id, g.id, 1, $exact_limit FROM c, g RETURNING live_code_id || ' ' || id")
read -r exact_code exact_target <<<"$exact_ids"
sleep 1.2 # let the new code's snapshot cache (1 s) not matter
e302_0=$(shoal_status_count 302)
e200_0=$(shoal_status_count 200)
log "exactness burst: 5 s against /l/$EXACT_SLUG, limit $exact_limit"
run_measured exact "http://$shoal_host:$shoal_port/l/$EXACT_SLUG" "$shoal_pid" R_exact 5
sleep 0.5
e302=$(($(shoal_status_count 302) - e302_0))
e200=$(($(shoal_status_count 200) - e200_0))
sleep 2
for _ in $(seq 1 50); do
  ex_all=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $exact_code")
  [ "$ex_all" -ge $((e302 + e200)) ] && break
  sleep 0.2
done
ex_new=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $exact_code AND outcome = 'new'")
ex_fb=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $exact_code AND outcome = 'fallback'")
ex_used_live=$(q "SELECT used FROM live_code_targets WHERE id = $exact_target")
check "$(bool "[ $e302 -eq $exact_limit ] && [ $ex_new -eq $exact_limit ] && [ $ex_used_live -eq $exact_limit ]")" \
  "burst against a target with limit $exact_limit ($((e302 + e200)) scans in 5 s): 302 answers $e302, 'new' events $ex_new, target.used $ex_used_live"
check "$(bool "[ $ex_fb -eq $e200 ] && [ $e200 -gt 0 ]")" \
  "the other $e200 scans of the burst got the fallback page (200), each with a 'fallback' event ($ex_fb)"

# ---- stop, restart, check the slots were given back -------------------------------------------
rss_hwm_final=$(awk '/^VmHWM:/ { print $2 }' "/proc/$shoal_pid/status" 2>/dev/null || echo 0)
log "stopping Shoal with SIGTERM"
stop_shoal
check "$(bool "[ $shoal_status -eq 0 ] && [ ! -e $PGSOCK/postmaster.pid ]")" \
  "SIGTERM: Shoal exited with status $shoal_status and its cluster stopped"
log "starting Shoal again on the same data to read the counters"
start_shoal shoal-again
used_after=$(q "SELECT used FROM live_code_targets WHERE id = $target_id")
events_after=$(q "SELECT count(*) FROM scan_events WHERE live_code_id = $code_id AND outcome = 'new'")
ex_used_after=$(q "SELECT used FROM live_code_targets WHERE id = $exact_target")
check "$(bool "[ $events_after -eq $after302 ] && [ $used_after -eq $after302 ]")" \
  "after SIGTERM: unused slots given back: target.used ($used_after) = 'new' events ($events_after) = 302 answers ($after302)"
check "$(bool "[ $ex_used_after -eq $exact_limit ]")" "after SIGTERM: the limited target's used ($ex_used_after) = its limit ($exact_limit)"
stop_shoal


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
ratio=$(awk -v a="${R_shoal[rps]}" -v b="${R_nginx[rps]}" 'BEGIN { printf "%.3f", a / b }')
verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
ok_ratio=$(awk -v a="${R_shoal[rps]}" -v b="${R_nginx[rps]}" -v m="$RATIO_MIN" 'BEGIN { print (a >= m * b) ? 1 : 0 }')
ok_p99=$(bool "[ ${R_shoal[p99_us]} -le $P99_LIMIT_US ]")
ok_rss=$(bool "[ ${R_shoal[rss_peak_kb]} -le $RSS_LIMIT_KB ] && [ $rss_hwm_final -le $RSS_LIMIT_KB ]")
errs() { local -n a=$1; echo "$((a[connect_errors] + a[read_errors] + a[write_errors] + a[timeouts])) socket, ${a[status_errors]} status"; }
per_req() { local -n a=$1; awk -v s="${a[cpu_server]}" -v p="${a[cpu_pg]}" -v n="${a[requests]}" 'BEGIN { printf "%.1f", (s + p) * 1e6 / n }'; }
dirty_note=""
[ "$dirty" -gt 0 ] && dirty_note=" + $dirty uncommitted changed or new files"

rounds_rows=${rounds_md%$'\n'}
report=$(cat <<EOF
## Scan benchmark — $started_at

**Machine:** $cpu_model, $cores cores, $ram RAM, $kernel, $os. Load average before the run: $load_before.
**Software:** Shoal $commit$dirty_note (release build), PostgreSQL $pg_version (embedded cluster),
nginx $nginx_version, wrk $wrk_version; run as \`$run_user\`.
**Load:** \`$WRK_CMD_TEXT\`, phone User-Agent, no cookies (every request is a new visitor),
after a ${WARMUP} s warm-up of each; Shoal on \`/l/$SLUG\` (one target, scan_limit 1 000 000 000), nginx on
\`return 302\`; $ROUNDS rounds, each Shoal then nginx. Figures below are over all rounds: requests/s
from the totals, percentiles over every request (wrk's quantiles merged).

| round | Shoal req/s | Shoal p99 | nginx req/s | nginx p99 | ratio |
| ---: | ---: | ---: | ---: | ---: | ---: |
$rounds_rows

| server | req/s | p50 | p90 | p99 | p99.9 | max | peak RSS | errors |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
| Shoal \`GET /l/$SLUG\` | ${R_shoal[rps]} | $(ms "${R_shoal[p50_us]}") ms | $(ms "${R_shoal[p90_us]}") ms | $(ms "${R_shoal[p99_us]}") ms | $(ms "${R_shoal[p999_us]}") ms | $(ms "${R_shoal[max_us]}") ms | $(mb "${R_shoal[rss_peak_kb]}") MB | $(errs R_shoal) |
| nginx \`return 302\` | ${R_nginx[rps]} | $(ms "${R_nginx[p50_us]}") ms | $(ms "${R_nginx[p90_us]}") ms | $(ms "${R_nginx[p99_us]}") ms | $(ms "${R_nginx[p999_us]}") ms | $(ms "${R_nginx[max_us]}") ms | $(mb "${R_nginx[rss_peak_kb]}") MB | $(errs R_nginx) |

| target | figure | verdict |
| --- | --- | --- |
| Shoal ≥ $RATIO_MIN × nginx req/s | $ratio × | $(verdict "$ok_ratio") |
| Shoal p99 ≤ 5 ms | $(ms "${R_shoal[p99_us]}") ms | $(verdict "$ok_p99") |
| Shoal RSS ≤ 100 MB | peak $(mb "${R_shoal[rss_peak_kb]}") MB during the run (sampled every 100 ms); VmHWM $(mb "$rss_hwm_final") MB over the whole process | $(verdict "$ok_rss") |

CPU time during the measured rounds, ${DURATION} s each (core-seconds; the machine has $((cores * DURATION * ROUNDS)) in that time per server):

| run | server | its PostgreSQL | server + PostgreSQL per request | wrk | everything else on the machine | machine total |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
| Shoal | ${R_shoal[cpu_server]} | ${R_shoal[cpu_pg]} | $(per_req R_shoal) µs | ${R_shoal[cpu_wrk]} | ${R_shoal[cpu_other]} | ${R_shoal[cpu_machine]} |
| nginx | ${R_nginx[cpu_server]} | – | $(per_req R_nginx) µs | ${R_nginx[cpu_wrk]} | ${R_nginx[cpu_other]} | ${R_nginx[cpu_machine]} |

Exactness (every check must hold):

| | check |
| --- | --- |
$(printf '%s\n' "${checks[@]}")

<details><summary>wrk output</summary>

\`\`\`
# Shoal, last round
$(grep -v '^BENCH \|^Q ' "$tmp/wrk-shoal.txt")
# nginx, last round
$(grep -v '^BENCH \|^Q ' "$tmp/wrk-nginx.txt")
\`\`\`
</details>
EOF
)

mkdir -p "$ROOT/bench/results"
results=$ROOT/bench/results/scan-$(date -u +%Y-%m-%d).md
{ [ -s "$results" ] && printf '\n'; printf '%s\n' "$report"; } >>"$results"
printf '%s\n' "$report"
log "results appended to ${results#"$ROOT"/}"
if [ "$failed" -ne 0 ]; then
  log "an exactness check failed"
  exit 1
fi
