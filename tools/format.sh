#!/bin/sh
# Formats llmd's C with clang-format 14 and the repository's .clang-format.
#
#   tools/format.sh [FILE...]          reformat every .c and .h file git tracks or would add
#                                      (untracked, not ignored), or the FILEs
#   tools/format.sh --check [FILE...]  change nothing: list the files clang-format would change,
#                                      and exit 1 if there are any (for CI)
#
# Other major versions of clang-format lay out some code differently, so only 14 is used (what
# Debian 12's clang-format package installs; tools/deps.sh installs it). $CLANG_FORMAT names
# another binary of version 14. Hand-aligned tables sit between /* clang-format off */ and
# /* clang-format on */. Exit status: 0 formatted (or reformatted), 1 files need formatting,
# 2 usage error or no clang-format 14.
set -eu
here=$PWD
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
--check)
    check=true
    shift
    ;;
-h | --help)
    sed -n '2,13s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
-*)
    echo "format.sh: unknown option '$1' (usage: tools/format.sh [--check] [FILE...])" >&2
    exit 2
    ;;
esac

if [ -n "${CLANG_FORMAT:-}" ]; then
    cf=$CLANG_FORMAT
elif command -v clang-format-14 >/dev/null 2>&1; then
    cf=clang-format-14
else
    cf=clang-format
fi
if ! command -v "$cf" >/dev/null 2>&1; then
    echo "format.sh: $cf is not installed: install clang-format 14 (tools/deps.sh installs" >&2
    echo "format.sh: Debian's clang-format package), or name it with CLANG_FORMAT=PATH" >&2
    exit 2
fi
version=$("$cf" --version | sed -n 's/.*clang-format version \([0-9][0-9]*\)\..*/\1/p')
if [ "$version" != 14 ]; then
    echo "format.sh: $cf is version ${version:-unknown}; llmd's layout is clang-format 14's:" >&2
    echo "format.sh: install clang-format 14 (tools/deps.sh), or name it with CLANG_FORMAT=PATH" >&2
    exit 2
fi

if ! "$cf" --style=file --dump-config >/dev/null; then
    echo "format.sh: clang-format cannot read .clang-format" >&2
    exit 2
fi

# The files: those named, or every C source and header in the work tree that git tracks or
# would add (a new file not yet added must not pass the check and fail once committed).
list=$(mktemp)
trap 'rm -f "$list"' EXIT
if [ $# -gt 0 ]; then
    for f in "$@"; do
        case "$f" in /*) ;; *) f="$here/$f" ;; esac
        [ -f "$f" ] || { echo "format.sh: $f: no such file" >&2; exit 2; }
        printf '%s\n' "$f"
    done >"$list"
elif git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # A tracked file deleted in the work tree is left out.
    git ls-files --cached --others --exclude-standard -- '*.c' '*.h' | while IFS= read -r f; do
        if [ -f "$f" ]; then printf '%s\n' "$f"; fi
    done >"$list"
else
    echo "format.sh: not a git checkout; name the files to format" >&2
    exit 2
fi
[ -s "$list" ] || exit 0

# One clang-format for all the files: it starts slowly, and a run per file takes seconds.
if $check; then
    status=0
    out=$(xargs -d '\n' "$cf" --style=file --dry-run --Werror <"$list" 2>&1) || status=$?
    bad=$(printf '%s\n' "$out" |
        sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' |
        awk '!seen[$0]++')
    if [ -n "$bad" ]; then
        printf '%s\n' "$bad"
        echo "format.sh: $(printf '%s\n' "$bad" | wc -l) file(s) above are not formatted:" \
            "tools/format.sh reformats them (clang-format --dry-run FILE shows where)" >&2
        exit 1
    fi
    if [ "$status" -ne 0 ]; then
        printf '%s\n' "$out" >&2
        echo "format.sh: clang-format failed" >&2
        exit 2
    fi
else
    xargs -d '\n' "$cf" --style=file -i <"$list"
fi
