#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The front door under hostile and careless clients: keys that cannot be walked around,
reloads that change all or nothing, connection floods, framing tricks, stalled children,
forged log lines and CORS — bytes on the wire, what the simulator saw, and llmd's own state."""

import json
import os
import resource
import socket
import subprocess
import time

from llmdtest import (LLMD, TIMEOUT, Failure, Stream, check, fixture, free_port, http, llmctl, llmctl_json, run,
                      sim_only, wait_until)

MODELS = ("qwen", "nomic")
PORT = free_port()
KEY = "sk-test-0123456789"


def conf(top="", qwen=""):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
{top}

[*]
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
{qwen}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
AUTH = {"Authorization": "Bearer " + KEY}


def ready(d):
    d.wait_status(lambda s: s.startswith("qwen ready · embed nomic ready"))


def write_keys(d, text=KEY + "\n", mode=0o600):
    path = os.path.join(d.dir, "keys")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def with_keys(d, top="", qwen=""):
    d.write_config(conf(top=f"api-key-file = {write_keys(d)}\n{top}", qwen=qwen))
    d.start()
    ready(d)


def raw(data, port=PORT, source="127.0.0.1", timeout=10, read_all=True, left_open_fails=False):
    """Sends bytes as they are; returns what came back until the server closed (or timeout, a
    failure with left_open_fails)."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_all and b"\r\n\r\n" in out:
                break
    except socket.timeout:
        if left_open_fails:
            raise Failure(f"the connection was left open after {out!r}")
    except ConnectionResetError:
        pass
    s.close()
    return out


def status_of(reply):
    line = reply.split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None


def child_paths(d):
    """What reached the child, less llmd's own requests: its health checks, and its read of
    /v1/models once the child is ready (a client's /v1/models is llmd's to answer, never the
    child's). The simulator records a request as it arrives, before it answers: once a client
    has its answer, the record is there."""
    own = {("GET", "/health"), ("GET", "/v1/models")}
    return [x["path"] for x in d.records("request_start", "qwen") if (x["method"], x["path"]) not in own]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---- 1. keys ----

@sim_only("its records of what it saw")
@fixture(conf(), models=MODELS, start=False)
def test_auth_walk_around(d):
    with_keys(d)
    # Dot segments, written plainly or escaped: refused before anything is forwarded.
    for path in ("/./slots", "/v1/../slots", "/x/../props", "/%2e/props", "/%2E%2E/props",
                 "/slots/.", "/%2e%2e/slots"):
        reply = raw(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        check(status_of(reply) == 400, f"{path}: {reply[:200]!r}")
    # Every path that is not public needs the key, known to llmd or not.
    for path in ("/slots", "/props", "/metrics", "/nothing-here", "/", "/v1/unknown", "/%73lots"):
        r = http(PORT, "GET", path)
        check(r.status == 401 and r.json()["error"]["type"] == "authentication_error", f"{path}: {r}")
    check(child_paths(d) == [], f"requests without a key reached the child: {child_paths(d)}")
    # The public list, without a key.
    for path in ("/health", "/v1/health", "/v1/models", "/models"):
        check(http(PORT, "GET", path).status == 200, f"{path} is not public")
    check(http(PORT, "OPTIONS", "/v1/chat/completions").status == 200, "preflight is not public")
    # Both ways llama-server takes a key; an escaped unreserved character is the same path.
    check(http(PORT, "GET", "/slots", headers=AUTH).status == 200, "Bearer refused")
    check(http(PORT, "GET", "/slots", headers={"X-Api-Key": KEY}).status == 200, "x-api-key refused")
    check(http(PORT, "GET", "/%73lots", headers=AUTH).status == 200, "/%73lots is /slots")
    check(http(PORT, "GET", "/slots", headers={"X-Api-Key": KEY + "x"}).status == 401, "wrong key")
    check(child_paths(d) == ["/slots"] * 3, f"the child saw {child_paths(d)}")


# ---- 2. reload ----

@fixture(conf(), models=MODELS, start=False)
def test_reload_bad_key_file(d):
    with_keys(d)
    keys = os.path.join(d.dir, "keys")

    def still_locked(why):
        r = http(PORT, "POST", "/v1/chat/completions", CHAT)
        check(r.status == 401, f"{why}: served without a key: {r}")
        r = http(PORT, "POST", "/v1/chat/completions", CHAT, AUTH)
        check(r.status == 200, f"{why}: the old key stopped working: {r}")

    for why, change in (("chmod 644", lambda: os.chmod(keys, 0o644)),
                        ("empty", lambda: write_keys(d, "")),
                        ("removed", lambda: os.unlink(keys))):
        change()
        p = llmctl(d, "reload")
        check(p.returncode == 2, f"{why}: reload exit {p.returncode}: {p.stdout} {p.stderr}")
        check("key" in (p.stdout + p.stderr).lower(), f"{why}: no reason given: {p.stdout} {p.stderr}")
        still_locked(why)
        write_keys(d)
    # A listen address cannot change without a restart: refused whole, nothing half-applied.
    d.write_config(conf(top=f"api-key-file = {keys}").replace(f"listen = 127.0.0.1:{PORT}",
                                                               f"listen = 127.0.0.1:{free_port()}"))
    p = llmctl(d, "reload")
    check(p.returncode == 2 and "restart" in p.stdout + p.stderr, f"listen change: {p.stdout} {p.stderr}")
    still_locked("listen change")
    # A good reload with a new key file takes effect.
    write_keys(d, "sk-new\n")
    d.write_config(conf(top=f"api-key-file = {keys}"))
    llmctl(d, "reload", check_rc=0)
    check(http(PORT, "POST", "/v1/chat/completions", CHAT, AUTH).status == 401, "the old key still works")
    check(http(PORT, "POST", "/v1/chat/completions", CHAT,
                {"Authorization": "Bearer sk-new"}).status == 200, "the new key does not work")


# ---- 4. connection floods ----

def flood(n, source, send=b""):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(True)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", PORT))
            if send:
                s.sendall(send)
        except OSError:
            s.close()
            continue
        socks.append(s)
    return socks


def still_open(socks):
    """How many of the (non-blocking) sockets llmd has not closed."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                continue
        except BlockingIOError:
            n += 1
        except OSError:
            continue
    return n


def served_during(d, socks, what, tries=20):
    """Normal requests from another address while the flood is on: all must be answered."""
    served = 0
    for _ in range(tries):
        r = http(PORT, "GET", "/health", timeout=10)
        check(r.status == 200, f"{what}: a normal client got {r}")
        served += 1
    rss = rss_kib(d.proc.pid)
    print(f"# {what}: {len(socks)} connections made, {served}/{tries} normal requests served, "
          f"llmd RSS {rss} KiB")
    return rss


def flood_test(d, what, send=b""):
    raise_fd_limit()
    ready(d)
    before = rss_kib(d.proc.pid)
    socks = flood(5000, "127.0.0.2", send)
    during = served_during(d, socks, what)
    for s in socks:
        s.close()
    wait_until(lambda: len(os.listdir(f"/proc/{d.proc.pid}/fd")) < 100, "llmd to close them")
    print(f"# {what}: llmd RSS before {before} KiB, during {during} KiB, after {rss_kib(d.proc.pid)} KiB")


# The defaults: one address holds at most max-connections-per-client (256) connections.

@fixture(conf(), models=MODELS)
def test_flood_silent_connections(d):
    flood_test(d, "5000 silent connections from one address")


@fixture(conf(), models=MODELS)
def test_flood_idle_keepalive(d):
    flood_test(d, "5000 connections from one address, idle after one request",
               b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")


# Many addresses at once (here: one, with the cap lifted): at max-connections the connection
# idle the longest makes room.

@fixture(conf(top="max-connections-per-client = 100000"), models=MODELS)
def test_flood_reclaims_silent(d):
    flood_test(d, "5000 silent connections, no per-address cap")


@fixture(conf(top="max-connections-per-client = 100000"), models=MODELS)
def test_flood_reclaims_keepalive(d):
    flood_test(d, "5000 connections idle after one request, no per-address cap",
               b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")


@fixture(conf(top="max-connections-per-client = 50"), models=MODELS)
def test_flood_per_client_cap(d):
    raise_fd_limit()
    ready(d)
    socks = flood(500, "127.0.0.2")
    for s in socks:
        s.setblocking(False)

    # Past the cap a connection is closed at once: it reads the end, not a wait. Counted until
    # llmd has got to all of them (no fixed sleep: a busy machine gets there later).
    counts = []
    wait_until(lambda: counts.append(still_open(socks)) or counts[-1] <= 50,
               "llmd to close the connections past the cap of 50 (open: see the last count)")
    check(counts[-1] <= 50, f"{counts[-1]} connections from one address stay open past the cap")
    served_during(d, socks, "500 connections from one address, cap 50")


# Reclaim before refusing (issue 21): at a cap the connection idle the longest between
# requests makes room -- at max-connections-per-client that client's own. Only connections with
# a request in progress hold their place. The caps are small here so that the test is quick.

def busy_connection(source):
    """A connection from source with a request in progress: its header sent and read by llmd
    (the "100 Continue" says so), its body not yet. Returns the socket and the body to send."""
    body = json.dumps(CHAT).encode()
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", PORT))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nExpect: 100-continue\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    got = s.recv(100)
    check(got.startswith(b"HTTP/1.1 100"), f"{source}: no 100 Continue: {got!r}")
    return s, body


def finish_busy(s, body, what):
    """Sends the rest of the request: it must be answered, not cut."""
    s.sendall(body)
    reply = b""
    try:
        while True:  # to the end: the request said Connection: close
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except OSError as e:
        reply += repr(e).encode()
    check(status_of(reply) == 200, f"{what}: the request in progress got {reply[:200]!r}")
    s.close()


def refused(source, what):
    """A new connection from source that llmd closes without an answer."""
    try:
        reply = raw(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", source=source)
    except ConnectionResetError:
        reply = b""
    check(reply == b"", f"{what}: served, not refused: {reply[:200]!r}")


def idle_keepalive(source, n):
    import http.client
    out = []
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10, source_address=(source, 0))
        c.request("GET", "/health")
        r = c.getresponse()
        check(r.status == 200, f"a keep-alive request from {source} got {r.status}")
        r.read()
        out.append(c)
    return out




@fixture(conf(top="max-connections-per-client = 8\nmax-connections = 12"), models=MODELS)
def test_reclaim_idle_before_refusing(d):
    ready(d)
    # One local client (the IDE, an agent, a script: all 127.0.0.1) with requests in progress,
    # then one that leaks keep-alive connections: four times its cap of 8.
    busy = [busy_connection("127.0.0.1") for _ in range(3)]
    idle = idle_keepalive("127.0.0.1", 32)
    counts = []
    wait_until(lambda: counts.append(still_open([c.sock for c in idle])) or counts[-1] <= 8 - 3,
               "llmd to close the idle connections past the cap (open: see the last count)")
    # A new request from the same address is served: its oldest idle connection made room.
    r = http(PORT, "GET", "/health", timeout=10)
    check(r.status == 200, f"a new request from 127.0.0.1 after the leak: {r}")
    # Nothing in progress was cut.
    for s, body in busy:
        finish_busy(s, body, "127.0.0.1 during the leak")

    # A client whose every connection is busy is still refused at its cap, and another address
    # is served beside it.
    full = [busy_connection("127.0.0.3") for _ in range(8)]
    refused("127.0.0.3", "a ninth connection from 127.0.0.3, all 8 busy")
    check(http(PORT, "GET", "/health", timeout=10).status == 200, "127.0.0.1 beside a full client")
    # At max-connections (12) the idle ones go first; when all 12 are busy a new one is refused.
    more = [busy_connection("127.0.0.4") for _ in range(4)]
    refused("127.0.0.5", "a new address with all 12 connections busy")
    for s, body in full + more:
        finish_busy(s, body, "a busy connection at the caps")
    check(http(PORT, "GET", "/health", timeout=10).status == 200, "served once the caps have room")
    check(d.proc.poll() is None, "llmd died")


@fixture(conf(top="header-timeout = 1s"), models=MODELS)
def test_header_timeout(d):
    ready(d)
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the header
    s.settimeout(20)
    t0 = time.monotonic()
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    check(data == b"", f"got {data!r} instead of a closed connection")
    check(time.monotonic() - t0 < 15, "closed only after the idle timeout")
    # A complete request on a new connection is not hurried.
    check(http(PORT, "GET", "/health").status == 200, "health")


# ---- 5. bodies and framing ----

@fixture(conf(), models=MODELS, start=False)
def test_refused_before_body(d):
    with_keys(d, top="max-body-size = 4K")
    # No key: 401 at once, no "100 Continue", and the body is not waited for.
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
    reply = raw(head, timeout=5)
    check(status_of(reply) == 401, f"no key: {reply[:200]!r}")
    check(b"100 Continue" not in reply, f"100 Continue sent to a refused request: {reply[:200]!r}")
    # With the key but too large: 413 at once.
    reply = raw(head.replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1\r\nAuthorization: Bearer " + KEY.encode()), timeout=5)
    check(status_of(reply) == 413, f"too large: {reply[:200]!r}")
    check(b"100 Continue" not in reply, f"100 Continue before 413: {reply[:200]!r}")
    # A chunked body without a key is not read either.
    reply = raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n", timeout=5)
    check(status_of(reply) == 401, f"chunked without a key: {reply[:200]!r}")
    check(d.proc.poll() is None, "llmd died")


@fixture(conf(top="max-body-size = 4K"), models=MODELS)
def test_chunked_body_limit(d):
    ready(d)
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    s.settimeout(10)
    try:
        for _ in range(16 * 1024):  # up to 1 GiB
            s.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    except socket.timeout:
        raise
    check(sent < 64 * 1024 * 1024, f"llmd read {sent} bytes of a body over a 4K limit")
    print(f"# llmd closed the connection after {sent} bytes of a chunked body (limit 4K)")
    check(d.proc.poll() is None, "llmd died")
    check(rss_kib(d.proc.pid) < 64 * 1024, "llmd's memory grew")
    check(http(PORT, "GET", "/health").status == 200, "llmd stopped serving")


@sim_only("its records of what it saw")
@fixture(conf(), models=MODELS)
def test_conflicting_framing(d):
    ready(d)
    body = json.dumps(CHAT).encode()
    cases = {
        "CL and TE": b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body),
        "two CL": b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body) + 1),
    }
    for what, headers in cases.items():
        reply = raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                    headers + b"\r\n" + body + b"GET /slots HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
        # MHD may refuse some of these itself; either way a 400, and nothing smuggled through.
        check(status_of(reply) == 400, f"{what}: {reply[:300]!r}")
        check(reply.count(b"HTTP/1.1 ") == 1, f"{what}: a second request was read: {reply!r}")
    reply = raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", timeout=5)
    check(status_of(reply) == 501, f"unknown Transfer-Encoding: {reply[:300]!r}")
    check("/slots" not in child_paths(d) and "/v1/chat/completions" not in child_paths(d),
          f"the child saw {child_paths(d)}")


@fixture(conf(), models=MODELS)
def test_head_forwarded(d):
    ready(d)
    s = socket.create_connection(("127.0.0.1", PORT))
    s.settimeout(10)
    s.sendall(b"HEAD /slots HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        check(chunk, f"connection closed after {data!r}")
        data += chunk
    check(status_of(data) == 200, f"HEAD: {data!r}")
    # No body follows, and the connection serves the next request.
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    rest = data.split(b"\r\n\r\n", 1)[1]
    while b"\r\n\r\n" not in rest:
        rest += s.recv(4096)
    check(status_of(rest) == 200, f"the request after HEAD: {rest!r}")
    s.close()


# ---- 6. a child that stops sending ----

@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_STALL_AFTER_TOKENS=2\nupstream-timeout = 1s"), models=MODELS)
def test_upstream_stall(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 50}, timeout=30)
    events = s.events()
    check(events and "upstream-timeout" in events[-1], f"no error event at the end: {events[-3:]}")
    check(json.loads(events[-1])["error"]["code"] == 504 or "error" in json.loads(events[-1]), events[-1])
    wait_until(lambda: any(x.get("client_gone") for x in d.records("request", "qwen")),
               "the child to see the request cancelled")
    # Its /health answered all along: the child is not restarted for it.
    check(http(PORT, "GET", "/health").status == 200, "health")
    # Non-streaming: 504 with the reason.
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "max_tokens": 50}, timeout=30)
    check(r.status == 504 and "upstream-timeout" in r.json()["error"]["message"], r)


# ---- 8. logs ----

@fixture(conf(), models=MODELS)
def test_log_injection(d):
    ready(d)
    forged = "FORGED-LINE llmd: all models stopped"
    http(PORT, "GET", "/x%0a" + forged.replace(" ", "%20"))
    http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "qwen\n" + forged})
    http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "qwen\r" + forged + "\u001b[2J"})
    wait_until(lambda: open(d.log_path, errors="replace").read().count("model=qwen") >= 2, "the log lines")
    for line in open(d.log_path, errors="replace").read().splitlines():
        check(not line.startswith("FORGED"), f"a forged line: {line!r}")
        check("\x1b" not in line and "\r" not in line, f"a control character reached the log: {line!r}")
    text = open(d.log_path, errors="replace").read()
    check("model=qwen\\n" + forged in text, "the model name is not shown escaped")


# ---- 9. CORS ----

def cors_check(what, headers, want):
    got = headers.get("access-control-allow-origin")
    check(got == want, f"{what}: Access-Control-Allow-Origin {got!r}, expected {want!r}: {headers}")
    check("access-control-allow-credentials" not in headers, f"{what}: credentials allowed: {headers}")


@sim_only("its records of what it saw")
@fixture(conf(), models=MODELS)
def test_cors_default(d):
    """No keys: pages from this machine only, on every kind of answer alike; a page from
    elsewhere is refused outright, since without keys the browser is the only guard."""
    ready(d)
    for origin, want in (("http://localhost:5173", "http://localhost:5173"),
                         ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
                         ("https://evil.example", None), ("http://localhost.evil.example", None),
                         ("null", None)):
        h = {"Origin": origin}
        for method, path, body in (("GET", "/v1/models", None), ("GET", "/health", None),
                                   ("POST", "/v1/chat/completions", CHAT), ("GET", "/slots", None),
                                   ("POST", "/v1/nothing", CHAT), ("OPTIONS", "/v1/chat/completions", None)):
            r = http(PORT, method, path, body, h)
            cors_check(f"{origin} {method} {path}", r.headers, want)
            if want is None and path != "/v1/nothing":  # that one is a 404 whoever asks
                check(r.status == 403 and r.json()["error"]["type"] == "permission_error",
                      f"{origin} {method} {path}: {r}")
        if want:
            s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True}, h)
            cors_check(f"{origin} stream", s.headers, want)
            s.events()
    # A "simple" cross-site POST (no preflight) does not reach the model.
    n = len(child_paths(d))
    r = http(PORT, "POST", "/v1/chat/completions", json.dumps(CHAT),
             {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    check(r.status == 403 and len(child_paths(d)) == n, f"a cross-site POST was served: {r}")
    # The page's own origin (llama-server's web UI through llmd) is always allowed.
    r = http(PORT, "GET", "/v1/models", headers={"Origin": f"http://127.0.0.1:{PORT}"})
    check(r.status == 200, r)


@sim_only("its records of what it saw")
@fixture(conf(), models=MODELS, start=False)
def test_host_check(d):
    """DNS rebinding: without keys, a Host that names another machine is refused."""
    d.start()
    ready(d)
    for host in (f"rebind.evil.example:{PORT}", "localhost.evil.example", "127.0.0.1.nip.io"):
        for method, path in (("GET", "/slots"), ("GET", "/v1/models"), ("GET", "/health")):
            r = http(PORT, method, path, headers={"Host": host})
            check(r.status == 403 and "Host" in r.json()["error"]["message"], f"{host} {path}: {r}")
    check(child_paths(d) == [], f"the child saw {child_paths(d)}")
    for host in (f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}", "app.localhost",
                 f"{socket.gethostname()}:{PORT}"):
        check(http(PORT, "GET", "/slots", headers={"Host": host}).status == 200, host)
    # With keys, the key is the guard: any name.
    d.stop()
    d.write_config(conf(top=f"api-key-file = {write_keys(d)}"))
    d.mark()
    d.start()
    ready(d)
    r = http(PORT, "GET", "/slots", headers={"Host": "llm.example.org", **AUTH})
    check(r.status == 200, r)


@fixture(conf(), models=MODELS, start=False)
def test_cors_with_keys(d):
    """With keys, any origin may read what its key gets it; preflight needs no key."""
    with_keys(d)
    h = {"Origin": "https://app.example"}
    r = http(PORT, "OPTIONS", "/v1/chat/completions", headers={
        **h, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    check(r.status == 200, r)
    cors_check("preflight", r.headers, "*")
    check("authorization" in r.headers.get("access-control-allow-headers", "").lower(), r.headers)
    cors_check("401", http(PORT, "POST", "/v1/chat/completions", CHAT, h).headers, "*")
    cors_check("200", http(PORT, "POST", "/v1/chat/completions", CHAT, {**h, **AUTH}).headers, "*")


@fixture(conf(top="cors-origins = https://app.example http://localhost:5173"), models=MODELS)
def test_cors_listed(d):
    ready(d)
    r = http(PORT, "GET", "/v1/models", headers={"Origin": "https://app.example"})
    check(r.headers.get("access-control-allow-origin") == "https://app.example", r.headers)
    check("origin" in r.headers.get("vary", "").lower(), r.headers)
    r = http(PORT, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    check(r.headers.get("access-control-allow-origin") == "http://localhost:5173", r.headers)
    r = http(PORT, "GET", "/v1/models", headers={"Origin": "https://evil.example"})
    check("access-control-allow-origin" not in r.headers, f"an unlisted origin is allowed: {r.headers}")
    check(r.status == 403, r)


@fixture(conf(), models=MODELS, start=False)
def test_public_takes_no_body(d):
    """What needs no key takes no body: it cannot hold a connection busy without one."""
    with_keys(d)
    for method, path in (("OPTIONS", "/v1/chat/completions"), ("GET", "/health"), ("GET", "/v1/models")):
        reply = raw(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4000\r\n\r\n{{".encode(), timeout=5)
        check(status_of(reply) == 400, f"{method} {path} with a body: {reply[:200]!r}")
    # A method that is not a token is refused, and never reaches the log raw.
    reply = raw(b"G\x1b[31mET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
    check(status_of(reply) == 400, f"a method with ESC: {reply[:200]!r}")
    reply = raw(b"\rFORGED: x GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
    check(status_of(reply) in (400, None), f"a method with CR: {reply[:200]!r}")
    wait_until(lambda: "\\x1b[31mET" in open(d.log_path, errors="replace").read(), "the escaped method in the log")
    for line in open(d.log_path, errors="replace").read().splitlines():
        check("\x1b" not in line and "\r" not in line and not line.startswith("FORGED"), f"log line {line!r}")


@fixture(conf(), models=MODELS, start=False)
def test_key_file_forms(d):
    """Spaces around a key are not part of it; a comment takes its own line; a key with a
    space inside, or a file of blanks, is refused with the reason and the old keys stay."""
    with_keys(d)
    write_keys(d, "# agents\n  sk-laptop  \n\tsk-ci\n\n")
    llmctl(d, "reload", check_rc=0)
    for k in ("sk-laptop", "sk-ci"):
        check(http(PORT, "POST", "/v1/chat/completions", CHAT,
                   {"Authorization": "Bearer " + k}).status == 200, k)
    for text in ("sk-new # laptop\n", "   \n\t\n", "sk-\x7fnew\n"):
        write_keys(d, text)
        p = llmctl(d, "reload")
        check(p.returncode == 2 and "key" in p.stdout + p.stderr, f"{text!r}: {p.stdout} {p.stderr}")
        check(http(PORT, "POST", "/v1/chat/completions", CHAT,
                   {"Authorization": "Bearer sk-ci"}).status == 200, f"{text!r}: the old key stopped working")


@sim_only("its records of what it saw")
@fixture(conf(top="routing = reject"), models=MODELS)
def test_nul_in_model(d):
    """\\u0000 would cut "model" short for llmd but not for llama-server: refused."""
    ready(d)
    for body in (b'{"model":"qwen\\u0000evil","messages":[]}', b'{"model\\u0000x":"evil","model":"qwen","messages":[]}'):
        r = http(PORT, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        check(r.status == 400 and "u0000" in r.json()["error"]["message"], f"{body!r}: {r}")
    check("/v1/chat/completions" not in child_paths(d), f"the child saw {child_paths(d)}")


@sim_only("its records of what it saw")
@fixture(conf(), models=MODELS)
def test_nul_in_request_line(d):
    """A raw NUL byte in the request line is refused, not taken as the end of the path (what
    follows it would be another path to whoever reads the whole line)."""
    ready(d)
    for target in (b"/health\0/../v1/models", b"/v1/models\0x", b"\0/health", b"/health?model=qwen\0x"):
        reply = raw(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        check(status_of(reply) == 400 and b"NUL" in reply, f"{target!r}: {reply[:300]!r}")
    reply = raw(b"POST /v1/chat/completions\0x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    check(status_of(reply) == 400, reply[:300])
    check("/v1/chat/completions" not in child_paths(d), f"the child saw {child_paths(d)}")
    # In the method too: MHD would read "POST\0x" as POST, "GET\0junk" as GET.
    for line in (b"POST\0x /v1/chat/completions", b"GET\0junk /v1/models", b"G\0ET /health"):
        body = b"{}" if line.startswith(b"POST") else b""
        reply = raw(line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        check(status_of(reply) == 400 and b"NUL" in reply, f"{line!r}: {reply[:300]!r}")
    check("/v1/chat/completions" not in child_paths(d), f"the child saw {child_paths(d)}")
    reply = raw(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    check(status_of(reply) == 200, reply[:300])


@fixture(conf(), models=MODELS)
def test_health_unknown_param(d):
    """/health takes only ?model=: another parameter (a misspelt one) is a 400 that names it,
    not an answer for the active model."""
    ready(d)
    for query, name in (("Model=qwen", "Model"), ("model=qwen&x=1", "x"), ("verbose", "verbose")):
        r = http(PORT, "GET", "/health?" + query)
        check(r.status == 400 and f'"{name}"' in r.json()["error"]["message"], f"{query}: {r}")
    for query in ("", "?", "?model=qwen"):
        r = http(PORT, "GET", "/health" + query)
        check(r.status == 200 and r.json()["model"] == "qwen", f"{query}: {r}")
    # One request, one reading: a model named twice, or "model" without a value, is a 400.
    for query, says in (("?model=qwen&model=nomic", "twice"), ("?model", "empty")):
        r = http(PORT, "GET", "/health" + query)
        check(r.status == 400 and says in r.json()["error"]["message"], f"{query}: {r}")


@fixture(conf(), models=MODELS, start=False)
def test_bad_key_file_at_start(d):
    """A bad key file is a bad configuration: --check-config says so, and llmd exits 78 (the
    unit does not restart that) without serving anything open."""
    keys = write_keys(d, mode=0o644)
    d.write_config(conf(top=f"api-key-file = {keys}"))
    p = subprocess.run([LLMD, "--check-config", d.config], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "readable by others" in p.stderr, f"--check-config: {p.returncode} {p.stderr}")
    d.start()
    check(d.proc.wait(10) == 78, f"exit status {d.proc.returncode}")
    check("readable by others" in open(d.log_path).read(), "no reason in the log")
    os.unlink(keys)
    p = subprocess.run([LLMD, "--check-config", d.config], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "api-key-file" in p.stderr, f"missing file: {p.returncode} {p.stderr}")


@fixture(conf(), models=MODELS, start=False)
def test_open_listen_warns(d):
    """Beyond loopback without keys: llmd serves, and says at start what that means."""
    # A port below the ephemeral range: the flood tests' clients hold thousands of those, and a
    # wildcard bind conflicts with every one of them.
    import random
    for port in random.sample(range(20000, 32000), 50):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
                break
            except OSError:
                continue
    d.write_config(conf().replace(f"listen = 127.0.0.1:{PORT}", f"listen = 0.0.0.0:{port}"))
    d.start()
    ready(d)
    wait_until(lambda: "no api-key-file" in open(d.log_path).read(), "the warning")


# A child that sends one whole event, then half of the next, then dies: the stand-in for a
# llama-server killed mid-write (the simulator always stops between events).
HALF_EVENT_SERVER = r"""#!/usr/bin/env python3
import os, socket, sys, threading, time
host = sys.argv[sys.argv.index("--host") + 1]
srv = socket.socket(socket.AF_UNIX)
srv.bind(host)
srv.listen(16)
EVENTS = {  # path: (one whole event, half of the next)
    "/v1/messages": (b'event: message_start\ndata: {"type":"message_start"}\n\n',
                     b'event: content_block_delta\ndata: {"type":"content_bl'),
    "/v1/responses": (b'event: response.created\ndata: {"type":"response.created"}\n\n',
                      b'event: response.output_text.delta\ndata: {"type":"respo'),
    "/v1/chat/completions": (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', b'data: {"choi'),
}
def answer(c):
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(65536) or b"\r\n\r\n"
    path = data.split(b" ")[1].decode()
    if path not in EVENTS:
        body = b'{"status":"ok","data":[]}'
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        c.close()
        return
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for part in EVENTS[path]:
        c.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        time.sleep(0.2)
    os._exit(1)
while True:
    threading.Thread(target=answer, args=(srv.accept()[0],), daemon=True).start()
"""


@sim_only("a fake llama-server that dies mid-event")
@fixture(conf(qwen="restart-sec = 0.1"), models=MODELS, start=False)
def test_half_event_dropped(d):
    """A child that dies halfway through an event: the client gets the whole events, then the
    error event of its API, never the half event (which it would fail to parse)."""
    fake = os.path.join(d.dir, "half-event-server")
    with open(fake, "w") as f:
        f.write(HALF_EVENT_SERVER)
    os.chmod(fake, 0o755)
    d.write_config(conf(top=f"llama-server = {fake}", qwen="restart-sec = 0.1"))
    d.start()
    for path, first, error in (("/v1/messages", "message_start", "error"),
                               ("/v1/responses", "response.created", "response.failed"),
                               ("/v1/chat/completions", None, None)):
        ready(d)
        s = Stream(PORT, path, {**CHAT, "stream": True}, timeout=10)
        ev = s.named_events()
        check(len(ev) == 2 and ev[0][0] == first and ev[1][0] == error, f"{path}: {ev}")
        check(("error" in ev[1][1]) if path.endswith("completions") else True, f"{path}: {ev}")
        d.mark()  # the fake child died: the next path waits for the one llmd starts again


# A child that answers llmd's own requests, and a completion as its prompt says ("MODE:name"):
# each a way of breaking HTTP that llmd's client to its children must survive.
MISBEHAVING_SERVER = r"""#!/usr/bin/env python3
import re, socket, sys, threading, time
host = sys.argv[sys.argv.index("--host") + 1]
srv = socket.socket(socket.AF_UNIX)
srv.bind(host)
srv.listen(16)
BODY = b'{"choices":[{"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}'
def answer(c):
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            more = c.recv(65536)
            if not more:
                return
            data += more
        head, data = data.split(b"\r\n\r\n", 1)
        n = int((re.search(rb"(?i)content-length: *(\d+)", head) or [0, b"0"])[1])
        while len(data) < n:
            data += c.recv(65536)
        req, data = head + data[:n], data[n:]
        mode = (re.search(rb"MODE:(\w+)", req) or [0, b"normal"])[1]
        if mode == b"bad_chunk":  # the headers, and a bad chunk size in the same write
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        elif mode == b"then_close":  # an answer to keep the connection for; closed unread later
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
            time.sleep(1.5)
            c.close()
            return
        elif mode == b"no_content":  # a 204 that gives a length, and no body
            c.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
        elif mode == b"late_excess":  # more than its length, after a while
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
            time.sleep(0.1)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"evil\":\"smuggled\"}")
            open(host + ".excess-sent", "w").close()
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
while True:
    threading.Thread(target=answer, args=(srv.accept()[0],), daemon=True).start()
"""


def misbehaving_child(d):
    fake = os.path.join(d.dir, "misbehaving-server")
    with open(fake, "w") as f:
        f.write(MISBEHAVING_SERVER)
    os.chmod(fake, 0o755)
    d.write_config(conf(top=f"llama-server = {fake}"))
    d.start()
    ready(d)


def ask(mode, left_open_fails=False):
    """A completion the misbehaving child answers as mode says: what the client got, up to the
    end of the connection."""
    body = json.dumps({"messages": [{"role": "user", "content": "MODE:" + mode}]}).encode()
    return raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body), timeout=TIMEOUT,
               left_open_fails=left_open_fails)


@sim_only("a fake llama-server that breaks the framing")
@fixture(conf(), models=MODELS, start=False)
def test_upstream_broken_after_headers(d):
    """A child whose headers come with a broken body in one read: the client has the headers
    already, so the connection is closed at once -- not left open until some other request
    makes MHD run -- and the client sees no end of the chunked body."""
    misbehaving_child(d)
    out = ask("bad_chunk", left_open_fails=True)
    check(status_of(out) == 200 and not out.endswith(b"0\r\n\r\n"), f"{out!r}")
    check(status_of(ask("normal")) == 200, "llmd serves on")


@sim_only("a fake llama-server that breaks the framing")
@fixture(conf(), models=MODELS, start=False)
def test_upstream_no_content_with_length(d):
    """A 204 that gives a Content-Length (and no body): the client gets the 204, empty, and the
    next request its own answer (the sanitized build reports any undefined behaviour)."""
    misbehaving_child(d)
    out = ask("no_content")
    check(status_of(out) == 204 and out.endswith(b"\r\n\r\n"), f"{out!r}")
    out = ask("normal")
    check(status_of(out) == 200 and b'"hello"' in out, f"{out!r}")


@sim_only("a fake llama-server that closes a kept connection")
@fixture(conf(), models=MODELS, start=False)
def test_upstream_kept_connection_reset(d):
    """A kept connection the child closes with the next request unread in it (llama-server's
    keep-alive timeout racing a request): llmd reads ECONNRESET, and sends the request again on
    a new connection -- the client gets its answer, not a 502."""
    misbehaving_child(d)
    check(status_of(ask("then_close")) == 200, "the first answer")
    out = ask("normal")
    check(status_of(out) == 200 and b'"hello"' in out, f"{out!r}")


@sim_only("a fake llama-server that sends more than its length")
@fixture(conf(), models=MODELS, start=False)
def test_upstream_late_excess_not_reused(d):
    """A child that sends bytes past its Content-Length a moment after the answer: they must
    never become the answer to the next request on that connection."""
    misbehaving_child(d)
    check(status_of(ask("late_excess")) == 200, "the first answer")
    wait_until(lambda: os.path.exists(d.socket_path("qwen") + ".excess-sent"), "the excess sent")
    out = ask("normal")
    check(b"smuggled" not in out and b'"hello"' in out, f"{out!r}")


if __name__ == "__main__":
    run()
