#!/usr/bin/env bash
# Sets up everything on a fresh machine and runs the main job: builds the Wiz
# plugin component, the host and the simulator, then scans a demo tenant
# against the built-in Wiz simulator and prints what it found.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build -p wiz-plugin --target wasm32-wasip2 --release
# The simulator too: the demo runs it as its own process, and the README's
# walkthrough uses it.
cargo build -p scanner-host -p wiz-sim --release

mkdir -p plugins
cp target/wasm32-wasip2/release/wiz_plugin.wasm plugins/wiz.wasm

exec target/release/scanner-host --db "${SCANNER_HOST_DB:-demo.db}" --plugins plugins demo "$@"
