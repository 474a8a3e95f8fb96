#!/bin/sh
# SPDX-License-Identifier: MIT
# tools/soak.sh DURATION [OPTIONS]: mixed traffic against one llmd for DURATION seconds (after a
# warm-up), on loopback only, then a summary; see tools/soak.py for what it sends and what makes
# it fail. It runs on the simulator, or on the real tier when LLMD_REAL_LLAMA_SERVER and
# LLMD_REAL_MODELS are set (tools/real-llama-server.sh prints them); --sim forces the simulator.
# The binaries come from $LLMD, $LLMCTL and $LLAMA_SIM, else from the build directory $BUILD
# (default: build). DURATION is in seconds, or with a suffix: 30s, 10m, 1h.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: tools/soak.sh DURATION [--sim] [soak.py options]" >&2; exit 2; }
case $1 in
*h) duration=$(( ${1%h} * 3600 )) ;;
*m) duration=$(( ${1%m} * 60 )) ;;
*s) duration=${1%s} ;;
*) duration=$1 ;;
esac
shift
build=${BUILD:-build}
export LLMD="${LLMD:-$build/daemon/llmd}" LLMCTL="${LLMCTL:-$build/ctl/llmctl}"
export LLAMA_SIM="${LLAMA_SIM:-$build/tests/sim/llama-sim}"
if [ "${1:-}" = --sim ]; then
    shift
    unset LLMD_TIER
elif [ -n "${LLMD_REAL_LLAMA_SERVER:-}" ] && [ -n "${LLMD_REAL_MODELS:-}" ]; then
    export LLMD_TIER=real
fi
exec python3 tools/soak.py "$duration" "$@"
