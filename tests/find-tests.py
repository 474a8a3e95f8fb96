#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""find-tests.py DIR PREFIX SUFFIX: prints what stands between PREFIX and SUFFIX in the names of
DIR's files, sorted, one a line (test_ .py: the test scripts; test- .c: the unit tests). meson
takes its lists of test files from it, so that a new file cannot be left out of them; it sees
one at the next configure."""

import os
import sys

folder, prefix, suffix = sys.argv[1:]
print("\n".join(sorted(f[len(prefix):-len(suffix)] for f in os.listdir(folder)
                       if f.startswith(prefix) and f.endswith(suffix)
                       and len(f) > len(prefix) + len(suffix))))
