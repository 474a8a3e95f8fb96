# SPDX-License-Identifier: MIT
"""A fresh llmd per test: temporary runtime, state and model directories, the llama-server
simulator as its children, and a NOTIFY_SOCKET the test reads. Standard library only."""

import ast
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LLMD = os.environ.get("LLMD", "llmd")
LLMCTL = os.environ.get("LLMCTL", "llmctl")
# Two tiers run the same tests: the simulator (LLAMA_SIM), and, with LLMD_TIER=real, a real
# llama-server (LLMD_REAL_LLAMA_SERVER, from tools/real-llama-server.sh) loading the tiny models
# of tests/models/make-tiny-models.py (LLMD_REAL_MODELS). Tests that need the simulator (its
# fault knobs, its records) say so with sim_only= and are skipped on the real tier.
REAL = os.environ.get("LLMD_TIER") == "real"
if REAL:
    LLAMA_SERVER = os.environ.get("LLMD_REAL_LLAMA_SERVER")
    REAL_MODELS = os.environ.get("LLMD_REAL_MODELS")
else:
    LLAMA_SERVER = os.environ.get("LLAMA_SERVER") or os.environ.get("LLAMA_SIM")
    REAL_MODELS = None
SKIP = 77  # meson counts it as skipped
TIMEOUT = float(os.environ.get("LLMD_TEST_TIMEOUT", "20"))
# What a sanitizer prints when it finds something. The sanitized build stops at the first report
# (-fno-sanitize-recover=all), but a simulator that dies of one is restarted by llmd and a test
# that expects a crash would pass: so a report anywhere in the log fails the test by itself.
SANITIZER_REPORT = re.compile(r"runtime error:|ERROR: (Address|Leak|Memory|Thread)Sanitizer")


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def wait_until(pred, what, timeout=TIMEOUT, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure("timed out waiting for " + what)
        time.sleep(interval)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # Read as the process is reaped: the file opens, then reads empty.
    fields = stat.rsplit(")", 1)
    return len(fields) == 2 and fields[1].split()[0] != "Z"


EMBED_NAMES = ("nomic", "embed", "bge")
REASONING_NAMES = ("deepseek", "reasoning")


class Llmd:
    def __init__(self, config, models=("qwen", "nomic"), model_size=4096, env=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="llmd-test-")
        self.dir = self.tmp.name
        self.runtime = os.path.join(self.dir, "run")
        self.state = os.path.join(self.dir, "state")
        self.models = os.path.join(self.dir, "models")
        os.makedirs(self.runtime)
        os.makedirs(self.models)
        for m in models:
            if REAL:
                # The real server loads real models: the embedding one for embedding names,
                # the reasoning one for reasoning names, else the chat one.
                kind = ("embed" if m in EMBED_NAMES else "reasoning" if m in REASONING_NAMES
                        else "chat")
                shutil.copyfile(os.path.join(REAL_MODELS, kind + ".gguf"), self.model_path(m))
                continue
            with open(os.path.join(self.models, m + ".gguf"), "wb") as f:
                f.write(b"GGUF" + b"\0" * (model_size - 4))
        self.config = os.path.join(self.dir, "llama-generate.conf")
        self.write_config(config)
        self.records_path = os.path.join(self.dir, "records.jsonl")
        self.log_path = os.path.join(self.dir, "llmd.log")
        self.notify_path = os.path.join(self.dir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(0.1)
        self.messages = []  # (monotonic time, {"KEY": "value"})
        # Read $NOTIFY_SOCKET all the time, as systemd does: sd_notify() blocks when the
        # socket's queue is full, and a test that does not look for a while must not wedge llmd.
        self.lock = threading.Lock()
        self.reading = True
        self.reader = threading.Thread(target=self._read_notify, daemon=True)
        self.reader.start()
        self.since = 0  # wait_status() looks at messages from here on; see mark()
        self.env = dict(os.environ)
        self.env.update({
            "NOTIFY_SOCKET": self.notify_path,
            "LLAMA_SIM_RECORD": self.records_path,
            "LLAMA_SIM_LOAD_MS": "100",
        })
        if LLAMA_SERVER:
            self.env["LLAMA_SERVER"] = LLAMA_SERVER
        self.env.update(env or {})
        self.proc = None
        # What llmd runs under, e.g. ["ip", "netns", "exec", NAME]: a wrapper that execs it, so
        # that self.proc is llmd itself.
        self.command_prefix = []

    def write_config(self, text):
        # A port of its own, so tests can run side by side (the default is 8080).
        if "listen" not in text and "[llmd]" in text:
            if not hasattr(self, "port"):
                self.port = free_port()
            text = text.replace("[llmd]", f"[llmd]\nlisten = 127.0.0.1:{self.port}", 1)
        with open(self.config, "w") as f:
            f.write(text.replace("@MODELS@", self.models))

    def model_path(self, name):
        return os.path.join(self.models, name + ".gguf")

    def socket_path(self, name):
        return os.path.join(self.runtime, name + ".sock")

    def start(self, *args):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command_prefix, LLMD, "--config", self.config, "--runtime-dir", self.runtime,
             "--state-dir", self.state, "--log-level", "debug", *args],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    # ---- sd_notify ----

    def _read_notify(self):
        while self.reading:
            try:
                data = self.notify.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = {}
            for line in data.decode().split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def poll_notify(self):
        """Kept for callers: the reader thread does the work."""

    def statuses(self):
        self.poll_notify()
        return [m["STATUS"] for _, m in list(self.messages) if "STATUS" in m]

    def mark(self):
        """From now on, wait_status() and wait_notify() ignore what came before."""
        self.poll_notify()
        self.since = len(self.messages)

    def wait_notify(self, pred, what, timeout=TIMEOUT):
        def find():
            self.poll_notify()
            for i, (_, m) in enumerate(list(self.messages)):
                if i >= self.since and pred(m):
                    return i + 1
            if self.proc and self.proc.poll() is not None:
                raise Failure(f"llmd exited ({self.proc.returncode}) while waiting for {what}")
            return None
        return wait_until(find, what, timeout) - 1

    def wait_status(self, text, timeout=TIMEOUT):
        """Waits for a STATUS= equal to text (or matching it, if callable); returns its index."""
        match = text if callable(text) else (lambda s: s == text)
        try:
            return self.wait_notify(lambda m: "STATUS" in m and match(m["STATUS"]),
                                    f"STATUS={text!r}", timeout)
        except Failure as e:
            raise Failure(f"{e}; statuses seen: {self.statuses()}")

    def index_of(self, key, value=None):
        self.poll_notify()
        for i, (_, m) in enumerate(list(self.messages)):
            if key in m and (value is None or m[key] == value):
                return i
        return None

    # ---- the simulator's records ----

    def records(self, event=None, model=None):
        out = []
        try:
            with open(self.records_path) as f:
                for line in f:
                    if line.strip():
                        out.append(json.loads(line))
        except FileNotFoundError:
            return []
        starts = {r["pid"]: r for r in out if r["event"] == "start"}
        for r in out:
            s = starts.get(r.get("pid"))
            r["_model"] = os.path.basename(s["model"]).rsplit(".", 1)[0] if s else None
        return [r for r in out if (event is None or r["event"] == event)
                and (model is None or r["_model"] == model)]

    START_LINE = re.compile(r"^llmd: (\S+): started llama-server \(pid (\d+)\): (.*)$")

    def starts(self, model=None):
        """Every child llmd started, in order, from llmd's own log (so on both tiers):
        [{"_model", "pid", "argv"}]."""
        out = []
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    m = self.START_LINE.match(line.rstrip("\n"))
                    if m and (model is None or m.group(1) == model):
                        out.append({"_model": m.group(1), "pid": int(m.group(2)),
                                    "argv": m.group(3).split(" ")})
        except FileNotFoundError:
            pass
        return out

    def wait_starts(self, n, model=None, timeout=TIMEOUT):
        return wait_until(lambda: len(self.starts(model)) >= n and self.starts(model),
                          f"{n} start(s) of {model}", timeout)

    def wait_records(self, n, event, model=None, timeout=TIMEOUT):
        return wait_until(lambda: len(self.records(event, model)) >= n and self.records(event, model),
                          f"{n} {event!r} record(s) of {model}", timeout)

    def hold_request(self, model):
        """A request the simulator of model keeps open (its test-only /sim/hold), once it has
        arrived there: the socket, to close when done."""
        def arrived():
            return [r for r in self.records("request_start", model) if r["path"] == "/sim/hold"]
        before = len(arrived())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.socket_path(model))
        s.sendall(b"POST /sim/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        wait_until(lambda: len(arrived()) > before, f"the held request to reach {model}")
        return s

    def child_pids(self):
        """Live processes whose parent is llmd."""
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                pids.append(int(d))
        return pids

    def _children_by_model(self):
        """{model: pid} of llmd's live children, by the socket in their command line (a real
        llama-server writes no records)."""
        found = {}
        for pid in self.child_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().decode(errors="replace").split("\0")
            except FileNotFoundError:
                continue
            for a in args:
                if a.startswith(self.runtime + "/") and a.endswith(".sock"):
                    found[os.path.basename(a)[:-5]] = pid
        return found

    def running_models(self):
        """The models whose child is alive, sorted."""
        if REAL:
            return sorted(self._children_by_model())
        return sorted({r["_model"] for r in self.records("start") if pid_alive(r["pid"])})

    def pid_of(self, model):
        """The pid of the live child serving model, or None."""
        if REAL:
            return self._children_by_model().get(model)
        for r in reversed(self.records("start", model)):
            if pid_alive(r["pid"]):
                return r["pid"]
        return None

    # ---- ending ----

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure("llmd did not exit after " + signal.Signals(sig).name)

    def dump(self):
        sys.stderr.write("---- llmd log ----\n")
        try:
            with open(self.log_path, errors="replace") as f:
                sys.stderr.write(f.read()[-20000:])
        except FileNotFoundError:
            pass
        sys.stderr.write("---- notify ----\n")
        for t, m in self.messages:
            sys.stderr.write(f"{t:.3f} {m}\n")
        sys.stderr.write("---- simulator records ----\n")
        for r in self.records():
            sys.stderr.write(json.dumps(r) + "\n")

    def sanitizer_reports(self):
        """The lines of llmd's log (which carries its children's output too) where a sanitizer
        reported an error."""
        try:
            with open(self.log_path, errors="replace") as f:
                return [line.rstrip("\n") for line in f if SANITIZER_REPORT.search(line)]
        except FileNotFoundError:
            return []

    def kill_all(self):
        children = self.child_pids() if self.proc and self.proc.poll() is None else []
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Nothing may outlive a test, whatever it did.
        for r in self.starts():
            if pid_alive(r["pid"]):
                try:
                    os.kill(r["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self):
        self.kill_all()
        self.reading = False
        self.reader.join()
        self.notify.close()
        self.tmp.cleanup()


def tests_of(module=None):
    """The tests of a script (module: __main__ by default): its functions named test_NAME, as
    {NAME: function} in the order they are written. That is the only list of them; meson learns
    it from --list. A test written as a row of a table is put in the module's namespace as
    test_NAME by the code that reads the table.

    A top-level function that nothing in the script uses fails the listing, and so the meson
    configure: it is dead code, or a test whose name lacks test_ and would never run."""
    module = module or sys.modules["__main__"]
    with open(module.__file__) as f:
        tree = ast.parse(f.read())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    unused = [d.name for d in tree.body if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
              and not d.name.startswith("test_") and d.name not in used]
    if unused:
        print(f"{module.__file__}: nothing uses {', '.join(unused)}: a test is named test_NAME",
              file=sys.stderr)
        sys.exit(2)
    return {name[len("test_"):]: fn for name, fn in vars(module).items()
            if name.startswith("test_") and callable(fn)}


def run():
    """Runs the test named by argv[1] (all of them without arguments); --list prints the names,
    one a line, which is how meson learns them: a test is a test_NAME function of its script,
    and nothing else lists it."""
    tests = tests_of()
    if sys.argv[1:] == ["--list"]:
        print("\n".join(tests))
        return
    names = sys.argv[1:] or list(tests)
    failed = skipped = 0
    for name in names:
        fn = tests.get(name)
        if not fn:
            print(f"unknown test {name}; known: {' '.join(tests)}", file=sys.stderr)
            sys.exit(2)
        t0 = time.monotonic()
        try:
            if REAL and not getattr(fn, "uses_llama_server", False):
                raise Skip("runs no llama-server: the simulator tier covers it")
            fn()
            print(f"ok - {name} ({time.monotonic() - t0:.2f}s)")
        except Failure as e:
            failed += 1
            print(f"not ok - {name}: {e}")
        except Skip as e:
            skipped += 1
            print(f"ok - {name} # SKIP {e}")
    sys.exit(1 if failed else SKIP if skipped == len(names) else 0)


def sim_only(why):
    """Decorator, above @fixture: the test needs the simulator (why), and is skipped on the
    real tier, where it would prove nothing."""
    def wrap(runner):
        def r():
            if REAL:
                raise Skip(f"needs the simulator: {why}")
            runner()
        r.__name__ = runner.__name__
        r.uses_llama_server = True
        return r
    return wrap


def fixture(config, **kw):
    """Decorator: the test gets a started Llmd; its log is shown when the test fails."""
    def wrap(fn):
        def runner():
            if REAL and not (LLAMA_SERVER and REAL_MODELS):
                raise Skip("no real llama-server (LLMD_REAL_LLAMA_SERVER, LLMD_REAL_MODELS): "
                           "tools/test.sh sets them up with tools/real-llama-server.sh")
            d = Llmd(config, **{k: v for k, v in kw.items() if k != "start"})
            passed = False
            try:
                if kw.get("start", True):
                    d.start()
                fn(d)
                passed = True
            except BaseException:
                d.poll_notify()
                d.dump()
                raise
            finally:
                d.kill_all()
                reports = d.sanitizer_reports()
                if passed and reports:
                    d.dump()
                d.cleanup()
            if reports:
                raise Failure("a sanitizer reported an error in llmd or a child: " + reports[0])
        runner.__name__ = fn.__name__
        runner.uses_llama_server = True
        return runner
    return wrap


class Varlink:
    """A plain Varlink client: JSON objects ended by NUL."""

    def __init__(self, path, timeout=TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, parameters=None, more=False):
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        if more:
            msg["more"] = True
        self.send_raw(json.dumps(msg).encode() + b"\0")

    def recv(self):
        """The next message, or None when the daemon closed the connection."""
        while b"\0" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        frame, self.buf = self.buf.split(b"\0", 1)
        return json.loads(frame)

    def call(self, method, parameters=None, more=False):
        """All replies to one call, the last one last."""
        self.send(method, parameters, more)
        replies = []
        while True:
            r = self.recv()
            if r is None:
                raise Failure(f"connection closed during {method}; replies so far {replies}")
            replies.append(r)
            if "error" in r or not r.get("continues"):
                return replies

    def close(self):
        self.sock.close()


def llmctl(d, *args, user=None, env=None, check_rc=None):
    """Runs llmctl against d's control socket; returns the CompletedProcess."""
    cmd = [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}",
               "--groups=" + ",".join(str(g) for g in user[2]) if user[2] else "--clear-groups",
               "--", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                       env={**os.environ, **(env or {})})
    # A sanitized llmctl that dies of a report exits 1, which some tests expect for other reasons.
    reports = [line for line in p.stderr.splitlines() if SANITIZER_REPORT.search(line)]
    if reports:
        raise Failure(f"a sanitizer reported an error in llmctl {' '.join(args)}: {reports[0]}\n"
                      f"stderr: {p.stderr}")
    if check_rc is not None and p.returncode != check_rc:
        raise Failure(f"llmctl {' '.join(args)}: exit {p.returncode}, expected {check_rc}\n"
                      f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def llmctl_json(d, *args, check_rc=0):
    p = llmctl(d, *args, check_rc=check_rc)
    return json.loads(p.stdout)


def fake_http_server(answer):
    """A server on the loopback that answers every GET and POST with answer(method, path): a
    (status, content type, body bytes). Its port is server.server_address[1]; server.shutdown()
    stops it."""
    class Handler(BaseHTTPRequestHandler):
        def reply(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, content_type, body = answer(self.command, self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = reply

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    """A TCP port nobody listens on now (the test binds it next; a race, but a small one)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HTTPResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


def http(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    """One request to 127.0.0.1:port; body may be bytes, str or a JSON-able object."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    out = HTTPResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    c.close()
    return out


class Stream:
    """A streaming request, read one server-sent event at a time."""

    def __init__(self, port, path, body, headers=None, timeout=TIMEOUT):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        h = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request("POST", path, body=json.dumps(body), headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def event(self):
        """The next "data: ..." payload (str), or None at the end of the stream; the event's
        name ("event: ..."), if it had one, is in self.name."""
        data, self.name = [], None
        while True:
            line = self.resp.readline()
            if not line:
                return "\n".join(data) if data else None
            line = line.decode().rstrip("\r\n")
            if line == "" and data:
                return "\n".join(data)
            if line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("event: "):
                self.name = line[7:]

    def events(self):
        out = []
        while True:
            e = self.event()
            if e is None:
                return out
            out.append(e)

    def named_events(self):
        """The rest of the stream as (name or None, parsed JSON or "[DONE]") pairs."""
        out = []
        while (e := self.event()) is not None:
            out.append((self.name, e if e == "[DONE]" else json.loads(e)))
        return out

    def close(self):
        self.conn.sock.shutdown(socket.SHUT_RDWR) if self.conn.sock else None
        self.conn.close()


def unix_http(path, method, url, body=b"", timeout=TIMEOUT):
    """A request to a simulator's own unix socket (for its test-only paths)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    s.sendall(f"{method} {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest
