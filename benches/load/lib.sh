# Shared by run.sh and soak.sh (sourced, not run): every process they start is recorded in PIDS and stopped
# on exit; logging to stderr; waiting for a port; wrk (and nginx) from apt when missing.

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
