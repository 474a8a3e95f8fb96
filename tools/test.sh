#!/bin/sh
# Builds llmd twice — gcc, and clang with AddressSanitizer and UndefinedBehaviorSanitizer — with
# warnings as errors, and runs the whole suite on both; then builds the libFuzzer targets (clang,
# same sanitizers) and fuzzes each for $LLMD_FUZZ_SECONDS seconds (default 20). Ends with
# "N passed, N failed, N skipped" over all three.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh

# The OpenAI SDK for tests/integration/test_js.py, from the lockfile; nothing is fetched when the
# installed tree already matches.
npm ls --prefix tests/js >/dev/null 2>&1 ||
    npm ci --prefix tests/js --prefer-offline --no-audit --no-fund

# run_suite DIR SUITE SETUP-ARGS...: SUITE is a meson test suite, or "" for all of them.
run_suite() {
    dir=$1
    suite=$2
    shift 2
    if [ -d "$dir" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
    meson compile -C "$dir" -j 2
    # meson's own exit status is not the verdict: the count below is.
    meson test -C "$dir" --num-processes 2 --print-errorlogs ${suite:+--suite "$suite"} || true
}

# A sanitizer report stops the program (llmd, llmctl, the simulator, a test binary) instead of
# scrolling past, and the integration tests fail on any report in the logs they keep.
sanitize="-Db_sanitize=address,undefined -Db_lundef=false
          -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

CC=gcc run_suite build-test-gcc "" --werror
# shellcheck disable=SC2086 # $sanitize is a list of arguments
CC=clang run_suite build-test-asan "" --werror $sanitize
# Only the timed fuzz runs here: the rest of this build is build-test-asan again.
# shellcheck disable=SC2086
CC=clang run_suite build-test-fuzz fuzz-run --werror -Dfuzz=true $sanitize

exec python3 tools/count-tests.py build-test-gcc build-test-asan build-test-fuzz
