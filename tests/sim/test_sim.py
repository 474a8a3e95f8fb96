#!/usr/bin/env python3
"""Tests of llama-sim, the llama-server simulator. Standard library only.

Run one case: LLAMA_SIM=build/tests/sim/llama-sim python3 test_sim.py CASE
(meson registers each case of CASES as its own test in the 'sim' suite).

The simulator's knobs, all environment variables:

  LLAMA_SIM_LOAD_MS=N              load time (default: 1 ms per MiB of model, at least 20)
  LLAMA_SIM_EXIT_WHILE_LOADING=1   exit halfway through loading
  LLAMA_SIM_EXIT_AFTER_MS=N        exit N ms after becoming ready
  LLAMA_SIM_HANG_LOADING=1         never become ready (503 for ever)
  LLAMA_SIM_HEALTH_HANG_AFTER_MS=N from N ms after ready, /health is read and never answered
  LLAMA_SIM_EXIT_CODE=N            status of the exits above (default 1)
  LLAMA_SIM_EXIT_SIGNAL=SEGV|...   die by this signal instead of exiting
  LLAMA_SIM_HOLD_MS=N              POST /sim/hold answers after N ms (default: never)
  LLAMA_SIM_TOKEN_MS=N             time per generated token (default 10)
  LLAMA_SIM_RECORD=FILE            append JSON records (start, ready, request, signal, fault, exit)
  LLAMA_SIM_MARKER=S               copied into the start record's env_marker

Timing: nothing here asserts an upper bound tighter than seconds; waits poll with generous
deadlines, so the cases pass on a loaded two-core machine.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SIM = os.environ.get("LLAMA_SIM")
DEADLINE = 15.0


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def wait_until(pred, what, timeout=DEADLINE, interval=0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure("timed out waiting for " + what)
        time.sleep(interval)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=DEADLINE):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, resp, body):
        self.status = resp.status
        self.reason = resp.reason
        self.version = resp.version
        self.headers = resp.headers
        self.body = body

    def header(self, name):
        return self.headers.get(name)

    def json(self):
        return json.loads(self.body)


class Sim:
    """One simulator process in its own temporary directory."""

    def __init__(self, tmp, args=(), env=None, model_size=1 << 20, host=None, model=None,
                 record=None):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "sim.sock")
        self.host = host if host is not None else self.sock
        if model is None:
            model = os.path.join(tmp, "model.gguf")
            with open(model, "wb") as f:
                f.write(b"GGUF" + b"\0" * (model_size - 4))
        self.model = model
        self.records_path = record or os.path.join(tmp, "records.jsonl")
        self.stderr_path = os.path.join(tmp, f"stderr.{time.monotonic_ns()}")
        self.stdout_path = self.stderr_path.replace("stderr", "stdout")
        self.argv = [SIM]
        if model is not False:
            self.argv += ["-m", self.model]
        if self.host:
            self.argv += ["--host", self.host]
        self.argv += list(args)
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("LLAMA_SIM_") or k.startswith("LLAMA_ARG_"):
                del e[k]
        e["LLAMA_SIM_RECORD"] = self.records_path
        e.update(env or {})
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=e)
        self.pid = self.proc.pid

    # ---- process ----

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def stdout(self):
        with open(self.stdout_path, errors="replace") as f:
            return f.read()

    def wait(self, timeout=DEADLINE):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"simulator {self.pid} still running after {timeout}s")

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_log(self, text, timeout=DEADLINE):
        wait_until(lambda: text in self.stderr(), f"{text!r} in the simulator's log", timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # ---- records ----

    def records(self, event=None, pid=None):
        out = []
        try:
            with open(self.records_path) as f:
                for line in f:
                    out.append(json.loads(line))
        except FileNotFoundError:
            return []
        pid = self.pid if pid is None else pid
        return [r for r in out if r["pid"] == pid and (event is None or r["event"] == event)]

    def wait_record(self, event, n=1, timeout=DEADLINE):
        return wait_until(lambda: len(self.records(event)) >= n and self.records(event),
                          f"{n} {event!r} record(s)", timeout)

    # ---- HTTP ----

    def connection(self, timeout=DEADLINE):
        if self.host.endswith(".sock"):
            return UnixHTTPConnection(self.host, timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=DEADLINE):
        conn = self.connection(timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp, resp.read())
        finally:
            conn.close()

    def health(self, timeout=DEADLINE):
        try:
            return self.request("GET", "/health", timeout=timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            return None

    def wait_ready(self):
        def ready():
            check(self.alive(), f"simulator exited with {self.proc.returncode}")
            r = self.health()
            return r is not None and r.status == 200
        wait_until(ready, "/health to answer 200")

    def wait_listening(self):
        def listening():
            check(self.alive(), f"simulator exited with {self.proc.returncode}")
            return self.health() is not None
        wait_until(listening, "the simulator to listen")

    def hold(self):
        """A request that stays in progress until closed."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.host)
        s.sendall(b"POST /sim/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        # The simulator counts a request from its headers on; give its thread time to get them.
        time.sleep(0.5)
        return s

    def stream(self, path, body, timeout=DEADLINE):
        """Starts a streaming request; returns (connection, response)."""
        conn = self.connection(timeout)
        conn.request("POST", path, body=json.dumps(body))
        return conn, conn.getresponse()


def sse_events(resp):
    """The data: payloads of an SSE response until it ends."""
    events = []
    while True:
        line = resp.readline()
        if not line:
            return events
        line = line.decode()
        if line.startswith("data: "):
            events.append(line[len("data: "):].rstrip("\n"))
        else:
            check(line == "\n", f"unexpected SSE line {line!r}")


def next_event(resp):
    while True:
        line = resp.readline()
        if not line:
            return None
        line = line.decode()
        if line.startswith("data: "):
            return line[len("data: "):].rstrip("\n")


def check_llama_headers(r, status, reason, content_type="application/json; charset=utf-8"):
    check(r.version == 11, f"HTTP version {r.version}")
    check(r.status == status and r.reason == reason, f"status {r.status} {r.reason}")
    check(r.header("Server") == "llama.cpp", f"Server: {r.header('Server')!r}")
    check(r.header("Access-Control-Allow-Origin") == "",
          f"Access-Control-Allow-Origin: {r.header('Access-Control-Allow-Origin')!r}")
    check(r.header("Content-Type") == content_type, f"Content-Type: {r.header('Content-Type')!r}")
    if status >= 400:
        check(r.header("Connection") == "close", f"Connection: {r.header('Connection')!r}")
    else:
        check(r.header("Keep-Alive") == "timeout=5, max=100",
              f"Keep-Alive: {r.header('Keep-Alive')!r}")


LOADING_BODY = b'{"error":{"message":"Loading model","type":"unavailable_error","code":503}}'
NOT_FOUND_BODY = b'{"error":{"message":"File Not Found","type":"not_found_error","code":404}}'
TIMINGS_KEYS = ["cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second",
                "predicted_n", "predicted_ms", "predicted_per_token_ms", "predicted_per_second"]
WORDS = ["Hello", " world", " from", " the", " llama", ".cpp", " server", " simulator", "."]


def text_of(n):
    return "".join(WORDS[i % len(WORDS)] for i in range(n))


def check_timings(t, prompt_n, predicted_n):
    check(list(t) == TIMINGS_KEYS, f"timings keys {list(t)}")
    check(t["predicted_n"] == predicted_n, f"predicted_n {t['predicted_n']}")
    check(t["prompt_n"] == prompt_n or prompt_n is None, f"prompt_n {t['prompt_n']}")
    check(all(isinstance(t[k], float) for k in TIMINGS_KEYS if k.endswith(("ms", "second"))),
          f"timings not floats: {t}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_sim(tmp, args, env=None, model=None):
    """Runs the simulator to its end; returns (returncode, stdout, stderr)."""
    sim = Sim(tmp, args=args, env=env, model=model)
    rc = sim.wait()
    return rc, sim.stdout(), sim.stderr()


# ---------------------------------------------------------------------------------------------
# command line

def unknown_flag(tmp):
    rc, _, err = run_sim(tmp, ["--bogus-flag"])
    check(rc == 1, f"exit status {rc}")
    check("error: invalid argument: --bogus-flag\n" in err, f"stderr: {err!r}")
    # llama.cpp has no --flag=value form
    rc, _, err = run_sim(tmp, ["--ctx-size=1536"])
    check(rc == 1 and "error: invalid argument: --ctx-size=1536" in err, f"{rc} {err!r}")


def missing_value(tmp):
    for flag in ("--port", "-c", "--n-cpu-moe", "-fa"):
        rc, _, err = run_sim(tmp, [flag])
        check(rc == 1, f"{flag}: exit status {rc}")
        check(f'error while handling argument "{flag}": expected value for argument' in err,
              f"{flag}: stderr {err!r}")
        check("\nusage:\n" in err and "to show complete usage, run with -h" in err,
              f"{flag}: no usage in {err!r}")


def bad_number(tmp):
    rc, _, err = run_sim(tmp, ["-c", "abc"])
    check(rc == 1 and 'error while handling argument "-c": stoi' in err, f"{rc} {err!r}")
    rc, _, err = run_sim(tmp, ["--temp", "hot"])
    check(rc == 1 and 'error while handling argument "--temp": stof' in err, f"{rc} {err!r}")


def underscore_spelling(tmp):
    # common/arg.cpp turns '_' into '-' in "--" options; values are taken whatever they look like
    sim = Sim(tmp, args=["--ctx_size", "512", "--n_gpu_layers", "99", "-fa", "on", "--jinja",
                         "--no-mmap", "--reasoning-budget", "0", "-ot", "exps=CPU",
                         "--seed", "-1", "--kv-unified", "--no-webui", "--metrics"],
              env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def help_and_version(tmp):
    rc, out, _ = run_sim(tmp, ["--help"])
    check(rc == 0 and "-c,    --ctx-size N" in out and "--spec-draft-model" in out,
          f"{rc} {out[:300]!r}")
    rc, _, err = run_sim(tmp, ["--version"])
    check(rc == 0 and "version: 10470" in err, f"{rc} {err!r}")


def no_model(tmp):
    sim = Sim(tmp, model=False)
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    check("router mode" in sim.stderr(), sim.stderr())
    check(sim.records("exit")[0]["status"] == 1, "no exit record")


# ---------------------------------------------------------------------------------------------
# listening and loading

def unix_socket_loading_then_ready(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "1500"})
    sim.wait_listening()
    check(os.path.exists(sim.sock), "no socket file")
    r = sim.health()
    check(r.body == LOADING_BODY, f"loading body {r.body!r}")
    check_llama_headers(r, 503, "Service Unavailable")
    # every path is 503 while loading, known or not
    for method, path in (("GET", "/nope"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
        r = sim.request(method, path, body="{}")
        check(r.status == 503 and r.body == LOADING_BODY, f"{path} while loading: {r.status}")
    check(sim.stderr().count("model loaded") == 0, "model loaded too early")
    sim.wait_ready()
    r = sim.health()
    check(r.body == b'{"status":"ok"}', f"ready body {r.body!r}")
    check_llama_headers(r, 200, "OK")
    r = sim.request("GET", "/v1/health")
    check(r.status == 200 and r.body == b'{"status":"ok"}', "/v1/health")
    err = sim.stderr()
    for text in ("I srv    load_model: loading model '%s'" % sim.model,
                 "I srv  llama_server: model loaded\n",
                 "I srv  llama_server: listening on unix://%s\n" % sim.sock,
                 "W srv  llama_server: CORS is set to allow all origins"):
        check(text in err, f"{text!r} not in log:\n{err}")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")
    check(os.path.exists(sim.sock), "the socket file was removed")


def tcp_listen(tmp):
    port = free_port()
    sim = Sim(tmp, host="127.0.0.1", args=["--port", str(port)], env={"LLAMA_SIM_LOAD_MS": "50"})
    sim.port = port
    sim.wait_ready()
    r = sim.health()
    check_llama_headers(r, 200, "OK")
    check(f"listening on http://127.0.0.1:{port}\n" in sim.stderr(), sim.stderr())
    # llama-server echoes Origin
    r = sim.request("GET", "/health", headers={"Origin": "http://example"})
    check(r.header("Access-Control-Allow-Origin") == "http://example", "Origin not echoed")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def stale_socket(tmp):
    path = os.path.join(tmp, "sim.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # leaves the file, as a killed llama-server does
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    err = sim.stderr()
    check(f"E srv         start: couldn't bind HTTP server socket, hostname: {path}, port: 8080"
          in err, err)
    check("E srv  llama_server: exiting due to HTTP server error" in err, err)
    check("loading model" not in err, "it loaded before binding")
    check(os.path.exists(path), "the stale file was removed")
    check([r["status"] for r in sim.records("exit")] == [1], "exit record")


def port_in_use(tmp):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        sim = Sim(tmp, host="127.0.0.1", args=["--port", str(port)])
        rc = sim.wait()
        check(rc == 1, f"exit status {rc}")
        check(f"couldn't bind HTTP server socket, hostname: 127.0.0.1, port: {port}"
              in sim.stderr(), sim.stderr())
    finally:
        s.close()


def missing_model(tmp):
    path = os.path.join(tmp, "nope.gguf")
    sim = Sim(tmp, model=path)
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    err = sim.stderr()
    check(f"E srv    load_model: failed to load model, '{path}'" in err, err)
    check("E srv  llama_server: exiting due to model loading error" in err, err)
    # it listened before loading, and leaves the socket file behind as llama-server does
    check(os.path.exists(sim.sock), "no socket file")
    check(not sim.records("ready"), "ready record")


def model_is_directory(tmp):
    path = os.path.join(tmp, "dir.gguf")
    os.mkdir(path)
    sim = Sim(tmp, model=path)
    check(sim.wait() == 1, "exit status")
    check("failed to load model" in sim.stderr(), sim.stderr())


def reads_model_while_loading(tmp):
    size = 8 << 20
    sim = Sim(tmp, model_size=size, env={"LLAMA_SIM_LOAD_MS": "2000"})
    sim.wait_listening()
    seen = []

    def rchar():
        with open(f"/proc/{sim.pid}/io") as f:
            return int(next(line for line in f if line.startswith("rchar:")).split()[1])

    while True:
        n = rchar()
        r = sim.health()
        if r is None or r.status != 503:
            break
        seen.append(n)
        time.sleep(0.05)
    during = sorted(set(v for v in seen if v < size))
    check(len(during) >= 3, f"read bytes did not grow while loading: {seen}")
    sim.wait_ready()
    check(rchar() >= size, f"read {rchar()} of {size} bytes")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
# faults

def exit_while_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "400", "LLAMA_SIM_EXIT_WHILE_LOADING": "1",
                        "LLAMA_SIM_EXIT_CODE": "3"})
    rc = sim.wait()
    check(rc == 3, f"exit status {rc}")
    events = [r["event"] for r in sim.records()]
    check(events[0] == "start" and events[-2:] == ["fault", "exit"], f"records {events}")
    check("ready" not in events, "became ready")
    check(sim.records("exit")[0]["status"] == 3, "exit record status")


def exit_while_loading_signal(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "400", "LLAMA_SIM_EXIT_WHILE_LOADING": "1",
                        "LLAMA_SIM_EXIT_SIGNAL": "SEGV"})
    rc = sim.wait()
    check(rc == -signal.SIGSEGV, f"exit status {rc}")
    faults = sim.records("fault")
    check(faults and faults[0]["signal"] == signal.SIGSEGV, f"fault records {faults}")
    check(not sim.records("exit"), "an exit record for a death by signal")


def exit_after(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_EXIT_AFTER_MS": "300"})
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    ready, ex = sim.records("ready")[0], sim.records("exit")[0]
    check(ex["t"] - ready["t"] >= 0.29, f"exited {ex['t'] - ready['t']:.3f}s after ready")


def exit_after_signal(tmp):
    for name, sig in (("ABRT", signal.SIGABRT), ("KILL", signal.SIGKILL), ("9", signal.SIGKILL),
                      ("SIGSEGV", signal.SIGSEGV)):
        sub = tempfile.mkdtemp(dir=tmp)
        sim = Sim(sub, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_EXIT_AFTER_MS": "100",
                            "LLAMA_SIM_EXIT_SIGNAL": name})
        rc = sim.wait()
        check(rc == -sig, f"{name}: exit status {rc}")
        check(sim.records("ready"), f"{name}: never ready")


def hang_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "50", "LLAMA_SIM_HANG_LOADING": "1"})
    sim.wait_listening()
    time.sleep(1.0)
    r = sim.health()
    check(r.status == 503 and r.body == LOADING_BODY, f"after 1s: {r.status} {r.body!r}")
    check(sim.alive(), "exited")
    sim.signal(signal.SIGTERM)
    rc = sim.wait()
    check(rc == -signal.SIGTERM, f"a loading server dies by SIGTERM, got {rc}")


def health_hang(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_HEALTH_HANG_AFTER_MS": "1000"})
    sim.wait_ready()
    ready_t = sim.records("ready")[0]["t"]
    wait_until(lambda: time.monotonic() > ready_t + 1.1, "the hang to begin")
    try:
        r = sim.request("GET", "/health", timeout=1.0)
        raise Failure(f"/health answered {r.status} after the hang")
    except (socket.timeout, TimeoutError):
        pass
    # the connection was accepted and read: other paths still answer, the process lives
    r = sim.request("GET", "/v1/models")
    check(r.status == 200, f"/v1/models {r.status}")
    check(sim.alive(), "exited")
    wait_until(lambda: [r for r in sim.records("request")
                        if r["path"] == "/health" and r.get("client_gone")],
               "a client_gone record for the hung /health")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


# ---------------------------------------------------------------------------------------------
# signals

def _sig_idle(tmp, sig):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    # idle: the last /health has been counted closed (its record comes just before that)
    wait_until(lambda: [r for r in sim.records("request") if r["status"] == 200],
               "the /health record")
    sim.signal(sig)
    rc = sim.wait()
    check(rc == 0, f"exit status {rc}")
    check("I srv    operator(): operator(): cleaning up before exit..." in sim.stderr(),
          sim.stderr())
    sigs = sim.records("signal")
    check(len(sigs) == 1 and sigs[0]["signal"] == sig and sigs[0]["action"] == "exit",
          f"signal records {sigs}")
    check([r["status"] for r in sim.records("exit")] == [0], "exit record")


def sigterm_idle(tmp):
    _sig_idle(tmp, signal.SIGTERM)


def sigint_idle(tmp):
    _sig_idle(tmp, signal.SIGINT)


def sigterm_while_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "10000"})
    sim.wait_listening()
    sim.signal(signal.SIGTERM)
    rc = sim.wait()
    check(rc == -signal.SIGTERM, f"exit status {rc}")
    sigs = sim.records("signal")
    check(sigs and sigs[0]["action"] == "die", f"signal records {sigs}")
    check(not sim.records("exit"), "exit record")


def sigterm_with_request_open(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    held = sim.hold()
    sim.signal(signal.SIGTERM)
    sim.wait_log("cleaning up before exit...")
    time.sleep(0.3)
    check(sim.alive(), "exited with a request in progress")
    check(sim.records("signal")[0]["action"] == "deferred", "signal not deferred")

    # like llama-server, it stops listening while it waits
    def refused():
        try:
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(sim.sock)
            return False
        except ConnectionRefusedError:
            return True
    wait_until(refused, "new connections to be refused")

    held.close()
    rc = sim.wait()
    check(rc == 0, f"exit status {rc}")
    req = [r for r in sim.records("request") if r["path"] == "/sim/hold"]
    check(req and req[0]["client_gone"] is True and req[0]["status"] is None, f"request {req}")
    check([r["status"] for r in sim.records("exit")] == [0], "exit record")


def second_sigterm(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    held = sim.hold()
    sim.signal(signal.SIGTERM)
    sim.wait_log("cleaning up before exit...")
    sim.signal(signal.SIGTERM)
    rc = sim.wait()
    held.close()
    check(rc == 1, f"exit status {rc}")
    check("Received second interrupt, terminating immediately.\n" in sim.stderr(), sim.stderr())
    check([r["action"] for r in sim.records("signal")] == ["deferred", "exit"],
          f"signal records {sim.records('signal')}")
    check([r["status"] for r in sim.records("exit")] == [1], "exit record")


def hold_ms(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_HOLD_MS": "1200"})
    sim.wait_ready()
    t0 = time.monotonic()
    r = sim.request("POST", "/sim/hold", body="{}")
    took = time.monotonic() - t0
    check_llama_headers(r, 200, "OK")
    check(r.body == b"{}", f"body {r.body!r}")
    check(took >= 1.19, f"answered after {took:.3f}s")

    # a held request that ends by itself lets a deferred SIGTERM finish with status 0
    held = sim.hold()
    sim.signal(signal.SIGTERM)
    held.settimeout(DEADLINE)
    answer = b""
    while b"\r\n\r\n{}" not in answer:
        data = held.recv(4096)
        check(data, f"connection closed after {answer!r}")
        answer += data
    check(answer.startswith(b"HTTP/1.1 200 OK\r\n"), f"answer {answer!r}")
    rc = sim.wait()
    held.close()
    check(rc == 0, f"exit status {rc}")
    check(sim.records("signal")[0]["action"] == "deferred", "not deferred")


# ---------------------------------------------------------------------------------------------
# inference shapes

CHUNK_KEYS = ["choices", "created", "id", "model", "system_fingerprint", "object"]


def _chat_stream(tmp, include_usage):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "5"})
    sim.wait_ready()
    body = {"messages": [{"role": "user", "content": "Say hello"}], "stream": True,
            "max_tokens": 5}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    conn, resp = sim.stream("/v1/chat/completions", body)
    r = Response(resp, b"")
    check_llama_headers(r, 200, "OK", "text/event-stream")
    check(r.header("X-Accel-Buffering") == "no", "X-Accel-Buffering")
    check(r.header("Transfer-Encoding") == "chunked", "Transfer-Encoding")
    events = sse_events(resp)
    conn.close()

    check(events[-1] == "[DONE]", f"last event {events[-1]!r}")
    chunks = [json.loads(e) for e in events[:-1]]
    n_final = 2 if include_usage else 1
    check(len(chunks) == 1 + 5 + n_final, f"{len(chunks)} chunks")
    ids = {c["id"] for c in chunks}
    check(len(ids) == 1 and ids.pop().startswith("chatcmpl-"), "ids")
    for c in chunks:
        check(list(c)[:6] == CHUNK_KEYS, f"chunk keys {list(c)}")
        check(c["object"] == "chat.completion.chunk" and c["model"] == sim.model, "chunk meta")
        check(c["system_fingerprint"] == "b10470-34af94cd9", "fingerprint")
    role = chunks[0]["choices"][0]
    check(role == {"finish_reason": None, "index": 0,
                   "delta": {"role": "assistant", "content": None}}, f"role chunk {role}")
    for i, c in enumerate(chunks[1:6]):
        ch = c["choices"][0]
        check(list(ch) == ["finish_reason", "index", "delta"], f"choice keys {list(ch)}")
        check(ch["delta"] == {"content": WORDS[i]} and ch["finish_reason"] is None, f"token {ch}")
        check("timings" not in c, "timings in a token chunk")
    final = chunks[6]
    check(final["choices"] == [{"finish_reason": "length", "index": 0, "delta": {}}],
          f"final {final['choices']}")
    if include_usage:
        check("timings" not in final and "usage" not in final, "final chunk with usage")
        usage = chunks[7]
        check(usage["choices"] == [] and list(usage)[6:] == ["usage", "timings"],
              f"usage chunk {usage}")
        check(usage["usage"]["completion_tokens"] == 5 and
              usage["usage"]["total_tokens"] == 5 + usage["usage"]["prompt_tokens"], "usage")
        check_timings(usage["timings"], usage["usage"]["prompt_tokens"], 5)
    else:
        check(list(final)[6:] == ["timings"], f"final keys {list(final)}")
        check_timings(final["timings"], None, 5)
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def chat_stream(tmp):
    _chat_stream(tmp, False)


def chat_stream_include_usage(tmp):
    _chat_stream(tmp, True)


def chat_nonstream(tmp):
    sim = Sim(tmp, args=["-a", "qwen,qwen-alias"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == ["choices", "created", "model", "system_fingerprint", "object", "usage",
                      "id", "timings"], f"keys {list(o)}")
    check(o["choices"] == [{"finish_reason": "length", "index": 0,
                            "message": {"role": "assistant", "content": text_of(3)}}],
          f"choices {o['choices']}")
    check(o["model"] == "qwen" and o["object"] == "chat.completion", "meta")
    check(list(o["usage"]) == ["completion_tokens", "prompt_tokens", "total_tokens",
                               "prompt_tokens_details"], f"usage {o['usage']}")
    check(o["usage"]["completion_tokens"] == 3, "completion_tokens")
    check_timings(o["timings"], o["usage"]["prompt_tokens"], 3)
    # n_predict wins over max_tokens, as in llama-server
    r = sim.request("POST", "/chat/completions",
                    {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                     "n_predict": 2})
    check(r.json()["usage"]["completion_tokens"] == 2, "n_predict")
    # default: 16 tokens
    r = sim.request("POST", "/v1/chat/completions", {"messages": []})
    check(r.json()["usage"]["completion_tokens"] == 16, "default token count")


GENERATION_SETTINGS_KEYS = [
    "seed", "temperature", "dynatemp_range", "dynatemp_exponent", "top_k", "top_p", "min_p",
    "top_n_sigma", "xtc_probability", "xtc_threshold", "typical_p", "repeat_last_n",
    "repeat_penalty", "presence_penalty", "frequency_penalty", "dry_multiplier", "dry_base",
    "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers", "mirostat",
    "mirostat_tau", "mirostat_eta", "adaptive_target", "adaptive_decay", "stop", "max_tokens",
    "n_predict", "n_keep", "n_discard", "ignore_eos", "stream", "logit_bias", "n_probs",
    "min_keep", "grammar", "grammar_lazy", "grammar_triggers", "preserved_tokens", "chat_format",
    "reasoning_format", "reasoning_in_content", "generation_prompt", "samplers",
    "speculative.types", "timings_per_token", "post_sampling_probs", "backend_sampling", "lora"]
NATIVE_FINAL_KEYS = ["index", "content", "tokens", "id_slot", "stop", "model", "tokens_predicted",
                     "tokens_evaluated", "generation_settings", "prompt", "has_new_line",
                     "truncated", "stop_type", "stopping_word", "tokens_cached", "timings"]


def completion_stream(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "5"})
    sim.wait_ready()
    conn, resp = sim.stream("/completion", {"prompt": "Once upon a time", "n_predict": 4,
                                            "stream": True})
    check(resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream", "headers")
    events = sse_events(resp)
    conn.close()
    check("[DONE]" not in events, "the native stream ends with [DONE]")
    objs = [json.loads(e) for e in events]
    check(len(objs) == 5, f"{len(objs)} events")
    for i, o in enumerate(objs[:4]):
        check(list(o) == ["index", "content", "tokens", "stop", "id_slot", "tokens_predicted",
                          "tokens_evaluated"], f"partial keys {list(o)}")
        check(o["content"] == WORDS[i] and o["stop"] is False and o["tokens_predicted"] == i + 1,
              f"partial {o}")
        check(o["tokens_evaluated"] == 4, "tokens_evaluated")
    final = objs[4]
    check(list(final) == NATIVE_FINAL_KEYS, f"final keys {list(final)}")
    check(final["stop"] is True and final["content"] == "" and final["tokens_predicted"] == 4,
          f"final {final}")
    check(final["generation_settings"]["stream"] is True, "stream setting")
    check_timings(final["timings"], 4, 4)


def completion_nonstream(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    r = sim.request("POST", "/completion", {"prompt": "Once upon a time", "n_predict": 4,
                                            "temperature": 0})
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == NATIVE_FINAL_KEYS, f"keys {list(o)}")
    check(o["content"] == text_of(4) and o["stop"] is True and o["stop_type"] == "limit",
          f"content {o['content']!r}")
    g = o["generation_settings"]
    check(list(g) == GENERATION_SETTINGS_KEYS, f"generation_settings keys {list(g)}")
    check(g["n_predict"] == 4 and g["max_tokens"] == 4 and g["stream"] is False, "settings")
    # nlohmann's number shapes: floats keep a fraction, float32 values their double expansion
    text = r.body.decode()
    for piece in ('"temperature":0.0,', '"top_p":0.949999988079071,',
                  '"min_p":0.05000000074505806,', '"seed":4294967295,',
                  '"dry_sequence_breakers":["\\n",":","\\"","*"]'):
        check(piece in text, f"{piece} not in {text}")
    check(o["prompt"] == "Once upon a time" and o["tokens_cached"] == 7, "prompt, tokens_cached")


def oai_completion_stream(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "5"})
    sim.wait_ready()
    conn, resp = sim.stream("/v1/completions", {"prompt": "Once", "max_tokens": 2,
                                                "stream": True})
    events = sse_events(resp)
    conn.close()
    check(events[-1] == "[DONE]", "no [DONE]")
    objs = [json.loads(e) for e in events[:-1]]
    check(len(objs) == 3, f"{len(objs)} events")
    for i, o in enumerate(objs[:2]):
        check(list(o) == ["choices", "created", "model", "system_fingerprint", "object", "id"],
              f"keys {list(o)}")
        check(o["choices"] == [{"text": WORDS[i], "index": 0, "logprobs": None,
                                "finish_reason": None}], f"choices {o['choices']}")
        check(o["object"] == "text_completion", "object")
    final = objs[2]
    check(list(final) == ["choices", "created", "model", "system_fingerprint", "object", "usage",
                          "id", "timings"], f"final keys {list(final)}")
    check(final["choices"][0]["finish_reason"] == "length" and final["choices"][0]["text"] == "",
          "final choice")
    r = sim.request("POST", "/v1/completions", {"prompt": "Once", "max_tokens": 2})
    check(r.json()["choices"][0]["text"] == text_of(2), "non-streamed text")


def bad_json(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for path in ("/v1/chat/completions", "/completion"):
        r = sim.request("POST", path, body="{b")
        check_llama_headers(r, 500, "Internal Server Error")
        o = r.json()
        check(list(o) == ["error"] and list(o["error"]) == ["code", "message", "type"],
              f"shape {o}")
        check(o["error"]["code"] == 500 and o["error"]["type"] == "server_error", f"{o}")
        check(o["error"]["message"].startswith("[json.exception.parse_error.101] parse error"),
              o["error"]["message"])
    # trailing garbage is not JSON either
    r = sim.request("POST", "/v1/chat/completions", body='{"messages":[]} x')
    check(r.status == 500, f"trailing garbage: {r.status}")
    check("W srv    operator(): got exception: {\"error\":{\"code\":500" in sim.stderr(),
          "no log of the error")


def no_messages(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/v1/chat/completions", body="{}")
    check_llama_headers(r, 400, "Bad Request")
    check(r.body == b'{"error":{"code":400,"message":"\'messages\' is required",'
                    b'"type":"invalid_request_error"}}', f"body {r.body!r}")


def exceeds_context(tmp):
    sim = Sim(tmp, args=["-c", "64"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "word " * 100}], "stream": True})
    check_llama_headers(r, 400, "Bad Request")
    e = r.json()["error"]
    check(list(e) == ["code", "message", "type", "n_prompt_tokens", "n_ctx"], f"{e}")
    check(e["type"] == "exceed_context_size_error" and e["n_ctx"] == 64, f"{e}")
    check(e["message"] == f"request ({e['n_prompt_tokens']} tokens) exceeds the available "
                         "context size (64 tokens), try increasing it", e["message"])


def not_found(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for method, path in (("GET", "/nope"), ("GET", "/"), ("POST", "/health"),
                         ("GET", "/v1/chat/completions")):
        r = sim.request(method, path)
        check_llama_headers(r, 404, "Not Found")
        check(r.body == NOT_FOUND_BODY, f"{method} {path}: {r.body!r}")


def api_key(tmp):
    sim = Sim(tmp, args=["--api-key", "k1,secret"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    check("CORS is set to allow all origins" not in sim.stderr(), "CORS warning with a key")
    check(sim.request("GET", "/health").status == 200, "/health is public")
    check(sim.request("GET", "/v1/models").status == 200, "/v1/models is public")
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    r = sim.request("POST", "/v1/chat/completions", body)
    check_llama_headers(r, 401, "Unauthorized")
    check(r.body == b'{"error":{"message":"Invalid API Key","type":"authentication_error",'
                    b'"code":401}}', f"{r.body!r}")
    r = sim.request("POST", "/v1/chat/completions", body,
                    headers={"Authorization": "Bearer secret"})
    check(r.status == 200, f"with the key: {r.status}")
    check(sim.request("GET", "/nope").status == 401, "unknown paths need the key too")


def models(tmp):
    sim = Sim(tmp, args=["--alias", "qwen"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("GET", "/v1/models")
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == ["models", "object", "data"], f"keys {list(o)}")
    check(o["models"][0]["name"] == "qwen" and o["data"][0]["id"] == "qwen", f"{o}")
    check(o["data"][0]["owned_by"] == "llamacpp", "owned_by")
    check(o["data"][0]["meta"]["size"] == os.path.getsize(sim.model), "size")


def stream_client_gone(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "50"})
    sim.wait_ready()
    conn, resp = sim.stream("/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "x"}], "stream": True,
                             "max_tokens": 1000})
    check(next_event(resp) is not None and next_event(resp) is not None, "no events")
    conn.close()
    resp.close()
    reqs = wait_until(lambda: [r for r in sim.records("request") if r["method"] == "POST"],
                      "the request record")
    check(reqs[0]["status"] == 200 and reqs[0]["client_gone"] is True, f"record {reqs[0]}")
    check(sim.health().status == 200, "unhealthy afterwards")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def raw_post(sim, path, body):
    """A request on a plain socket, for reads that must be able to time out and go on."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sim.sock)
    data = json.dumps(body).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (path.encode(), len(data), data))
    return s


def recv_for(s, seconds):
    """What arrives on s within seconds (less if it closes)."""
    end = time.monotonic() + seconds
    out = b""
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return out
        r, _, _ = select.select([s], [], [], left)
        if r:
            data = s.recv(65536)
            if not data:
                return out
            out += data


def stream_stalls_after_sigterm(tmp):
    # llama-server stops generating on SIGTERM but keeps the stream open until the client goes
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "50"})
    sim.wait_ready()
    s = raw_post(sim, "/v1/chat/completions",
                 {"messages": [{"role": "user", "content": "x"}], "stream": True,
                  "max_tokens": 1000})
    got = b""
    deadline = time.monotonic() + DEADLINE
    while got.count(b"data: ") < 3:
        check(time.monotonic() < deadline, f"three events, got {got!r}")
        got += recv_for(s, 0.05)
    sim.signal(signal.SIGTERM)
    sim.wait_log("cleaning up before exit...")
    # tokens made before the signal may still be on their way; after that, silence
    recv_for(s, 0.3)
    late = recv_for(s, 1.0)
    check(late.count(b"data: ") == 0, f"tokens long after SIGTERM: {late!r}")
    check(sim.alive(), "exited with a stream open")
    s.close()
    check(sim.wait() == 0, "exit status")
    check(sim.records("signal")[0]["action"] == "deferred", "not deferred")


def records(tmp):
    path = os.path.join(tmp, "shared.jsonl")
    env = {"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_MARKER": "m-1"}
    a = Sim(tempfile.mkdtemp(dir=tmp), args=["-c", "4096"], env=env, record=path)
    b = Sim(tempfile.mkdtemp(dir=tmp), env={"LLAMA_SIM_LOAD_MS": "20"}, record=path)
    a.wait_ready()
    b.wait_ready()
    for _ in range(20):
        a.health()
        b.health()
    a.signal(signal.SIGTERM)
    b.signal(signal.SIGINT)
    check(a.wait() == 0 and b.wait() == 0, "exit status")

    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        json.loads(line)  # every line whole
    for sim, sig in ((a, signal.SIGTERM), (b, signal.SIGINT)):
        recs = sim.records()
        check(all(isinstance(r["t"], float) for r in recs), "t is not a float")
        events = [r["event"] for r in recs]
        # (requests polling /health during loading come before "ready")
        check(events[0] == "start" and "ready" in events and events[-2:] == ["signal", "exit"],
              f"events {events}")
        ready = events.index("ready")
        check(all(r["status"] == 503 for r in recs[1:ready]), "answered 200 before ready")
        check(sum(1 for e in events if e == "request") >= 20, "request records")
        start = recs[0]
        check(start["argv"] == sim.argv and start["model"] == sim.model and
              start["host"] == sim.host, f"start {start}")
        ts = [r["t"] for r in recs]
        check(ts[0] <= ts[1] <= ts[-1], "times")
        check(abs(ts[-1] - time.monotonic()) < 60, "t is not CLOCK_MONOTONIC")
        req = next(r for r in recs if r["event"] == "request" and r["status"] == 200)
        check(req["method"] == "GET" and req["path"] == "/health" and req["status"] == 200,
              f"request {req}")
        check(recs[-2]["signal"] == sig and recs[-2]["action"] == "exit", "signal record")
        check(recs[-1]["status"] == 0, "exit record")
    check(a.records("start")[0]["env_marker"] == "m-1", "marker")
    check(b.records("start")[0]["env_marker"] is None, "no marker")


def concurrent_requests(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "20"})
    sim.wait_ready()
    results = []
    lock = threading.Lock()

    def health():
        r = sim.request("GET", "/health")
        with lock:
            results.append(("health", r.status))

    def chat():
        r = sim.request("POST", "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5})
        with lock:
            results.append(("chat", r.status, r.json()["choices"][0]["message"]["content"]))

    threads = [threading.Thread(target=health) for _ in range(150)]
    threads += [threading.Thread(target=chat) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    check(len(results) == 180, f"{len(results)} answers of 180")
    check(all(r[1] == 200 for r in results), "not all 200")
    check(all(r[2] == text_of(5) for r in results if r[0] == "chat"), "chat content")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


CASES = {f.__name__: f for f in (
    unknown_flag, missing_value, bad_number, underscore_spelling, help_and_version, no_model,
    unix_socket_loading_then_ready, tcp_listen, stale_socket, port_in_use, missing_model,
    model_is_directory, reads_model_while_loading, exit_while_loading, exit_while_loading_signal,
    exit_after, exit_after_signal, hang_loading, health_hang, sigterm_idle, sigint_idle,
    sigterm_while_loading, sigterm_with_request_open, second_sigterm, hold_ms, chat_stream,
    chat_stream_include_usage, chat_nonstream, completion_stream, completion_nonstream,
    oai_completion_stream, bad_json, no_messages, exceeds_context, not_found, api_key, models,
    stream_client_gone, stream_stalls_after_sigterm, records, concurrent_requests,
)}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.stderr.write("usage: test_sim.py CASE\ncases: " + " ".join(CASES) + "\n")
        return 2
    if not SIM:
        sys.stderr.write("LLAMA_SIM is not set\n")
        return 2
    sims = []
    orig_init = Sim.__init__

    def tracking_init(self, *a, **kw):
        orig_init(self, *a, **kw)
        sims.append(self)
    Sim.__init__ = tracking_init

    with tempfile.TemporaryDirectory(prefix="llama-sim-") as tmp:
        try:
            CASES[sys.argv[1]](tmp)
            print(f"ok {sys.argv[1]}")
            return 0
        except Failure as e:
            print(f"FAIL {sys.argv[1]}: {e}")
            for s in sims:
                sys.stderr.write(f"---- simulator {s.pid}: {' '.join(s.argv)}\n")
                sys.stderr.write(s.stderr()[-6000:])
                sys.stderr.write("---- its records\n")
                for r in s.records():
                    sys.stderr.write(json.dumps(r) + "\n")
            return 1
        finally:
            for s in sims:
                s.kill()


if __name__ == "__main__":
    sys.exit(main())
