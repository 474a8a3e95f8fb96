#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Counts the results in meson's testlog.json of each build directory given, and of each
--result NAME=ok|fail (a check tools/test.sh ran outside meson: the package build and lintian);
prints one line "N passed, N failed, N skipped", and exits non-zero on any failure or when
nothing ran."""

import json
import os
import sys

passed = failed = skipped = 0
args = sys.argv[1:]
while len(args) >= 2 and args[0] == "--result":
    name, _, result = args[1].partition("=")
    if result == "ok":
        passed += 1
    else:
        failed += 1
        print(f"FAILED: {name}", file=sys.stderr)
    args = args[2:]
for d in args:
    path = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(path):
        print(f"{path}: missing (the build failed?)", file=sys.stderr)
        failed += 1
        continue
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            result = r["result"]
            if result == "OK":
                passed += 1
            elif result in ("SKIP",):
                skipped += 1
            else:
                failed += 1
                print(f"FAILED ({d}): {r['name']}: {result}", file=sys.stderr)

print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
