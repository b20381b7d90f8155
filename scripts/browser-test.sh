#!/usr/bin/env bash
# The web console in a real browser: starts the Wiz simulator and
# `scanner-host serve --listen` on 127.0.0.1 (a fresh database, an admin
# token, a first scheduled scan a day away so only the console scans), runs
# tests/browser/console.test.mjs (Chromium through playwright-core), and
# stops both however it ends. Builds nothing: it uses target/debug/scanner-host
# and target/debug/wiz-sim, and the Wiz plugin component the tests built.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

host=$root/target/debug/scanner-host
sim=$root/target/debug/wiz-sim
for program in "$host" "$sim"; do
    [ -x "$program" ] || { echo "browser test: $program is missing; build it with: cargo build -p scanner-host -p wiz-sim" >&2; exit 1; }
done
# The component `cargo test` builds (test-components), else the demo's build.
plugin=
for candidate in target/test-components/wasm32-wasip2/release/wiz_plugin.wasm target/wasm32-wasip2/release/wiz_plugin.wasm; do
    if [ -f "$candidate" ]; then plugin=$root/$candidate; break; fi
done
[ -n "$plugin" ] || { echo "browser test: no Wiz plugin component; build it with: cargo build -p wiz-plugin --target wasm32-wasip2 --release" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "browser test: /usr/bin/chromium is missing (apt-get install -y chromium)" >&2; exit 1; }
[ -d tests/browser/node_modules/playwright-core ] || { echo "browser test: run npm ci in tests/browser first" >&2; exit 1; }

work=$(mktemp -d)
sim_pid=
serve_pid=
stop() {
    # SIGTERM: serve stops gracefully; then wait so no process outlives us.
    for pid in $serve_pid $sim_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop EXIT

# Waits until FILE has a line matching PATTERN while PID runs.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 what=$4
    for _ in $(seq 1 600); do
        grep -q -- "$pattern" "$file" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "browser test: $what exited before it was ready:" >&2
            cat "$file" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "browser test: $what did not get ready in 60 s:" >&2
    cat "$file" >&2
    exit 1
}

# A throwaway secret for a throwaway simulator. Enough findings for a few
# pages of 500 and a little latency, so the scan's live progress is seen.
secret="browser-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
"$sim" --port 0 --findings 5000 --seed 7 --client-secret "$secret" \
    --latency-ms 200 >"$work/sim.out" 2>&1 &
sim_pid=$!
wait_for_line "$work/sim.out" '^ *admin:' "$sim_pid" "wiz-sim"
field() { sed -n "s/^ *$1: *//p" "$work/sim.out" | head -n 1; }
api_endpoint=$(field "API endpoint")
auth_url=$(field "auth URL")
client_id=$(field "client id")

hostargs=(--db "$work/host.db" --plugins "$plugin" --cache-dir "$work/cache")
token=$("$host" "${hostargs[@]}" tokens create --name browser --admin)
# Port 0: the system picks a free port, serve prints the address it got.
"$host" "${hostargs[@]}" serve --listen 127.0.0.1:0 --first-delay-secs 86400 >"$work/serve.log" 2>&1 &
serve_pid=$!
wait_for_line "$work/serve.log" 'API listening on http://' "$serve_pid" "scanner-host serve"
url=$(sed -n 's/.*API listening on \(http:[^ ]*\).*/\1/p' "$work/serve.log" | head -n 1)
echo "console at $url (simulator at $api_endpoint)"

status=0
CONSOLE_URL=$url CONSOLE_TOKEN=$token \
    WIZ_API_ENDPOINT=$api_endpoint WIZ_AUTH_URL=$auth_url \
    WIZ_CLIENT_ID=$client_id WIZ_CLIENT_SECRET=$secret \
    CONSOLE_SCREENSHOT=$root/target/browser/console.png \
    node tests/browser/console.test.mjs || status=$?

# The token went in a header and, for event streams, in a URL: neither
# may reach the host's log.
if grep -qF -- "$token" "$work/serve.log"; then
    echo "browser test: the API token appears in serve's log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "--- scanner-host serve log" >&2
    cat "$work/serve.log" >&2
fi
exit "$status"
