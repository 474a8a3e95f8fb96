#!/bin/sh
# Builds llmd twice — gcc, and clang with AddressSanitizer and UndefinedBehaviorSanitizer — with
# warnings as errors, and runs the suite on both (the sanitized build all of it but the real
# tier, the soak, the simulator's own suite and the docs); then builds the libFuzzer targets
# (clang, same sanitizers) and fuzzes each for $LLMD_FUZZ_SECONDS seconds (default 20). Ends
# with "N passed, N failed, N skipped" over all three.
#
# --contended runs it all with `stress-ng --cpu 2` beside it (two workers busy for the whole run,
# as on a machine doing other work): a test that depends on timing fails there.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh

case ${1:-} in
--contended)
    stress-ng --cpu 2 --quiet &
    stress=$!
    trap 'kill $stress 2>/dev/null || true' EXIT
    echo "llmd: running beside stress-ng --cpu 2 (pid $stress)"
    ;;
'') ;;
*)
    echo "usage: tools/test.sh [--contended]" >&2
    exit 2
    ;;
esac

# The client libraries and coding agents of tests/integration/test_js.py, from the lockfile;
# nothing is fetched when the installed tree already matches. (The lockfile's entries for the
# other platforms' builds of @teddyzhu/clipboard, an optional dependency of qwen-code, were
# written by hand: the registry these machines reach lacks them, and npm ci refuses a lockfile
# that does not name them. npm install keeps them.)
npm ls --prefix tests/js >/dev/null 2>&1 ||
    npm ci --prefix tests/js --prefer-offline --no-audit --no-fund

# run_suite DIR SUITE SETUP-ARGS...: SUITE is a meson test suite, "!SUITE,..." for all but those, or ""
# for all of them.
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
    case $suite in
    '') set -- ;;
    '!'*)
        set --
        for s in $(echo "${suite#!}" | tr , ' '); do set -- "$@" --no-suite "$s"; done
        ;;
    *) set -- --suite "$suite" ;;
    esac
    meson test -C "$dir" --num-processes 2 --print-errorlogs "$@" || true
}

# A sanitizer report stops the program (llmd, llmctl, the simulator, a test binary) instead of
# scrolling past, and the integration tests fail on any report in the logs they keep.
sanitize="-Db_sanitize=address,undefined -Db_lundef=false
          -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

# The real tier: the integration tests again, against Debian's llama-server (suite "real", in
# the gcc build only). Without it (no network for the first mmdebstrap, say) those tests count
# as skipped, never as passed.
# $LLMD_REAL_LLAMA_SERVER may name another one (a build of llama.cpp's own, say) instead.
if real=${LLMD_REAL_LLAMA_SERVER:-$(tools/real-llama-server.sh)} &&
    models=$(tools/real-llama-server.sh --models); then
    export LLMD_REAL_LLAMA_SERVER="$real" LLMD_REAL_MODELS="$models"
    echo "llmd: the real tier uses $("$real" --version 2>&1 | grep -m1 '^version')"
else
    echo "llmd: no real llama-server; the real tier is skipped" >&2
fi

# The Debian package, built the standard way from this tree, and lintian on it: an error or a
# warning fails the run. The nspawn test (systemd as PID 1) then installs it with dpkg.
if deb=$(tools/build-deb.sh build-deb); then
    export LLMD_DEB="$deb"
    package=ok
    echo "llmd: built $deb ($(dpkg-deb -f "$deb" Installed-Size) KiB installed); lintian is clean"
else
    package=fail
fi

# Every C file as tools/format.sh (clang-format 14 and .clang-format) writes it; tables are
# kept by hand between /* clang-format off */ and /* clang-format on */.
if tools/format.sh --check; then
    format=ok
else
    format=fail
    echo "llmd: the files above are not formatted: run tools/format.sh" >&2
fi

CC=gcc run_suite build-test-gcc "" --werror
# The sanitized build runs what exercises llmd and llmctl: not the real tier (gcc's), the soak
# (a sanitized llmd's memory says nothing of llmd's), the simulator's own suite (the simulator,
# built sanitized, serves every integration test here anyway) nor the docs (the same files).
# shellcheck disable=SC2086 # $sanitize is a list of arguments
CC=clang run_suite build-test-asan '!real,soak,sim,docs' --werror $sanitize
# Only the timed fuzz runs here: the rest of this build is build-test-asan again.
# shellcheck disable=SC2086
CC=clang run_suite build-test-fuzz fuzz-run --werror -Dfuzz=true $sanitize

python3 tools/count-tests.py --result "package/build-deb-and-lintian=$package" \
    --result "style/clang-format=$format" \
    build-test-gcc build-test-asan build-test-fuzz
