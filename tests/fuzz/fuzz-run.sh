#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target for a bounded time: $LLMD_FUZZ_SECONDS seconds (default 20).
#
#   fuzz-run.sh FUZZER COMMITTED_CORPUS WORKDIR
#
# libFuzzer first replays every input of the committed corpus, then mutates them. New inputs go
# to WORKDIR/new (emptied at each run), never into the source tree: libFuzzer writes to the first
# corpus directory it is given and only reads the others. A crash, a leak, a sanitizer report or
# an input slower than 25 s fails the test, and the input that did it is kept as
# WORKDIR/crashes/crash-<sha1> (or leak-, timeout-, oom-); the output names it. To keep it:
#
#   cp WORKDIR/crashes/crash-<sha1> tests/fuzz/corpus/<target>/<what-it-is>
#
# then fix the code; the replay test (fuzz/<target> in every build) runs it from then on.
# To fold what a long local run found into the committed corpus, minimised:
#
#   FUZZER -merge=1 tests/fuzz/corpus/<target> WORKDIR/new
set -eu
fuzzer=$1
corpus=$2
work=$3
seconds=${LLMD_FUZZ_SECONDS:-20}

rm -rf "$work/new"
mkdir -p "$work/new" "$work/crashes"
stamp="$work/started"
: >"$stamp"

echo "fuzzing $(basename "$fuzzer") for ${seconds}s from $corpus"
rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$work/crashes/" "$work/new" "$corpus" || rc=$?
if [ "$rc" -eq 0 ]; then
        echo "$(find "$work/new" -type f | wc -l) new input(s) in $work/new (not committed)"
        exit 0
fi
echo "FAIL: $(basename "$fuzzer") exited with status $rc; the input(s) that did it:"
find "$work/crashes" -type f -newer "$stamp" | sed 's/^/  /'
echo "Add each to $corpus/ with a name that says what it is, and fix the code."
# Not libFuzzer's own status: its default for a crash is 77, which meson counts as skipped.
exit 1
