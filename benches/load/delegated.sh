#!/usr/bin/env bash
# Delegated decisions under load (issue 22): what it costs to put permgate's decision behind the proxy a team
# already runs, against permgate inline and against each proxy with no authorization. Targets, all in front
# of the same fast upstream, with the same allowed requests and tokens as run.sh:
#   direct            wrk → upstream (the ceiling of the load side)
#   nginx             nginx proxy_pass, no authorization (run.sh's baseline)
#   permgate          permgate inline: authorize and forward in one process
#   nginx+auth        nginx with `permgate integrate nginx`'s server block: an auth_request subrequest to
#                     permgate's auth_request listener for every request, then proxy_pass
#   caddy             Caddy reverse_proxy, no authorization (Caddy's own baseline)
#   caddy+fwd         Caddy with `permgate integrate caddy`'s site block: forward_auth to permgate's
#                     forward_auth listener, then reverse_proxy
#   endpoint          wrk → permgate's auth_request listener alone (the decision, no forwarding)
# The proxy side (nginx, Caddy and permgate, whichever a target uses) runs on CPU 1 with one worker each; wrk
# and the upstream share CPU 0 (PIN=1, as run.sh). So a delegated setup pays for both its processes on the one
# CPU, as it would on a replica's budget. Every process started here is stopped on exit. Not for CI.
# COMPARE_INTEGRATE=<another permgate binary> adds nginx+auth-base and caddy+fwd-base: the same, with that
# binary's `integrate` snippets (an A/B of the snippets, interleaved in one run).
# See benches/load/README.md ("Delegated decisions").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-1}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-2}"
TOKENS="${TOKENS:-100000}"
PACE_MS="${PACE_MS:-10}"        # fixed-load runs (0: none): each connection waits ~PACE_MS before each request
TARGETS="${TARGETS:-direct nginx permgate nginx+auth caddy caddy+fwd endpoint}"
WORK="${WORK:-$(mktemp -d /tmp/permgate-delegated.XXXXXX)}"; mkdir -p "$WORK"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

UPSTREAM_PORT=9100; NGINX_PORT=8181; NGINX_AUTH_PORT=8183; CADDY_PORT=8184; CADDY_FWD_PORT=8185
NGINX_AUTH_BASE_PORT=8186; CADDY_FWD_BASE_PORT=8187
PERMGATE_PORT=8180; ADMIN_PORT=9181; AUTH_REQUEST_PORT=9191; FORWARD_AUTH_PORT=9192

# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
require_tools wrk:wrk nginx:nginx-light caddy:caddy
NGINX_BIN="$(command -v nginx)"

if [ "$(nproc)" -lt 2 ]; then log "needs 2 CPUs (the load side on CPU 0, the proxy side on CPU 1)"; exit 1; fi
LOADGEN_CPUS=0; PROXY_CPUS=1
on() { taskset -c "$1" "${@:2}"; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the load tools (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example fast_upstream --example load_gen_config)
fi
PERMGATE="$TARGET_DIR/release/permgate"
COMPARE_INTEGRATE="${COMPARE_INTEGRATE:-}"
if [ -n "$COMPARE_INTEGRATE" ]; then TARGETS="$TARGETS nginx+auth-base caddy+fwd-base"; fi
# The snippet `integrate` prints for a proxy, without its comment lines: binary proxy listen decision_port
snippet() {
  "$1" integrate "$2" --listen "127.0.0.1:$3" --decision "127.0.0.1:$4" \
    --upstream "http://127.0.0.1:$UPSTREAM_PORT" | grep -v '^#'
}

# --- permgate: run.sh's generated config, plus the two decision listeners the proxies delegate to -------------
"$TARGET_DIR/release/examples/load_gen_config" "$WORK/permgate" "$TOKENS" "127.0.0.1:$PERMGATE_PORT" \
  "127.0.0.1:$ADMIN_PORT" "http://127.0.0.1:$UPSTREAM_PORT"
cat >> "$WORK/permgate/gateway.yaml" <<EOF
trusted_proxies: [127.0.0.1/32]
decision:
  - { listen: 127.0.0.1:$AUTH_REQUEST_PORT, protocol: auth_request }
  - { listen: 127.0.0.1:$FORWARD_AUTH_PORT, protocol: forward_auth }
EOF
REQUESTS="$WORK/permgate/requests.txt"

# --- nginx: the plain proxy and the integrate snippet, verbatim, in one http { } ----------------------------
mkdir -p "$WORK/nginx"
NGINX_SNIPPET="$(snippet "$PERMGATE" nginx "$NGINX_AUTH_PORT" "$AUTH_REQUEST_PORT")"
if [ -n "$COMPARE_INTEGRATE" ]; then
  # The other binary's snippet, its upstream block names suffixed so that both fit in one http { }.
  NGINX_SNIPPET="$NGINX_SNIPPET
$(snippet "$COMPARE_INTEGRATE" nginx "$NGINX_AUTH_BASE_PORT" "$AUTH_REQUEST_PORT" \
    | sed -e 's/upstream permgate_\([a-z]*\) {/upstream permgate_\1_base {/' -e 's#://permgate_\([a-z]*\);#://permgate_\1_base;#')"
fi
{ nginx_conf_head "$WORK/nginx" 1; cat <<EOF
  upstream backend {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
$NGINX_SNIPPET
}
EOF
} > "$WORK/nginx/nginx.conf"

# --- Caddy: a plain reverse_proxy and the integrate snippet, verbatim ---------------------------------------
mkdir -p "$WORK/caddy"
CADDY_SNIPPET="$(snippet "$PERMGATE" caddy "$CADDY_FWD_PORT" "$FORWARD_AUTH_PORT")"
if [ -n "$COMPARE_INTEGRATE" ]; then
  CADDY_SNIPPET="$CADDY_SNIPPET
$(snippet "$COMPARE_INTEGRATE" caddy "$CADDY_FWD_BASE_PORT" "$FORWARD_AUTH_PORT")"
fi
cat > "$WORK/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	storage file_system $WORK/caddy/storage
}
http://:$CADDY_PORT {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
$CADDY_SNIPPET
EOF

# --- processes ---------------------------------------------------------------------------------------------
taskset -c "$LOADGEN_CPUS" "$TARGET_DIR/release/examples/fast_upstream" "127.0.0.1:$UPSTREAM_PORT" 1 2>"$WORK/upstream.log" &
PIDS+=("$!")
taskset -c "$PROXY_CPUS" "$NGINX_BIN" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr.log" &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config" GOMAXPROCS=1 \
  taskset -c "$PROXY_CPUS" caddy run --adapter caddyfile --config "$WORK/caddy/Caddyfile" 2>"$WORK/caddy/stderr.log" &
CADDY_PID=$!; PIDS+=("$CADDY_PID")
TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPUS" "$PERMGATE" serve --config "$WORK/permgate/gateway.yaml" \
  >"$WORK/permgate.log" 2>&1 &
PERMGATE_PID=$!; PIDS+=("$PERMGATE_PID")
PORTS=("$UPSTREAM_PORT" "$NGINX_PORT" "$NGINX_AUTH_PORT" "$CADDY_PORT" "$CADDY_FWD_PORT" "$PERMGATE_PORT"
  "$AUTH_REQUEST_PORT" "$FORWARD_AUTH_PORT")
if [ -n "$COMPARE_INTEGRATE" ]; then PORTS+=("$NGINX_AUTH_BASE_PORT" "$CADDY_FWD_BASE_PORT"); fi
for port in "${PORTS[@]}"; do
  wait_port "$port" 180
done
sleep 5   # permgate's start-up check and the freeing of its load are over before the first run

# target → URL, and the proxy-side processes whose CPU it uses
url_of() {
  case "$1" in
    direct) echo "http://127.0.0.1:$UPSTREAM_PORT" ;;
    nginx) echo "http://127.0.0.1:$NGINX_PORT" ;;
    permgate) echo "http://127.0.0.1:$PERMGATE_PORT" ;;
    nginx+auth) echo "http://127.0.0.1:$NGINX_AUTH_PORT" ;;
    caddy) echo "http://127.0.0.1:$CADDY_PORT" ;;
    caddy+fwd) echo "http://127.0.0.1:$CADDY_FWD_PORT" ;;
    endpoint) echo "http://127.0.0.1:$AUTH_REQUEST_PORT" ;;
    nginx+auth-base) echo "http://127.0.0.1:$NGINX_AUTH_BASE_PORT" ;;
    caddy+fwd-base) echo "http://127.0.0.1:$CADDY_FWD_BASE_PORT" ;;
    *) log "unknown target $1"; exit 1 ;;
  esac
}
pids_of() {
  case "$1" in
    direct) ;;
    nginx) echo "$NGINX_PID" ;;
    permgate | endpoint) echo "$PERMGATE_PID" ;;
    nginx+auth | nginx+auth-base) echo "$NGINX_PID $PERMGATE_PID" ;;
    caddy) echo "$CADDY_PID" ;;
    caddy+fwd | caddy+fwd-base) echo "$CADDY_PID $PERMGATE_PID" ;;
  esac
}


RESULTS="$WORK/results.tsv"
printf 'round\ttarget\treq_s\tp50_ms\tp90_ms\tp99_ms\tnon_2xx\tproxy_cpu_us_per_req\tsteal_pct\n' > "$RESULTS"

measure() { # round target; PACED=1: at the fixed load of PACE_MS
  local round="$1" target="$2" name="$2" url pids out before after requests cpu steal_before steal_after steal
  url="$(url_of "$target")"; pids="$(pids_of "$target")"
  if [ "${PACED:-0}" = 1 ]; then export PERMGATE_PACE_MS="$PACE_MS"; name="$name@paced"; else unset PERMGATE_PACE_MS; fi
  # The endpoint alone is asked as nginx asks it: GET / naming the request in X-Original-Method / -URI.
  if [ "$target" = endpoint ]; then export PERMGATE_AS_AUTH_REQUEST=1; else unset PERMGATE_AS_AUTH_REQUEST; fi
  on "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$ROOT/benches/load/requests.lua" "$url" -- "$REQUESTS" >/dev/null
  # shellcheck disable=SC2086
  before=$([ -n "$pids" ] && cpu_ticks $pids || echo 0)
  steal_before="$(steal_ticks)"
  out="$(on "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$ROOT/benches/load/requests.lua" "$url" -- "$REQUESTS")"
  # shellcheck disable=SC2086
  after=$([ -n "$pids" ] && cpu_ticks $pids || echo 0)
  steal_after="$(steal_ticks)"
  steal="$(steal_pct "$steal_before" "$steal_after")"
  echo "$out" > "$WORK/wrk-$round-$name.txt"
  local rps p50 p90 p99 non2xx
  read -r rps requests p50 p90 p99 non2xx <<< "$(wrk_figures "$out")"
  cpu=$([ -n "$pids" ] && cpu_us_per_request $((after - before)) "$requests" || echo "-")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$p50" "$p90" "$p99" "$non2xx" "$cpu" "$steal" >> "$RESULTS"
  log "  round $round  $(printf '%-18s' "$name") $(printf '%10s' "$rps") req/s  p50 ${p50} ms  p90 ${p90} ms  p99 ${p99} ms  non-2xx $non2xx  proxy side CPU ${cpu} us/req  steal ${steal}%"
}

log ""
log "machine: $(nproc) CPUs, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2}'), load:$(uptime | sed 's/.*load average//')"
log "$("$NGINX_BIN" -v 2>&1), caddy $(caddy version 2>/dev/null | awk '{print $1}'), $("$PERMGATE" --version)"
log "wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $TOKENS tokens; wrk + upstream on CPU $LOADGEN_CPUS, the proxy side on CPU $PROXY_CPUS (one worker each)"
for round in $(seq 1 "$ROUNDS"); do
  for target in $TARGETS; do measure "$round" "$target"; done
done
if [ "$PACE_MS" != 0 ]; then
  log "fixed load: every connection waits ${PACE_MS} ms on average before each request (about $((CONNS * 1000 / PACE_MS)) req/s offered)"
  for round in $(seq 1 "$ROUNDS"); do
    for target in $TARGETS; do PACED=1 measure "$round" "$target"; done
  done
fi
log "load after: $(uptime | sed 's/.*load average//')"

# permgate's own count of what it decided per listener: every delegated request was decided, none by default
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^permgate_decision_requests_total' > "$WORK/decision_requests.txt" || true

echo
echo "results (also in $RESULTS):"
column -t -s $'\t' "$RESULTS"
echo
echo "per round: req/s relative to nginx (no authorization); p99 added over direct at the fixed load (@paced):"
awk -F'\t' 'NR > 1 { rps[$1, $2] = $3; p99[$1, $2] = $6; cpu[$1, $2] = $8; rounds[$1] = 1; names[$2] = 1 }
  END {
    for (r in rounds) for (n in names) {
      paced = (n ~ /@paced$/) ? "@paced" : ""
      if (n ~ /^direct/) continue
      printf "  round %s  %-18s /nginx %.2f   /direct %.2f   p99 added vs direct %+.3f ms   proxy side CPU %s us/req\n",
        r, n, rps[r, n] / rps[r, "nginx" paced], rps[r, n] / rps[r, "direct" paced], p99[r, n] - p99[r, "direct" paced], cpu[r, n]
    }
  }' "$RESULTS" | sort
echo
echo "permgate_decision_requests_total after the runs:"
cat "$WORK/decision_requests.txt"
if awk -F'\t' 'NR > 1 && $9 > 2 { bad = 1 } END { exit !bad }' "$RESULTS"; then
  echo "WARNING: the host took more than 2% of this VM's CPU time (steal) during some runs: repeat them before quoting them"
fi
if awk -F'\t' 'NR > 1 && $7 != 0 { bad = 1 } END { exit !bad }' "$RESULTS"; then
  echo "WARNING: some responses were not 2xx (see $WORK/wrk-*.txt)"
fi
