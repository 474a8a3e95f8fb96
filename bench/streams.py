#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""N concurrent streams through llmd (default 1000): prints how many completed without error,
the wall time, and llmd's peak private memory while they ran (a benchmark: it prints figures).

Usage: bench/streams.py [BUILD_DIR] [STREAMS] [TOKENS]   (default build, 1000, 20)
"""

import os
import resource
import sys
import threading
import time

import benchenv  # noqa: E402,F401 (sets up paths)
n = benchenv.arg(2, 1000)
tokens = benchenv.arg(3, 20)

from llmdtest import Llmd, Stream, free_port  # noqa: E402

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
threading.stack_size(256 * 1024)

port = free_port()
CONF = f"""
[llmd]
default = qwen
listen = 127.0.0.1:{port}
log-requests = false
; every stream comes from this one machine: room for all of them
max-connections = {n + 64}
max-connections-per-client = {n + 64}
[qwen]
model = @MODELS@/qwen.gguf
ctx-size = 10000000
parallel = {n}
env = LLAMA_SIM_TOKEN_MS=50
"""


def private_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f
                   if line.startswith(("Private_Dirty", "Private_Clean")))


d = Llmd(CONF, models=("qwen",))
ok, failed, peak = [0], [], [0]
lock = threading.Lock()
try:
    d.start("--log-level", "warning")
    d.wait_status("qwen ready")
    idle = private_kb(d.proc.pid)

    def one(i):
        try:
            s = Stream(port, "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                        "max_tokens": tokens}, timeout=120)
            ev = s.events()
            good = s.status == 200 and ev and ev[-1] == "[DONE]" and len(ev) == tokens + 3
            with lock:
                if good:
                    ok[0] += 1
                else:
                    failed.append((i, s.status, ev[-1:] if ev else ev))
        except Exception as e:  # noqa: BLE001 - counted and shown
            with lock:
                failed.append((i, repr(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], private_kb(d.proc.pid))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    print(f"{n} concurrent streams of {tokens} tokens at 50 ms a token through llmd")
    print(f"  completed without error: {ok[0]}, failed: {len(failed)} {failed[:3]}")
    print(f"  wall time: {wall:.2f} s (one stream alone takes about {tokens * 0.05:.2f} s)")
    print(f"  llmd private memory: idle {idle} kB, peak {peak[0]} kB")
    d.stop()
finally:
    d.cleanup()
