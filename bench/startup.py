#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints llmd's startup figures with simulator children (a benchmark: it prints, it asserts
nothing about time).

  startup-to-READY   from exec of llmd to READY=1 on $NOTIFY_SOCKET
  spawn-to-ready     from llmd's spawn of a child to llmd seeing /health 200, for a 1 s load;
                     llmd's share is that minus the simulator's own load time
  idle memory        Private_Dirty of llmd (smaps_rollup) with both children ready

Usage: bench/startup.py [BUILD_DIR] [RUNS]   (default build, 20)
"""

import os
import re
import statistics
import sys
import time

import benchenv  # noqa: E402,F401 (sets up paths)
runs = benchenv.arg(2, 20)

from llmdtest import Llmd  # noqa: E402

CONF = """
[llmd]
default = qwen
[qwen]
model = @MODELS@/qwen.gguf
env = LLAMA_SIM_LOAD_MS=1000
[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
env = LLAMA_SIM_LOAD_MS=100
"""


def one():
    d = Llmd(CONF)
    try:
        t0 = time.monotonic()
        d.start("--log-level", "info")
        i = d.wait_notify(lambda m: m.get("READY") == "1", "READY=1")
        to_ready = d.messages[i][0] - t0
        d.wait_status("qwen ready · embed nomic ready")
        with open(d.log_path) as f:
            m = re.search(r"qwen: ready after ([0-9.]+) s", f.read())
        observed = float(m.group(1))
        start = d.records("start", "qwen")[0]["t"]
        ready = d.records("ready", "qwen")[0]["t"]
        sim_load = ready - start
        with open(f"/proc/{d.proc.pid}/smaps_rollup") as f:
            dirty = sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty"))
        d.stop()
        return to_ready, observed, observed - sim_load, dirty
    finally:
        d.cleanup()


def ms(v):
    return f"{v * 1000:.1f} ms"


results = [one() for _ in range(runs)]
to_ready, observed, share, dirty = zip(*results)
print(f"llmd startup figures over {runs} runs (median, max)")
print(f"  startup-to-READY:              {ms(statistics.median(to_ready))}, {ms(max(to_ready))}")
print(f"  spawn-to-ready, 1 s load:      {ms(statistics.median(observed))}, {ms(max(observed))}")
print(f"  llmd's share of it:            {ms(statistics.median(share))}, {ms(max(share))}")
print(f"  idle Private_Dirty:            {statistics.median(dirty)} kB, {max(dirty)} kB")
