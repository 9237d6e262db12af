#!/usr/bin/env bash
# bench/posters.sh — poster rendering and serving, in one run. See docs/PERFORMANCE.md, "Posters".
#
#   bash bench/posters.sh                          # builds target/release/shoal first
#   SHOAL_BIN=target/debug/shoal bash bench/posters.sh   # any build, as it is (a smoke run)
#
# What it does:
#   1. installs wrk, nginx-light, curl, the fonts (fonts-noto-cjk, fonts-noto-color-emoji) and
#      PostgreSQL with apt-get, only when missing; builds Shoal with `cargo build --release` unless
#      SHOAL_BIN names a binary (or SKIP_BUILD=1);
#   2. uncached rendering: `shoal poster-bench` draws ITERATIONS posters of 1080 × 1920 (background
#      image, avatar picture, two text blocks with placeholders, a QR code), each for another
#      member, and encodes each as JPEG: p50 / p90 / p99 of one poster (static layer and fonts
#      loaded once, as a running Shoal keeps them);
#   3. cached serving: starts Shoal with its embedded PostgreSQL in a temporary data dir, makes the
#      same template through the API (background uploaded), a public link /p/{token}, fetches the
#      poster once (drawn and kept), checks a second fetch gives the same bytes and that its ETag
#      answers 304; then runs wrk (CONNECTIONS, THREADS, DURATION) against /p/{token}, sampling
#      Shoal's resident memory;
#   4. starts nginx serving the very same JPEG file (sendfile) and runs the identical wrk command;
#   5. prints a Markdown report and appends it to bench/results/posters-<date>.md.
# Targets: uncached p50 <= 15 ms and p99 <= 30 ms; cached posters >= 0.5 x nginx's rate; Shoal's
# peak RSS <= 200 MB under that load. Missed targets are reported, not failed (exit 0); exit 1
# when the run itself fails.
#
# Knobs (environment): SHOAL_BIN, ITERATIONS (200), DURATION (s, 20), WARMUP (s, 5),
# CONNECTIONS (64), THREADS (2), SKIP_BUILD=1.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ITERATIONS=${ITERATIONS:-200}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
P50_LIMIT_US=15000
P99_LIMIT_US=30000
RSS_LIMIT_KB=195313 # 200 MB (2 * 10^8 bytes) in KiB
RATIO_MIN=0.5

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/posters.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo); fi
find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }
have_pg_server() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -n "$(find_nginx)" ] || missing+=(nginx-light)
have_pg_server || missing+=(postgresql)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
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

if [ -z "${SHOAL_BIN:-}" ]; then
  SHOAL_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/shoal
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    CARGO=$(command -v cargo 2>/dev/null || echo "$HOME/.cargo/bin/cargo")
    [ -x "$CARGO" ] || die "cargo not found (install Rust: https://rustup.rs)"
    log "cargo build --release (this may take minutes)"
    (cd "$ROOT" && "$CARGO" build --release >&2)
  fi
fi
case $SHOAL_BIN in /*) ;; *) SHOAL_BIN=$PWD/$SHOAL_BIN ;; esac
[ -x "$SHOAL_BIN" ] || die "$SHOAL_BIN does not exist"
build=release
case $SHOAL_BIN in */debug/*) build="debug (a smoke run: the figures say nothing about release)" ;; esac

# ---------------------------------------------------------------------------------------------
# Temporary directory and cleanup
# ---------------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-posters.XXXXXX")
chmod 755 "$tmp" # as root the embedded cluster runs as `postgres`, which must reach the data dir
mkdir -p "$tmp/config" "$tmp/nginx/root" "$tmp/pb"
mkfifo "$tmp/tick" # never written: reading it with a timeout pauses the RSS sampler
PGSOCK=$tmp/data/postgres
shoal_pid="" nginx_pid="" sampler_pid="" wrk_pid=""

alive() {
  local st
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
  return 1
}
postmaster_pid() { [ -f "$PGSOCK/postmaster.pid" ] && head -n1 "$PGSOCK/postmaster.pid" || true; }
stop_shoal() {
  [ -n "$shoal_pid" ] || return 0
  local pm
  pm=$(postmaster_pid)
  kill -TERM "$shoal_pid" 2>/dev/null || true
  wait_gone "$shoal_pid" 60 || kill -KILL "$shoal_pid" 2>/dev/null || true
  wait "$shoal_pid" 2>/dev/null || true
  shoal_pid=""
  if [ -n "$pm" ] && ! wait_gone "$pm" 60; then
    kill -TERM "$pm" 2>/dev/null || true
    wait_gone "$pm" 30 || kill -KILL "$pm" 2>/dev/null || true
  fi
}
stop_bg() { [ -n "$1" ] || return 0; kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
stop_nginx() {
  [ -n "$nginx_pid" ] || return 0
  kill -TERM "$nginx_pid" 2>/dev/null || true
  wait_gone "$nginx_pid" 20 || kill -KILL "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
  nginx_pid=""
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  stop_bg "$sampler_pid"
  stop_bg "$wrk_pid"
  stop_nginx
  stop_shoal
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for p in $(seq "$1" $(($1 + 200))); do port_free "$p" && { echo "$p"; return 0; }; done
  die "no free TCP port from $1"
}
children_of() {
  local f line ppid
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    read -r _ ppid _ <<<"${line##*) }"
    [ "$ppid" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

# The environment Shoal runs in: none of the caller's SHOAL_* settings, the temporary data dir.
shoal_env=()
for v in $(compgen -e); do
  case $v in SHOAL_* | DATABASE_URL | RUST_LOG) shoal_env+=(-u "$v") ;; esac
done
shoal_env+=(SHOAL_DATA_DIR="$tmp/data" SHOAL_LOG_FILTER=warn)
shoal() { (cd "$tmp" && env "${shoal_env[@]}" "$SHOAL_BIN" --config-dir "$tmp/config" "$@"); }

declare -A B R_shoal R_nginx
kv_line() { # file prefix array-name
  local -n arr=$3
  local line kv
  line=$(grep "^$2 " "$1" | tail -n1) || die "no $2 line in $1"
  for kv in ${line#"$2" }; do arr[${kv%%=*}]=${kv#*=}; done
}

cat >"$tmp/get.lua" <<'EOF'
wrk.method = "GET"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d status_errors=%d socket_errors=%d bytes=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max))
end
EOF
WRK_CMD_TEXT="wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -s get.lua <url>"

# wrk against a URL while sampling the peak VmRSS of the server (nginx: master and workers).
run_measured() { # label url pid array-name
  local label=$1 url=$2 spid=$3 out=$tmp/wrk-$1.txt peak_file=$tmp/peak-$1
  local -n res=$4
  local pids=$spid
  [ "$label" = nginx ] && pids="$spid $(children_of "$spid" | tr '\n' ' ')"
  echo 0 >"$peak_file"
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
      read -rt 0.1 -u 9 _ || true
    done
  ) 9<>"$tmp/tick" &
  sampler_pid=$!
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$tmp/get.lua" "$url" >"$out" &
  wrk_pid=$!
  wait "$wrk_pid" || die "wrk failed against $url: $(cat "$out")"
  wrk_pid=""
  stop_bg "$sampler_pid"; sampler_pid=""
  kv_line "$out" BENCH "$4"
  res[rss_peak_kb]=$(cat "$peak_file")
  res[rps]=$(awk -v n="${res[requests]}" -v d="${res[duration_us]}" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
  log "$label: ${res[rps]} req/s, p50 ${res[p50_us]} µs, p99 ${res[p99_us]} µs, peak RSS ${res[rss_peak_kb]} KiB"
}

started_at=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 1. Uncached rendering
# ---------------------------------------------------------------------------------------------
log "uncached rendering: shoal poster-bench --iterations $ITERATIONS"
shoal poster-bench --iterations "$ITERATIONS" --out-dir "$tmp/pb" >"$tmp/pb.out" 2>"$tmp/pb.err" ||
  die "poster-bench failed: $(tail -n 5 "$tmp/pb.err")"
kv_line "$tmp/pb.out" POSTERBENCH B
log "uncached: p50 ${B[p50_us]} µs, p99 ${B[p99_us]} µs (draw ${B[draw_p50_us]}, JPEG ${B[encode_p50_us]})"

# ---------------------------------------------------------------------------------------------
# 2. Cached posters from Shoal
# ---------------------------------------------------------------------------------------------
log "starting Shoal with an embedded cluster in $tmp/data"
(cd "$tmp" && exec env "${shoal_env[@]}" SHOAL_LISTEN=127.0.0.1:0 "$SHOAL_BIN" --config-dir "$tmp/config" serve) \
  >"$tmp/shoal.out" 2>"$tmp/shoal.err" &
shoal_pid=$!
addr=""
for ((i = 0; i < 1800; i++)); do
  addr=$(sed -n 's#^Shoal is listening on http://##p' "$tmp/shoal.out" | head -n1)
  [ -n "$addr" ] && break
  alive "$shoal_pid" || die "Shoal exited before it listened: $(tail -n 20 "$tmp/shoal.err")"
  sleep 0.1
done
[ -n "$addr" ] || die "Shoal did not listen within 180 s"
base="http://$addr"
token=$(shoal token create --name bench --role admin 2>>"$tmp/shoal.err" | tail -n1)
[ -n "$token" ] || die "could not create an API token"
api() { curl -sS -f -H "Authorization: Bearer $token" "$@"; }
template_id=$(api -H 'Content-Type: application/json' --data-binary "@$tmp/pb/template.json" "$base/api/v1/poster-templates" |
  sed -n 's/^{"id":\([0-9]*\).*/\1/p')
[ -n "$template_id" ] || die "could not create the template"
api -X PUT -H 'Content-Type: image/jpeg' --data-binary "@$tmp/pb/background.jpg" \
  "$base/api/v1/poster-templates/$template_id/background" >/dev/null || die "could not upload the background"
link=$(api -H 'Content-Type: application/json' \
  --data-binary '{"name":"阿明🐟","qr_url":"https://shoal.example/l/spring?r=AB12CD","vars":{"campaign":"春季打卡营","streak":"27","days":"88","date":"2026-12-03"}}' \
  "$base/api/v1/poster-templates/$template_id/links")
path=$(sed -n 's#.*"url":"http://[^/]*\(/p/[A-Za-z0-9_-]*\)".*#\1#p' <<<"$link")
[ -n "$path" ] || die "no link in $link"
t0=$(date +%s%N)
curl -sS -f -D "$tmp/first.h" -o "$tmp/first.jpg" "$base$path" || die "GET $path failed"
first_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
curl -sS -f -o "$tmp/second.jpg" "$base$path"
cmp -s "$tmp/first.jpg" "$tmp/second.jpg" || die "a second fetch gave other bytes"
etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p' "$tmp/first.h")
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$base$path")
[ "$code" = 304 ] || die "If-None-Match gave $code, not 304"
poster_bytes=$(stat -c %s "$tmp/first.jpg")
cp "$tmp/first.jpg" "$tmp/nginx/root/poster.jpg"
log "poster: $poster_bytes bytes, first fetch (drawn) $first_ms ms; ETag 304 checked"

log "warm-up Shoal: ${WARMUP} s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$base$path" >/dev/null
log "measuring Shoal: $WRK_CMD_TEXT"
run_measured shoal "$base$path" "$shoal_pid" R_shoal
rss_hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$shoal_pid/status" 2>/dev/null || echo 0)
stop_shoal

# ---------------------------------------------------------------------------------------------
# 3. The same file from nginx
# ---------------------------------------------------------------------------------------------
nginx_port=$(free_port 18480)
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
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
$temp_paths
    types { image/jpeg jpg; }
    server {
        listen 127.0.0.1:$nginx_port;
        root $ng/root;
        location = /poster.jpg { add_header Cache-Control "public, max-age=60"; }
    }
}
EOF
"$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" -t >/dev/null 2>&1 ||
  die "nginx rejects its config: $("$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" -t 2>&1)"
"$NGINX" -p "$ng/" -e "$ng/error.log" -c "$ng/nginx.conf" 2>>"$ng/error.log" &
nginx_pid=$!
for _ in $(seq 1 100); do
  port_free "$nginx_port" || break
  alive "$nginx_pid" || die "nginx exited: $(cat "$ng/error.log")"
  sleep 0.1
done
curl -sS -f -o "$tmp/nginx.jpg" "http://127.0.0.1:$nginx_port/poster.jpg" || die "nginx does not serve the poster"
cmp -s "$tmp/nginx.jpg" "$tmp/first.jpg" || die "nginx serves other bytes"
log "warm-up nginx: ${WARMUP} s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$nginx_port/poster.jpg" >/dev/null
log "measuring nginx: $WRK_CMD_TEXT"
run_measured nginx "http://127.0.0.1:$nginx_port/poster.jpg" "$nginx_pid" R_nginx
stop_nginx

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
verdict() { if eval "$1"; then echo "met"; else echo "**missed**"; fi; }
ratio=$(awk -v a="${R_shoal[rps]}" -v b="${R_nginx[rps]}" 'BEGIN { printf "%.3f", a / b }')
v_p50=$(verdict "[ ${B[p50_us]} -le $P50_LIMIT_US ]")
v_p99=$(verdict "[ ${B[p99_us]} -le $P99_LIMIT_US ]")
v_ratio=$(verdict "awk -v r=$ratio -v m=$RATIO_MIN 'BEGIN { exit !(r >= m) }'")
v_rss=$(verdict "[ ${R_shoal[rss_peak_kb]} -le $RSS_LIMIT_KB ] && [ $rss_hwm_kb -le $RSS_LIMIT_KB ]")

report=$(cat <<EOF
## Poster benchmark — $started_at

Commit \`$commit\`, build: $build. Machine: $cpu_model, $cores cores; load before the run: $load_before.

| what | figure | target | |
| --- | --- | --- | --- |
| uncached poster (draw + JPEG q85), p50 | $(ms "${B[p50_us]}") ms | ≤ 15 ms | $v_p50 |
| uncached poster, p90 / p99 / max | $(ms "${B[p90_us]}") / $(ms "${B[p99_us]}") / $(ms "${B[max_us]}") ms | p99 ≤ 30 ms | $v_p99 |
| of which drawing / JPEG encoding, p50 | $(ms "${B[draw_p50_us]}") / $(ms "${B[encode_p50_us]}") ms | | |
| once per process: fonts / static layer | $(ms "${B[font_load_us]}") / $(ms "${B[static_layer_us]}") ms | | |
| cached \`/p/{token}\`, Shoal | ${R_shoal[rps]} req/s, p50 $(ms "${R_shoal[p50_us]}") ms, p99 $(ms "${R_shoal[p99_us]}") ms | | |
| the same JPEG, nginx (sendfile) | ${R_nginx[rps]} req/s, p50 $(ms "${R_nginx[p50_us]}") ms, p99 $(ms "${R_nginx[p99_us]}") ms | | |
| Shoal / nginx | $ratio × | ≥ $RATIO_MIN × | $v_ratio |
| Shoal peak RSS under that load (sampled / VmHWM) | $(mb "${R_shoal[rss_peak_kb]}") / $(mb "$rss_hwm_kb") MB | ≤ 200 MB | $v_rss |

Poster: $poster_bytes bytes (JPEG); its first fetch, drawn, took $first_ms ms. Errors: Shoal
${R_shoal[socket_errors]} socket / ${R_shoal[status_errors]} status, nginx ${R_nginx[socket_errors]} / ${R_nginx[status_errors]}.
wrk: \`$WRK_CMD_TEXT\`, ${WARMUP} s warm-up each. Uncached: ${B[iterations]} posters, each for
another member (name, QR link, values; the avatar decoded and scaled each time).
EOF
)
echo "$report"
mkdir -p "$ROOT/bench/results"
printf '%s\n\n' "$report" >>"$ROOT/bench/results/posters-$(date -u +%Y-%m-%d).md"
log "appended to bench/results/posters-$(date -u +%Y-%m-%d).md"
