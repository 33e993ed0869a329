#!/usr/bin/env bash
# Reload latency: how long a live `permgate serve` (release build) takes to serve an edit of one token file
# (compiled by reusing the unchanged token files' tokens) and, as the baseline measured in the same run, an
# edit of one account file (an entity file: compiled in full).
#
# For TOKENS tokens (default 100000; 2,000 per JSON file, 10k accounts in files of 1,000, 20k users), ROUNDS
# rounds (default 10) of rewriting one token file (one token's name changed, written to a temporary file and
# renamed over it, as tools and editors do), then ROUNDS of rewriting one account file; after each, poll
# /status every 2 ms until the generation moves, then leave the files alone for 3.5 s. Prints per edit kind the reload's own duration (`last_reload.duration_ms`: read,
# compile, verify, store) and the time from the rename to the new generation being served (which adds the
# watcher's 200 ms of quiet), as min / median / max, and whether each reload reused.
#
#   bash benches/load/reload.sh                    # 100k tokens
#   TOKENS=1000000 ROUNDS=5 bash benches/load/reload.sh
#
# Everything listens on 127.0.0.1; every process started here is stopped on exit. Not for CI (release build,
# minutes at 1M tokens). python3 is used to edit the JSON and read /status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOKENS="${TOKENS:-100000}"
ROUNDS="${ROUNDS:-10}"
WORK="${WORK:-$(mktemp -d /tmp/permgate-reload.XXXXXX)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PERMGATE_BIN="${PERMGATE_BIN:-$TARGET_DIR/release/permgate}"
PORT="${PORT:-8380}"; ADMIN_PORT="${ADMIN_PORT:-9381}"

# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"

if [ "${NO_BUILD:-0}" != 1 ]; then
  log "building permgate and the config generator (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin permgate --example load_gen_config)
fi
log "generating $TOKENS tokens in $WORK"
"$TARGET_DIR/release/examples/load_gen_config" "$WORK" "$TOKENS" "127.0.0.1:$PORT" "127.0.0.1:$ADMIN_PORT" \
  http://127.0.0.1:9 >/dev/null
du -sh "$WORK" >&2

"$PERMGATE_BIN" serve --config "$WORK/gateway.yaml" >"$WORK/serve.log" 2>&1 &
PIDS+=("$!")
wait_port "$ADMIN_PORT" 600

TOKEN_FILE="$WORK/tokens-0007.json"
ACCOUNT_FILE="$WORK/accounts-0003.json"
[ -f "$TOKEN_FILE" ] || TOKEN_FILE="$(ls "$WORK"/tokens-*.json | head -1)"

python3 - "$WORK" "$ADMIN_PORT" "$ROUNDS" "$TOKEN_FILE" "$ACCOUNT_FILE" <<'PY'
import json, os, re, statistics, sys, time, urllib.request

work, admin, rounds, token_file, account_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def status():
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=30) as response:
        return json.load(response)

def rewrite(path, edit):
    with open(path) as f:
        document = json.load(f)
    edit(document)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(document, f, separators=(",", ":"))
    os.rename(tmp, path)

def one(path, edit):
    before = status()["generation"]
    rewrite(path, edit)
    start = time.monotonic()
    while True:
        now = status()
        if now["generation"] > before:
            served = (time.monotonic() - start) * 1000
            # The applied reload's own line in the log (a quick `unchanged` one may follow it on /status).
            generation = now["generation"]
            applied = None
            while applied is None:
                with open(os.path.join(work, "serve.log")) as log:
                    for line in log:
                        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
                        if "config applied" in line and f"generation={generation} " in line:
                            applied = line
                if applied is None:
                    time.sleep(0.01)
            duration = float(re.search(r"duration_ms=(\d+)", applied).group(1))
            reused = "reused_unchanged_token_files=true" in applied
            # Leave the files alone a while: the next edit's reload then finds the others' stamps settled
            # (files changed in the last 2 s are re-read, whatever they are).
            time.sleep(3.5)
            return duration, served, reused
        if now.get("last_error"):
            sys.exit(f"reload rejected: {now['last_error']}")
        time.sleep(0.002)

# The files were just written: wait until the start's full read is past their racy window.
time.sleep(3.5)
status()
results = {"token file": [], "account file": []}
for round in range(rounds):
    def token_edit(document, round=round):
        document["tokens"][0]["name"] = f"renamed {round}"
    results["token file"].append(one(token_file, token_edit))
for round in range(rounds):
    def account_edit(document, round=round):
        document["accounts"][0]["name"] = f"renamed {round}"
    results["account file"].append(one(account_file, account_edit))

tokens = len(status().get("counts", {})) and status()["counts"]["tokens"]
print(f"reload latency, {tokens} tokens, {rounds} rounds (ms: min / median / max)")
for kind, rows in results.items():
    reload = [row[0] for row in rows]
    served = [row[1] for row in rows]
    reused = sum(1 for row in rows if row[2])
    print(f"  {kind:13} reload {min(reload):7.1f} / {statistics.median(reload):7.1f} / {max(reload):7.1f}"
          f"   rename → served {min(served):7.1f} / {statistics.median(served):7.1f} / {max(served):7.1f}"
          f"   reused {reused}/{len(rows)}")
PY
