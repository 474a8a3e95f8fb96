#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What llmd adds in front of a real llama-server, next to what nginx adds (a benchmark: it
prints figures and asserts nothing).

Four targets, measured in turns so that noise hits them alike:

  unix    llmd's own child, on the unix socket llmd itself reaches it by
  tcp     a second llama-server, identical (same binary, model and flags), on TCP
  nginx   nginx from Debian in front of that second server, configured for SSE
          (proxy_buffering off, HTTP/1.1 and keep-alive to the upstream)
  llmd    llmd, in front of its child

Figures: time to first byte and to first token (the first event carrying a non-empty
"content" or "reasoning_content" delta) of a streaming chat request, p50/p90/p99; the gap
between events, p50/p99; the event rate of one long stream; the aggregate token rate of 4 and
of 64 concurrent streams; the rate of non-streaming requests and of embeddings requests (32
short inputs each, to the pinned embedding model, through the same four paths to a second pair
of servers), one request to each target in turn, 300 times; llmd's CPU time per request; and llmd's wake-ups (context switches) while
idle, with its children and without.

Every llmd runs on its default settings (requests logged, its children's output passed on,
log level info; the log goes to a file, as nginx's access log does), nginx with its default
access log (the "combined" format) on.

Usage: bench/firsttoken.py [BUILD_DIR] [--requests N] [--idle SECONDS] [--smoke] [--before NAME=LLMD]...
  LLAMA_SERVER=PATH   the llama-server to run (default: tools/real-llama-server.sh's)
  LLMD_REAL_MODELS=DIR   its model directory (default: tools/real-llama-server.sh --models)
--smoke runs every part with a handful of requests: a check that the benchmark works.
"""

import argparse
import json
import os
import random
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("build", nargs="?")
ap.add_argument("--requests", type=int, default=200)
ap.add_argument("--idle", type=float, default=60)
ap.add_argument("--smoke", action="store_true")
ap.add_argument("--before", metavar="NAME=LLMD", action="append", default=[],
                help="another llmd binary (an older build, say), measured as one more target; "
                     "may be given more than once")
opts = ap.parse_args()
sys.argv[1:] = [opts.build] if opts.build else []
if opts.smoke:
    opts.requests, opts.idle = 5, 1


def real_setup():
    tool = os.path.join(here, "..", "tools", "real-llama-server.sh")
    server = os.environ.get("LLAMA_SERVER") or os.environ.get("LLMD_REAL_LLAMA_SERVER")
    models = os.environ.get("LLMD_REAL_MODELS")
    if not (server and models) and opts.smoke:
        print("no real llama-server (LLMD_REAL_LLAMA_SERVER, LLMD_REAL_MODELS): skipped")
        sys.exit(77)
    if not shutil.which(NGINX):
        print(f"no nginx ({NGINX}; Debian's nginx-light): skipped")
        sys.exit(77)
    if not server:
        server = subprocess.run([tool], capture_output=True, text=True, check=True).stdout.strip()
    if not models:
        models = subprocess.run([tool, "--models"], capture_output=True, text=True,
                                check=True).stdout.strip()
    return server, models


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SERVER, MODELS = real_setup()
os.environ.update({"LLMD_TIER": "real", "LLMD_REAL_LLAMA_SERVER": SERVER,
                   "LLMD_REAL_MODELS": MODELS})
import benchenv  # noqa: E402,F401 (paths; reads LLMD_TIER above through llmdtest)
import llmdtest  # noqa: E402
from benchenv import connect  # noqa: E402
from llmdtest import Llmd, free_port, llmctl, wait_until  # noqa: E402

# The same flags for both servers: llmd adds --model, --host and --alias to its child (and,
# since issue 21, --log-verbosity 2, which is part of what is measured).
FLAGS = ["--ctx-size", "4096", "--parallel", "4", "--threads", "1"]
EMBD_FLAGS = ["--embeddings", "--ctx-size", "2048", "--parallel", "4", "--threads", "1"]
EMBD_INPUTS = [f"short input number {i}" for i in range(32)]


def request(max_tokens, stream=True):
    body = json.dumps({"messages": [{"role": "user", "content": "Write a story."}],
                       "stream": stream, "max_tokens": max_tokens, "temperature": 0}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


class Conn:
    """One keep-alive connection; reads responses (chunked or with a Content-Length) and times
    their parts."""

    def __init__(self, target, reconnects=0):
        self.target, self.reconnects = target, reconnects
        self.sock, self.buf = connect(target), b""

    def fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError
        self.buf += d
        return time.perf_counter()

    def exchange(self, req):
        """Sends req; returns (t_sent, t_first_byte, [event arrival times], t_first_token)."""
        t0 = time.perf_counter()
        # A connection the server closed after its last answer (llama-server closes after
        # every stream): a new one, as a client's pool would make, and its cost counts.
        if select.select([self.sock], [], [], 0)[0] and not self.sock.recv(1, socket.MSG_PEEK):
            self.reconnects += 1
            self.__init__(self.target, self.reconnects)
        try:
            self.sock.sendall(req)
            t_first = self.fill()
        except (OSError, EOFError):  # it closed just now: again, on a new one, still timed
            self.reconnects += 1
            self.__init__(self.target, self.reconnects)
            self.sock.sendall(req)
            t_first = self.fill()
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        headers = head.decode("latin-1").lower()
        events, t_token = [], None
        if "content-length:" in headers:
            n = int(headers.split("content-length:")[1].split("\r\n")[0])
            while len(self.buf) < n:
                self.fill()
            self.buf = self.buf[n:]
            return t0, t_first, [], time.perf_counter()
        pending = b""
        now = t_first
        while True:  # chunked
            while b"\r\n" not in self.buf:
                now = self.fill()
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                now = self.fill()
                size_line, rest = self.buf.split(b"\r\n", 1)
            chunk, self.buf = rest[:size], rest[size + 2:]
            if size == 0:
                if "connection: close" in headers:
                    self.__init__(self.target, self.reconnects)
                return t0, t_first, events, t_token
            pending += chunk
            while b"\n\n" in pending:
                ev, pending = pending.split(b"\n\n", 1)
                events.append(now)
                if t_token is None and ev.startswith(b"data: {"):
                    d = json.loads(ev[6:])
                    delta = (d.get("choices") or [{}])[0].get("delta") or {}
                    if delta.get("content") or delta.get("reasoning_content"):
                        t_token = now


def embd_request():
    body = json.dumps({"model": "nomic", "input": EMBD_INPUTS}).encode()
    return (b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def ms(x):
    return f"{x * 1e3:.3f}"


class Bench:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="llmd-bench-")
        self.procs = []
        self.port, self.d = self.llmd()
        self.before = [(b.split("=", 1), *self.llmd()) for b in opts.before]

    @staticmethod
    def llmd():
        port = free_port()
        def keys(flags):
            return "\n".join(f"{k.lstrip('-')} = {v}" for k, v in zip(flags[::2], flags[1::2]))
        return port, Llmd(f"""
[llmd]
default = qwen
listen = 127.0.0.1:{port}
[qwen]
model = @MODELS@/qwen.gguf
{keys(FLAGS)}
[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
{keys(EMBD_FLAGS[1:])}
""", models=("qwen", "nomic"))

    def start(self):
        ready = "qwen ready · embed nomic ready"
        # The test harness starts llmd at debug level; info is llmd's default.
        self.d.start("--log-level", "info")
        self.d.wait_status(ready)
        for (_, path), _, d in self.before:
            llmdtest.LLMD, binary = path, llmdtest.LLMD
            d.start("--log-level", "info")
            llmdtest.LLMD = binary
            d.wait_status(ready)
        self.tcp, self.tcp_embd = free_port(), free_port()
        self.spawn([SERVER, "--model", self.d.model_path("qwen"), "--host", "127.0.0.1",
                    "--port", str(self.tcp), *FLAGS])
        self.spawn([SERVER, "--model", self.d.model_path("nomic"), "--host", "127.0.0.1",
                    "--port", str(self.tcp_embd), "--alias", "nomic", *EMBD_FLAGS])
        wait_until(lambda: self.health(self.tcp), "the TCP llama-server", timeout=60)
        wait_until(lambda: self.health(self.tcp_embd), "the TCP embeddings server", timeout=60)
        self.nginx, self.nginx_embd = free_port(), free_port()
        prefix = self.tmp.name
        with open(os.path.join(prefix, "nginx.conf"), "w") as f:
            f.write(f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    upstream llama {{ server 127.0.0.1:{self.tcp}; keepalive 16; }}
    upstream embd {{ server 127.0.0.1:{self.tcp_embd}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{self.nginx_embd};
        location / {{
            proxy_pass http://embd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
    server {{
        listen 127.0.0.1:{self.nginx};
        location / {{
            proxy_pass http://llama;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 600s;
            tcp_nodelay on;
        }}
    }}
}}
""")
        self.spawn([NGINX, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf")])
        wait_until(lambda: self.health(self.nginx), "nginx")
        self.targets = {"unix": self.d.socket_path("qwen"), "tcp": self.tcp,
                        "nginx": self.nginx, "llmd": self.port}
        self.embd_targets = {"unix": self.d.socket_path("nomic"), "tcp": self.tcp_embd,
                             "nginx": self.nginx_embd, "llmd": self.port}
        for (name, _), port, _ in self.before:
            self.targets[name] = port
            self.embd_targets[name] = port
        self.llmd_pid = self.d.proc.pid

    def spawn(self, argv):
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))

    def health(self, port):
        try:
            c = Conn(port)
            c.sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            c.fill()
            return c.buf.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait()
        for d in [self.d] + [d for _, _, d in self.before]:
            d.stop()
            d.cleanup()

    def cpu(self):
        """Seconds llmd's threads have run (schedstat: nanoseconds, not clock ticks)."""
        d = f"/proc/{self.llmd_pid}/task"
        total = 0
        for t in os.listdir(d):
            with open(f"{d}/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9

    def first_token(self, n, max_tokens):
        conns = {k: Conn(t) for k, t in self.targets.items()}
        req = request(max_tokens)
        out = {k: {"byte": [], "token": [], "gap": []} for k in conns}
        cpu = 0.0
        for c in conns.values():  # warm: each connection made and used once
            c.exchange(req)
        for _ in range(n):
            order = list(conns)
            random.shuffle(order)
            for k in order:
                c0 = self.cpu() if k == "llmd" else 0
                t0, tb, evs, tt = conns[k].exchange(req)
                if k == "llmd":
                    cpu += self.cpu() - c0
                out[k]["byte"].append(tb - t0)
                out[k]["token"].append((tt or tb) - t0)
                out[k]["gap"] += [b - a for a, b in zip(evs, evs[1:])]
        for k, c in conns.items():
            out[k]["reconnects"] = c.reconnects
        return out, cpu / n

    def stream_rate(self, target, tokens):
        where = (["--unix-socket", target, "http://localhost/v1/chat/completions"]
                 if isinstance(target, str) else [f"http://127.0.0.1:{target}/v1/chat/completions"])
        body = request(tokens).split(b"\r\n\r\n", 1)[1]
        t0 = time.perf_counter()
        out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json",
                              "--data-binary", body, *where], capture_output=True, check=True).stdout
        return out.count(b"data: ") / (time.perf_counter() - t0)

    def concurrent(self, target, n, tokens):
        """Tokens per second of n streams at once (each event one token)."""
        counts = [0] * n
        req = request(tokens)

        def one(i):
            counts[i] = len(Conn(target).exchange(req)[2])
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(counts) / (time.perf_counter() - t0)

    def plain_rates(self, targets, n, req):
        """Requests per second of each target, one request to each in turn (random order)
        n times over one keep-alive connection each: a burst of load on the machine hits
        them all alike, as in first_token()."""
        conns = {k: Conn(t) for k, t in targets.items()}
        spent = {k: 0.0 for k in conns}
        for c in conns.values():  # warm
            c.exchange(req)
        for _ in range(n):
            order = list(conns)
            random.shuffle(order)
            for k in order:
                t0 = time.perf_counter()
                conns[k].exchange(req)
                spent[k] += time.perf_counter() - t0
        return {k: n / spent[k] for k in conns}

    def wakeups(self, pid, seconds):
        def ctx():
            with open(f"/proc/{pid}/status") as f:
                return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        a = ctx()
        time.sleep(seconds)
        return (ctx() - a) / seconds


def interleaved(b, fn, runs):
    """fn(target) for every target, runs times in turns; the median per target."""
    res = {k: [] for k in b.targets}
    for _ in range(runs):
        order = list(b.targets)
        random.shuffle(order)
        for k in order:
            res[k].append(fn(b.targets[k]))
    return {k: statistics.median(v) for k, v in res.items()}


def main():
    b = Bench()
    try:
        b.start()
        n = opts.requests
        ft16, cpu16 = b.first_token(n, 16)
        ft256, cpu256 = b.first_token(max(1, n // 4), 256)
        long_tokens = 200 if opts.smoke else 2000
        rate = interleaved(b, lambda t: b.stream_rate(t, long_tokens), 1 if opts.smoke else 5)
        c4 = interleaved(b, lambda t: b.concurrent(t, 4, 256), 1 if opts.smoke else 3)
        c64 = interleaved(b, lambda t: b.concurrent(t, 64, 64), 1)
        plain = b.plain_rates(b.targets, 5 if opts.smoke else 300, request(1, stream=False))
        embd = b.plain_rates(b.embd_targets, 5 if opts.smoke else 300, embd_request())
        idle = b.wakeups(b.llmd_pid, opts.idle)
        children = [c for c in map(int, open(f"/proc/{b.llmd_pid}/task/{b.llmd_pid}/children")
                                   .read().split())]
        llmctl(b.d, "stop", check_rc=0)
        idle_alone = b.wakeups(b.llmd_pid, opts.idle)
    finally:
        b.stop()

    print(f"llmd in front of a real llama-server ({os.path.basename(SERVER)}), "
          f"{n} streaming requests per target in turns")
    print("| target | first token p50 | p90 | p99 | first byte p50 | gap p50 | gap p99 "
          "| 256-token first token p50 | vs unix | vs nginx | new connections |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base_u = statistics.median(ft16["unix"]["token"])
    base_n = statistics.median(ft16["nginx"]["token"])
    for k in b.targets:
        t = ft16[k]["token"]
        p50 = statistics.median(t)
        print(f"| {k} | {ms(p50)} ms | {ms(pct(t, .9))} | {ms(pct(t, .99))} "
              f"| {ms(statistics.median(ft16[k]['byte']))} | {ms(statistics.median(ft16[k]['gap']))} "
              f"| {ms(pct(ft16[k]['gap'], .99))} | {ms(statistics.median(ft256[k]['token']))} ms "
              f"| {(p50 - base_u) * 1e3:+.3f} ms | {(p50 - base_n) * 1e3:+.3f} ms "
              f"| {ft16[k]['reconnects']} of {len(t)} |")
    print()
    print("| target | one stream, events/s | 4 streams, tokens/s | 64 streams, tokens/s "
          "| non-streaming requests/s | embeddings requests/s (32 inputs) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in b.targets:
        print(f"| {k} | {rate[k]:.0f} ({rate[k] / rate['unix'] * 100:.1f}%) | {c4[k]:.0f} "
              f"| {c64[k]:.0f} | {plain[k]:.1f} | {embd[k]:.1f} |")
    print()
    print(f"llmd CPU time per streaming request: {cpu16 * 1e3:.3f} ms (16 tokens), "
          f"{cpu256 * 1e3:.3f} ms (256 tokens)")
    print(f"llmd wake-ups while idle: {idle:.2f}/s with {len(children)} children, "
          f"{idle_alone:.2f}/s with none ({opts.idle:g} s each)")


if __name__ == "__main__":
    main()
