#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints what llmd's proxy adds, measured against a direct connection to the same simulator
(a benchmark: it prints figures and asserts nothing):

  time to first byte   of a streaming chat request (max_tokens 1), over 1000 requests on one
                       keep-alive connection: median and p99, direct vs through llmd
  event rate           of one long stream with the simulator at full speed (LLAMA_SIM_TOKEN_MS=0),
                       events per second, direct vs through llmd

Direct means a second simulator on TCP, started the same way llmd starts its children.
Usage: bench/proxy.py [BUILD_DIR] [REQUESTS] [TOKENS]   (default build, 1000, 20000)
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build"))
n_req = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
n_tok = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
os.environ.setdefault("LLMD", os.path.join(build, "daemon", "llmd"))
os.environ.setdefault("LLMCTL", os.path.join(build, "ctl", "llmctl"))
os.environ.setdefault("LLAMA_SIM", os.path.join(build, "tests", "sim", "llama-sim"))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))

from llmdtest import Llmd, free_port, wait_until  # noqa: E402


def request(max_tokens):
    body = ('{"messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":%d}'
            % max_tokens).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
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


def ttfb(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


def rate(port):
    s = socket.create_connection(("127.0.0.1", port))
    r = Reader(s)
    t0 = time.perf_counter()
    s.sendall(request(n_tok))
    events = r.response()
    dt = time.perf_counter() - t0
    s.close()
    return events / dt


CONF = """
[llmd]
default = qwen
listen = 127.0.0.1:%d
log-requests = false
[qwen]
model = @MODELS@/qwen.gguf
ctx-size = 1000000
"""

port = free_port()
direct = free_port()
env = {**os.environ, "LLAMA_SIM_TOKEN_MS": "0", "LLAMA_SIM_LOAD_MS": "20"}
d = Llmd(CONF % port, models=("qwen",), env={"LLAMA_SIM_TOKEN_MS": "0"})
tmp = tempfile.TemporaryDirectory()
model = os.path.join(tmp.name, "m.gguf")
with open(model, "wb") as f:
    f.write(b"GGUF" + b"\0" * 4092)
sim = subprocess.Popen([os.environ["LLAMA_SIM"], "--model", model, "--host", "127.0.0.1",
                        "--port", str(direct), "--ctx-size", "1000000"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    d.start("--log-level", "warning")
    d.wait_status("qwen ready")

    def up():
        try:
            socket.create_connection(("127.0.0.1", direct)).close()
            return True
        except OSError:
            return False
    wait_until(up, "the direct simulator")
    time.sleep(0.2)
    rd, rl = ttfb(direct), ttfb(port)
    sd, sl = rate(direct), rate(port)
    print(f"proxy figures ({n_req} requests, one stream of {n_tok} tokens)")
    print(f"  ttfb median   direct {rd[0] * 1e3:7.3f} ms   llmd {rl[0] * 1e3:7.3f} ms   "
          f"added {(rl[0] - rd[0]) * 1e3:6.3f} ms")
    print(f"  ttfb p99      direct {rd[1] * 1e3:7.3f} ms   llmd {rl[1] * 1e3:7.3f} ms   "
          f"added {(rl[1] - rd[1]) * 1e3:6.3f} ms")
    print(f"  event rate    direct {sd:9.0f}/s   llmd {sl:9.0f}/s   ratio {sl / sd * 100:5.1f}%")
    d.stop()
finally:
    sim.kill()
    d.cleanup()
    tmp.cleanup()
