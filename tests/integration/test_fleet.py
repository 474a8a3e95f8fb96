#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Several llmd boxes behind one HAProxy, configured by `llmctl fleet haproxy`: three llmd, each in
its own network namespace with its own address, the simulator as their children, and Debian's
HAProxy in front with the configuration llmctl wrote. Which box served a request is read from
each llmd's own log (and from the X-Llmd-Box header the front adds; both must agree).

The network is the test's own: a front namespace (HAProxy and the clients: the test's main thread
moves into it) with a veth pair to each box's namespace, 10.213.N.1 on the front's side and
10.213.N.2 on box N's. Nothing outside these namespaces is touched; they are removed at the end,
whatever happened. Needs root (ip netns) and haproxy; exits 77 without them."""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from llmdtest import (LLMCTL, Failure, Llmd, Skip, check, fake_http_server, run, sim_only,
                      wait_until)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
PORT = 8080  # the boxes and the front all use it, each in its own namespace
FRONT = ("127.0.0.1", PORT)
KEY = "fleet-secret-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLIENT_TIMEOUT = 20  # a request that takes longer than this has hung

# box: (its models, the active one). nomic is a pinned embedding model.
LAYOUT = {
    "box1": (("qwen", "gemma", "nomic"), "qwen"),
    "box2": (("qwen", "devstral"), "qwen"),
    "box3": (("gemma", "devstral", "nomic"), "gemma"),
}
BOXES = list(LAYOUT)


def address(box):
    return f"10.213.{BOXES.index(box) + 1}.2:{PORT}"


def box_of(addr):
    return {address(b): b for b in BOXES}.get(addr)


def box_config(box, keys):
    models, active = LAYOUT[box]
    text = f"""
[llmd]
listen = {address(box)}
default = {active}
routing = switch
api-key-file = {keys}
max-connections-per-client = 4096

[*]
stop-timeout = 5s
"""
    for m in models:
        text += f"\n[{m}]\nmodel = @MODELS@/{m}.gguf\n"
        if m == "qwen":
            text += "aliases = qwen3.5\n"
        if m == "nomic":
            text += "embeddings = true\npin = true\n"
    return text


# ---- the namespaces ----

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def ip(*args):
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise Failure(f"ip {' '.join(args)}: {p.stderr.strip()}")


class Network:
    """The front namespace and one per box, joined by veth pairs. The calling thread (the test's
    main thread) moves into the front namespace; threads and processes it starts are there too."""

    def __init__(self):
        tag = f"llmd-fleet-{os.getpid()}"
        self.front = f"{tag}-front"
        self.boxes = {b: f"{tag}-{b}" for b in BOXES}
        self.created = []
        self.host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.moved = False

    def up(self):
        for ns in (self.front, *self.boxes.values()):
            p = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
            if p.returncode != 0:
                if not self.created:
                    raise Skip(f"cannot create a network namespace: {p.stderr.strip()}")
                raise Failure(f"ip netns add {ns}: {p.stderr.strip()}")
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for i, (box, ns) in enumerate(self.boxes.items(), 1):
            veth = f"veth-{box}"
            ip("-n", self.front, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", self.front, "addr", "add", f"10.213.{i}.1/24", "dev", veth)
            ip("-n", self.front, "link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"10.213.{i}.2/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        setns(f"/run/netns/{self.front}")
        self.moved = True

    def down(self):
        """Ends what still runs in our namespaces (only ours: the names carry our pid), then
        removes them; the veth pairs go with them."""
        if self.moved:
            setns(f"/proc/self/fd/{self.host}")
            self.moved = False
        for ns in reversed(self.created):
            p = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in p.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []
        os.close(self.host)


# ---- HTTP through the front ----

class Result:
    """One request through the front, as its client saw it."""

    def __init__(self, model, t0):
        self.model, self.t0, self.t_head, self.t1 = model, t0, None, None
        self.status, self.box, self.error = None, None, None

    @property
    def ok(self):
        return self.status == 200 and self.error is None

    def __repr__(self):
        return (f"<{self.model} {self.status} box={self.box} error={self.error} "
                f"t={self.t0:.3f}..{self.t1:.3f}>")


class Cut(Exception):
    pass


def exchange(method, path, body=None, headers=None, res=None, timeout=CLIENT_TIMEOUT):
    """One request through the front on its own connection, read off the wire as it comes:
    (status, {header: value}, body). A body that ends before its last chunk (or its
    Content-Length) raises Cut: the front closed the connection in the middle of it."""
    data = json.dumps(body).encode() if body is not None else b""
    h = {"Host": "%s:%d" % FRONT, "Connection": "close", "Content-Length": str(len(data)),
         **({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
    s = socket.create_connection(FRONT, timeout=timeout)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() +
                  "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n" + data)
        r = s.makefile("rb")
        line = r.readline()
        if not line:
            raise Cut("the connection closed before an answer")
        status = int(line.split()[1])
        got = {}
        while (line := r.readline().rstrip(b"\r\n")):
            k, _, v = line.decode().partition(":")
            got[k.strip().lower()] = v.strip()
        if res is not None:
            res.status, res.box = status, box_of(got.get("x-llmd-box"))
            res.t_head = time.monotonic()
        out = b""
        if got.get("transfer-encoding") == "chunked":
            while True:
                size = r.readline()
                if not size.endswith(b"\r\n"):
                    raise Cut("the connection closed in the middle of the body (no last chunk)")
                n = int(size.split(b";")[0], 16)
                chunk = r.read(n + 2)
                if len(chunk) < n + 2:
                    raise Cut("the connection closed in the middle of a chunk")
                if n == 0:
                    break
                out += chunk[:n]
        else:
            n = int(got.get("content-length", "0"))
            out = r.read(n)
            if len(out) < n:
                raise Cut("the connection closed before Content-Length bytes")
        return status, got, out
    finally:
        s.close()


IN_FLIGHT = set()  # the Results of requests under way (their box is known once headers came)


def measured(model, method, path, body, check_body, headers=AUTH):
    """A request through the front as a Result: an error is a cut body, a reset, a timeout (a
    hang), or a 200 whose body check_body refuses."""
    res = Result(model, time.monotonic())
    IN_FLIGHT.add(res)
    try:
        status, _, out = exchange(method, path, body, headers, res)
        if status == 200:
            res.error = check_body(out)
    except socket.timeout:
        res.error = "hung: no answer in %ds" % CLIENT_TIMEOUT
    except (Cut, OSError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"
    res.t1 = time.monotonic()
    IN_FLIGHT.discard(res)
    return res


def stream_done(out):
    return None if out.rstrip().endswith(b"data: [DONE]") else "the stream ended without [DONE]"


def chat(model, tokens=4, stream=True, key=True):
    """A chat completion through the front; a stream counts only when it ends with [DONE]."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": tokens, "stream": stream}
    return measured(model, "POST", "/v1/chat/completions", body,
                    stream_done if stream else (lambda out: json.loads(out) and None),
                    AUTH if key else {})


def embed():
    return measured("nomic", "POST", "/v1/embeddings", {"model": "nomic", "input": "hi"},
                    lambda out: None if json.loads(out)["data"] else "no embedding")


class Load:
    """Clients sending requests one after another through the front until stopped."""

    def __init__(self, fn, clients, pause=0.0):
        self.fn, self.pause, self.results, self.lock = fn, pause, [], threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _loop(self):
        while self.running:
            r = self.fn()
            with self.lock:
                self.results.append(r)
            time.sleep(self.pause)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(CLIENT_TIMEOUT + 5)
            if t.is_alive():
                raise Failure("a client thread hung")
        return self.results


# ---- the fleet ----

REQUEST_LINE = re.compile(r"^llmd: (GET|POST) (\S+) model=(\S+) → (\S+) (\d+) ")


class Fleet:
    def __init__(self, env=None):
        self.net = Network()
        self.boxes = {}
        self.haproxy = None
        self.env = env or {}
        self.transitions = []  # (monotonic time, backend, box, status) as seen on the stats socket

    def start(self):
        if os.geteuid() != 0:
            raise Skip("needs root: the boxes live in network namespaces (ip netns)")
        if not os.access(HAPROXY, os.X_OK):
            raise Skip("haproxy is not installed (tools/deps.sh installs it)")
        self.net.up()
        for box in BOXES:
            models, _ = LAYOUT[box]
            d = Llmd(box_config(box, "@KEYS@"), models=models, env=self.env.get(box))
            keys = os.path.join(d.dir, "keys")
            with open(keys, "w") as f:
                f.write(KEY + "\n")
            os.chmod(keys, 0o600)
            d.write_config(box_config(box, keys))
            d.command_prefix = ["ip", "netns", "exec", self.net.boxes[box]]
            self.boxes[box] = d
            d.start()
        for box, d in self.boxes.items():
            models, active = LAYOUT[box]
            want = f"{active} ready" + (" · embed nomic ready" if "nomic" in models else "")
            d.wait_status(lambda s, w=want: s.startswith(w))
        self.dir = self.boxes["box1"].dir
        self.config = self.generate()
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg_path, "w") as f:
            f.write(self.config)
        # Debian's configuration as llmctl writes it, run as it is: its stats socket lands in
        # /run/haproxy, here a tmpfs of HAProxy's own mount namespace (the test reaches it
        # through /proc/PID/root), so the host's /run is not touched.
        self.haproxy_log = open(os.path.join(self.dir, "haproxy.log"), "ab")
        self.haproxy = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs tmpfs /run && mkdir /run/haproxy && exec "$0" -W -db -f "$1"',
             HAPROXY, self.cfg_path],
            stdout=self.haproxy_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.stats_path = f"/proc/{self.haproxy.pid}/root/run/haproxy/admin.sock"
        self.watching = True
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        wait_until(self.all_checked, "HAProxy's first checks of every server")
        return self

    def generate(self):
        """llmctl fleet haproxy: box1's key from a key file, the others' from $LLMD_API_KEY."""
        keyfile = os.path.join(self.boxes["box1"].dir, "keys")
        p = subprocess.run([LLMCTL, "fleet", "haproxy", "--listen", "%s:%d" % FRONT,
                            address("box1") + "@" + keyfile, address("box2"), address("box3")],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "LLMD_API_KEY": KEY})
        if p.returncode != 0:
            raise Failure(f"llmctl fleet haproxy: exit {p.returncode}: {p.stderr}")
        return p.stdout

    # ---- HAProxy's view, from its stats socket ----

    def stats(self):
        """{(backend, box): status} ("UP", "DOWN", "UP 1/2", ...) and the check results."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.stats_path)
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        finally:
            s.close()
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("svname") not in ("FRONTEND", "BACKEND", None):
                out[(row["pxname"], box_of(row["svname"]))] = (row["status"], row["check_status"])
        return out

    def all_checked(self):
        try:
            st = self.stats()
        except OSError:
            return False
        return st and all(status == "UP" and check in ("L7OK", "")
                          for status, check in st.values())

    def sessions(self, backend, box):
        """The requests HAProxy has on box in backend: running (scur) and queued (qcur)."""
        for line in self.admin("show stat").splitlines()[1:]:
            row = line.split(",")
            if row[0] == backend and row[1] not in ("FRONTEND", "BACKEND") \
                    and box_of(row[1]) == box:
                return int(row[4] or 0) + int(row[2] or 0)
        return None

    def admin(self, command):
        """A command on HAProxy's stats socket (level admin); its answer."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.stats_path)
            s.sendall(command.encode() + b"\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        finally:
            s.close()
        return data.decode().strip()

    def _watch(self):
        last = {}
        while self.watching:
            try:
                st = self.stats()
            except (OSError, IndexError):
                st = {}
            now = time.monotonic()
            for key, (status, _) in st.items():
                if last.get(key) != status:
                    self.transitions.append((now, key[0], key[1], status))
                    last[key] = status
            time.sleep(0.02)

    def wait_state(self, backend, box, status, since=0.0, timeout=30):
        """When HAProxy was first seen with box at status in backend after since."""
        def seen():
            for t, be, b, s in list(self.transitions):
                if t >= since and be == backend and b == box and s == status:
                    return t
            return None
        return wait_until(seen, f"{backend}/{box} {status}", timeout)

    # ---- what each llmd logged ----

    def served(self, box, model=None, path="/v1/chat/completions"):
        """The requests box's llmd logged for path (and asked model): [(asked, target, status)]."""
        out = []
        with open(self.boxes[box].log_path, errors="replace") as f:
            for line in f:
                m = REQUEST_LINE.match(line)
                if m and m.group(2) == path and (model is None or m.group(3) == model):
                    out.append((m.group(3), m.group(4), int(m.group(5))))
        return out

    def llmctl(self, box, *args):
        d = self.boxes[box]
        return subprocess.run([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), *args],
                              capture_output=True, text=True, timeout=60)

    def dump(self):
        for box, d in self.boxes.items():
            sys.stderr.write(f"==== {box} ====\n")
            d.dump()
        sys.stderr.write("==== haproxy.cfg ====\n" + getattr(self, "config", "") + "\n")
        try:
            with open(os.path.join(self.dir, "haproxy.log"), errors="replace") as f:
                sys.stderr.write("==== haproxy ====\n" + f.read()[-20000:])
        except (AttributeError, FileNotFoundError):
            pass
        sys.stderr.write("==== HAProxy's state changes ====\n")
        for t, be, b, s in self.transitions:
            sys.stderr.write(f"{t:.3f} {be}/{b} {s}\n")

    def cleanup(self):
        self.watching = False
        if self.haproxy and self.haproxy.poll() is None:
            self.haproxy.kill()
            self.haproxy.wait()
        for d in self.boxes.values():
            d.kill_all()
        self.net.down()
        for d in self.boxes.values():
            d.cleanup()


def fleet_test(env=None):
    """Decorator: the test gets a started Fleet; everything is shown when it fails."""
    def wrap(fn):
        def runner():
            f = Fleet(env)
            # meson stops a test that runs too long with SIGTERM: clean up then too.
            old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
            try:
                f.start()
                fn(f)
                reports = [r for d in f.boxes.values() for r in d.sanitizer_reports()]
                if reports:
                    raise Failure("a sanitizer reported an error in llmd or a child: " + reports[0])
            except Skip:
                raise
            except BaseException:
                f.dump()
                raise
            finally:
                f.cleanup()
                signal.signal(signal.SIGTERM, old)
        runner.__name__ = fn.__name__
        return runner
    return wrap


def figures(title, rows):
    print(f"# {title}")
    for k, v in rows:
        print(f"#   {k}: {v}")


# ---- the tests ----

@sim_only("its prompts of up to 2 MB would overflow a real model's context")
@fleet_test()
def test_routes_by_model(f):
    cfg = f.config
    # What llmctl wrote: a backend per model, loaded boxes as servers, the others as backups.
    for line in (f"server {address('box1')} {address('box1')} check",
                 f"server {address('box2')} {address('box2')} check"):
        check(line in cfg.split("backend model:qwen\n")[1].split("\n\n")[0],
              f"model:qwen has {line!r}")
    gemma = cfg.split("backend model:gemma\n")[1].split("\n\n")[0]
    check(f"server {address('box3')} {address('box3')} check" in gemma, "gemma is served by box3")
    check(f"{address('box1')} backup track loadable:gemma/" in gemma, "box1 is gemma's backup")
    devstral = cfg.split("backend model:devstral\n")[1].split("\n\n")[0]
    check(devstral.count(" backup track ") == 2, "devstral, loaded nowhere, has two backups")
    check("qwen3.5" in cfg.split("acl is:qwen ")[1].split("\n")[0], "the alias routes")

    # What llmctl says when it cannot write one.
    for args, rc, says in ((["10.213.1.2:9"], 1, "10.213.1.2:9: Failed to connect"),
                           ([address("box1") + "@/nonexistent"], 1, "cannot read the key file"),
                           ([address("box1"), "box1"], 1, "'box1' is not HOST:PORT"),
                           ([address("box1"), address("box1")], 1, "is named twice")):
        p = subprocess.run([LLMCTL, "fleet", "haproxy", *args], capture_output=True, text=True,
                           timeout=30)
        check(p.returncode == rc and says in p.stderr and not p.stdout,
              f"llmctl fleet haproxy {args}: {p.returncode} {p.stderr!r}")

    sent = {"qwen": 0, "qwen3.5": 0, "gemma": 0}
    headers = {}
    for _ in range(6):
        for model in sent:
            r = chat(model, stream=model != "qwen3.5")
            check(r.ok, f"{model} through the front: {r}")
            sent[model] += 1
            headers[(model, r.box)] = headers.get((model, r.box), 0) + 1
        st, h, body = exchange("POST", "/v1/embeddings", {"model": "nomic", "input": "hi"}, AUTH)
        check(st == 200 and json.loads(body)["data"], f"embeddings: {st} {body[:200]}")
        check(box_of(h.get("x-llmd-box")) in ("box1", "box3"), f"nomic from {h.get('x-llmd-box')}")
    # The model in the path: GET /v1/models/ID goes to a box that has it.
    st, h, body = exchange("GET", "/v1/models/gemma")
    check(st == 200 and json.loads(body)["id"] == "gemma", f"/v1/models/gemma: {st} {body[:200]}")
    check(box_of(h.get("x-llmd-box")) == "box3", f"/v1/models/gemma from {h.get('x-llmd-box')}")

    # Each request landed where its model was ready, by each llmd's own log (once every
    # request's line is there: llmd writes it just after the last byte the client read).
    wait_until(lambda: sum(len(f.served(b, m)) for b in BOXES for m in sent) >= sum(sent.values()),
               f"the boxes' logs to show all {sum(sent.values())} requests")
    count = {b: {m: len(f.served(b, m)) for m in sent} for b in BOXES}
    figures("requests per box (llmd's logs)", [(b, count[b]) for b in BOXES])
    check(all(count[b]["qwen"] + count[b]["qwen3.5"] > 0 for b in ("box1", "box2")),
          f"qwen on both boxes: {count}")
    check(count["box1"]["qwen"] + count["box2"]["qwen"] == sent["qwen"], f"qwen: {count}")
    check(count["box1"]["qwen3.5"] + count["box2"]["qwen3.5"] == sent["qwen3.5"], f"alias: {count}")
    check(count["box3"]["gemma"] == sent["gemma"], f"gemma only on box3: {count}")
    check(count["box3"]["qwen"] == 0 and count["box1"]["gemma"] == 0, f"nothing astray: {count}")
    for (model, box), n in headers.items():
        check(count[box][model] == n, f"X-Llmd-Box says {n} {model} on {box}; its log {count}")
    for b in BOXES:
        check(all(t == ("qwen" if m == "qwen3.5" else m) and s == 200
                  for m, t, s in f.served(b)), f"{b} answered each with its model: {f.served(b)}")

    # "model" after a long prompt, as the OpenAI Python library writes it: read within the
    # front's 1 MiB buffer; past it, a 413 that says why, rather than a guess.
    for size, first, want in ((600_000, False, 200), (2_000_000, False, 413),
                              (2_000_000, True, 200)):
        msgs = [{"role": "user", "content": "x" * size}]
        body = ({"model": "gemma", "messages": msgs, "max_tokens": 2} if first
                else {"messages": msgs, "max_tokens": 2, "model": "gemma"})
        st, h, out = exchange("POST", "/v1/chat/completions", body, AUTH)
        check(st == want, f"{size} B, model {'first' if first else 'last'}: {st} {out[:200]}")
        check(box_of(h.get("x-llmd-box")) == ("box3" if want == 200 else None),
              f"{size} B: from {h.get('x-llmd-box')}")
    wait_until(lambda: len(f.served("box3", "gemma")) >= sent["gemma"] + 2, "box3's log lines")
    check(len(f.served("box3", "gemma")) == sent["gemma"] + 2, "the 413 reached no box")

    # The key passes through: without it the box itself says 401.
    r = chat("qwen", key=False)
    check(r.status == 401 and r.box in ("box1", "box2"), f"no key: {r}")

    # A model no box has: 404 from the front, in OpenAI's shape; no box saw it.
    st, h, body = exchange("POST", "/v1/chat/completions",
                          {"model": "llama-70b", "messages": [{"role": "user", "content": "x"}]},
                          AUTH)
    err = json.loads(body)["error"]
    check(st == 404 and err["code"] == 404 and "llama-70b" in err["message"],
          f"unknown model: {st} {body}")
    check("x-llmd-box" not in h, "the front answered it")
    check(not any(m == "llama-70b" for b in BOXES for m, _, _ in f.served(b)), "no box saw it")
    st, _, body = exchange("GET", "/v1/models/llama-70b")
    check(st == 404, f"/v1/models/llama-70b: {st} {body}")

    # No model: the first box answers.
    st, h, body = exchange("GET", "/v1/models")
    check(st == 200 and box_of(h.get("x-llmd-box")) == "box1", f"/v1/models: {st} {h}")

    # devstral is loaded nowhere: its first backup (box2, routing = switch) loads it.
    r = chat("devstral")
    check(r.ok and r.box == "box2", f"devstral: {r}")
    wait_until(lambda: f.served("box2", "devstral"), "box2's log line for devstral")
    check(f.served("box2", "devstral") == [("devstral", "devstral", 200)],
          f"box2 loaded devstral and answered: {f.served('box2', 'devstral')}")


SWITCH_LOAD_MS = "1500"


@sim_only("the switch and kill windows are paced by the simulator's load and token times")
@fleet_test(env={"box1": {"LLAMA_SIM_LOAD_MS": SWITCH_LOAD_MS}})
def test_switch_moves_traffic(f):
    load = Load(lambda: chat("qwen", tokens=8), clients=4)
    try:
        wait_until(lambda: len(load.results) >= 20, "requests before the switch")
        t_switch = time.monotonic()
        p = f.llmctl("box1", "switch", "gemma")
        check(p.returncode == 0, f"switch gemma on box1: {p.returncode} {p.stderr}")
        t_down = f.wait_state("model:qwen", "box1", "DOWN", since=t_switch)
        time.sleep(1)
        p = f.llmctl("box1", "switch", "qwen")
        check(p.returncode == 0, f"switch qwen on box1: {p.returncode} {p.stderr}")
        t_up = f.wait_state("model:qwen", "box1", "UP", since=t_down)
        n = len(load.results)
        wait_until(lambda: len(load.results) >= n + 30, "requests after the switch back")
    finally:
        results = load.stop()
    errors = [r for r in results if not r.ok]
    during = [r for r in results if t_down < r.t0 and r.t1 < t_up]
    after = [r for r in results if r.t0 > t_up]
    # Sent to box1 after the switch began and before HAProxy saw it: llmd holds them until
    # qwen is back there (routing = switch), so they are slow, not lost.
    stray = [r for r in results if t_switch < r.t0 < t_down and r.box == "box1"]
    per_box = {b: len([r for r in results if r.box == b]) for b in BOXES}
    figures("a switch on box1 (gemma, then qwen again) under qwen load", [
        ("requests", len(results)),
        ("errors seen by clients", len(errors)),
        ("box1 out of model:qwen for", f"{t_up - t_down:.2f} s (marked down "
                                       f"{t_down - t_switch:.2f} s after the switch began)"),
        ("requests while out", f"{len(during)}, by box: "
                               f"{ {b: len([r for r in during if r.box == b]) for b in BOXES} }"),
        ("sent to box1 before HAProxy took it out",
         f"{len(stray)}, the slowest {max((r.t1 - r.t0 for r in stray), default=0):.2f} s"),
        ("requests per box (X-Llmd-Box)", per_box),
        ("qwen requests per box (llmd's logs)", {b: len(f.served(b, 'qwen')) for b in BOXES}),
    ])
    check(not errors, f"no client saw an error: {errors[:5]}")
    check(during, "requests ran while box1 was out")
    check(all(r.box == "box2" for r in during), f"box2 took them all: {during}")
    check(any(r.box == "box1" for r in after), f"qwen came back to box1: {after}")
    # llmd logs a request once its last byte is out; the client may have read it a moment
    # before that line reaches the log file (seen on a busy machine: 73 by the header, 72 in
    # the log). Every request is logged, soon: wait for it, do not race it.
    for b in ("box1", "box2"):
        wait_until(lambda b=b: len(f.served(b, "qwen")) == per_box[b],
                   f"{b}: its log and X-Llmd-Box to agree ({per_box[b]} by the header)")


@sim_only("the switch and kill windows are paced by the simulator's load and token times")
@fleet_test(env={"box1": {"LLAMA_SIM_LOAD_MS": SWITCH_LOAD_MS}})
def test_planned_switch(f):
    """docs/fleet.md's procedure: take the box out of the model's backend on HAProxy's stats
    socket, switch, switch back, put it back. Nothing reaches it meanwhile, so no request makes
    it load the model back before the operator does."""
    server = f"model:qwen/{address('box1')}"
    load = Load(lambda: chat("qwen", tokens=8), clients=4)
    try:
        wait_until(lambda: len(load.results) >= 20, "requests before the switch")
        out = f.admin(f"set server {server} state drain")
        check(out == "", f"drain: {out!r}")
        t_drain = time.monotonic()
        # As docs/fleet.md says: the requests HAProxy had sent there finish first (on a busy
        # machine one may still be on its way when the switch begins).
        wait_until(lambda: f.sessions("model:qwen", "box1") == 0, "box1's requests done")
        p = f.llmctl("box1", "switch", "gemma")
        check(p.returncode == 0, f"switch gemma on box1: {p.returncode} {p.stderr}")
        n = len(load.results)
        wait_until(lambda: len(load.results) >= n + 20, "requests while box1 serves gemma")
        p = f.llmctl("box1", "switch", "qwen")
        check(p.returncode == 0, f"switch qwen on box1: {p.returncode} {p.stderr}")
        t_ready = time.monotonic()
        out = f.admin(f"set server {server} state ready")
        check(out == "", f"ready: {out!r}")
        f.wait_state("model:qwen", "box1", "UP", since=t_ready)
        n = len(load.results)
        wait_until(lambda: len(load.results) >= n + 30, "requests after the switch back")
    finally:
        results = load.stop()
    errors = [r for r in results if not r.ok]
    during = [r for r in results if t_drain < r.t0 < t_ready]
    after = [r for r in results if r.t0 > t_ready]
    with open(f.boxes["box1"].log_path, errors="replace") as log:
        switches = [line.strip() for line in log if "Switched to" in line or "asks for" in line]
    figures("a planned switch on box1: drained in HAProxy first", [
        ("requests", len(results)),
        ("errors seen by clients", len(errors)),
        ("requests while box1 was out",
         f"{len(during)}, by box: { {b: len([r for r in during if r.box == b]) for b in BOXES} }"),
        ("box1's switches", switches),
    ])
    check(not errors, f"no client saw an error: {errors[:5]}")
    check(during and all(r.box == "box2" for r in during), f"box2 took them all: {during}")
    check([line.split(" in ")[0] for line in switches]
          == ["llmd: Switched to gemma", "llmd: Switched to qwen"],
          f"box1 switched to gemma and back when told, and only then: {switches}")
    check(any(r.box == "box1" for r in after), f"qwen came back to box1: {after}")


@sim_only("the switch and kill windows are paced by the simulator's load and token times")
@fleet_test(env={"box1": {"LLAMA_SIM_LOAD_MS": "500"}})
def test_killed_box_fails_over(f):
    # 100 tokens at the simulator's 10 ms a token: streams of a second, so several are running
    # on box3 when it dies.
    gemma = Load(lambda: chat("gemma", tokens=100), clients=4)
    nomic = Load(embed, clients=1, pause=0.02)
    try:
        wait_until(lambda: len([r for r in gemma.results if r.ok]) >= 8, "gemma answers")
        # Kill it while a stream is being answered there: one that has no answer yet is
        # HAProxy's to send again (retry-on empty-response), and on a busy machine all of them
        # may be waiting at the moment of a blind kill.
        wait_until(lambda: any(r.model == "gemma" and r.box == "box3" and
                               time.monotonic() - r.t_head < 0.5 for r in list(IN_FLIGHT)),
                   "a gemma stream under way on box3", interval=0.005)
        d = f.boxes["box3"]
        t_kill = time.monotonic()
        d.proc.kill()  # llmd itself; its children die with it (PR_SET_PDEATHSIG)
        d.proc.wait()
        t_down = f.wait_state("model:gemma", "box3", "DOWN", since=t_kill)
        wait_until(lambda: any(r.ok and r.box == "box1" for r in gemma.results),
                   "gemma answered by box1")
        n = len(gemma.results)
        wait_until(lambda: len(gemma.results) >= n + 8, "more gemma answers after the failover")
    finally:
        results = gemma.stop() + nomic.stop()
    gem = [r for r in results if r.model == "gemma"]
    errors = [r for r in results if not r.ok]
    on_box3 = [r for r in results if r.box == "box3" and r.t0 < t_kill < r.t1]
    first_box1 = min(r.t_head for r in gem if r.ok and r.box == "box1")
    figures("box3 killed under gemma and embedding load", [
        ("requests", f"{len(results)} (gemma {len(gem)}, embeddings {len(results) - len(gem)})"),
        ("running on box3 when it died", len(on_box3)),
        ("errors seen by clients", f"{len(errors)}: {sorted({str(r.error) for r in errors})}, "
                                   f"{len([r for r in errors if r.status == 503])} of them 503"),
        ("marked down after", f"{t_down - t_kill:.3f} s"),
        ("first gemma answer from box1 began after", f"{first_box1 - t_kill:.2f} s "
                                                     "(box1 loads gemma on demand: 0.5 s)"),
        ("requests per box (X-Llmd-Box)",
         {b: len([r for r in results if r.box == b]) for b in BOXES}),
        ("gemma requests per box (llmd's logs)",
         {b: len(f.served(b, "gemma")) for b in ("box1", "box3")}),
    ])
    check(not [r for r in results if r.error and r.error.startswith("hung")], "nothing hung")
    check(on_box3, "streams were running on box3 when it died")
    check([r for r in on_box3 if not r.ok and r.model == "gemma"],
          f"the streams cut on box3 end with an error, not a short answer: {on_box3}")
    # HAProxy uses the backup only once box3 is marked down: a request it sent to box3 in the
    # moment between the kill and that (its retries all go to the one server still UP) gets
    # HAProxy's own 503 with Retry-After (no X-Llmd-Box), a clean answer to retry. Seen once
    # in the sanitized build (marked down after 0.1 s); nothing else may fail.
    failover = [r for r in errors if r not in on_box3 and r.status == 503 and r.box is None and
                r.error is None and t_kill - 1 < r.t0 < t_down + 0.5]
    check(all(r in on_box3 or r in failover for r in errors),
          f"only those: {[r for r in errors if r not in on_box3 and r not in failover]}")
    check(all(r.ok and r.box == "box1" for r in gem if r.t0 > t_down),
          "gemma failed over to box1 (its backup), which loaded it")
    check(all(r.box in ("box1", "box3") for r in results if r.model == "nomic"), "nomic stayed")
    wait_until(lambda: len(f.served("box1", "gemma")) == len([r for r in gem if r.box == "box1"]),
               "box1's log to count what X-Llmd-Box says")

    # devstral is on box2 and box3 only: with both gone, the front says 503, and when to retry.
    t = time.monotonic()
    f.boxes["box2"].proc.kill()
    f.wait_state("loadable:devstral", "box2", "DOWN", since=t)
    st, h, body = exchange("POST", "/v1/chat/completions",
                           {"model": "devstral", "messages": [{"role": "user", "content": "x"}]},
                           AUTH)
    check(st == 503 and h.get("retry-after") == "5" and json.loads(body)["error"]["code"] == 503,
          f"devstral with no box left: {st} {h} {body}")


# ---- what a box says, on the terminal ----

def forging_box(status):
    """A box whose /v1/models has a model name (200), or an error message (else), that holds an
    escape sequence and a line of its own."""
    forged = "\x1b[31mred\x1b[0m\nllmctl: forged by the box"
    doc = {"data": [{"id": forged, "state": "loaded"}]} if status == 200 else \
        {"error": {"message": forged}}
    return lambda method, path: (status, "application/json", json.dumps(doc).encode())


def fleet_of_fake_box(answer):
    """llmctl fleet haproxy against one fake box on the loopback that answers with answer."""
    server = fake_http_server(answer)
    try:
        return subprocess.run([LLMCTL, "fleet", "haproxy", f"127.0.0.1:{server.server_address[1]}"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "LLMD_API_KEY": ""})
    finally:
        server.shutdown()


def test_box_strings_escaped():
    """Needs neither root nor haproxy: one fake box on the loopback."""
    for status in (200, 500):
        p = fleet_of_fake_box(forging_box(status))
        check(p.returncode == 2 and not p.stdout, f"{status}: {p.returncode} {p.stdout!r}")
        check("\x1b" not in p.stderr, f"{status}: an escape sequence reached the terminal: "
              f"{p.stderr!r}")
        check(p.stderr.count("\n") == 1 and p.stderr.startswith("llmctl: "),
              f"{status}: more than one line: {p.stderr!r}")
        check("\\e[31mred\\e[0m\\nllmctl: forged by the box" in p.stderr,
              f"{status}: {p.stderr!r}")


def test_many_aliases_valid_config():
    """HAProxy reads at most 64 words a line: what llmctl writes for a model with 0, 1, 55 and
    500 aliases (from a fake box on the loopback), haproxy -c accepts."""
    if not shutil.which("haproxy"):
        raise Skip("haproxy is not installed (tools/deps.sh installs it)")
    for n in (0, 1, 55, 500):
        doc = {"data": [{"id": "qwen", "state": "loaded"}] +
               [{"id": f"org/alias-{i}", "state": "loaded", "alias_of": "qwen"}
                for i in range(n)]}
        p = fleet_of_fake_box(lambda method, path, doc=doc: (
            200, "application/json", json.dumps(doc).encode()))
        check(p.returncode == 0 and not p.stderr, f"{n} aliases: {p.returncode} {p.stderr}")
        check(all(f"org/alias-{i} " in p.stdout or f"org/alias-{i}\n" in p.stdout
                  for i in range(n)), f"{n} aliases: not every alias is routed")
        with tempfile.NamedTemporaryFile("w", suffix=".cfg") as cfg:
            cfg.write(p.stdout)
            cfg.flush()
            c = subprocess.run(["haproxy", "-c", "-f", cfg.name], capture_output=True, text=True,
                               timeout=30)
        check(c.returncode == 0, f"{n} aliases: haproxy -c: {c.stdout} {c.stderr}")


if __name__ == "__main__":
    run()
