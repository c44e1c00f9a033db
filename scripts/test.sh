#!/usr/bin/env bash
# `make test`: ruff, then the whole pytest suite. pytest's "no tests collected" (exit 5) is a failure.
set -uo pipefail
source "$(dirname "$0")/env.sh"
mkdir -p test-artifacts
"$BIN/ruff" check . || exit 1
"$BIN/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
