#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the wasm target,
# checks formatting and lints, runs every test (which builds the plugin
# components and the binaries the end-to-end tests run), then the web
# console in a real browser (scripts/browser-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== layout: crates link only what their concern needs"
# crate, then what must not be among its (normal and build) dependencies.
# scanner-store-pg implements scanner-store's `Store` trait with its types,
# and that crate holds the SQLite backend too: rusqlite comes with it until
# the trait and its types have a crate of their own.
while read -r crate forbidden; do
    if found=$(cargo tree -p "$crate" -e normal,build --prefix none | grep -E "^($forbidden) v" | sort -u) && [ -n "$found" ]; then
        echo "$crate must not depend on: $found" >&2
        exit 1
    fi
done <<'CHECKS'
scanner-contract wasmtime|rusqlite|tokio
scanner-store wasmtime|wasmtime-wasi|hyper
scanner-engine rusqlite
scanner-host wiz-sim|dependabot-sim
scanner-formats wasmtime|tokio
scanner-api wiz-sim|dependabot-sim
scanner-store-pg wasmtime|hyper
CHECKS

echo "== layout: no module of a crate uses one that uses it back"
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
# The OCSF tests of scanner-formats validate with ocsf-emitter, an independent OCSF 1.5.0 implementation.
python3 -c 'import ocsf_emitter' 2>/dev/null || python3 -m pip install --quiet ocsf-emitter \
    || python3 -m pip install --quiet --break-system-packages ocsf-emitter
# The Python Dependabot plugin (plugin/dependabot) is built by componentize-py,
# from the `test-components` build script below.
command -v componentize-py >/dev/null || python3 -m pip install --quiet componentize-py \
    || python3 -m pip install --quiet --break-system-packages componentize-py
python3 scripts/module-cycles.py

# The PostgreSQL store's tests (host/store-pg) start a real server of their
# own: they need its binaries (initdb, pg_ctl, pg_stat_statements) and
# openssl for its TLS certificate (the package depends on it).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql; }

echo "== the Dependabot plugin's Python modules (unit tests, natively)"
bash plugin/dependabot/tests/run.sh

# The plugin components the tests load (the Wiz connector and the hostile
# test plugin, wasm32-wasip2, and the Python Dependabot plugin) are built
# once, by the `test-components` crate's build script, the first time a
# command below builds the workspace.
echo "== cargo clippy (native, all targets) and the plugin for wasm32-wasip2"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p wiz-plugin -p hostile-plugin --target wasm32-wasip2 -- -D warnings

echo "== cargo test"
cargo test --workspace --no-fail-fast

# The scan path's end-to-end tests again, each runtime on a fresh
# PostgreSQL database instead of a SQLite file (the store suite's
# conformance checks already run on both). One filter a run: the test
# harness takes one.
echo "== the end-to-end scan tests on PostgreSQL"
for module in import:: host:: sync:: connector:: sandbox:: contract:: http::; do
    SCANNER_TEST_STORE=postgres cargo test --workspace --test suite "$module"
done

echo "== the web console in a real browser"
# Chromium from the distribution, Node.js (20 or newer: playwright-core's
# floor) and the pinned playwright-core of tests/browser/package-lock.json.
command -v node >/dev/null && command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
    || { echo "the browser test needs Node.js 20 or newer, found $(node --version)" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { apt-get update -qq && apt-get install -y -qq chromium; }
[ -d tests/browser/node_modules/playwright-core ] || (cd tests/browser && npm ci --no-audit --no-fund)
# The two programs the browser test starts: `cargo test --workspace` above
# built them (their integration tests need them) with the workspace's
# features; a `cargo build -p` of just these two would compile wasmtime
# again with another feature set.
bash scripts/browser-test.sh
