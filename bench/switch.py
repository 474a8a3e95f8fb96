#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints the time of `llmctl switch` between two simulator models that each take 1 s to load,
split as llmd reports it: stop (old child gone), load (spawn to /health 200) and llmd's own
share (the rest: checks, bookkeeping, persisting). Also the wall time llmctl took. Then the same
with both models resident (max-resident = 2): each switch a change of route, as llmctl's wall
time shows. A benchmark: it prints figures and asserts nothing about time.

Usage: bench/switch.py [BUILD_DIR] [SWITCHES]   (default build, 10)
"""

import json
import os
import statistics
import subprocess
import sys
import time

import benchenv  # noqa: E402,F401 (sets up paths)
n = benchenv.arg(2, 10)

from llmdtest import LLMCTL, Llmd  # noqa: E402

CONF = """
[llmd]
default = qwen
[*]
env = LLAMA_SIM_LOAD_MS=1000
[qwen]
model = @MODELS@/qwen.gguf
[gemma]
model = @MODELS@/gemma.gguf
[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""

def resident_switches():
    """llmctl's wall time of n switches between two resident models."""
    d = Llmd(CONF.replace("[llmd]\n", "[llmd]\nmax-resident = 2\n"), models=("qwen", "gemma", "nomic"))
    out = []
    try:
        d.start("--log-level", "info")
        d.wait_status("qwen ready · embed nomic ready")
        sock = os.path.join(d.runtime, "control.sock")
        subprocess.run([LLMCTL, "--socket", sock, "--json", "load", "gemma"], capture_output=True, check=True)
        for i in range(n):
            target = "gemma" if i % 2 == 0 else "qwen"
            t0 = time.monotonic()
            r = json.loads(subprocess.run([LLMCTL, "--socket", sock, "--json", "switch", target],
                                          capture_output=True, text=True, check=True).stdout)
            out.append((time.monotonic() - t0, r["total_sec"], r["kind"]))
        d.stop()
    finally:
        d.cleanup()
    return out


d = Llmd(CONF, models=("qwen", "gemma", "nomic"))
rows = []
try:
    d.start("--log-level", "info")
    d.wait_status("qwen ready · embed nomic ready")
    sock = os.path.join(d.runtime, "control.sock")
    for i in range(n):
        target = "gemma" if i % 2 == 0 else "qwen"
        t0 = time.monotonic()
        out = subprocess.run([LLMCTL, "--socket", sock, "--json", "switch", target],
                             capture_output=True, text=True, check=True).stdout
        wall = time.monotonic() - t0
        r = json.loads(out)
        # The simulator's own load, from its records: what any supervisor would wait for.
        start = d.records("start", target)[-1]
        ready = [x for x in d.records("ready", target) if x["pid"] == start["pid"]][0]
        own_load = ready["t"] - start["t"]
        rows.append((wall, r["total_sec"], r["stop_sec"], r["load_sec"], own_load,
                     r["load_sec"] - own_load, r["llmd_sec"],
                     r["total_sec"] - own_load))
    d.stop()
finally:
    d.cleanup()


def ms(v):
    return f"{v * 1000:8.2f} ms"


print(f"llmctl switch between two simulator models with a 1 s load, {n} switches (median, max)")
names = ["llmctl wall time", "llmd total", "  stop (old child exits)", "  load (spawn to ready)",
         "    the model's own load", "    exec and readiness poll", "  llmd's own bookkeeping",
         "total minus the model's load"]
for i, name in enumerate(names):
    col = [r[i] for r in rows]
    print(f"  {name:30} {ms(statistics.median(col))} {ms(max(col))}")

resident = resident_switches()
print(f"llmctl switch between the same two models, both resident (max-resident = 2), {n} switches "
      f"(kinds: {sorted(set(k for _, _, k in resident))})")
print(f"  {'llmctl wall time':30} {ms(statistics.median(r[0] for r in resident))} {ms(max(r[0] for r in resident))}")
print(f"  {'llmd total':30} {ms(statistics.median(r[1] for r in resident))} {ms(max(r[1] for r in resident))}")
