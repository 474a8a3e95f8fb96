#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System calls llmd makes per request (a benchmark: it prints figures and asserts nothing).

llmd in front of a real llama-server, set up as bench/firsttoken.py sets it up (its defaults);
one keep-alive client sends N streaming chat requests (16 tokens) and then N non-streaming ones
(1 token), one after the other, while `perf stat` counts llmd's system calls by tracepoint.
Prints, per request: all system calls, the ones that matter here one by one, and llmd's CPU
time. Counts do not depend on how busy the machine is; the CPU time does. perf stat's own cost
is a few microseconds a call.

Usage: bench/syscalls.py [BUILD_DIR] [--requests N]    (needs perf, from linux-perf)
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("build", nargs="?", default="build")
ap.add_argument("--requests", type=int, default=200)
opts = ap.parse_args()
if not shutil.which("perf"):
    print("no perf (Debian's linux-perf): skipped")
    sys.exit(77)
sys.argv = [sys.argv[0], opts.build, "--requests", "1"]
sys.path.insert(0, here)
import firsttoken as ft  # noqa: E402

CALLS = ("epoll_wait", "epoll_ctl", "recvfrom", "sendto", "sendmsg", "read", "write", "poll",
         "connect", "close")


def count(b, req, n):
    c = ft.Conn(b.port)
    for _ in range(5):  # warm: connections made, caches filled
        c.exchange(req)
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in CALLS]
        perf = subprocess.Popen(["perf", "stat", "-x,", "-o", out.name, "-e", ",".join(events),
                                 "-p", str(b.llmd_pid)])
        time.sleep(1.0)  # perf attached
        cpu0 = b.cpu()
        for _ in range(n):
            c.exchange(req)
        cpu = (b.cpu() - cpu0) / n
        perf.send_signal(signal.SIGINT)
        perf.wait()
        counts = {}
        for line in out:
            f = line.split(",")
            if len(f) > 3 and f[0].strip().isdigit():
                counts[f[2].split(":")[-1].replace("sys_enter_", "")] = int(f[0]) / n
    return counts, cpu


def main():
    b = ft.Bench()
    try:
        b.start()
        rows = [("streaming, 16 tokens", *count(b, ft.request(16), opts.requests)),
                ("non-streaming", *count(b, ft.request(1, stream=False), opts.requests))]
    finally:
        b.stop()
    print(f"llmd's system calls per request, {opts.requests} requests each, one keep-alive client")
    print("| request | all | " + " | ".join(CALLS) + " | llmd CPU |")
    print("| --- " * (len(CALLS) + 3) + "|")
    for name, c, cpu in rows:
        print(f"| {name} | {c.get('sys_enter', 0):.1f} | " +
              " | ".join(f"{c.get(s, 0):.1f}" for s in CALLS) + f" | {cpu * 1e3:.3f} ms |")


if __name__ == "__main__":
    main()
