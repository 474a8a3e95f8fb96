#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scraping GET /llmd/metrics as fast as wrk (Debian's wrk) can, beside streams: prints the
scrape rate, scrapes that failed, and the streams' time to first token and duration with and
without the scraping, in turns (a benchmark: it prints figures).

Usage: bench/scrape.py [BUILD_DIR] [SECONDS] [CONNECTIONS]   (default build, 5, 8)

llmd runs on the simulator with qwen active and nomic pinned (two models' worth of metrics),
requests logged (the default), children's own metrics off (each scrape would wait for them).
"""

import json
import re
import shutil
import statistics
import subprocess
import sys
import time

import benchenv  # noqa: E402,F401 (sets up paths)
seconds = benchenv.arg(2, 5)
connections = benchenv.arg(3, 8)

from llmdtest import Llmd, Stream, free_port, http  # noqa: E402

WRK = shutil.which("wrk")
if not WRK:
    sys.exit("bench/scrape.py needs wrk (apt-get install wrk)")

port = free_port()
CONF = f"""
[llmd]
default = qwen
listen = 127.0.0.1:{port}
[qwen]
model = @MODELS@/qwen.gguf
env = LLAMA_SIM_TOKEN_MS=5
[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""
CHAT = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 16}


def stream():
    """One 16-token stream: (time to first token, duration), seconds."""
    t0 = time.monotonic()
    s = Stream(port, "/v1/chat/completions", CHAT)
    first = s.event()
    t1 = time.monotonic()
    rest = s.events()
    t2 = time.monotonic()
    s.close()
    if s.status != 200 or not first or rest[-1:] != ["[DONE]"]:
        raise SystemExit(f"a stream failed: {s.status} {first} {rest[-2:]}")
    return t1 - t0, t2 - t0


def streams_for(secs):
    out = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        out.append(stream())
    return out


def median_ms(xs):
    return statistics.median(xs) * 1000


d = Llmd(CONF, models=("qwen", "nomic"))
try:
    d.start()
    d.wait_status(lambda s: s.startswith("qwen ready · embed nomic ready"))
    for _ in range(20):
        stream()
    size = len(http(port, "GET", "/llmd/metrics").body)
    quiet = streams_for(seconds)
    wrk = subprocess.Popen([WRK, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                            f"http://127.0.0.1:{port}/llmd/metrics"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.2)
    busy = streams_for(seconds - 0.5)
    out = wrk.communicate(timeout=seconds + 30)[0]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    after = json.loads(http(port, "GET", "/llmd/activity?since=0").body)["records"]
    print(f"GET /llmd/metrics ({size} bytes) by wrk, {connections} connections, {seconds} s:")
    print(f"  {total} scrapes, {rate:.0f}/s; non-200: {bad.group(1) if bad else 0}; "
          f"socket errors: {errors.group(1) if errors else 'none'}; p99 latency {p99.group(1)}")
    print("16-token streams (5 ms a token) one after another:")
    for name, xs in (("quiet", quiet), ("while scraping", busy)):
        print(f"  {name:>15}: {len(xs)} streams, first token "
              f"{median_ms([x[0] for x in xs]):.2f} ms median, "
              f"whole stream {median_ms([x[1] for x in xs]):.1f} ms median, "
              f"max {max(x[1] for x in xs) * 1000:.1f} ms")
    print(f"  activity records: {len(after)} (scrapes are not recorded)")
    d.stop()
finally:
    d.cleanup()
