#!/usr/bin/env python3
"""Tests of llama-sim, the llama-server simulator. Standard library only.

Run one case: LLAMA_SIM=build/tests/sim/llama-sim python3 test_sim.py CASE
(each test_CASE function is a case; meson registers each as its own test in the 'sim' suite).

The simulator's knobs, all environment variables:

  LLAMA_SIM_LOAD_MS=N              load time (default: 1 ms per MiB of model, at least 20)
  LLAMA_SIM_EXIT_WHILE_LOADING=1   exit halfway through loading
  LLAMA_SIM_EXIT_AFTER_MS=N        exit N ms after becoming ready
  LLAMA_SIM_HANG_LOADING=1         never become ready (503 for ever)
  LLAMA_SIM_HEALTH_HANG_AFTER_MS=N from N ms after ready, /health is read and never answered
  LLAMA_SIM_EXIT_CODE=N            status of the exits above (default 1)
  LLAMA_SIM_EXIT_SIGNAL=SEGV|...   die by this signal instead of exiting
  LLAMA_SIM_HOLD_MS=N              POST /sim/hold answers after N ms (default: never)
  LLAMA_SIM_TOKEN_MS=N             time per generated token (default 10; 0: full speed)
  LLAMA_SIM_PROMPT_MS=N            the prompt takes N ms before the first token; timings'
                                   prompt_ms is that time as measured, predicted_ms the rest
                                   (default: no wait, a prompt_ms made up from its length)
  LLAMA_SIM_EOS_AFTER_TOKENS=N     the answer ends after N tokens, as by the model's own end of
                                   generation: finish_reason "stop" (native stop_type "eos";
                                   the Messages and Responses APIs still say the limit)
  LLAMA_SIM_LOCKSTEP=1             a stream sends each SSE event only with a credit from
                                   POST /sim/step {"n": K} (K to every open stream, default 1)
  LLAMA_SIM_CR_FRAMING=1           SSE lines end in a lone CR (events in "\\r\\r"), as SSE allows
  LLAMA_SIM_EXIT_AFTER_TOKENS=N    exit (LLAMA_SIM_EXIT_CODE/_SIGNAL) once N tokens went out
  LLAMA_SIM_STALL_AFTER_TOKENS=N   after N tokens send nothing more, until the client leaves
  LLAMA_SIM_ERROR_AFTER_TOKENS=N   after N tokens a `data: {"error":...}` event (Messages
                                   API: `event: error`), no [DONE]
                                   (not streamed, or N = 0: an HTTP 500 error instead)
  LLAMA_SIM_ERROR_WHILE=FILE       while FILE exists, every completion is answered 500 (the
                                   body llama-server sends for a failed generation); /health
                                   stays 200
  LLAMA_SIM_IGNORE_SIGTERM=1       SIGTERM and SIGINT are ignored: only SIGKILL ends it
  LLAMA_SIM_DROP_KEPT=1            after a whole answer below 400 that said Keep-Alive, the
                                   connection is shut down anyway (record "dropped")
  LLAMA_SIM_GPU_MB=N               with LLMD_FAKE_NVML=DIR: once loaded, write N MiB (in bytes)
                                   to DIR/PID for the fake libnvidia-ml.so.1 of tests/nvml-fake,
                                   before /health says ready; removed at exit
  LLAMA_SIM_RECORD=FILE            append JSON records (start, ready, request_start, request,
                                   dropped, signal, fault, exit)
  LLAMA_SIM_MARKER=S               copied into the start record's env_marker
  LLAMA_SIM_CANNED=FILE            a JSON array of {"match", "content", "reasoning_content"}:
                                   a chat request whose messages contain "match" is answered
                                   with that reasoning, then that content (tokens end after
                                   each blank), ending with "stop"; read on every request

Records of requests: "request_start" when the body is complete (method, path, body_bytes,
body_sha256, model, stream) and "request" when it ends (the same, plus status, tokens_sent, and
client_gone/gone_t when the client left first). body_sha256 is the hex SHA-256 of the body as
received; model is the body's "model" when it has one.

Flags it acts on besides -m/--host/--port: -c, -np, -n, -a, --api-key, --embedding(s),
--reranking, --pooling, --metrics, --slots/--no-slots, --props, --no-ui, --reasoning-format,
--reasoning-budget, -lv, --log-disable. Test-only paths: POST /sim/hold, POST /sim/step.

Timing: nothing here asserts an upper bound tighter than seconds; waits poll with generous
deadlines, so the cases pass on a loaded two-core machine.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# The list of cases (tests_of()) is shared with the llmd tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from llmdtest import tests_of  # noqa: E402

SIM = os.environ.get("LLAMA_SIM")
DEADLINE = 15.0
# What a sanitizer prints when it finds something (the sanitized build stops at the first one).
SANITIZER_REPORT = re.compile(r"runtime error:|ERROR: (Address|Leak|Memory|Thread)Sanitizer")


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

def test_unknown_flag(tmp):
    rc, _, err = run_sim(tmp, ["--bogus-flag"])
    check(rc == 1, f"exit status {rc}")
    check("error: invalid argument: --bogus-flag\n" in err, f"stderr: {err!r}")
    # llama.cpp has no --flag=value form
    rc, _, err = run_sim(tmp, ["--ctx-size=1536"])
    check(rc == 1 and "error: invalid argument: --ctx-size=1536" in err, f"{rc} {err!r}")


def test_missing_value(tmp):
    for flag in ("--port", "-c", "--n-cpu-moe", "-fa"):
        rc, _, err = run_sim(tmp, [flag])
        check(rc == 1, f"{flag}: exit status {rc}")
        check(f'error while handling argument "{flag}": expected value for argument' in err,
              f"{flag}: stderr {err!r}")
        check("\nusage:\n" in err and "to show complete usage, run with -h" in err,
              f"{flag}: no usage in {err!r}")


def test_bad_number(tmp):
    rc, _, err = run_sim(tmp, ["-c", "abc"])
    check(rc == 1 and 'error while handling argument "-c": stoi' in err, f"{rc} {err!r}")
    rc, _, err = run_sim(tmp, ["--temp", "hot"])
    check(rc == 1 and 'error while handling argument "--temp": stof' in err, f"{rc} {err!r}")


def test_underscore_spelling(tmp):
    # common/arg.cpp turns '_' into '-' in "--" options; values are taken whatever they look like
    sim = Sim(tmp, args=["--ctx_size", "512", "--n_gpu_layers", "99", "-fa", "on", "--jinja",
                         "--no-mmap", "--reasoning-budget", "0", "-ot", "exps=CPU",
                         "--seed", "-1", "--kv-unified", "--no-webui", "--metrics"],
              env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def test_help_and_version(tmp):
    rc, out, _ = run_sim(tmp, ["--help"])
    check(rc == 0 and "-c,    --ctx-size N" in out and "--spec-draft-model" in out,
          f"{rc} {out[:300]!r}")
    rc, _, err = run_sim(tmp, ["--version"])
    check(rc == 0 and "version: 10470" in err, f"{rc} {err!r}")


def test_no_model(tmp):
    sim = Sim(tmp, model=False)
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    check("router mode" in sim.stderr(), sim.stderr())
    check(sim.records("exit")[0]["status"] == 1, "no exit record")


# ---------------------------------------------------------------------------------------------
# listening and loading

def test_unix_socket_loading_then_ready(tmp):
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


def test_tcp_listen(tmp):
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


def test_stale_socket(tmp):
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


def test_port_in_use(tmp):
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


def test_missing_model(tmp):
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


def test_model_is_directory(tmp):
    path = os.path.join(tmp, "dir.gguf")
    os.mkdir(path)
    sim = Sim(tmp, model=path)
    check(sim.wait() == 1, "exit status")
    check("failed to load model" in sim.stderr(), sim.stderr())


def test_reads_model_while_loading(tmp):
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

def test_exit_while_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "400", "LLAMA_SIM_EXIT_WHILE_LOADING": "1",
                        "LLAMA_SIM_EXIT_CODE": "3"})
    rc = sim.wait()
    check(rc == 3, f"exit status {rc}")
    events = [r["event"] for r in sim.records()]
    check(events[0] == "start" and events[-2:] == ["fault", "exit"], f"records {events}")
    check("ready" not in events, "became ready")
    check(sim.records("exit")[0]["status"] == 3, "exit record status")


def test_exit_while_loading_signal(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "400", "LLAMA_SIM_EXIT_WHILE_LOADING": "1",
                        "LLAMA_SIM_EXIT_SIGNAL": "SEGV"})
    rc = sim.wait()
    check(rc == -signal.SIGSEGV, f"exit status {rc}")
    faults = sim.records("fault")
    check(faults and faults[0]["signal"] == signal.SIGSEGV, f"fault records {faults}")
    check(not sim.records("exit"), "an exit record for a death by signal")


def test_exit_after(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_EXIT_AFTER_MS": "300"})
    rc = sim.wait()
    check(rc == 1, f"exit status {rc}")
    ready, ex = sim.records("ready")[0], sim.records("exit")[0]
    check(ex["t"] - ready["t"] >= 0.29, f"exited {ex['t'] - ready['t']:.3f}s after ready")


def test_exit_after_signal(tmp):
    for name, sig in (("ABRT", signal.SIGABRT), ("KILL", signal.SIGKILL), ("9", signal.SIGKILL),
                      ("SIGSEGV", signal.SIGSEGV)):
        sub = tempfile.mkdtemp(dir=tmp)
        sim = Sim(sub, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_EXIT_AFTER_MS": "100",
                            "LLAMA_SIM_EXIT_SIGNAL": name})
        rc = sim.wait()
        check(rc == -sig, f"{name}: exit status {rc}")
        check(sim.records("ready"), f"{name}: never ready")


def test_gpu_memory(tmp):
    nvml = os.path.join(tmp, "nvml")
    os.mkdir(nvml)
    sim = Sim(tmp, env={"LLAMA_SIM_GPU_MB": "300", "LLMD_FAKE_NVML": nvml})
    sim.wait_ready()
    # ready means loaded: the memory is there as soon as /health says 200
    # "DEVICE BYTES" lines: all on device 0 without CUDA_VISIBLE_DEVICES
    with open(os.path.join(nvml, str(sim.pid))) as f:
        check(f.read() == f"0 {300 << 20}\n", "the bytes it uses")
    check(os.listdir(nvml) == [str(sim.pid)], f"files {os.listdir(nvml)}")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")
    check(os.listdir(nvml) == [], f"left behind: {os.listdir(nvml)}")

    # spread evenly over the devices it sees
    sub = tempfile.mkdtemp(dir=tmp)
    sim = Sim(sub, env={"LLAMA_SIM_GPU_MB": "300", "LLMD_FAKE_NVML": nvml,
                        "CUDA_VISIBLE_DEVICES": "1,3"})
    sim.wait_ready()
    with open(os.path.join(nvml, str(sim.pid))) as f:
        check(f.read() == f"1 {150 << 20}\n3 {150 << 20}\n", "the bytes it uses per device")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")

    # a fault's exit by signal frees it too
    sub = tempfile.mkdtemp(dir=tmp)
    sim = Sim(sub, env={"LLAMA_SIM_GPU_MB": "1", "LLMD_FAKE_NVML": nvml,
                        "LLAMA_SIM_EXIT_AFTER_MS": "200", "LLAMA_SIM_EXIT_SIGNAL": "SEGV"})
    sim.wait_ready()
    check(os.listdir(nvml) == [str(sim.pid)], f"files {os.listdir(nvml)}")
    check(sim.wait() == -signal.SIGSEGV, "exit status")
    check(os.listdir(nvml) == [], f"left behind: {os.listdir(nvml)}")


def test_gpu_memory_not_loaded(tmp):
    # a model that never loads holds no GPU memory
    nvml = os.path.join(tmp, "nvml")
    os.mkdir(nvml)
    sim = Sim(tmp, env={"LLAMA_SIM_GPU_MB": "300", "LLMD_FAKE_NVML": nvml,
                        "LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_HANG_LOADING": "1"})
    sim.wait_listening()
    sim.wait_log("loading model")
    time.sleep(0.3)
    check(os.listdir(nvml) == [], f"files while loading: {os.listdir(nvml)}")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == -signal.SIGTERM, "exit status")
    # a bad value is refused at start
    rc, _, err = run_sim(tempfile.mkdtemp(dir=tmp), [], env={"LLAMA_SIM_GPU_MB": "lots"})
    check(rc == 1 and "LLAMA_SIM_GPU_MB=lots: not a count" in err, f"{rc} {err!r}")


def test_hang_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "50", "LLAMA_SIM_HANG_LOADING": "1"})
    sim.wait_listening()
    time.sleep(1.0)
    r = sim.health()
    check(r.status == 503 and r.body == LOADING_BODY, f"after 1s: {r.status} {r.body!r}")
    check(sim.alive(), "exited")
    sim.signal(signal.SIGTERM)
    rc = sim.wait()
    check(rc == -signal.SIGTERM, f"a loading server dies by SIGTERM, got {rc}")


def test_health_hang(tmp):
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


def test_sigterm_idle(tmp):
    _sig_idle(tmp, signal.SIGTERM)


def test_sigint_idle(tmp):
    _sig_idle(tmp, signal.SIGINT)


def test_sigterm_while_loading(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "10000"})
    sim.wait_listening()
    sim.signal(signal.SIGTERM)
    rc = sim.wait()
    check(rc == -signal.SIGTERM, f"exit status {rc}")
    sigs = sim.records("signal")
    check(sigs and sigs[0]["action"] == "die", f"signal records {sigs}")
    check(not sim.records("exit"), "exit record")


def test_sigterm_with_request_open(tmp):
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


def test_second_sigterm(tmp):
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


def test_hold_ms(tmp):
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


def test_chat_stream(tmp):
    _chat_stream(tmp, False)


def test_chat_stream_include_usage(tmp):
    _chat_stream(tmp, True)


def test_cr_framing(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_CR_FRAMING": "1"})
    sim.wait_ready()
    _, resp = sim.stream("/v1/chat/completions",
                         {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                          "max_tokens": 3})
    body = resp.read()
    check(b"\n" not in body and body.endswith(b"data: [DONE]\r\r"), body[-200:])
    events = body.split(b"\r\r")[:-1]
    check(len(events) >= 4 and all(e.startswith(b"data: ") for e in events), events)
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def test_chat_nonstream(tmp):
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


def test_completion_stream(tmp):
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


def test_completion_nonstream(tmp):
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


def test_oai_completion_stream(tmp):
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


def test_bad_json(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for path in ("/v1/chat/completions", "/completion"):
        # 400 since build 11669 (10470 answered 500 server_error)
        r = sim.request("POST", path, body="{b")
        check_llama_headers(r, 400, "Bad Request")
        o = r.json()
        check(list(o) == ["error"] and list(o["error"]) == ["code", "message", "type"],
              f"shape {o}")
        check(o["error"]["code"] == 400 and o["error"]["type"] == "invalid_request_error", f"{o}")
        check(o["error"]["message"].startswith("[json.exception.parse_error.101] parse error"),
              o["error"]["message"])
    # trailing garbage is not JSON either
    r = sim.request("POST", "/v1/chat/completions", body='{"messages":[]} x')
    check(r.status == 400, f"trailing garbage: {r.status}")
    check("W srv    operator(): got exception: {\"error\":{\"code\":400" in sim.stderr(),
          "no log of the error")
    # a field of the wrong type, as nlohmann reads it (a boolean is a number, not the reverse)
    for path, body, field, want, got in (
            ("/v1/chat/completions", {"messages": [], "max_tokens": "3"}, "max_tokens", "number",
             "string"),
            ("/v1/completions", {"prompt": "x", "temperature": [1]}, "temperature", "number",
             "array"),
            ("/completion", {"prompt": "x", "stream": 1}, "stream", "boolean", "number")):
        r = sim.request("POST", path, body)
        check_llama_headers(r, 400, "Bad Request")
        check(r.json()["error"] == {
            "code": 400, "message": f"Field '{field}': [json.exception.type_error.302] type "
            f"must be {want}, but is {got}", "type": "invalid_request_error"}, f"{r.body!r}")
    for body, n in (({"max_tokens": True}, 1), ({"max_completion_tokens": 2, "max_tokens": 3}, 2),
                    ({"n_predict": 1, "max_completion_tokens": 2}, 1)):
        r = sim.request("POST", "/v1/chat/completions", dict(body, messages=[]))
        check(r.status == 200 and r.json()["usage"]["completion_tokens"] == n, f"{r.body!r}")


def test_no_messages(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/v1/chat/completions", body="{}")
    check_llama_headers(r, 400, "Bad Request")
    check(r.body == b'{"error":{"code":400,"message":"\'messages\' is required",'
                    b'"type":"invalid_request_error"}}', f"body {r.body!r}")


def test_exceeds_context(tmp):
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


def test_not_found(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for method, path in (("GET", "/nope"), ("GET", "/"), ("POST", "/health"),
                         ("GET", "/v1/chat/completions")):
        r = sim.request(method, path)
        check_llama_headers(r, 404, "Not Found")
        check(r.body == NOT_FOUND_BODY, f"{method} {path}: {r.body!r}")


def test_api_key(tmp):
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


def test_models(tmp):
    sim = Sim(tmp, args=["--alias", "qwen"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("GET", "/v1/models")
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == ["models", "object", "data"], f"keys {list(o)}")
    check(o["models"][0]["name"] == "qwen" and o["data"][0]["id"] == "qwen", f"{o}")
    check(o["data"][0]["owned_by"] == "llamacpp", "owned_by")
    check(o["data"][0]["meta"]["size"] == os.path.getsize(sim.model), "size")


def test_stream_client_gone(tmp):
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


def test_stream_stalls_after_sigterm(tmp):
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


def test_records(tmp):
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
        check(all(r["status"] == 503 for r in recs[1:ready] if r["event"] == "request"),
              "answered 200 before ready")
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


def test_concurrent_requests(tmp):
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


# ---------------------------------------------------------------------------------------------
# recorded shapes, read from the brief's samples when they are there

SAMPLES = os.environ.get("LLAMA_SIM_SAMPLES", "/work/shared/brief/llama-server-samples")


def sample_body(name):
    """The body of a recorded llama-server response, or None when the samples are absent."""
    try:
        with open(os.path.join(SAMPLES, name), encoding="utf-8") as f:
            return f.read().split("\n\n", 1)[1]
    except FileNotFoundError:
        return None


def sample_json(name, fallback):
    """The recorded JSON; fallback (the same shape, kept here) when the samples are absent."""
    body = sample_body(name)
    return json.loads(body) if body is not None else fallback


def check_same_keys(got, want, where):
    """Same keys in the same order, recursively through objects and the first item of lists."""
    if isinstance(want, dict):
        check(isinstance(got, dict), f"{where}: {type(got).__name__}, not an object")
        check(list(got) == list(want), f"{where}: keys {list(got)}, want {list(want)}")
        for k in want:
            check_same_keys(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        check(isinstance(got, list), f"{where}: {type(got).__name__}, not a list")
        if want and got:
            check_same_keys(got[0], want[0], f"{where}[0]")
    elif isinstance(want, bool) or want is None:
        check(got is None or isinstance(got, bool), f"{where}: {got!r}, want a bool or null")
    elif isinstance(want, (int, float)):
        check(isinstance(got, (int, float)) and not isinstance(got, bool),
              f"{where}: {got!r}, want a number")
    else:
        check(isinstance(got, type(want)), f"{where}: {got!r}, want a {type(want).__name__}")


def check_error(r, status, reason, body):
    check_llama_headers(r, status, reason)
    check(r.body == body, f"body {r.body!r}, want {body!r}")


ERR_EMBD_ON_CHAT = (b'{"error":{"code":501,"message":"This server does not support embeddings. '
                    b'Start it with `--embeddings`","type":"not_supported_error"}}')
# As build 11669 says it (10470, in the recorded samples, lacked the word "support").
ERR_CHAT_ON_EMBD = (b'{"error":{"code":500,"message":"the current context does not support logits '
                    b'computation. skipping","type":"server_error"}}')
ERR_RERANK = (b'{"error":{"code":501,"message":"This server does not support reranking. '
              b'Start it with `--reranking`","type":"not_supported_error"}}')
ERR_METRICS = (b'{"error":{"code":501,"message":"This server does not support metrics endpoint. '
               b'Start it with `--metrics`","type":"not_supported_error"}}')
CHAT = {"messages": [{"role": "user", "content": "Say hello"}]}


def chat(**kw):
    body = dict(CHAT)
    body.update(kw)
    return body


# ---------------------------------------------------------------------------------------------
# SSE over a plain socket: exact event counts within a time window, for lock-step and faults

class RawStream:
    """An HTTP/1.1 response read from a socket as it arrives; the body is de-chunked."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.head = None
        self.body = b""
        self.closed = False
        self.ended = False   # the last chunk (0) arrived

    def _pump(self, timeout):
        if self.closed:
            return False
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        self._parse()
        return True

    def _parse(self):
        if self.head is None:
            if b"\r\n\r\n" not in self.buf:
                return
            self.head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b"transfer-encoding: chunked" not in self.head.lower():
            self.body += self.buf
            self.buf = b""
            return
        while not self.ended:
            if b"\r\n" not in self.buf:
                return
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.buf = rest[size + 2:]
            if size == 0:
                self.ended = True

    def status(self, timeout=DEADLINE):
        end = time.monotonic() + timeout
        while self.head is None and time.monotonic() < end and not self.closed:
            self._pump(end - time.monotonic())
        check(self.head is not None, f"no response head, got {self.buf!r}")
        return int(self.head.split(b" ", 2)[1])

    def events(self):
        """The complete events received so far."""
        return [e[len(b"data: "):].decode() for e in self.body.split(b"\n\n")[:-1]]

    def wait_events(self, n, timeout=DEADLINE):
        end = time.monotonic() + timeout
        while len(self.events()) < n and time.monotonic() < end and not self.closed:
            self._pump(end - time.monotonic())
        return self.events()

    def quiet_for(self, seconds):
        """Reads whatever arrives for a while; returns the events then."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.closed:
            self._pump(end - time.monotonic())
        return self.events()

    def wait_closed(self, timeout=DEADLINE):
        end = time.monotonic() + timeout
        while not self.closed and time.monotonic() < end:
            self._pump(end - time.monotonic())
        return self.closed

    def named(self):
        """The complete events received so far, as (event name or None, data JSON)."""
        return named_events(self.body[:self.body.rfind(b"\n\n") + 2].decode())

    def wait_end(self, timeout=DEADLINE):
        """Until the body's last chunk came or the connection closed (keep-alive may hold it)."""
        end = time.monotonic() + timeout
        while not self.closed and not self.ended and time.monotonic() < end:
            self._pump(end - time.monotonic())
        return self.closed or self.ended


def raw_stream(sim, path, body):
    return RawStream(raw_post(sim, path, body))


def step(sim, n=None):
    r = sim.request("POST", "/sim/step", body={} if n is None else {"n": n})
    check(r.status == 200, f"/sim/step: {r.status} {r.body!r}")
    return r.json()["released"]


def step_until(sim, want, n=None):
    """Steps until the step reached want streams (a stream registers a moment after its
    request_start record); credits given to fewer streams are only ever early, never extra."""
    return wait_until(lambda: step(sim, n) >= want and True, f"a step reaching {want} stream(s)")


def wait_request_start(sim, path, n=1):
    return wait_until(lambda: len([r for r in sim.records("request_start") if r["path"] == path])
                      >= n, f"{n} request_start record(s) for {path}")


def request_records(sim, path):
    return [r for r in sim.records("request") if r["path"] == path]


# ---------------------------------------------------------------------------------------------
# embeddings, rerank, tokenizer, template, infill

EMBD_SINGLE = {"model": "m", "object": "list", "usage": {"prompt_tokens": 4, "total_tokens": 4},
               "data": [{"embedding": [0.5], "index": 0, "object": "embedding"}]}


def test_embeddings(tmp):
    sim = Sim(tmp, args=["--embeddings", "--pooling", "mean"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    single = sample_json("POST-embeddings-single.txt", EMBD_SINGLE)
    batch = sample_json("POST-embeddings-batch.txt",
                        dict(EMBD_SINGLE, data=EMBD_SINGLE["data"] * 2))

    r = sim.request("POST", "/v1/embeddings", {"input": "hello world"})
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check_same_keys(o, single, "single")
    check(o["model"] == sim.model, f"model {o['model']!r}")
    vec = o["data"][0]["embedding"]
    check(len(vec) == len(single["data"][0]["embedding"]), f"{len(vec)} dimensions")
    check(abs(sum(x * x for x in vec) - 1.0) < 1e-4, "not normalized")
    check(o["usage"]["prompt_tokens"] == o["usage"]["total_tokens"] > 0, f"usage {o['usage']}")

    r = sim.request("POST", "/v1/embeddings",
                    {"input": ["hello world", "something else"], "model": "whatever"})
    o = r.json()
    check_same_keys(o, batch, "batch")
    check(o["model"] == "whatever", "the request's model is echoed")
    check([d["index"] for d in o["data"]] == [0, 1], "indexes")
    check(o["data"][0]["embedding"] == vec, "the same input gets another vector")
    check(o["data"][1]["embedding"] != vec, "different inputs get the same vector")
    # the native form: a list of {"index", "embedding": [[...]]}
    r = sim.request("POST", "/embedding", {"content": "hello world"})
    o = r.json()
    check(isinstance(o, list) and list(o[0]) == ["index", "embedding"], f"native {r.body[:80]!r}")
    check(o[0]["embedding"] == [vec], "native vector")
    r = sim.request("POST", "/v1/embeddings", {"input": "x", "encoding_format": "base64"})
    d = r.json()["data"][0]
    check(list(d) == ["embedding", "index", "object", "encoding_format"] and
          len(base64.b64decode(d["embedding"])) == 4 * len(vec), f"base64 {d}")
    r = sim.request("POST", "/v1/embeddings", {"nothing": 1})
    check(r.status == 400 and r.json()["error"]["message"] ==
          '"input" or "content" must be provided', f"no input: {r.status} {r.body!r}")
    # chat on an embeddings server, streamed or not
    for body in (chat(), chat(stream=True)):
        r = sim.request("POST", "/v1/chat/completions", body)
        check_error(r, 500, "Internal Server Error", ERR_CHAT_ON_EMBD)
    # The recording is build 10470's, before "support" was added to the message.
    sample = sample_body("ERR-chat-on-embeddings-server.txt")
    check(sample is None or sample.encode() == ERR_CHAT_ON_EMBD.replace(b"does not support", b"does not"),
          "the recorded error differs")
    check("E srv    send_error: task id = " in sim.stderr(), "no send_error line")


def test_embeddings_on_chat_server(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for path in ("/v1/embeddings", "/embedding", "/embeddings"):
        r = sim.request("POST", path, {"input": "x"})
        check_error(r, 501, "Not Implemented", ERR_EMBD_ON_CHAT)
    sample = sample_body("ERR-embeddings-on-chat-server.txt")
    check(sample is None or sample.encode() == ERR_EMBD_ON_CHAT, "the recorded error differs")


def test_rerank(tmp):
    # llama-server needs --reranking (--embedding with --pooling rank): --embeddings is not enough
    for args in ([], ["--embeddings"]):
        sub = tempfile.mkdtemp(dir=tmp)
        sim = Sim(sub, args=args, env={"LLAMA_SIM_LOAD_MS": "20"})
        sim.wait_ready()
        r = sim.request("POST", "/rerank", {"query": "q", "documents": ["a"]})
        check_error(r, 501, "Not Implemented", ERR_RERANK)
        sim.kill()
    sim = Sim(tmp, args=["--reranking"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    docs = ["a dog", "the big cat sat", "a cat"]
    for path in ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking"):
        r = sim.request("POST", path, {"query": "big cat", "documents": docs, "top_n": 2})
        check_llama_headers(r, 200, "OK")
        o = r.json()
        check(list(o) == ["model", "object", "usage", "results"], f"keys {list(o)}")
        check(len(o["results"]) == 2 and
              all(list(x) == ["index", "relevance_score"] for x in o["results"]), f"{o}")
        scores = [x["relevance_score"] for x in o["results"]]
        check(scores == sorted(scores, reverse=True), "not sorted")
        check(o["results"][0]["index"] == 1, f"best match {o['results']}")
    r = sim.request("POST", "/rerank", {"query": "big cat", "texts": docs, "return_text": True})
    o = r.json()
    check(isinstance(o, list) and len(o) == 3 and list(o[0]) == ["index", "score", "text"],
          f"TEI form {o}")
    check(o[0]["text"] == docs[o[0]["index"]], "text")
    r = sim.request("POST", "/rerank", {"query": "q", "documents": []})
    check(r.status == 400 and r.json()["error"]["message"] ==
          '"documents" must be a non-empty string array', f"{r.status} {r.body!r}")
    r = sim.request("POST", "/rerank", {"documents": ["a"]})
    check(r.status == 400 and "query" in r.json()["error"]["message"], f"{r.body!r}")
    # an embedding server serves embeddings too
    check(sim.request("POST", "/v1/embeddings", {"input": "x"}).status == 200, "embeddings")


def test_tokenize(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/tokenize", {"content": "Hello world, again"})
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == ["tokens"] and len(o["tokens"]) == 3 and
          all(isinstance(t, int) for t in o["tokens"]), f"{o}")
    check(sim.request("POST", "/tokenize", {"content": "Hello world, again"}).json() == o,
          "not deterministic")
    r = sim.request("POST", "/tokenize", {"content": "Hello world, again", "with_pieces": True})
    p = r.json()["tokens"]
    check([list(x) for x in p] == [["id", "piece"]] * 3, f"with_pieces {p}")
    check([x["piece"] for x in p] == ["Hello", " world,", " again"], f"pieces {p}")
    check([x["id"] for x in p] == o["tokens"], "ids differ with pieces")
    check(sim.request("POST", "/tokenize", {}).json() == {"tokens": []}, "no content")
    r = sim.request("POST", "/detokenize", {"tokens": o["tokens"]})
    check_llama_headers(r, 200, "OK")
    check(r.json() == {"content": "Hello world, again"}, f"detokenize {r.body!r}")
    check(sim.request("POST", "/detokenize", {}).json() == {"content": ""}, "no tokens")
    r = sim.request("POST", "/detokenize", {"tokens": ["x"]})
    check(r.status == 500 and r.json()["error"]["type"] == "server_error", f"{r.body!r}")
    # what generation produced detokenizes too
    gen = sim.request("POST", "/v1/chat/completions", chat(max_tokens=4)).json()
    ids = sim.request("POST", "/tokenize",
                      {"content": gen["choices"][0]["message"]["content"]}).json()["tokens"]
    check(len(ids) == 4, f"{len(ids)} tokens for 4 generated")


def test_apply_template(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("POST", "/apply-template",
                    {"messages": [{"role": "system", "content": "Be brief"},
                                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    check_llama_headers(r, 200, "OK")
    check(r.json() == {"prompt": "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nhi"
                                 "<|im_end|>\n<|im_start|>assistant\n"}, f"{r.body!r}")
    r = sim.request("POST", "/apply-template", {})
    check(r.status == 400 and r.json()["error"]["message"] == "'messages' is required",
          f"{r.status} {r.body!r}")


def test_infill(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    body = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 3}
    r = sim.request("POST", "/infill", body)
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check(list(o) == NATIVE_FINAL_KEYS, f"keys {list(o)}")
    check(o["content"] == text_of(3) and o["tokens_predicted"] == 3, f"{o['content']!r}")
    check("<|fim_prefix|>" in o["prompt"] and o["prompt"].endswith("<|fim_middle|>"), o["prompt"])
    conn, resp = sim.stream("/infill", dict(body, stream=True))
    events = sse_events(resp)
    conn.close()
    check(len(events) == 4 and json.loads(events[-1])["stop"] is True, f"stream {events}")
    r = sim.request("POST", "/infill", {"input_suffix": "x"})
    check(r.status == 500 and "input_prefix" in r.json()["error"]["message"], f"{r.body!r}")
    r = sim.request("POST", "/infill", dict(body, input_extra="nope"))
    check(r.status == 400, f"input_extra: {r.status}")


# ---------------------------------------------------------------------------------------------
# /props, /slots, /metrics, GET /, OPTIONS

PROPS_FALLBACK_KEYS = ["default_generation_settings", "total_slots", "model_alias", "model_ftype",
                       "model_path", "modalities", "media_marker", "endpoint_slots",
                       "endpoint_props", "endpoint_metrics", "ui", "ui_settings",
                       "chat_template", "chat_template_caps", "bos_token", "eos_token",
                       "build_info", "is_sleeping", "cors_proxy_enabled"]


def test_props(tmp):
    sim = Sim(tmp, args=["-c", "1024", "-np", "2", "--alias", "qwen,other"],
              env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("GET", "/props")
    check_llama_headers(r, 200, "OK")
    o = r.json()
    want = sample_json("GET-props.txt", None)
    if want is not None:
        check_same_keys(o, want, "props")
        check(o["default_generation_settings"]["params"] ==
              dict(want["default_generation_settings"]["params"], n_predict=-1, max_tokens=-1),
              "default params differ from the recorded ones")
        check(o["chat_template"] == want["chat_template"], "chat template")
    else:
        check(list(o) == PROPS_FALLBACK_KEYS, f"keys {list(o)}")
    check(o["total_slots"] == 2, f"total_slots {o['total_slots']}")
    check(o["default_generation_settings"]["n_ctx"] == 512, "n_ctx per slot with -np 2")
    check(o["model_alias"] == "qwen" and o["model_path"] == sim.model, f"{o['model_alias']}")
    check(o["endpoint_metrics"] is False and o["endpoint_slots"] is True, "endpoints")
    check(o["build_info"] == "b10470-34af94cd9", "build_info")
    check(sim.request("POST", "/props", {}).status == 501, "POST /props without --props")


SLOT_IDLE_KEYS = ["id", "n_ctx", "speculative", "is_processing"]
SLOT_USED_KEYS = SLOT_IDLE_KEYS + ["id_task", "n_prompt_tokens", "n_prompt_tokens_processed",
                                   "n_prompt_tokens_cache", "params", "next_token"]


def test_slots(tmp):
    sim = Sim(tmp, args=["-c", "512"],
              env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_LOCKSTEP": "1"})
    sim.wait_ready()
    r = sim.request("GET", "/slots")
    check_llama_headers(r, 200, "OK")
    s = r.json()
    check([x["id"] for x in s] == [0, 1, 2, 3], "four slots by default")
    check(all(list(x) == SLOT_IDLE_KEYS and x["is_processing"] is False for x in s), f"{s}")
    check(s[0]["n_ctx"] == 512, "n_ctx")
    recorded = sample_json("GET-slots.txt", None)
    if recorded is not None:
        check_same_keys(s[0], recorded[0], "idle slot")

    # a stream held by lock-step keeps its slot busy
    st = raw_stream(sim, "/v1/chat/completions", chat(stream=True, max_tokens=2, temperature=0))
    check(st.status() == 200, "stream status")
    busy = wait_until(lambda: [x for x in sim.request("GET", "/slots").json()
                               if x["is_processing"]], "a busy slot")
    check(len(busy) == 1 and list(busy[0]) == SLOT_USED_KEYS, f"busy {busy}")
    if recorded is not None:
        check_same_keys(busy[0], recorded[1], "busy slot")
    nt = busy[0]["next_token"][0]
    check(nt["has_next_token"] is True and nt["n_decoded"] == 0 and nt["n_remain"] == 2, f"{nt}")
    check(busy[0]["params"]["max_tokens"] == 2 and busy[0]["params"]["stream"] is True, "params")
    r = sim.request("GET", "/slots?fail_on_no_slot=1")
    check(r.status == 200, "idle slots remain")
    step_until(sim, 1, n=100)
    check(st.wait_end(), "stream did not end")
    s = wait_until(lambda: [x for x in sim.request("GET", "/slots").json()
                            if "id_task" in x and not x["is_processing"]], "the slot released")
    check(s[0]["next_token"][0]["n_decoded"] == 0, "released slot")

    sub = tempfile.mkdtemp(dir=tmp)
    other = Sim(sub, args=["-np", "3", "--no-slots"], env={"LLAMA_SIM_LOAD_MS": "20"})
    other.wait_ready()
    r = other.request("GET", "/slots")
    check(r.status == 501 and b"Start it with `--slots`" in r.body, f"--no-slots: {r.body!r}")


METRIC_NAMES = ["prompt_tokens_total", "prompt_tokens_cached_total", "prompt_seconds_total",
                "tokens_predicted_total", "tokens_predicted_seconds_total", "n_decode_total",
                "n_tokens_max", "spec_decode_num_draft_tokens_total",
                "spec_decode_num_accepted_tokens_total", "spec_decode_num_drafts_total",
                "prompt_tokens_seconds", "predicted_tokens_seconds", "requests_processing",
                "requests_deferred", "n_busy_slots_per_decode"]


def parse_metrics(text):
    out, kinds = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            kinds[name] = kind
        elif line and not line.startswith("#"):
            name, value = line.split(" ")
            out[name] = float(value)
    return out, kinds


def test_metrics(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    r = sim.request("GET", "/metrics")
    check_error(r, 501, "Not Implemented", ERR_METRICS)

    sub = tempfile.mkdtemp(dir=tmp)
    sim = Sim(sub, args=["--metrics"], env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    r = sim.request("GET", "/metrics")
    check_llama_headers(r, 200, "OK", "text/plain; version=0.0.4")
    check(r.header("Process-Start-Time-Unix", ).isdigit(), "Process-Start-Time-Unix")
    values, kinds = parse_metrics(r.body.decode())
    check(list(values) == ["llamacpp:" + n for n in METRIC_NAMES], f"names {list(values)}")
    recorded = sample_body("GET-metrics.txt")
    if recorded is not None:
        want_values, want_kinds = parse_metrics(recorded)
        check(list(values) == list(want_values) and kinds == want_kinds, "differs from recorded")
    check(values["llamacpp:tokens_predicted_total"] == 0, "fresh counters")
    sim.request("POST", "/v1/chat/completions", chat(max_tokens=5))
    values, _ = parse_metrics(sim.request("GET", "/metrics").body.decode())
    check(values["llamacpp:tokens_predicted_total"] == 5, f"{values}")
    check(values["llamacpp:prompt_tokens_total"] > 0 and
          values["llamacpp:requests_processing"] == 0, f"{values}")


def test_root_no_ui(tmp):
    sim = Sim(tmp, args=["--api-key", "secret"], env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    # "/" is one of llama-server's public paths: no key needed to get its 404
    r = sim.request("GET", "/")
    check_error(r, 404, "Not Found", NOT_FOUND_BODY)
    sample = sample_body("GET-root-no-ui.txt")
    check(sample is None or sample.encode() == NOT_FOUND_BODY, "the recorded body differs")


def test_options_preflight(tmp):
    sim = Sim(tmp, args=["--api-key", "secret"], env={"LLAMA_SIM_LOAD_MS": "1500"})
    sim.wait_listening()
    # before the model is loaded and without the key: OPTIONS is answered first, on any path
    for path in ("/v1/chat/completions", "/health", "/nope"):
        for origin in ("http://example", None):
            r = sim.request("OPTIONS", path, headers={"Origin": origin} if origin else {})
            check(r.status == 200 and r.reason == "OK", f"{path}: {r.status}")
            check(r.body == b"", f"body {r.body!r}")
            check(r.header("Server") == "llama.cpp", "Server")
            check(r.header("Access-Control-Allow-Origin") == (origin or ""), "Allow-Origin")
            check(r.header("Access-Control-Allow-Credentials") == "true", "Allow-Credentials")
            check(r.header("Access-Control-Allow-Methods") == "GET, POST, DELETE, OPTIONS",
                  "Allow-Methods")
            check(r.header("Access-Control-Allow-Headers") == "*", "Allow-Headers")
            check(r.header("Content-Type") == "text/html", f"{r.header('Content-Type')!r}")
            check(r.header("Content-Length") == "0", "Content-Length")
    check(sim.health().status == 503, "still loading")


# ---------------------------------------------------------------------------------------------
# thinking

def test_reasoning_stream(tmp):
    sim = Sim(tmp, args=["--reasoning-format", "deepseek", "--reasoning-budget", "3"],
              env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    conn, resp = sim.stream("/v1/chat/completions", chat(stream=True, max_tokens=7))
    check(resp.status == 200, f"status {resp.status}")
    events = sse_events(resp)
    conn.close()
    check(events[-1] == "[DONE]", "no [DONE]")
    chunks = [json.loads(e) for e in events[:-1]]
    recorded = sample_body("POST-chat-reasoning-budget3-stream.txt")
    if recorded is not None:
        want = [json.loads(e[len("data: "):]) for e in recorded.strip().split("\n\n")[:-1]]
        check(len(chunks) == len(want), f"{len(chunks)} chunks, recorded {len(want)}")
        for i, (c, w) in enumerate(zip(chunks, want)):
            check_same_keys(c, w, f"chunk {i}")
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    kinds = [list(d) for d in deltas]
    # budget 3: two reasoning tokens, the end of the thinking (no event), then content
    check(kinds == [["reasoning_content"]] * 2 + [["content"]] * 4, f"deltas {deltas}")
    check([d["content"] for d in deltas[2:]] == WORDS[:4], "content")
    check(chunks[-1]["timings"]["predicted_n"] == 7, "predicted_n")
    # the request can turn it off, and ask for it on a server without the flag
    sub = tempfile.mkdtemp(dir=tmp)
    plain = Sim(sub, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    plain.wait_ready()
    for s, body, thinks in ((sim, chat(stream=True, max_tokens=6, reasoning_format="none"), False),
                            (plain, chat(stream=True, max_tokens=6), False),
                            (plain, chat(stream=True, max_tokens=6, reasoning_format="deepseek"),
                             True),
                            (sim, chat(stream=True, max_tokens=6,
                                       chat_template_kwargs={"enable_thinking": False}), False)):
        conn, resp = s.stream("/v1/chat/completions", body)
        deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(resp)[1:-2]]
        conn.close()
        got = any("reasoning_content" in d for d in deltas)
        check(got == thinks, f"{body}: reasoning {got}")
        if thinks:
            first_content = next(i for i, d in enumerate(deltas) if "content" in d)
            check(all("reasoning_content" in d for d in deltas[:first_content]) and
                  all("content" in d for d in deltas[first_content:]), f"order {deltas}")


def test_reasoning_nonstream(tmp):
    sim = Sim(tmp, args=["--reasoning-format", "deepseek", "--reasoning-budget", "3"],
              env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    r = sim.request("POST", "/v1/chat/completions", chat(max_tokens=7))
    check_llama_headers(r, 200, "OK")
    o = r.json()
    recorded = sample_json("POST-chat-reasoning-budget3.txt", None)
    if recorded is not None:
        check_same_keys(o, recorded, "reasoning")
    m = o["choices"][0]["message"]
    check(list(m) == ["role", "content", "reasoning_content"], f"message {m}")
    check(m["content"] == text_of(4) and m["reasoning_content"] == "Thinking it", f"{m}")
    check(o["usage"]["completion_tokens"] == 7, "completion_tokens")


def test_canned(tmp):
    """LLAMA_SIM_CANNED: a chat whose messages contain "match" gets that answer, reasoning
    first, ending with "stop"; another chat gets the made-up words."""
    path = os.path.join(tmp, "canned.json")
    with open(path, "w") as f:
        json.dump([{"match": "MARK-1", "content": "def f():\n    return 1\n",
                    "reasoning_content": "I think so"}], f)
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "0",
                        "LLAMA_SIM_CANNED": path})
    sim.wait_ready()
    body = chat(max_tokens=50, messages=[{"role": "user", "content": "say MARK-1 now"}])
    m = sim.request("POST", "/v1/chat/completions", body).json()
    msg = m["choices"][0]["message"]
    check(msg["content"] == "def f():\n    return 1\n" and
          msg["reasoning_content"] == "I think so" and
          m["choices"][0]["finish_reason"] == "stop", f"{m}")
    # streamed: the same text, token by token
    st = raw_stream(sim, "/v1/chat/completions", dict(body, stream=True))
    check(st.wait_end(), "not ended")
    deltas = [json.loads(e)["choices"][0]["delta"] for e in st.events() if e != "[DONE]"]
    check("".join(x.get("content") or "" for x in deltas) == "def f():\n    return 1\n" and
          "".join(x.get("reasoning_content") or "" for x in deltas) == "I think so", f"{deltas}")
    # the file is read on each request; a chat without the marker is made up
    with open(path, "w") as f:
        json.dump([], f)
    m = sim.request("POST", "/v1/chat/completions", body).json()
    check(m["choices"][0]["message"]["content"] == text_of(50), f"{m}")


# ---------------------------------------------------------------------------------------------
# lock-step

def test_lockstep(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_LOCKSTEP": "1"})
    sim.wait_ready()
    check(step(sim) == 0, "a step with no stream open released one")
    st = raw_stream(sim, "/v1/chat/completions", chat(stream=True, max_tokens=3))
    check(st.status() == 200, "status")
    wait_request_start(sim, "/v1/chat/completions")
    check(st.quiet_for(0.5) == [], f"an event before any step: {st.events()}")
    # the stream registers a moment after request_start: a step that reached nobody gave nothing
    step_until(sim, 1)
    events = st.wait_events(1)
    check(len(st.quiet_for(0.3)) == 1, f"one step, {len(st.events())} events")
    check(json.loads(events[0])["choices"][0]["delta"] == {"role": "assistant", "content": None},
          f"first event {events[0]}")
    for k in (1, 2):
        step(sim, k)
        n = len(events) + k
        events = st.wait_events(n)
        check(len(st.quiet_for(0.3)) == n, f"after a step of {k}: {len(st.events())} events")
    # role, three tokens: the final chunk and [DONE] need two more
    check([json.loads(e)["choices"][0]["delta"].get("content") for e in events[1:]] == WORDS[:3],
          f"events {events}")
    check(not st.ended, "ended early")
    check(step(sim, 5) == 1, "released")
    check(st.wait_end(), "not ended")
    events = st.wait_events(6)
    check(events[-1] == "[DONE]" and len(events) == 6, f"end {events[-2:]}")

    # two streams: one step reaches both
    a = raw_stream(sim, "/completion", {"prompt": "x", "n_predict": 2, "stream": True})
    b = raw_stream(sim, "/v1/completions", {"prompt": "x", "max_tokens": 2, "stream": True})
    step_until(sim, 2)
    check(len(a.wait_events(1)) >= 1 and len(b.wait_events(1)) >= 1, "both moved")
    # a non-streamed request is not held
    r = sim.request("POST", "/v1/chat/completions", chat(max_tokens=2))
    check(r.status == 200, "non-streamed request")
    # a stream whose client left stops waiting for steps
    a.sock.close()
    wait_until(lambda: [r for r in request_records(sim, "/completion") if r.get("client_gone")],
               "the abandoned stream's record")


# ---------------------------------------------------------------------------------------------
# records

def test_records_fields(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    body = json.dumps(chat(model="qwen-7b", max_tokens=3, stream=True)).encode()
    conn = sim.connection()
    conn.request("POST", "/v1/chat/completions", body=body)
    resp = conn.getresponse()
    sse_events(resp)
    conn.close()
    r = wait_until(lambda: request_records(sim, "/v1/chat/completions"), "the request record")[0]
    start = [x for x in sim.records("request_start") if x["path"] == "/v1/chat/completions"][0]
    want = {"method": "POST", "path": "/v1/chat/completions", "body_bytes": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(), "model": "qwen-7b"}
    for k, v in want.items():
        check(start[k] == v, f"request_start {k}: {start.get(k)!r}")
        check(r[k] == v, f"request {k}: {r.get(k)!r}")
    check(start["t"] <= r["t"], "request_start after request")
    check(r["status"] == 200 and r["stream"] is True and r["tokens_sent"] == 3, f"{r}")
    check("client_gone" not in r and "gone_t" not in r, "client_gone on a complete request")

    # no body, no model, not streamed
    sim.request("GET", "/v1/models")
    m = wait_until(lambda: request_records(sim, "/v1/models"), "the models record")[0]
    check(m["body_bytes"] == 0 and m["body_sha256"] == hashlib.sha256(b"").hexdigest() and
          "model" not in m and m["stream"] is False and m["tokens_sent"] == 0, f"{m}")
    sim.request("POST", "/completion", {"prompt": "x", "n_predict": 4})
    c = wait_until(lambda: request_records(sim, "/completion"), "the completion record")[0]
    check(c["tokens_sent"] == 4 and c["stream"] is False, f"{c}")

    # a client that goes away mid-stream
    s = raw_post(sim, "/v1/completions", {"prompt": "x", "max_tokens": 100000, "stream": True})
    st = RawStream(s)
    st.wait_events(2)
    before = time.monotonic()
    s.close()
    g = wait_until(lambda: request_records(sim, "/v1/completions"), "the abandoned record")[0]
    check(g["client_gone"] is True and g["status"] == 200, f"{g}")
    check(isinstance(g["gone_t"], float) and before - 1 <= g["gone_t"] <= g["t"], f"gone_t {g}")
    check(g["tokens_sent"] >= 2, f"tokens_sent {g['tokens_sent']}")


# ---------------------------------------------------------------------------------------------
# faults mid-stream

def _fault_stream(tmp, env, path="/v1/chat/completions", body=None):
    e = {"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "5"}
    e.update(env)
    sim = Sim(tmp, env=e)
    sim.wait_ready()
    st = raw_stream(sim, path, body or chat(stream=True, max_tokens=20))
    check(st.status() == 200, "status")
    return sim, st


def _tokens(events):
    out = []
    for e in events:
        if e == "[DONE]":
            continue
        d = json.loads(e)
        if "choices" in d and d["choices"] and d["choices"][0].get("delta", {}).get("content"):
            out.append(d)
    return out


def test_fault_exit_after_tokens(tmp):
    sim, st = _fault_stream(tmp, {"LLAMA_SIM_EXIT_AFTER_TOKENS": "3", "LLAMA_SIM_EXIT_CODE": "7"})
    rc = sim.wait()
    check(rc == 7, f"exit status {rc}")
    check(st.wait_closed(), "connection still open")
    events = st.events()
    check(len(_tokens(events)) == 3 and "[DONE]" not in events, f"events {events}")
    check(not st.ended, "the chunked body ended cleanly")
    f = sim.records("fault")
    check(f and f[0]["fault"] == "LLAMA_SIM_EXIT_AFTER_TOKENS" and f[0]["status"] == 7, f"{f}")
    check(sim.records("exit")[-1]["status"] == 7, "exit record")


def test_fault_exit_after_tokens_signal(tmp):
    sim, st = _fault_stream(tmp, {"LLAMA_SIM_EXIT_AFTER_TOKENS": "2",
                                  "LLAMA_SIM_EXIT_SIGNAL": "KILL"})
    rc = sim.wait()
    check(rc == -signal.SIGKILL, f"exit status {rc}")
    check(st.wait_closed(), "connection still open")
    check(len(_tokens(st.events())) == 2, f"events {st.events()}")
    check(not sim.records("exit"), "an exit record for a death by signal")


def test_fault_stall_after_tokens(tmp):
    sim, st = _fault_stream(tmp, {"LLAMA_SIM_STALL_AFTER_TOKENS": "2"})
    st.wait_events(3)
    events = st.quiet_for(1.0)
    check(len(events) == 3 and len(_tokens(events)) == 2, f"events {events}")
    check(not st.closed and sim.alive(), "the stall closed the connection")
    check(sim.health().status == 200, "the server stalls too")
    st.sock.close()
    r = wait_until(lambda: request_records(sim, "/v1/chat/completions"), "the record")[0]
    check(r["client_gone"] is True and r["tokens_sent"] == 2, f"{r}")
    sim.signal(signal.SIGTERM)
    check(sim.wait() == 0, "exit status")


def test_fault_error_after_tokens(tmp):
    sim, st = _fault_stream(tmp, {"LLAMA_SIM_ERROR_AFTER_TOKENS": "2"})
    check(st.wait_end(), "not ended")
    events = st.events()
    check(len(events) == 4, f"events {events}")
    check(len(_tokens(events[:3])) == 2 and "[DONE]" not in events, f"{events}")
    err = json.loads(events[-1])
    check(list(err) == ["error"] and list(err["error"]) == ["code", "message", "type"] and
          err["error"]["code"] == 500 and err["error"]["type"] == "server_error", f"{err}")
    # the native stream too
    st = raw_stream(sim, "/completion", {"prompt": "x", "n_predict": 9, "stream": True})
    check(st.status() == 200 and st.wait_end(), "native")
    check(len(st.events()) == 3 and "error" in json.loads(st.events()[-1]), f"{st.events()}")
    # not streamed: the error is the answer
    r = sim.request("POST", "/v1/chat/completions", chat(max_tokens=9))
    check(r.status == 500 and list(r.json()) == ["error"], f"{r.status} {r.body!r}")
    # at 0, the first result is the error: llama-server answers it as a plain error
    sub = tempfile.mkdtemp(dir=tmp)
    zero = Sim(sub, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_ERROR_AFTER_TOKENS": "0"})
    zero.wait_ready()
    r = zero.request("POST", "/v1/chat/completions", chat(stream=True))
    check_llama_headers(r, 500, "Internal Server Error")
    check(r.json()["error"]["type"] == "server_error", f"{r.body!r}")


def test_eos_after_tokens(tmp):
    sim, st = _fault_stream(tmp, {"LLAMA_SIM_EOS_AFTER_TOKENS": "3"})
    check(st.wait_end(), "not ended")
    events = st.events()
    check(len(_tokens(events)) == 3 and events[-1] == "[DONE]", f"events {events}")
    final = json.loads(events[-2])
    check(final["choices"][0]["finish_reason"] == "stop", f"{final}")
    check(final["timings"]["predicted_n"] == 3, f"{final['timings']}")
    r = sim.request("POST", "/v1/chat/completions", chat(max_tokens=20))
    check(r.json()["choices"][0]["finish_reason"] == "stop" and
          r.json()["usage"]["completion_tokens"] == 3, f"{r.body!r}")
    r = sim.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 20})
    check(r.json()["choices"][0]["finish_reason"] == "stop", f"{r.body!r}")
    r = sim.request("POST", "/completion", {"prompt": "x", "n_predict": 20})
    check(r.json()["stop_type"] == "eos" and r.json()["tokens_predicted"] == 3, f"{r.body!r}")
    # a limit before the end of generation is still the limit
    r = sim.request("POST", "/v1/chat/completions", chat(max_tokens=2))
    check(r.json()["choices"][0]["finish_reason"] == "length" and
          r.json()["usage"]["completion_tokens"] == 2, f"{r.body!r}")


def test_prompt_ms(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "5",
                        "LLAMA_SIM_PROMPT_MS": "300"})
    sim.wait_ready()
    t0 = time.monotonic()
    st = raw_stream(sim, "/v1/chat/completions", chat(stream=True, max_tokens=4))
    check(st.status() == 200, "status")
    # the role chunk leaves at once; the first token only after the prompt
    first = None
    while first is None and not st.closed:
        st._pump(DEADLINE)
        if _tokens(st.events()):
            first = time.monotonic() - t0
    check(st.wait_end(), "not ended")
    elapsed = time.monotonic() - t0
    events = st.events()
    check(len(_tokens(events)) == 4, f"events {events}")
    t = json.loads(events[-2])["timings"]
    # the simulator's own measure of its wait, and the client's of the same time: lower bounds
    check(t["prompt_ms"] >= 300, f"{t}")
    check(first is not None and first * 1000 >= t["prompt_ms"], f"first token at {first} s, {t}")
    check(elapsed * 1000 >= t["prompt_ms"] + t["predicted_ms"], f"{elapsed} s, {t}")
    check(t["predicted_n"] == 4, f"{t}")


# ---------------------------------------------------------------------------------------------
# the Anthropic Messages API and the OpenAI Responses API, against samples/ (build 11669)

API_SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
USER = [{"role": "user", "content": "hello world"}]
TOOLS_A = [{"name": "get_weather", "description": "Get the weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
ID_RE = "[A-Za-z0-9]{32}"


def recorded(name):
    """(status, body) of a recording in samples/."""
    with open(os.path.join(API_SAMPLES, name), encoding="utf-8") as f:
        head, body = f.read().split("\n\n", 1)
    return int(head.split(" ", 2)[1]), body


def named_events(text):
    """[(event name or None, data JSON)] of an SSE body whose events may have an event: line."""
    check(text == "" or text.endswith("\n\n"), f"SSE body ends {text[-40:]!r}")
    out = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        name = lines.pop(0)[len("event: "):] if lines[0].startswith("event: ") else None
        check(len(lines) == 1 and lines[0].startswith("data: "), f"SSE block {block!r}")
        out.append((name, json.loads(lines[0][len("data: "):])))
    return out


def recorded_events(name):
    return named_events(recorded(name)[1])


def api_sim(tmp, args=(), env=None):
    e = {"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"}
    e.update(env or {})
    sim = Sim(tempfile.mkdtemp(dir=tmp), args=["--alias", "chat", *args], env=e)
    sim.wait_ready()
    return sim


def api_stream(sim, path, body):
    """The named events of a whole streamed answer, its headers checked."""
    conn, resp = sim.stream(path, body)
    r = Response(resp, b"")
    check_llama_headers(r, 200, "OK", "text/event-stream")
    check(r.header("X-Accel-Buffering") == "no" and r.header("Transfer-Encoding") == "chunked",
          "stream headers")
    text = resp.read().decode()
    conn.close()
    check("[DONE]" not in text, "a [DONE] in a stream of this API")
    return named_events(text)


def check_events_like(events, want, where):
    """The same event names in the same order, each data of the recorded keys and "type"."""
    names, want_names = [n for n, _ in events], [n for n, _ in want]
    check(names == want_names, f"{where}: events {names}, recorded {want_names}")
    for i, ((n, d), (_, w)) in enumerate(zip(events, want)):
        check(d["type"] == n, f"{where}: event {n} has type {d['type']}")
        check_same_keys(d, w, f"{where} event {i} ({n})")


def test_messages_nonstream(tmp):
    sim = api_sim(tmp)
    r = sim.request("POST", "/v1/messages", {"model": "chat", "max_tokens": 4, "messages": USER})
    check_llama_headers(r, 200, "OK")
    o = r.json()
    check_same_keys(o, json.loads(recorded("POST-messages-nonstream.txt")[1]), "message")
    check(re.fullmatch("chatcmpl-" + ID_RE, o["id"]), f"id {o['id']}")
    check(o["type"] == "message" and o["role"] == "assistant" and o["model"] == "chat", f"{o}")
    check(o["content"] == [{"type": "text", "text": text_of(4)}], f"content {o['content']}")
    check(o["stop_reason"] == "max_tokens" and o["stop_sequence"] is None, "stop")
    u = o["usage"]
    check(u["output_tokens"] == 4 and u["cache_read_input_tokens"] == 0 and
          u["input_tokens"] > 0, f"usage {u}")
    # a system prompt and tools are read, and the system prompt is prompt
    r = sim.request("POST", "/v1/messages",
                    {"max_tokens": 1, "system": [{"type": "text", "text": "You are terse."}],
                     "tools": TOOLS_A, "messages": USER})
    check(r.status == 200 and r.json()["usage"]["input_tokens"] > u["input_tokens"],
          f"with a system prompt: {r.body!r}")
    check(r.json()["content"] == [{"type": "text", "text": "Hello"}], "max_tokens 1")
    # without max_tokens: -n, else 16 tokens (llama-server: 4096)
    r = sim.request("POST", "/v1/messages", {"messages": USER})
    check(r.json()["usage"]["output_tokens"] == 16, f"default {r.json()['usage']}")
    # a Messages body's n_predict does not reach the task
    r = sim.request("POST", "/v1/messages", {"max_tokens": 3, "n_predict": 1, "messages": USER})
    check(r.json()["usage"]["output_tokens"] == 3, f"n_predict {r.json()['usage']}")


def test_messages_stream(tmp):
    sim = api_sim(tmp)
    events = api_stream(sim, "/v1/messages",
                        {"model": "chat", "max_tokens": 4, "stream": True, "messages": USER})
    check_events_like(events, recorded_events("POST-messages-stream.txt"), "stream")
    data = [d for _, d in events]
    start = data[0]["message"]
    check(re.fullmatch("chatcmpl-" + ID_RE, start["id"]) and start["content"] == [] and
          start["stop_reason"] is None and start["usage"]["output_tokens"] == 0, f"{start}")
    check(data[1]["index"] == 0 and data[1]["content_block"] == {"type": "text", "text": ""},
          f"block start {data[1]}")
    check([d["delta"] for d in data[2:6]] == [{"type": "text_delta", "text": w}
                                              for w in WORDS[:4]], f"deltas {data[2:6]}")
    check(data[6] == {"type": "content_block_stop", "index": 0}, f"block stop {data[6]}")
    check(data[7]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None} and
          data[7]["usage"] == {"output_tokens": 4}, f"message_delta {data[7]}")
    check(data[8] == {"type": "message_stop"}, f"message_stop {data[8]}")
    # the prompt as count_tokens counts it
    n = sim.request("POST", "/v1/messages/count_tokens", {"messages": USER}).json()
    check(start["usage"]["input_tokens"] == n["input_tokens"], f"{start['usage']} vs {n}")
    # a stream goes in the records like a chat stream
    r = wait_until(lambda: request_records(sim, "/v1/messages"), "the record")[0]
    check(r["stream"] is True and r["status"] == 200 and r["tokens_sent"] == 4 and
          r["model"] == "chat", f"record {r}")


def test_messages_count_tokens(tmp):
    sim = api_sim(tmp)
    r = sim.request("POST", "/v1/messages/count_tokens", {"model": "chat", "messages": USER})
    check_llama_headers(r, 200, "OK")
    check_same_keys(r.json(), json.loads(recorded("POST-messages-count-tokens.txt")[1]), "count")
    n = r.json()["input_tokens"]
    g = sim.request("POST", "/v1/messages", {"max_tokens": 1, "messages": USER}).json()
    check(g["usage"]["input_tokens"] == n > 0, f"count {n}, generation {g['usage']}")
    with_system = sim.request("POST", "/v1/messages/count_tokens",
                              {"system": "You are terse.", "messages": USER}).json()
    check(with_system["input_tokens"] > n, f"system prompt not counted: {with_system}")
    # counting is not generating: a prompt over the context is counted all the same
    big = [{"role": "user", "content": "hello world " * 4096}]
    r = sim.request("POST", "/v1/messages/count_tokens", {"messages": big})
    check(r.status == 200 and r.json()["input_tokens"] > 4096, f"{r.status} {r.body!r}")
    recs = wait_until(lambda: len(request_records(sim, "/v1/messages/count_tokens")) == 3 and
                      request_records(sim, "/v1/messages/count_tokens"), "the records")
    check(all(x["tokens_sent"] == 0 for x in recs), f"count_tokens generated: {recs}")


def check_recorded_error(r, name):
    """The answer is the recorded error: status, headers and the very body."""
    status, body = recorded(name)
    check_llama_headers(r, status, http.client.responses[status])
    check(r.body.decode() == body, f"{name}: {r.body!r}, recorded {body!r}")


def test_messages_errors(tmp):
    sim = api_sim(tmp)
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        stem = "ERR-messages-" + ("count-tokens-" if "count" in path else "")
        check_recorded_error(sim.request("POST", path, "{not json"), stem + "bad-json.txt")
        check_recorded_error(sim.request("POST", path, {"model": "chat", "max_tokens": 4}),
                             stem + "no-messages.txt")
        # not an object: there are no messages either
        r = sim.request("POST", path, [1, 2])
        check(r.status == 500 and b"'messages' is required" in r.body, f"{path}: {r.body!r}")
    check_recorded_error(sim.request("POST", "/v1/messages",
                                     {"model": "chat", "max_tokens": "4", "messages": USER}),
                         "ERR-messages-max-tokens-not-number.txt")
    r = sim.request("POST", "/v1/messages", {"max_tokens": 4, "stream": "yes", "messages": USER})
    check(r.status == 400 and json.loads(r.body)["error"]["message"] ==
          "Field 'stream': [json.exception.type_error.302] type must be boolean, but is string",
          f"stream not a boolean: {r.body!r}")
    # only under /v1
    for path in ("/messages", "/messages/count_tokens"):
        r = sim.request("POST", path, {"max_tokens": 4, "messages": USER})
        check_recorded_error(r, "ERR-messages-no-v1.txt")
    # over the context, streamed or not: a 400 before any event
    big = [{"role": "user", "content": "hello world " * 4096}]
    for stream in (False, True):
        r = sim.request("POST", "/v1/messages", {"max_tokens": 4, "stream": stream,
                                                 "messages": big})
        check_llama_headers(r, 400, "Bad Request")
        status, want = recorded("ERR-messages-exceeds-context" +
                                ("-stream" if stream else "") + ".txt")
        check_same_keys(r.json(), json.loads(want), "exceeds context")
        e = r.json()["error"]
        check(e["type"] == "exceed_context_size_error" and e["n_ctx"] == 4096 and
              e["n_prompt_tokens"] > 4096, f"{e}")
    check("got exception: {\"error\":{\"code\":500,\"message\":\"'messages' is required\"" in
          sim.stderr(), "the error is not logged")


RESP_TURNS = [{"role": "user", "content": "hello world"},
              {"type": "message", "role": "assistant",
               "content": [{"type": "output_text", "text": "hi"}]},
              {"role": "user", "content": [{"type": "input_text", "text": "again"}]}]


def test_responses_nonstream(tmp):
    sim = api_sim(tmp)
    want = json.loads(recorded("POST-responses-string-input.txt")[1])
    usage = None
    for path, body in (("/v1/responses", {"max_output_tokens": 4, "input": "hello world"}),
                       ("/responses", {"max_output_tokens": 4, "input": "hello world"}),
                       ("/v1/responses", {"max_output_tokens": 4, "instructions": "Be terse.",
                                          "input": RESP_TURNS})):
        r = sim.request("POST", path, dict(body, model="chat"))
        check_llama_headers(r, 200, "OK")
        o = r.json()
        check_same_keys(o, want, path)
        check(re.fullmatch("resp_" + ID_RE, o["id"]) and
              re.fullmatch("msg_" + ID_RE, o["output"][0]["id"]), f"ids {o}")
        check(o["object"] == "response" and o["status"] == "completed" and o["model"] == "chat",
              f"{o}")
        check(o["output"] == [{"content": [{"type": "output_text", "annotations": [],
                                            "logprobs": [], "text": text_of(4)}],
                               "id": o["output"][0]["id"], "role": "assistant",
                               "status": "completed", "type": "message"}], f"output {o}")
        u = o["usage"]
        check(u["output_tokens"] == 4 and u["total_tokens"] == 4 + u["input_tokens"] and
              u["input_tokens_details"] == {"cached_tokens": 0}, f"usage {u}")
        check(usage is None or path != "/v1/responses" or u["input_tokens"] > usage,
              "the turns and the instructions are not prompt")
        usage = u["input_tokens"]
    check_same_keys(r.json(), json.loads(recorded("POST-responses-messages-instructions.txt")[1]),
                    "turns")
    # n_predict wins over max_output_tokens, which wins over max_tokens
    for body, n in (({"max_output_tokens": 3, "n_predict": 2}, 2),
                    ({"max_output_tokens": 3, "max_tokens": 1}, 3), ({"max_tokens": 1}, 1),
                    ({"max_output_tokens": True}, 1), ({}, 16)):
        r = sim.request("POST", "/v1/responses", dict(body, input="x"))
        check(r.json()["usage"]["output_tokens"] == n, f"{body}: {r.json()['usage']}")


def test_responses_stream(tmp):
    sim = api_sim(tmp)
    events = api_stream(sim, "/v1/responses",
                        {"model": "chat", "max_output_tokens": 4, "stream": True,
                         "input": "hello world"})
    check_events_like(events, recorded_events("POST-responses-stream.txt"), "stream")
    data = {}
    for n, d in events:
        data.setdefault(n, []).append(d)
    resp_id = data["response.created"][0]["response"]["id"]
    msg_id = data["response.output_item.added"][0]["item"]["id"]
    check(re.fullmatch("resp_" + ID_RE, resp_id) and re.fullmatch("msg_" + ID_RE, msg_id),
          f"ids {resp_id} {msg_id}")
    check(data["response.in_progress"][0]["response"] ==
          {"id": resp_id, "object": "response", "status": "in_progress"}, "in_progress")
    check([d["delta"] for d in data["response.output_text.delta"]] == WORDS[:4], "deltas")
    check(all(d["item_id"] == msg_id for n, d in events if "item_id" in d), "item ids")
    check(data["response.output_text.done"][0]["text"] == text_of(4), "text done")
    done = data["response.completed"][0]
    check(done["response"]["id"] == resp_id and done["response"]["status"] == "completed" and
          done["response"]["output"] == [data["response.output_item.done"][0]["item"]],
          f"completed {done}")
    u = done["response"]["usage"]
    check(u["output_tokens"] == 4 and u["total_tokens"] == 4 + u["input_tokens"], f"{u}")
    check_timings(done["timings"], u["input_tokens"], 4)
    r = wait_until(lambda: request_records(sim, "/v1/responses"), "the record")[0]
    check(r["stream"] is True and r["tokens_sent"] == 4, f"record {r}")


def test_responses_errors(tmp):
    sim = api_sim(tmp)
    for name, body in (
            ("bad-json", "{not json"),
            ("no-input", {"model": "chat", "max_output_tokens": 4}),
            ("input-not-string-or-array", {"model": "chat", "max_output_tokens": 4, "input": 5}),
            ("untyped-item", {"model": "chat", "max_output_tokens": 4,
                              "input": [{"role": "assistant", "content": "hi"}]}),
            ("bad-content-part", {"model": "chat", "max_output_tokens": 4,
                                  "input": [{"role": "user", "content": [{"type": "bogus"}]}]}),
            ("previous-response-id", {"model": "chat", "max_output_tokens": 4, "input": "hi",
                                      "previous_response_id": "resp_x"}),
            ("tools-not-array", {"model": "chat", "max_output_tokens": 4, "input": "hi",
                                 "tools": 5})):
        check_recorded_error(sim.request("POST", "/v1/responses", body),
                             f"ERR-responses-{name}.txt")
    for body, msg in (
            ([1], "'input' is required"),
            ({"input": ["hi"]}, "Cannot determine type of 'item'"),
            ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
             "'input_file' is not supported by llamacpp at this moment"),
            ({"input": [{"type": "message", "role": "assistant",
                         "content": [{"type": "input_text", "text": "x"}]}]},
             "'type' must be 'output_text'"),
            ({"input": [{"type": "function_call_output", "call_id": "c",
                         "output": [{"type": "x"}]}]},
             "Output of tool call should be 'Input text'"),
            ({"input": [{"type": "reasoning", "summary": [], "content": []}]},
             "item['content'] is empty"),
            ({"input": "x", "max_output_tokens": "4"},
             "Field 'max_tokens': [json.exception.type_error.302] type must be number, "
             "but is string")):
        r = sim.request("POST", "/v1/responses", body)
        check_llama_headers(r, 400, "Bad Request")
        check(r.json() == {"error": {"code": 400, "message": msg,
                                     "type": "invalid_request_error"}}, f"{body}: {r.body!r}")
    # every kind of item the conversion knows, together
    r = sim.request("POST", "/v1/responses", {"max_output_tokens": 1, "input": [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "input_text", "text": "x"}]},
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "t"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        {"role": "user", "content": "again"}], "tools": [{"type": "web_search"}]})
    check(r.status == 200, f"items: {r.status} {r.body!r}")
    big = "hello world " * 4096
    for stream in (False, True):
        r = sim.request("POST", "/v1/responses", {"max_output_tokens": 4, "stream": stream,
                                                  "input": big})
        check_llama_headers(r, 400, "Bad Request")
        check_same_keys(r.json(), json.loads(recorded("ERR-responses-exceeds-context.txt")[1]),
                        "exceeds context")


def test_apis_reasoning(tmp):
    sim = api_sim(tmp, ["--reasoning-format", "deepseek", "--reasoning-budget", "3"])
    # budget 3: two thinking tokens, the end of the thinking (no event), then four of text
    events = api_stream(sim, "/v1/messages", {"max_tokens": 7, "stream": True, "messages": USER})
    names = [(n, d.get("index"), (d.get("delta") or d.get("content_block") or {}).get("type"))
             for n, d in events]
    check(names == [("message_start", None, None), ("content_block_start", 0, "thinking")] +
          [("content_block_delta", 0, "thinking_delta")] * 2 +
          [("content_block_start", 1, "text")] + [("content_block_delta", 1, "text_delta")] * 4 +
          [("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
           ("content_block_stop", 1, None), ("message_delta", None, None),
           ("message_stop", None, None)], f"events {names}")
    rec = dict(recorded_events("POST-messages-reasoning-stream.txt")[:3])
    for n, d in events[:3]:
        check_same_keys(d, rec[n], n)
    check(events[-5][1]["delta"] == {"type": "signature_delta", "signature": ""}, "signature")
    o = sim.request("POST", "/v1/messages", {"max_tokens": 7, "messages": USER}).json()
    check([b["type"] for b in o["content"]] == ["thinking", "text"], f"{o['content']}")
    check_same_keys(o["content"][0], json.loads(recorded("POST-messages-reasoning.txt")[1])[
        "content"][0], "thinking block")
    check(o["content"][1]["text"] == text_of(4) and o["usage"]["output_tokens"] == 7, f"{o}")

    events = api_stream(sim, "/v1/responses", {"max_output_tokens": 7, "stream": True,
                                               "input": "hello world"})
    names = [n for n, _ in events]
    check(names == ["response.created", "response.in_progress", "response.output_item.added"] +
          ["response.reasoning_text.delta"] * 2 +
          ["response.output_item.added", "response.content_part.added"] +
          ["response.output_text.delta"] * 4 +
          ["response.output_item.done", "response.output_text.done",
           "response.content_part.done", "response.output_item.done", "response.completed"],
          f"events {names}")
    rec = recorded_events("POST-responses-reasoning-stream.txt")
    # the reasoning item's added and done, a reasoning delta, the end (the real model's
    # answer has no text)
    for i, k in ((2, 2), (3, 3), (names.index("response.output_item.done"), -2), (-1, -1)):
        check_same_keys(events[i][1], rec[k][1], names[i])
    rs = events[2][1]["item"]["id"]
    check(re.fullmatch("rs_" + ID_RE, rs) and events[3][1]["item_id"] == rs, "reasoning id")
    o = sim.request("POST", "/v1/responses", {"max_output_tokens": 7, "input": "hi"}).json()
    check([i["type"] for i in o["output"]] == ["reasoning", "message"], f"{o['output']}")
    check_same_keys(o["output"][0], json.loads(recorded("POST-responses-reasoning.txt")[1])[
        "output"][0], "reasoning item")
    # the Responses API passes the request's reasoning_format on; the Messages API does not
    o = sim.request("POST", "/v1/responses", {"max_output_tokens": 4, "input": "hi",
                                              "reasoning_format": "none"}).json()
    check([i["type"] for i in o["output"]] == ["message"], f"reasoning_format none: {o}")
    o = sim.request("POST", "/v1/messages", {"max_tokens": 4, "reasoning_format": "none",
                                             "messages": USER}).json()
    check(o["content"][0]["type"] == "thinking", f"Messages took reasoning_format: {o}")


def test_apis_faults(tmp):
    body_m = {"max_tokens": 20, "stream": True, "messages": USER}
    body_r = {"max_output_tokens": 20, "stream": True, "input": "x"}
    # an error after two tokens: the API's error event ends the stream, without the end events
    sim = api_sim(tmp, env={"LLAMA_SIM_ERROR_AFTER_TOKENS": "2", "LLAMA_SIM_TOKEN_MS": "5"})
    st = raw_stream(sim, "/v1/messages", body_m)
    check(st.status() == 200 and st.wait_end(), "not ended")
    events = st.named()
    check([n for n, _ in events] == ["message_start", "content_block_start",
                                     "content_block_delta", "content_block_delta", "error"],
          f"events {events}")
    err = events[-1][1]
    check(list(err) == ["code", "message", "type"] and err["code"] == 500 and
          err["type"] == "server_error" and "after 2 tokens" in err["message"], f"{err}")
    st = raw_stream(sim, "/v1/responses", body_r)
    check(st.status() == 200 and st.wait_end(), "not ended")
    events = st.named()
    check([n for n, _ in events] == ["response.created", "response.in_progress",
                                     "response.output_item.added", "response.content_part.added",
                                     "response.output_text.delta", "response.output_text.delta",
                                     None], f"events {events}")
    check(list(events[-1][1]) == ["error"] and events[-1][1]["error"]["code"] == 500, f"{events}")
    # not streamed: the error is the answer
    for path, body in (("/v1/messages", {"max_tokens": 9, "messages": USER}),
                       ("/v1/responses", {"max_output_tokens": 9, "input": "x"})):
        r = sim.request("POST", path, body)
        check_llama_headers(r, 500, "Internal Server Error")
        check(list(r.json()) == ["error"], f"{path}: {r.body!r}")
    # the process dies after three tokens: no end events, the chunked body never ends
    sim = api_sim(tmp, env={"LLAMA_SIM_EXIT_AFTER_TOKENS": "3", "LLAMA_SIM_EXIT_CODE": "7"})
    st = raw_stream(sim, "/v1/messages", body_m)
    check(sim.wait() == 7 and st.wait_closed(), "still running")
    names = [n for n, _ in st.named()]
    check(names.count("content_block_delta") == 3 and "message_stop" not in names and
          not st.ended, f"events {names}")
    # a stall after two tokens: silence until the client goes
    sim = api_sim(tmp, env={"LLAMA_SIM_STALL_AFTER_TOKENS": "2", "LLAMA_SIM_TOKEN_MS": "5"})
    st = raw_stream(sim, "/v1/responses", body_r)
    st.wait_events(6)
    st.quiet_for(1.0)
    names = [n for n, _ in st.named()]
    check(names.count("response.output_text.delta") == 2 and "response.completed" not in names
          and not st.closed, f"events {names}")
    st.sock.close()
    r = wait_until(lambda: request_records(sim, "/v1/responses"), "the record")[0]
    check(r["client_gone"] is True and r["tokens_sent"] == 2, f"{r}")


def test_apis_lockstep(tmp):
    sim = api_sim(tmp, env={"LLAMA_SIM_LOCKSTEP": "1"})
    st = raw_stream(sim, "/v1/messages", {"max_tokens": 2, "stream": True, "messages": USER})
    check(st.status() == 200, "status")
    wait_request_start(sim, "/v1/messages")
    check(st.quiet_for(0.5) == [], f"an event before any step: {st.events()}")
    # one event a step, though llama-server sends a token's events at once
    step_until(sim, 1)
    st.wait_events(1)
    check([n for n, _ in st.named()] == ["message_start"] and len(st.quiet_for(0.3)) == 1,
          f"one step: {st.named()}")
    step(sim, 2)
    st.wait_events(3)
    check([n for n, _ in st.named()] == ["message_start", "content_block_start",
                                        "content_block_delta"] and len(st.quiet_for(0.3)) == 3,
          f"three steps: {st.named()}")
    check(step(sim, 10) == 1 and st.wait_end(), "not ended")
    check([n for n, _ in st.named()][3:] == ["content_block_delta", "content_block_stop",
                                            "message_delta", "message_stop"], f"{st.named()}")


# ---------------------------------------------------------------------------------------------
# sizes and speed

def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])


def test_large_body(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "1"})
    sim.wait_ready()
    for size in (5_000_000, 16 << 20):
        filler = "lorem ipsum " * (size // 12)
        body = json.dumps(chat(max_tokens=2, messages=[{"role": "user", "content": filler}]))
        body = body.encode()
        r = sim.request("POST", "/v1/chat/completions", body=body)
        check(r.status in (200, 400), f"{size}: {r.status} {r.body[:200]!r}")
        rec = wait_until(lambda: [x for x in request_records(sim, "/v1/chat/completions")
                                  if x["body_bytes"] == len(body)], f"the {size} record")[0]
        check(rec["body_sha256"] == hashlib.sha256(body).hexdigest(), "checksum")
    # a 5 MB prompt exceeds the context: the default context answers 400, a big one 200
    sub = tempfile.mkdtemp(dir=tmp)
    big = Sim(sub, args=["-c", "10000000"], env={"LLAMA_SIM_LOAD_MS": "20"})
    big.wait_ready()
    body = json.dumps(chat(max_tokens=2, stream=True,
                           messages=[{"role": "user", "content": "x " * 2_500_000}])).encode()
    conn = big.connection()
    conn.request("POST", "/v1/chat/completions", body=body)
    resp = conn.getresponse()
    check(resp.status == 200 and sse_events(resp)[-1] == "[DONE]", "5 MB streamed request")
    conn.close()
    rec = wait_until(lambda: request_records(big, "/v1/chat/completions"), "the record")[0]
    check(rec["body_bytes"] == len(body) and
          rec["body_sha256"] == hashlib.sha256(body).hexdigest(), f"{rec}")
    # memory: a 16 MiB body costs tens of MiB, not hundreds
    hwm = vm_hwm_kb(sim.pid)
    check(hwm < 256 * 1024, f"peak RSS {hwm} kB")
    # deep nesting (to cJSON's limit of 1000) is parsed on a connection thread's stack
    deep = "[" * 998 + "]" * 998
    r = sim.request("POST", "/v1/chat/completions", body='{"messages":' + deep + "}")
    check(r.status == 200 and sim.alive(), f"deep nesting: {r.status}")


def test_slow_answers(tmp):
    # answers slower than the 5 s keep-alive timeout: a lock-step stream waiting for its step,
    # and a non-streamed answer taking six seconds; the connection then idles out after 5 s
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_LOCKSTEP": "1",
                        "LLAMA_SIM_TOKEN_MS": "100"})
    sim.wait_ready()
    st = raw_stream(sim, "/v1/chat/completions", chat(stream=True, max_tokens=2))
    check(st.status() == 200, "status")
    slow = raw_stream(sim, "/v1/chat/completions", chat(max_tokens=60))
    step_until(sim, 1)
    check(len(st.wait_events(1)) == 1, "first event")
    time.sleep(6)
    check(not st.closed, "the stream was closed while it waited for a step")
    step(sim, 10)
    check(st.wait_end() and st.events()[-1] == "[DONE]", f"events {st.events()}")
    check(slow.status(30) == 200, "the slow answer")
    t0 = time.monotonic()
    check(st.wait_closed(30), "the idle connection stayed open")
    check(time.monotonic() - t0 >= 3, "closed long before the idle timeout")


def test_token_ms_zero(tmp):
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_TOKEN_MS": "0"})
    sim.wait_ready()
    t0 = time.monotonic()
    # 3000 tokens take 30 s at the default 10 ms each
    r = sim.request("POST", "/completion", {"prompt": "x", "n_predict": 3000}, timeout=60)
    took = time.monotonic() - t0
    check(r.status == 200 and r.json()["tokens_predicted"] == 3000, "answer")
    check(took < 15, f"3000 tokens took {took:.1f}s")
    conn, resp = sim.stream("/v1/chat/completions", chat(stream=True, max_tokens=500))
    check(len(sse_events(resp)) == 500 + 3, "stream")
    conn.close()


def test_concurrent_streams(tmp):
    # 100 streams open at once: lock-step proves they are all in flight together
    n = 100
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20", "LLAMA_SIM_LOCKSTEP": "1"})
    sim.wait_ready()
    results = []
    lock = threading.Lock()

    def one(i):
        try:
            conn = sim.connection(timeout=60)
            conn.request("POST", "/v1/chat/completions",
                         body=json.dumps(chat(stream=True, max_tokens=3, model=f"m{i}")))
            resp = conn.getresponse()
            events = sse_events(resp)
            conn.close()
            with lock:
                results.append((resp.status, events))
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                results.append((None, repr(e)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    # no stream can finish before every one of them is registered
    wait_until(lambda: step(sim, 0) == n, f"{n} streams open at once", timeout=60)
    check(len(results) == 0, "a stream finished without steps")
    check(step(sim, 10) == n, "released")
    for t in threads:
        t.join(60)
    check(len(results) == n, f"{len(results)} of {n} streams ended")
    bad = [r for r in results if r[0] != 200 or r[1][-1] != "[DONE]" or len(r[1]) != 6]
    check(not bad, f"{len(bad)} bad streams, first {bad[:1]}")
    # The simulator writes a request's record after its last byte, which the client may read
    # first: wait for the records, do not race them.
    wait_until(lambda: len({r["model"] for r in request_records(sim, "/v1/chat/completions")}) == n,
               f"{n} distinct model records")
    check(sim.health().status == 200, "healthy afterwards")


def test_head_like_get(tmp):
    # cpp-httplib answers HEAD on every GET route: the GET's status and headers, no body.
    sim = Sim(tmp, env={"LLAMA_SIM_LOAD_MS": "20"})
    sim.wait_ready()
    for path in ("/slots", "/props", "/health", "/v1/models"):
        get, head = sim.request("GET", path), sim.request("HEAD", path)
        check(head.status == get.status == 200, f"HEAD {path}: {head.status}, GET {get.status}")
        check(head.body == b"", f"HEAD {path} has a body")



def main():
    cases = tests_of()
    if sys.argv[1:] == ["--list"]:  # how meson learns the cases
        print("\n".join(cases))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        sys.stderr.write("usage: test_sim.py CASE\ncases: " + " ".join(cases) + "\n")
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

    def show_logs():
        for s in sims:
            sys.stderr.write(f"---- simulator {s.pid}: {' '.join(s.argv)}\n")
            sys.stderr.write(s.stderr()[-6000:])
            sys.stderr.write("---- its records\n")
            for r in s.records():
                sys.stderr.write(json.dumps(r) + "\n")

    with tempfile.TemporaryDirectory(prefix="llama-sim-") as tmp:
        try:
            cases[sys.argv[1]](tmp)
        except Failure as e:
            print(f"FAIL {sys.argv[1]}: {e}")
            show_logs()
            return 1
        finally:
            for s in sims:
                s.kill()
        # A sanitized simulator stops at its first report, but a case that expects it to exit
        # would pass: a report in any simulator's output fails the case by itself.
        for s in sims:
            reports = [line for line in s.stderr().splitlines() if SANITIZER_REPORT.search(line)]
            if reports:
                print(f"FAIL {sys.argv[1]}: a sanitizer reported an error in the simulator "
                      f"{s.pid}: {reports[0]}")
                show_logs()
                return 1
        print(f"ok {sys.argv[1]}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
