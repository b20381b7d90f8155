#!/usr/bin/env bash
# Builds the Dependabot plugin from the contract in wit/ alone:
#   bash plugin/dependabot/build.sh [OUT.wasm]   (default: dependabot.wasm here)
# Needs componentize-py (`python3 -m pip install componentize-py`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/dependabot.wasm}"
exec componentize-py -d "$here/../../wit" -w source-plugin componentize app -p "$here" -o "$out"
