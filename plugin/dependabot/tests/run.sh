#!/usr/bin/env bash
# Unit tests of the Dependabot plugin's modules, run natively by CPython
# against bindings generated from wit/ (the same ones the component uses):
#   bash plugin/dependabot/tests/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bindings="$(mktemp -d)"
trap 'rm -rf "$bindings"' EXIT
componentize-py -q -d "$here/../../../wit" -w source-plugin bindings "$bindings"
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$bindings:$here/.." \
    python3 -m unittest discover -s "$here" -p 'test_*.py' "$@"
