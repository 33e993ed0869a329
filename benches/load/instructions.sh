#!/usr/bin/env bash
# Instructions per request (user space), counted by valgrind's callgrind: permgate (full authorization) and
# hyper-bare (the same hyper stack, no authorization), each under the same wrk load. Unlike requests/s on a
# shared VM, the count is repeatable to about 1%, so it can tell two builds of the request path apart
# (COMPARE=/path/to/another/permgate). Kernel time (syscalls) is not counted: both proxies make the same
# calls per request (2 writev, 2 recvfrom, ~0.3 epoll_wait; `strace -c`). Not for CI. See README.md here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONNS="${CONNS:-8}"             # wrk connections
DURATION="${DURATION:-15s}"     # counted run (a few thousand requests/s under callgrind)
WARMUP="${WARMUP:-5s}"          # before counting (fills the pools, warms the caches)
TOKENS="${TOKENS:-10000}"       # tokens in the generated permgate config (start-up under valgrind is slow)
TOP="${TOP:-25}"                # functions listed per target, by instructions per request (0: none)
WORK="${WORK:-$(mktemp -d /tmp/permgate-instructions.XXXXXX)}"; mkdir -p "$WORK"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
UPSTREAM_PORT=9200; PERMGATE_PORT=8280; BARE_PORT=8282

# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
require_tools wrk:wrk valgrind:valgrind callgrind_control:valgrind

if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the load tools (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example fast_upstream --example load_gen_config --example bare_proxy)
fi
BINS=("permgate=$TARGET_DIR/release/permgate")
if [ -n "${COMPARE:-}" ]; then BINS+=("permgate-base=$COMPARE"); fi

"$TARGET_DIR/release/examples/load_gen_config" "$WORK/config" "$TOKENS" "127.0.0.1:$PERMGATE_PORT" \
  127.0.0.1:9281 "http://127.0.0.1:$UPSTREAM_PORT" >"$WORK/gen.log"
"$TARGET_DIR/release/examples/fast_upstream" "127.0.0.1:$UPSTREAM_PORT" 1 2>"$WORK/upstream.log" &
PIDS+=("$!")
wait_port "$UPSTREAM_PORT"

# Each target runs under callgrind with instrumentation off (start-up at near full speed), one worker thread.
declare -A PORT PID
start() { # name port command...
  local name="$1" port="$2"; shift 2
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/callgrind.$name" "$@" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!; PORT[$name]=$port; PIDS+=("$!")
}
index=0
for entry in "${BINS[@]}"; do
  name="${entry%%=*}"; port=$((PERMGATE_PORT + 10 * index))
  sed -e "s/127.0.0.1:$PERMGATE_PORT/127.0.0.1:$port/" -e "s/127.0.0.1:9281/127.0.0.1:$((9281 + index))/" \
    "$WORK/config/gateway.yaml" >"$WORK/config/gateway-$index.yaml"
  # Only requests are counted: no periodic config check (reading and hashing the files) during the runs.
  echo "reload_interval_ms: 3600000" >>"$WORK/config/gateway-$index.yaml"
  start "$name" "$port" "${entry#*=}" serve --config "$WORK/config/gateway-$index.yaml"
  index=$((index + 1))
done
start hyper-bare "$BARE_PORT" "$TARGET_DIR/release/examples/bare_proxy" "127.0.0.1:$BARE_PORT" \
  "127.0.0.1:$UPSTREAM_PORT" conn multi
for name in "${!PORT[@]}"; do wait_port "${PORT[$name]}" 300; done

printf '%-14s %10s %14s %12s\n' target requests instructions per_request
for name in $(printf '%s\n' "${!PORT[@]}" | sort); do
  url="http://127.0.0.1:${PORT[$name]}"
  callgrind_control --instr=on "${PID[$name]}" >/dev/null 2>&1
  wrk -t1 -c"$CONNS" -d"$WARMUP" -s "$ROOT/benches/load/requests.lua" "$url" -- "$WORK/config/requests.txt" >/dev/null
  callgrind_control --zero "${PID[$name]}" >/dev/null 2>&1
  wrk -t1 -c"$CONNS" -d"$DURATION" -s "$ROOT/benches/load/requests.lua" "$url" -- "$WORK/config/requests.txt" \
    >"$WORK/wrk.$name.txt"
  callgrind_control --dump "${PID[$name]}" >/dev/null 2>&1
  callgrind_control --instr=off "${PID[$name]}" >/dev/null 2>&1
  requests="$(awk '/requests in/ {print $1}' "$WORK/wrk.$name.txt")"
  if grep -q 'Non-2xx' "$WORK/wrk.$name.txt"; then log "$name: non-2xx answers (see $WORK/wrk.$name.txt)"; exit 1; fi
  dump="$(ls -t "$WORK/callgrind.$name".* | head -1)"
  total="$(awk '/^summary:/ {print $2}' "$dump")"
  printf '%-14s %10s %14s %12s\n' "$name" "$requests" "$total" "$((total / requests))"
  echo "$name $requests $total $dump" >>"$WORK/results.txt"
done

# Ratios against hyper-bare (and against the COMPARE build), from the table above.
awk '{ per[$1] = $3 / $2 } END {
  if (per["hyper-bare"] > 0) for (name in per) if (name != "hyper-bare")
    printf "%s / hyper-bare: %.2f\n", name, per[name] / per["hyper-bare"]
  if (per["permgate-base"] > 0)
    printf "permgate / permgate-base: %.4f (%+.0f instructions per request)\n",
      per["permgate"] / per["permgate-base"], per["permgate"] - per["permgate-base"]
}' "$WORK/results.txt"

if [ "$TOP" != 0 ]; then
  while read -r name requests _ dump; do
    log ""
    log "$name: the $TOP functions with the most instructions of their own, per request"
    callgrind_annotate --inclusive=no --threshold=100 "$dump" 2>/dev/null \
      | awk -v requests="$requests" -v top="$TOP" '
          /^ *[0-9,]+ \(/ && shown < top {
            count = $1; gsub(",", "", count); $1 = ""; sub(/^ +\( *[0-9.]+%\) +/, "")
            sub(/ \[.*$/, ""); sub(/^.*\/(src|library)\//, "")
            printf "%8.0f  %s\n", count / requests, $0; shown++
          }' >&2
  done <"$WORK/results.txt"
fi
log ""
log "callgrind outputs in $WORK (callgrind_annotate --inclusive=yes FILE for the call tree)"
