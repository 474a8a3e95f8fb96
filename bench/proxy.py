#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints what llmd's proxy adds, measured against a direct connection to the same simulator
(a benchmark: it prints figures and asserts nothing):

  time to first byte   of a streaming chat request (max_tokens 1), over 1000 requests on one
                       keep-alive connection: median and p99, direct vs through llmd
  event rate           of one long stream with the simulator at full speed (LLAMA_SIM_TOKEN_MS=0),
                       events per second as curl receives them, direct vs through llmd; and the
                       same for a stream paced at 1 ms a token (a fast GPU's rate)

Direct means the same simulator child, on its own unix socket, as llmd itself reaches it.
Usage: bench/proxy.py [BUILD_DIR] [REQUESTS] [TOKENS]   (default build, 1000, 20000)
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchenv  # noqa: E402,F401 (sets up paths)
from benchenv import connect  # noqa: E402
n_req = benchenv.arg(2, 1000)
n_tok = benchenv.arg(3, 20000)

from llmdtest import Llmd, free_port, wait_until  # noqa: E402


def request(max_tokens):
    body = ('{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":%d}'
            % max_tokens).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class Reader:
    """Reads one chunked response from a keep-alive socket."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError
        self.buf += d

    def response(self, on_first=None):
        """Reads a whole response; returns the number of SSE events."""
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        if on_first:
            on_first()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        events = 0
        while True:  # chunked body
            while b"\r\n" not in self.buf:
                self.fill()
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                self.fill()
                size_line, rest = self.buf.split(b"\r\n", 1)
            chunk, self.buf = rest[:size], rest[size + 2:]
            events += chunk.count(b"data: ")
            if size == 0:
                return events


def ttfb(target):
    s = connect(target)
    r = Reader(s)
    out = []
    for _ in range(n_req):
        t = {}
        t0 = time.perf_counter()
        s.sendall(request(1))
        r.response(lambda: t.setdefault("first", time.perf_counter()))
        out.append(t["first"] - t0)
    s.close()
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def rate(target, tokens=None):
    """Events per second of one stream, read by curl (a Python reader would be the bottleneck)."""
    body = ('{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":%d}'
            % (tokens or n_tok))
    where = (["--unix-socket", target, "http://localhost/v1/chat/completions"]
             if isinstance(target, str) else [f"http://127.0.0.1:{target}/v1/chat/completions"])
    t0 = time.perf_counter()
    out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body, *where],
                         capture_output=True, check=True).stdout
    dt = time.perf_counter() - t0
    return out.count(b"data: ") / dt


CONF = """
[llmd]
default = qwen
listen = 127.0.0.1:%d
log-requests = false
[qwen]
model = @MODELS@/qwen.gguf
ctx-size = 1000000
; a model with a paced stream (1 ms a token), reached on a port of its own
[paced]
model = @MODELS@/paced.gguf
ctx-size = 1000000
pin = true
port = %d
env = LLAMA_SIM_TOKEN_MS=1
"""

port, paced_port = free_port(), free_port()
n_paced = 2000
d = Llmd(CONF % (port, paced_port), models=("qwen", "paced"), env={"LLAMA_SIM_TOKEN_MS": "0"})
try:
    d.start("--log-level", "warning")
    d.wait_status("qwen ready · pinned paced ready")
    # Direct: the very simulator llmd runs, on its own unix socket, as llmd reaches it.
    direct = d.socket_path("qwen")
    rd, rl = ttfb(direct), ttfb(port)
    sd = statistics.median(rate(direct) for _ in range(3))
    sl = statistics.median(rate(port) for _ in range(3))
    pd = rate(d.socket_path("paced"), n_paced)
    pl = rate(paced_port, n_paced)
    print(f"proxy figures ({n_req} requests, one stream of {n_tok} tokens)")
    print(f"  ttfb median   direct {rd[0] * 1e3:7.3f} ms   llmd {rl[0] * 1e3:7.3f} ms   "
          f"added {(rl[0] - rd[0]) * 1e3:6.3f} ms")
    print(f"  ttfb p99      direct {rd[1] * 1e3:7.3f} ms   llmd {rl[1] * 1e3:7.3f} ms   "
          f"added {(rl[1] - rd[1]) * 1e3:6.3f} ms")
    print(f"  event rate    direct {sd:9.0f}/s   llmd {sl:9.0f}/s   ratio {sl / sd * 100:5.1f}%"
          "   (upstream at full speed: CPU-bound, 3 busy processes on this machine's cores)")
    print(f"  paced rate    direct {pd:9.0f}/s   llmd {pl:9.0f}/s   ratio {pl / pd * 100:5.1f}%"
          f"   (upstream at 1 ms a token, {n_paced} tokens)")
    d.stop()
finally:
    d.cleanup()
