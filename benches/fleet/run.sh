#!/usr/bin/env bash
# Many replicas, measured (BENCHMARKS.md "Many replicas"): three permgate replicas, each in its own network
# namespace (a veth pair to this one; 198.18.0.0/15, the range RFC 2544 sets aside for tests), behind HAProxy,
# serving the deploy example's config (deploy/configmap.yaml + deploy/secret.yaml, decision log off) delivered
# to each replica's own folder by the ConfigMap `..data` symlink swap. Measures, under wrk load:
#
#   1. throughput: wrk through HAProxy to three replicas, to one replica, and straight to one replica;
#   2. convergence: ROUNDS config changes (a token disabled / enabled in turn), each swapped into the three
#      folders one after the other; the time from the first swap until every replica's /status shows the new
#      content_hash (polled every 10 ms);
#   3. a replica killed (SIGKILL) during a wrk run: the requests wrk saw fail (non-2xx and socket errors).
#
# Needs root (ip netns), and wrk, haproxy, curl, jq (installed from apt when missing; NO_APT=1 fails instead).
# Not for CI (tests/fleet.rs is the CI test of the same properties); by hand:
#   sudo benches/fleet/run.sh                    # DURATION=15s ROUNDS=10 CONNS=64 THREADS=2
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-15s}"
ROUNDS="${ROUNDS:-10}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-1}"         # TOKIO_WORKER_THREADS per replica
WORK="$(mktemp -d /tmp/permgate-fleet.XXXXXX)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
N=3
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
require_tools wrk:wrk haproxy:haproxy curl:curl jq:jq ip:iproute2
[ "$(id -u)" = 0 ] || { log "run as root (ip netns)"; exit 1; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the upstream (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example fast_upstream)
fi
PERMGATE="$TARGET_DIR/release/permgate"

# --- hosts ---
ID=$$
SUB=$(( (ID % 80) * N ))
hosts_down() {
  for i in $(seq 0 $((N - 1))); do ip netns del "pgbench-$ID-$i" 2>/dev/null || true; done
}
trap 'cleanup; hosts_down; rm -rf "$WORK"' EXIT INT TERM
outer() { echo "198.18.$((SUB + $1)).1"; }
inner() { echo "198.18.$((SUB + $1)).2"; }
for i in $(seq 0 $((N - 1))); do
  ns="pgbench-$ID-$i"
  ip netns add "$ns"
  ip link add "pgb${ID}h$i" type veth peer name "pgb${ID}p$i"
  ip link set "pgb${ID}p$i" netns "$ns"
  ip addr add "$(outer "$i")/30" dev "pgb${ID}h$i"
  ip link set "pgb${ID}h$i" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(inner "$i")/30" dev "pgb${ID}p$i"
  ip -n "$ns" link set "pgb${ID}p$i" up
  ip -n "$ns" route add default via "$(outer "$i")"
done
UPSTREAM="$(outer 0):9200"
LB="$(outer 0):8300"

# --- the config, as ConfigMap volumes ---
python3 - "$ROOT/deploy" "$WORK/files" "$UPSTREAM" <<'PY'
import json, pathlib, re, sys
deploy, out, upstream = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
out.mkdir(parents=True)
def blocks(path, field):
    # The data/stringData blocks of a one-object manifest: `  name: |` then lines indented 4 more.
    text, files, name = path.read_text(), {}, None
    inside = False
    for line in text.splitlines():
        if line.startswith(field + ":"):
            inside = True; continue
        if inside and re.match(r"^  [\w.-]+: \|$", line):
            name = line.strip()[:-3]; files[name] = []; continue
        if inside and re.match(r"^  [\w.-]+: ", line):
            key, value = line.strip().split(": ", 1); files[key] = [value]; name = None; continue
        if inside and name and (line.startswith("    ") or line == ""):
            files[name].append(line[4:]); continue
        if inside and line and not line.startswith(" "):
            inside = False
    return {k: "\n".join(v).rstrip("\n") + "\n" for k, v in files.items()}
files = blocks(deploy / "configmap.yaml", "data") | blocks(deploy / "secret.yaml", "stringData")
files["gateway.yaml"] = files["gateway.yaml"].replace("http://api-backend:8080", "http://" + upstream) \
    .replace("sink: stdout", "sink: off")
for name, text in files.items():
    (out / name).write_text(text)
PY
swap() { # replica-folder files-folder
  local dir="$1" version="..v$(date +%s%N)"
  cp -r "$2" "$dir/$version"
  ln -s "$version" "$dir/..data_tmp"
  mv -T "$dir/..data_tmp" "$dir/..data"
}
for i in $(seq 0 $((N - 1))); do
  dir="$WORK/replica$i"; mkdir -p "$dir"
  swap "$dir" "$WORK/files"
  for f in "$WORK/files"/*; do ln -s "..data/$(basename "$f")" "$dir/$(basename "$f")"; done
done

"$TARGET_DIR/release/examples/fast_upstream" "$UPSTREAM" 1 2>"$WORK/upstream.log" & PIDS+=("$!")
declare -a REPLICA_PID
# Each replica sees its own folder at the same path (a bind mount in a mount namespace of its own), as every
# pod sees its ConfigMap at /etc/permgate: content_hash covers the files' paths too.
mkdir -p "$WORK/etc-permgate"
start_replica() {
  TOKIO_WORKER_THREADS="$WORKERS" ip netns exec "pgbench-$ID-$1" unshare --mount --propagation private \
    sh -c 'mount --bind "$0" "$1" && exec "$2" serve --config "$1/gateway.yaml"' \
    "$WORK/replica$1" "$WORK/etc-permgate" "$PERMGATE" >"$WORK/replica$1.log" 2>&1 &
  REPLICA_PID[$1]=$!; PIDS+=("$!")
}
for i in $(seq 0 $((N - 1))); do start_replica "$i"; done
status() { curl -s --max-time 2 "http://$(inner "$1"):9090/status"; }
for i in $(seq 0 $((N - 1))); do
  for _ in $(seq 1 300); do status "$i" >/dev/null && break; sleep 0.1; done
done

haproxy_start() { # servers...
  {
    printf 'global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n'
    printf '  retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout\n'
    printf 'frontend proxy\n  bind %s\n  default_backend replicas\n' "$LB"
    printf 'backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n'
    printf '  default-server check port 9090 inter 100ms fall 2 rise 2\n'
    for i in "$@"; do printf '  server replica%s %s:8080\n' "$i" "$(inner "$i")"; done
  } >"$WORK/haproxy.cfg"
  haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
  HAPROXY=$!; PIDS+=("$HAPROXY")
  sleep 1
  kill -0 "$HAPROXY" 2>/dev/null || { cat "$WORK/haproxy.log" >&2; exit 1; }
}
haproxy_stop() { kill "$HAPROXY"; wait "$HAPROXY" 2>/dev/null || true; }

TARGET="/client/v4/zones/b1fbb152bbde3bd28919a7f4bdca841f/dns_records"
HEADER="Authorization: Bearer pgt_example_dns_read"
wrk_run() { # url -> "req/s non2xx socket_errors p99"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "$HEADER" "$1$TARGET" >"$WORK/wrk.out" 2>&1
  local rps non2xx errors p99
  rps=$(awk '/Requests\/sec/{print $2}' "$WORK/wrk.out")
  non2xx=$(awk '/Non-2xx/{print $5}' "$WORK/wrk.out"); non2xx=${non2xx:-0}
  errors=$(awk -F'[ ,]+' '/Socket errors/{print $4+$6+$8+$10}' "$WORK/wrk.out"); errors=${errors:-0}
  p99=$(awk '$1=="99%"{print $2}' "$WORK/wrk.out")
  requests=$(awk '/requests in/{print $1}' "$WORK/wrk.out")
  echo "$rps $non2xx $errors $p99 $requests"
}

log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %10s %8s %8s %8s\n' "throughput ($DURATION, wrk -t$THREADS -c$CONNS)" req/s non2xx errors p99
haproxy_start 0 1 2
read -r rps non errs p99 _ <<<"$(wrk_run "http://$LB")"
printf '%-40s %10s %8s %8s %8s\n' "HAProxy -> 3 replicas" "$rps" "$non" "$errs" "$p99"
haproxy_stop
haproxy_start 0
read -r rps non errs p99 _ <<<"$(wrk_run "http://$LB")"
printf '%-40s %10s %8s %8s %8s\n' "HAProxy -> 1 replica" "$rps" "$non" "$errs" "$p99"
haproxy_stop
read -r rps non errs p99 _ <<<"$(wrk_run "http://$(inner 0):8080")"
printf '%-40s %10s %8s %8s %8s\n' "1 replica, no load balancer" "$rps" "$non" "$errs" "$p99"

# --- convergence under load ---
haproxy_start 0 1 2
wrk -t1 -c16 -d3600s -H "$HEADER" "http://$LB$TARGET" >/dev/null 2>&1 & WRK=$!; PIDS+=("$WRK")
sleep 1
HASH0="$(status 0 | jq -r .content_hash)"
times=()
for round in $(seq 1 "$ROUNDS"); do
  cp -r "$WORK/files" "$WORK/next"
  status_value=$([ $((round % 2)) = 1 ] && echo disabled || echo active)
  python3 - "$WORK/next/tokens.yaml" "$status_value" <<'PY'
import sys, re
path, value = sys.argv[1], sys.argv[2]
text = open(path).read()
# The second token (the CI token): its status line.
parts = re.split(r"(?m)^  - id: ", text)
parts[2] = re.sub(r"status: \w+", "status: " + value, parts[2], count=1)
open(path, "w").write("  - id: ".join(parts))
PY
  start=$(date +%s%N)
  for i in $(seq 0 $((N - 1))); do swap "$WORK/replica$i" "$WORK/next"; done
  for i in $(seq 0 $((N - 1))); do
    until h="$(status "$i" | jq -r .content_hash 2>/dev/null)" && [ -n "$h" ] && [ "$h" != "$HASH0" ]; do sleep 0.01; done
    hashes[$i]="$h"
  done
  end=$(date +%s%N)
  [ "${hashes[0]}" = "${hashes[1]}" ] && [ "${hashes[1]}" = "${hashes[2]}" ] || { log "replicas disagree"; exit 1; }
  HASH0="${hashes[0]}"
  rm -rf "$WORK/next"
  times+=("$(( (end - start) / 1000000 ))")
  sleep 1
done
kill "$WRK"; wait "$WRK" 2>/dev/null || true
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "convergence over $ROUNDS changes (ms, first swap to every /status on the new content_hash): $(echo "$sorted" | tr '\n' ' ')"
echo "  median $(echo "$sorted" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}') ms, max $(echo "$sorted" | tail -1) ms"

# --- a replica killed under load ---
( sleep 5; kill -9 "${REPLICA_PID[1]}" ) &
read -r rps non errs p99 requests <<<"$(wrk_run "http://$LB")"
echo "replica 1 killed (SIGKILL) 5 s into a $DURATION run through HAProxy: $requests requests, $non non-2xx, $errs socket errors ($rps req/s, p99 $p99)"
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
