# Shared by run.sh, soak.sh and delegated.sh (sourced, not run): every process they start is recorded in PIDS
# and stopped on exit; logging to stderr; waiting for a port; wrk (and nginx) from apt when missing; the
# figures they read (CPU ticks, host steal, wrk's output) and nginx's common settings.

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

log() { printf '%s\n' "$*" >&2; }

wait_port() { # port [seconds, default 60]
  local tries=$((${2:-60} * 10))
  for _ in $(seq 1 "$tries"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on port $1"; exit 1
}

require_tools() { # command:debian-package ...; installs the missing ones with apt-get (NO_APT=1: fail instead)
  local missing=() entry
  for entry in "$@"; do
    command -v "${entry%%:*}" >/dev/null || missing+=("${entry#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "${NO_APT:-0}" = 1 ]; then log "needed: ${missing[*]} (apt-get install -y ${missing[*]})"; exit 1; fi
  log "installing ${missing[*]} from apt"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# CPU time (clock ticks, all threads) used so far by these processes and their descendants (nginx: master +
# workers).
cpu_ticks() { # pid...
  local total=0 pid child
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do total=$((total + $(cpu_ticks "$child"))); done
  done
  echo "$total"
}

# "steal total" ticks from /proc/stat: the time this VM's CPUs were runnable but the host ran something else.
# Tail latency follows it: a run with more than a few % steal measured the host's neighbours, not the proxies.
steal_ticks() { awk '/^cpu / {print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# The steal between two steal_ticks readings, in % of the CPU time.
steal_pct() { echo "$1 $2" | awk '{d = $4 - $2; printf "%.1f", (d > 0 ? ($3 - $1) * 100 / d : 0)}'; }

# wrk's latency figures in ms.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }

# From wrk's output (--latency): "req/s requests p50_ms p90_ms p99_ms non_2xx", space-separated.
wrk_figures() { # output
  local rps requests p50 p90 p99 non2xx
  rps=$(echo "$1" | awk '/^Requests\/sec:/ {print $2}')
  requests=$(echo "$1" | awk '/requests in/ {print $1}')
  p50=$(echo "$1" | awk '$1=="50%" {print $2}' | to_ms)
  p90=$(echo "$1" | awk '$1=="90%" {print $2}' | to_ms)
  p99=$(echo "$1" | awk '$1=="99%" {print $2}' | to_ms)
  non2xx=$(echo "$1" | awk '/Non-2xx/ {print $NF}')
  echo "$rps $requests $p50 $p90 $p99 ${non2xx:-0}"
}

# CPU microseconds per request: ticks used, requests served.
cpu_us_per_request() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}'; }

# The head of the load tests' nginx.conf, through the common settings inside `http {`: workers, no daemon,
# files in the work folder, access log off, temp paths there, unbounded keep-alive requests.
nginx_conf_head() { # folder workers
  cat <<EOF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 1000000;
EOF
}
