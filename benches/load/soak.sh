#!/usr/bin/env bash
# Memory soak: a release permgate (100k tokens, full authorization on every request) under wrk for DURATION
# seconds (default 600), with a second, small wrk sending requests that are denied (400, 403), and
# config reloads every RELOAD_EVERY seconds. Every INTERVAL seconds it samples the gateway's VmRSS, VmHWM,
# open descriptors and threads (/proc/<pid>), plus requests answered and active connections (/metrics);
# then prints the table and a summary: RSS after warm-up, at the end, min, max, drift (end - after warm-up)
# in MiB and %, descriptors at start and end, and per wrk the requests and non-2xx counts.
# Everything listens on 127.0.0.1; every process started here is stopped on exit. Not for CI (minutes long,
# installs wrk from apt). See benches/load/README.md ("Soak").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-600}"       # seconds of measured soak
WARMUP="${WARMUP:-30}"            # seconds of load (with one reload) before the "after warm-up" sample
INTERVAL="${INTERVAL:-10}"        # seconds between samples
CONNS="${CONNS:-64}"              # connections of the allowed-traffic wrk
THREADS="${THREADS:-1}"           # threads of the allowed-traffic wrk
DENY_CONNS="${DENY_CONNS:-4}"     # connections of the denied-traffic wrk (0: none)
RELOAD_EVERY="${RELOAD_EVERY:-120}" # seconds between config reloads (an edited route file); 0: none
IDLE="${IDLE:-0}"                 # seconds of sampling after the load stops (RSS of an idle gateway)
RELOAD_INTERVAL_MS="${RELOAD_INTERVAL_MS:-}" # the gateway's reload_interval_ms (default: its own, 30 s)
TOKENS="${TOKENS:-100000}"        # tokens in the generated config
WORK="${WORK:-$(mktemp -d /tmp/permgate-soak.XXXXXX)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PERMGATE_BIN="${PERMGATE_BIN:-$TARGET_DIR/release/permgate}" # or another build, to compare

UPSTREAM_PORT="${UPSTREAM_PORT:-9200}"; PERMGATE_PORT="${PERMGATE_PORT:-8280}"; ADMIN_PORT="${ADMIN_PORT:-9281}"

# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"

# --- tools -------------------------------------------------------------------------------------------------
require_tools wrk:wrk

# --- build -------------------------------------------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the load tools (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example fast_upstream --example load_gen_config)
fi

# --- config and request lists ------------------------------------------------------------------------------
log "generating the config ($TOKENS tokens) in $WORK"
"$TARGET_DIR/release/examples/load_gen_config" "$WORK/config" "$TOKENS" "127.0.0.1:$PERMGATE_PORT" \
  "127.0.0.1:$ADMIN_PORT" "http://127.0.0.1:$UPSTREAM_PORT" >"$WORK/gen_config.log"
if [ -n "$RELOAD_INTERVAL_MS" ]; then
  printf 'reload_interval_ms: %s\n' "$RELOAD_INTERVAL_MS" >> "$WORK/config/gateway.yaml"
fi
REQUESTS="$WORK/config/requests.txt"
ROUTES="$WORK/config/routes.yaml"
[ -s "$REQUESTS" ] || { log "no allowed requests generated"; exit 1; }

# Denied traffic: for a few allowed requests, the same request without a credential (400/9106), with a
# malformed Authorization (400/6003), with an unknown token (403/1000), on an unknown zone or account
# (403/10000), and on a path no route matches (400/7000). wrk counts every status it gets.
DENIALS="$WORK/denials.txt"   # the format of requests.txt
head -n 50 "$REQUESTS" | while read -r method path auth; do
  unknown_scope="$(printf '%s' "$path" | sed -E 's#/(zones|accounts)/[^/]+/#/\1/ffffffffffffffffffffffffffffffff/#')"
  printf '%s %s -\n' "$method" "$path"
  printf '%s %s Basic%%20bm90OmFrZXk=\n' "$method" "$path"
  printf '%s %s Bearer%%20pgt_soakUnknownTokenXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n' "$method" "$path"
  printf '%s %s %s\n' "$method" "$unknown_scope" "$auth"
  printf 'GET /client/v4/no_such_route/%s %s\n' "${path##*/}" "$auth"
done > "$DENIALS"

# --- processes ---------------------------------------------------------------------------------------------

"$TARGET_DIR/release/examples/fast_upstream" "127.0.0.1:$UPSTREAM_PORT" 1 2>"$WORK/upstream.log" &
PIDS+=("$!")
"$PERMGATE_BIN" serve --config "$WORK/config/gateway.yaml" >"$WORK/permgate.log" 2>&1 &
PG=$!; PIDS+=("$PG")
wait_port "$UPSTREAM_PORT"
log "waiting for permgate (pid $PG) to load the config"
wait_port "$PERMGATE_PORT" 120

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PG/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$PG/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$PG/status"; }
fds() { find "/proc/$PG/fd" -mindepth 1 -maxdepth 1 | wc -l; }
metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null || true; }
active_connections() { metrics | awk '/^permgate_active_connections / {printf "%d", $NF}'; }
generation() { metrics | awk '/^permgate_config_generation / {printf "%d", $NF}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

RELOADS=0
reload() { # a real change (a comment appended to the route file): the watcher re-reads and recompiles all
  RELOADS=$((RELOADS + 1))
  printf '# soak reload %d at %s\n' "$RELOADS" "$(date -u +%FT%TZ)" >> "$ROUTES"
}

log "$PERMGATE_BIN up: RSS $(mib "$(rss_kib)") MiB after loading, $(fds) fds, $(threads) threads, generation $(generation)"
log "machine: $(nproc) CPUs, load average: $(uptime | sed 's/.*load average: //')"

# --- warm-up -----------------------------------------------------------------------------------------------
log "warm-up: ${WARMUP}s of load$([ "$RELOAD_EVERY" != 0 ] && echo " with one reload")"
wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$ROOT/benches/load/requests.lua" \
  "http://127.0.0.1:$PERMGATE_PORT" -- "$REQUESTS" >"$WORK/wrk-warmup.txt" &
WARM_PID=$!; PIDS+=("$WARM_PID")
if [ "$RELOAD_EVERY" != 0 ]; then
  sleep $((WARMUP / 3)); reload
fi
wait "$WARM_PID"
if [ "$RELOAD_EVERY" != 0 ]; then
  # Recompiling 100k tokens takes 10-30 s on a busy machine: the soak starts once the reload is served.
  for _ in $(seq 1 240); do
    GENERATION="$(generation)"; [ "${GENERATION:-0}" -ge 2 ] && break; sleep 0.5
  done
  if [ "${GENERATION:-0}" -lt 2 ]; then
    log "the warm-up reload was not applied (generation ${GENERATION:-?}); see $WORK/permgate.log"; exit 1
  fi
fi

# --- soak --------------------------------------------------------------------------------------------------
LOAD_START="$(uptime | sed 's/.*load average: //')"
log "soak: ${DURATION}s, wrk -t$THREADS -c$CONNS (allowed) + wrk -t1 -c$DENY_CONNS (denied), sample every ${INTERVAL}s, reload every ${RELOAD_EVERY}s"
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$ROOT/benches/load/requests.lua" \
  "http://127.0.0.1:$PERMGATE_PORT" -- "$REQUESTS" >"$WORK/wrk-allowed.txt" &
ALLOWED_PID=$!; PIDS+=("$ALLOWED_PID")
DENIED_PID=""
if [ "$DENY_CONNS" != 0 ]; then
  wrk -t1 -c"$DENY_CONNS" -d"${DURATION}s" -s "$ROOT/benches/load/requests.lua" \
    "http://127.0.0.1:$PERMGATE_PORT" -- "$DENIALS" >"$WORK/wrk-denied.txt" &
  DENIED_PID=$!; PIDS+=("$DENIED_PID")
fi

SAMPLES="$WORK/samples.tsv"
printf 't_s\trss_mib\thwm_mib\tfds\tthreads\tconns\trequests\treq_s\tgeneration\n' > "$SAMPLES"
sample() { # elapsed seconds
  local now requests
  kill -0 "$PG" 2>/dev/null || { log "permgate exited; see $WORK/permgate.log"; exit 1; }
  now="$(metrics)"
  requests="$(awk '/^permgate_requests_total\{/ {sum += $NF} END {printf "%d", sum}' <<<"$now")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(mib "$(rss_kib)")" "$(mib "$(hwm_kib)")" "$(fds)" \
    "$(threads)" "$(awk '/^permgate_active_connections / {printf "%d", $NF}' <<<"$now")" "$requests" \
    "$([ -n "${LAST_REQUESTS:-}" ] && echo $(((requests - LAST_REQUESTS) / INTERVAL)) || echo -)" \
    "$(awk '/^permgate_config_generation / {printf "%d", $NF}' <<<"$now")" >> "$SAMPLES"
  LAST_REQUESTS="$requests"
  tail -n 1 "$SAMPLES" >&2
}
STARTED=$SECONDS
NEXT_RELOAD=$RELOAD_EVERY
sample 0
for ((at = INTERVAL; at <= DURATION; at += INTERVAL)); do
  while [ $((SECONDS - STARTED)) -lt "$at" ]; do sleep 0.2; done
  sample "$at"
  # Right after a sample, so the next one is taken once the recompilation is over.
  if [ "$RELOAD_EVERY" != 0 ] && [ "$at" -ge "$NEXT_RELOAD" ] && [ "$at" -lt "$DURATION" ]; then
    reload; NEXT_RELOAD=$((NEXT_RELOAD + RELOAD_EVERY))
  fi
done
wait "$ALLOWED_PID"
[ -z "$DENIED_PID" ] || wait "$DENIED_PID"
sleep 2   # the wrk connections close; the last sample is taken under load, this one idle
IDLE_RSS="$(rss_kib)"; IDLE_FDS="$(fds)"; IDLE_CONNS="$(active_connections)"
if [ "$IDLE" != 0 ]; then
  IDLE_SAMPLES="$WORK/idle.tsv"
  printf 't_s\trss_mib\tfds\tconns\tupstream_conns\n' > "$IDLE_SAMPLES"
  log "idle: sampling every ${INTERVAL}s for ${IDLE}s after the load stopped"
  IDLE_STARTED=$SECONDS
  for ((at = 0; at <= IDLE; at += INTERVAL)); do
    while [ $((SECONDS - IDLE_STARTED)) -lt "$at" ]; do sleep 0.2; done
    # Upstream connections: the gateway's established sockets to the upstream port.
    upstream_conns="$(ss -Htn state established "( dport = :$UPSTREAM_PORT )" 2>/dev/null | wc -l)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$at" "$(mib "$(rss_kib)")" "$(fds)" "$(active_connections)" \
      "$upstream_conns" >> "$IDLE_SAMPLES"
    tail -n 1 "$IDLE_SAMPLES" >&2
  done
fi
LOAD_END="$(uptime | sed 's/.*load average: //')"

# --- summary -----------------------------------------------------------------------------------------------
echo
echo "samples (also in $SAMPLES):"
column -t -s $'\t' "$SAMPLES"
echo
echo "summary:"
awk -F'\t' 'NR == 2 { first = $2; fd0 = $4; th0 = $5 }
  NR > 1 { last = $2; fdn = $4; thn = $5; gen = $9
           if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2
           if (fdmin == "" || $4 < fdmin) fdmin = $4; if ($4 > fdmax) fdmax = $4 }
  NR > 1 { t[NR] = $1; rss[NR] = $2; n = NR }
  END {
    printf "  RSS after warm-up %.1f MiB, at the end %.1f MiB, min %.1f, max %.1f; drift %+.1f MiB (%+.1f%%)\n",
      first, last, min, max, last - first, (last - first) / first * 100
    # Transient allocations (a reload, the periodic re-read of the files) make single samples noisy; the
    # floor of a window is what stays allocated.
    for (i = 2; i <= n; i++) {
      if (t[i] <= t[2] + 60 && (f1 == "" || rss[i] < f1)) f1 = rss[i]
      if (t[i] >= t[n] - 60 && (f2 == "" || rss[i] < f2)) f2 = rss[i]
    }
    printf "  RSS floor (min) over the first 60 s %.1f MiB, over the last 60 s %.1f MiB; drift %+.1f MiB (%+.1f%%)\n",
      f1, f2, f2 - f1, (f2 - f1) / f1 * 100
    printf "  fds at start %d, at the end %d (min %d, max %d); threads %d -> %d; config generation at the end %d\n",
      fd0, fdn, fdmin, fdmax, th0, thn, gen
  }' "$SAMPLES"
echo "  after the load stopped: RSS $(mib "$IDLE_RSS") MiB, $IDLE_FDS fds, $IDLE_CONNS active connections; VmHWM $(mib "$(hwm_kib)") MiB"
if [ "$IDLE" != 0 ]; then
  echo "  idle for ${IDLE}s (also in $IDLE_SAMPLES):"
  column -t -s $'\t' "$IDLE_SAMPLES" | sed 's/^/    /'
fi
echo "  reloads: $RELOADS ($([ "$RELOAD_EVERY" != 0 ] && echo "1 during warm-up, then every ${RELOAD_EVERY}s" || echo none)), config generation $(generation)"
wrk_line() { # name file
  local requests non2xx errors
  requests="$(awk '/requests in/ {print $1}' "$2")"
  non2xx="$(awk '/Non-2xx/ {print $NF}' "$2")"
  errors="$(awk '/Socket errors/ {sub(/^ *Socket errors: */, ""); print}' "$2")"
  echo "  wrk $1: $requests requests, $(awk '/^Requests\/sec:/ {print $2}' "$2") req/s, non-2xx ${non2xx:-0}${errors:+, socket errors: $errors}"
}
wrk_line allowed "$WORK/wrk-allowed.txt"
if [ -n "$DENIED_PID" ]; then
  wrk_line denied "$WORK/wrk-denied.txt"
  echo "  wrk denied, by status: $(awk '/^status / {printf "%s%s x%s", sep, $2, $3; sep = ", "}' "$WORK/wrk-denied.txt")"
fi
echo "  load average: at the start $LOAD_START; at the end $LOAD_END ($(nproc) CPUs)"
echo "  raw outputs: $WORK"
