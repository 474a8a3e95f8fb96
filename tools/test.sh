#!/bin/sh
# Builds llmd twice — gcc, and clang with AddressSanitizer and UndefinedBehaviorSanitizer — with
# warnings as errors, runs the whole suite on both, and ends with "N passed, N failed, N skipped".
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh

# The OpenAI SDK for tests/integration/test_js.py, from the lockfile; nothing is fetched when the
# installed tree already matches.
npm ls --prefix tests/js >/dev/null 2>&1 ||
    npm ci --prefix tests/js --prefer-offline --no-audit --no-fund

run_suite() {
    dir=$1
    shift
    if [ -d "$dir" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    meson compile -C "$dir" -j 2
    # meson's own exit status is not the verdict: the count below is.
    meson test -C "$dir" --num-processes 2 --print-errorlogs || true
}

# A sanitizer report stops the program (llmd, llmctl, the simulator, a test binary) instead of
# scrolling past, and the integration tests fail on any report in the logs they keep.
sanitize="-Db_sanitize=address,undefined -Db_lundef=false
          -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

CC=gcc run_suite build-test-gcc --werror
# shellcheck disable=SC2086 # $sanitize is a list of arguments
CC=clang run_suite build-test-asan --werror $sanitize

exec python3 tools/count-tests.py build-test-gcc build-test-asan
