#!/usr/bin/env bash
# End-to-end load test (SPEC §10): wrk against a fast upstream directly, through nginx (plain proxy_pass, no
# authorization) and through permgate (full authorization on every request, 100k tokens loaded), over plain
# HTTP and TLS. Prints requests/s, latency percentiles, proxy CPU per request and the ratios.
# Everything listens on 127.0.0.1, every run is bounded, and every process started here is stopped on exit.
# Not for CI (it installs wrk and nginx from apt). See benches/load/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONNS="${CONNS:-64}"            # wrk connections (same for every target)
THREADS="${THREADS:-1}"         # wrk threads
DURATION="${DURATION:-10s}"     # per measured run
WARMUP="${WARMUP:-2s}"          # per target, before its measured run (fills the upstream pools)
ROUNDS="${ROUNDS:-2}"           # every target is measured ROUNDS times, interleaved
TOKENS="${TOKENS:-100000}"      # tokens in the generated permgate config
PIN="${PIN:-auto}"              # 1: wrk + upstream on CPU 0, the proxy alone on CPU 1; 0: no pinning
TLS="${TLS:-1}"                 # 1: also measure nginx and permgate with inbound TLS
BARE="${BARE:-1}"               # 1: also measure bare_proxy (same hyper stack, no authorization): the stack's floor
PACE_MS="${PACE_MS:-10}"        # fixed-load runs: each connection waits ~PACE_MS before each request (0: none)
WORK="${WORK:-$(mktemp -d /tmp/permgate-load.XXXXXX)}"; mkdir -p "$WORK"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

UPSTREAM_PORT=9100; BARE_PORT=8182; NGINX_PORT=8181; NGINX_TLS_PORT=8443; PERMGATE_PORT=8180; PERMGATE_TLS_PORT=8444

# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"

# --- tools -------------------------------------------------------------------------------------------------
require_tools wrk:wrk nginx:nginx-light
NGINX_BIN="$(command -v nginx)"

CPUS="$(nproc)"
if [ "$PIN" = auto ]; then PIN=$([ "$CPUS" -ge 2 ] && echo 1 || echo 0); fi
if [ "$PIN" = 1 ]; then
  LOADGEN_CPUS=0; PROXY_CPUS=1; PROXY_WORKERS=1
else
  LOADGEN_CPUS="0-$((CPUS - 1))"; PROXY_CPUS="$LOADGEN_CPUS"; PROXY_WORKERS="$CPUS"
fi
on() { taskset -c "$1" "${@:2}"; }

# --- build -------------------------------------------------------------------------------------------------
if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the load tools (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example fast_upstream --example load_gen_config --example bare_proxy)
fi
PERMGATE_BINS=("permgate=$TARGET_DIR/release/permgate")
# COMPARE=/path/to/another/permgate: that binary too ("permgate-base"), interleaved with this one (A/B in one run).
if [ -n "${COMPARE:-}" ]; then PERMGATE_BINS+=("permgate-base=$COMPARE"); fi

# --- config, certificate -----------------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
"$TARGET_DIR/release/examples/load_gen_config" "$WORK/plain" "$TOKENS" "127.0.0.1:$PERMGATE_PORT" \
  127.0.0.1:9181 "http://127.0.0.1:$UPSTREAM_PORT"
mkdir -p "$WORK/tls"
cp "$WORK/plain/"*.yaml "$WORK/plain/"*.json "$WORK/tls/"
sed -e "s/127.0.0.1:$PERMGATE_PORT/127.0.0.1:$PERMGATE_TLS_PORT/" -e "s/127.0.0.1:9181/127.0.0.1:9182/" \
  "$WORK/plain/gateway.yaml" > "$WORK/tls/gateway.yaml"
printf 'tls:\n  cert_file: %s\n  key_file: %s\n' "$WORK/cert.pem" "$WORK/key.pem" >> "$WORK/tls/gateway.yaml"
# Every binary (COMPARE) keeps its own process for the whole run, on its own ports: the Nth (from 0) listens on
# the mode's port + 10 N and its admin port + 10 N (gateway-N.yaml beside gateway.yaml, same policy files), so no
# measurement follows a restart (a process's first seconds are slower) and idle ones cost nothing (the
# periodic config check compares file stamps).
for index in $(seq 0 $((${#PERMGATE_BINS[@]} - 1))); do
  for mode in plain tls; do
    port=$([ "$mode" = tls ] && echo "$PERMGATE_TLS_PORT" || echo "$PERMGATE_PORT")
    admin=$([ "$mode" = tls ] && echo 9182 || echo 9181)
    sed -e "s/127.0.0.1:$port/127.0.0.1:$((port + 10 * index))/" -e "s/127.0.0.1:$admin/127.0.0.1:$((admin + 10 * index))/" \
      "$WORK/$mode/gateway.yaml" > "$WORK/$mode/gateway-$index.yaml"
  done
done
REQUESTS="$WORK/plain/requests.txt"

mkdir -p "$WORK/nginx"
{ nginx_conf_head "$WORK/nginx" $PROXY_WORKERS; cat <<EOF
  upstream backend {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
} > "$WORK/nginx/nginx.conf"

# --- processes ---------------------------------------------------------------------------------------------

# Started with taskset directly (not through a shell function) so that $! is the server's own pid
# (taskset execs it): the cleanup then stops the server itself.
taskset -c "$LOADGEN_CPUS" "$TARGET_DIR/release/examples/fast_upstream" "127.0.0.1:$UPSTREAM_PORT" 1 2>"$WORK/upstream.log" &
UPSTREAM_PID=$!; PIDS+=("$UPSTREAM_PID")
taskset -c "$PROXY_CPUS" "$NGINX_BIN" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
declare -A PERMGATE_PID   # "<binary name>-<plain|tls>" -> pid; started on demand by start_permgate
wait_port "$UPSTREAM_PORT"; wait_port "$NGINX_PORT"
if [ "$BARE" = 1 ]; then
  # One upstream connection per inbound connection (as permgate's HTTP/1 path), one worker like the others.
  TOKIO_WORKER_THREADS="$PROXY_WORKERS" taskset -c "$PROXY_CPUS" "$TARGET_DIR/release/examples/bare_proxy" \
    "127.0.0.1:$BARE_PORT" "127.0.0.1:$UPSTREAM_PORT" conn multi 2>"$WORK/bare.log" &
  BARE_PID=$!; PIDS+=("$BARE_PID")
  wait_port "$BARE_PORT"
fi

# --- measuring ---------------------------------------------------------------------------------------------

RESULTS="$WORK/results.tsv"
printf 'round\ttarget\treq_s\tp50_ms\tp90_ms\tp99_ms\tnon_2xx\tproxy_cpu_us_per_req\tsteal_pct\n' > "$RESULTS"


measure() { # round name url [pid of the proxy]; PACED=1: at the fixed load of PACE_MS
  local round="$1" name="$2" url="$3" pid="${4:-}" out before after requests cpu
  if [ "${PACED:-0}" = 1 ]; then export PERMGATE_PACE_MS="$PACE_MS"; name="$name@paced"; else unset PERMGATE_PACE_MS; fi
  on "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$ROOT/benches/load/requests.lua" "$url" -- "$REQUESTS" >/dev/null
  before=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
  local steal_before steal_after steal
  steal_before="$(steal_ticks)"
  out="$(on "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/benches/load/requests.lua" "$url" -- "$REQUESTS")"
  after=$([ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
  steal_after="$(steal_ticks)"
  steal="$(steal_pct "$steal_before" "$steal_after")"
  echo "$out" > "$WORK/wrk-$round-$name.txt"
  local rps p50 p90 p99 non2xx
  read -r rps requests p50 p90 p99 non2xx <<< "$(wrk_figures "$out")"
  cpu=$([ -n "$pid" ] && cpu_us_per_request $((after - before)) "$requests" || echo "-")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$p50" "$p90" "$p99" "$non2xx" "$cpu" "$steal" >> "$RESULTS"
  log "  round $round  $(printf '%-24s' "$name") $(printf '%10s' "$rps") req/s  p50 ${p50} ms  p90 ${p90} ms  p99 ${p99} ms  non-2xx $non2xx  proxy CPU ${cpu} us/req  steal ${steal}%"
}

index_of() { # name: the binary's position in PERMGATE_BINS
  local index=0 entry
  for entry in "${PERMGATE_BINS[@]}"; do [ "${entry%%=*}" = "$1" ] && { echo "$index"; return; }; index=$((index + 1)); done
}
port_of() { # name mode: the port this binary listens on in this mode
  local base; base=$([ "$2" = tls ] && echo "$PERMGATE_TLS_PORT" || echo "$PERMGATE_PORT")
  echo $((base + 10 * $(index_of "$1")))
}
start_permgate() { # name mode: start this binary in this mode unless it runs already (it then runs to the end)
  local name="$1" mode="$2" index bin
  [ -n "${PERMGATE_PID[$name-$mode]:-}" ] && return 0
  index="$(index_of "$name")"; bin="${PERMGATE_BINS[$index]#*=}"
  TOKIO_WORKER_THREADS="$PROXY_WORKERS" taskset -c "$PROXY_CPUS" "$bin" serve --config "$WORK/$mode/gateway-$index.yaml" \
    >"$WORK/$name-$mode.log" 2>&1 &
  PERMGATE_PID["$name-$mode"]=$!; PIDS+=("$!")
  wait_port "$(port_of "$name" "$mode")"
}

# Every permgate process is started before the first measurement and left to settle (its start-up check and
# the freeing of its load are over before any run).
for entry in "${PERMGATE_BINS[@]}"; do
  start_permgate "${entry%%=*}" plain
  if [ "$TLS" = 1 ]; then start_permgate "${entry%%=*}" tls; fi
done
sleep 5

log ""
log "machine: $(nproc) CPUs, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2}'), load:$(uptime | sed 's/.*load average//')"
log "wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $TOKENS tokens, pinning: $([ "$PIN" = 1 ] && echo "wrk + upstream on CPU $LOADGEN_CPUS, proxy on CPU $PROXY_CPUS ($PROXY_WORKERS worker)" || echo none)"
for round in $(seq 1 "$ROUNDS"); do
  measure "$round" direct "http://127.0.0.1:$UPSTREAM_PORT"
  measure "$round" nginx "http://127.0.0.1:$NGINX_PORT" "$NGINX_PID"
  if [ "$BARE" = 1 ]; then measure "$round" hyper-bare "http://127.0.0.1:$BARE_PORT" "$BARE_PID"; fi
  for entry in "${PERMGATE_BINS[@]}"; do
    name="${entry%%=*}"
    start_permgate "$name" plain
    measure "$round" "$name" "http://127.0.0.1:$(port_of "$name" plain)" "${PERMGATE_PID[$name-plain]}"
  done
  if [ "$TLS" = 1 ]; then
    measure "$round" nginx-tls "https://127.0.0.1:$NGINX_TLS_PORT" "$NGINX_PID"
    for entry in "${PERMGATE_BINS[@]}"; do
      name="${entry%%=*}"
      start_permgate "$name" tls
      measure "$round" "$name-tls" "https://127.0.0.1:$(port_of "$name" tls)" "${PERMGATE_PID[$name-tls]}"
    done
  fi
done
if [ "$PACE_MS" != 0 ]; then
  log "fixed load: every connection waits ${PACE_MS} ms on average before each request (about $((CONNS * 1000 / PACE_MS)) req/s offered)"
  for round in $(seq 1 "$ROUNDS"); do
    PACED=1 measure "$round" direct "http://127.0.0.1:$UPSTREAM_PORT"
    PACED=1 measure "$round" nginx "http://127.0.0.1:$NGINX_PORT" "$NGINX_PID"
    for entry in "${PERMGATE_BINS[@]}"; do
      name="${entry%%=*}"
      start_permgate "$name" plain
      PACED=1 measure "$round" "$name" "http://127.0.0.1:$(port_of "$name" plain)" "${PERMGATE_PID[$name-plain]}"
    done
    if [ "$TLS" = 1 ]; then
      PACED=1 measure "$round" nginx-tls "https://127.0.0.1:$NGINX_TLS_PORT" "$NGINX_PID"
      for entry in "${PERMGATE_BINS[@]}"; do
        name="${entry%%=*}"
        start_permgate "$name" tls
        PACED=1 measure "$round" "$name-tls" "https://127.0.0.1:$(port_of "$name" tls)" "${PERMGATE_PID[$name-tls]}"
      done
    fi
  done
fi
log "load after: $(uptime | sed 's/.*load average//')"

# --- summary -----------------------------------------------------------------------------------------------
echo
echo "results (also in $RESULTS):"
column -t -s $'\t' "$RESULTS"
echo
echo "ratios per round (req/s ratio; p99 added = p99(proxy) - p99(direct); @paced: at the same fixed offered load,"
echo "where the req/s ratio is ~1 by construction and the p99 added is the latency the proxy adds):"
awk -F'\t' 'NR > 1 { rps[$1, $2] = $3; p99[$1, $2] = $6; rounds[$1] = 1; names[$2] = 1 }
  END {
    for (r in rounds) {
      for (n in names) {
        if (n ~ /^permgate/) {
          paced = (n ~ /@paced$/) ? "@paced" : ""
          base = ((n ~ /-tls(@paced)?$/) ? "nginx-tls" : "nginx") paced
          direct = "direct" paced
          printf "  round %s  %-24s /%-15s %.2f   /direct %.2f   p99 added vs direct %+.3f ms   vs %s %+.3f ms",
            r, n, base, rps[r, n] / rps[r, base], rps[r, n] / rps[r, direct],
            p99[r, n] - p99[r, direct], base, p99[r, n] - p99[r, base]
          if (rps[r, "hyper-bare"] && paced == "" && n !~ /-tls$/) printf "   /hyper-bare %.2f", rps[r, n] / rps[r, "hyper-bare"]
          printf "\n"
        }
      }
    }
  }' "$RESULTS" | sort
if awk -F'\t' 'NR > 1 && $9 > 2 { bad = 1 } END { exit !bad }' "$RESULTS"; then
  echo "WARNING: the host took more than 2% of this VM's CPU time (steal) during some runs; their latencies and"
  echo "req/s measure the host's neighbours (steal_pct in $RESULTS): repeat them before quoting them"
fi
if awk -F'\t' 'NR > 1 && $7 != 0 { bad = 1 } END { exit !bad }' "$RESULTS"; then
  echo "WARNING: some responses were not 2xx (see $WORK/wrk-*.txt)"
fi
