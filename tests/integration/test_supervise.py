#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmd's supervision of llama-server children, observed from outside: sd_notify messages, the
simulator's own records, and process state."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from llmdtest import (REAL, Failure, LLMD, Stream, check, fixture, free_port, http, llmctl,
                      llmctl_json, pid_alive, run, sim_only, unix_http, wait_until)


def conf(qwen="", nomic="", top=""):
    return f"""
[llmd]
default = qwen
{top}
[*]
ctx-size = 4096
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5
temp = 0.6
{qwen}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
{nomic}
"""


READY = "qwen ready · embed nomic ready"


@fixture(conf())
def test_startup(d):
    ready = d.wait_notify(lambda m: m.get("READY") == "1", "READY=1")
    served = d.wait_status(READY)
    # Model loads never delay READY=1.
    check(ready < served, f"READY=1 came after the models were ready: {d.messages}")
    statuses = d.statuses()
    check(any("loading" in s for s in statuses), f"no loading status: {statuses}")
    starts = {r["_model"]: r for r in d.starts()}
    check(set(starts) == {"qwen", "nomic"}, f"started: {list(starts)}")
    q = starts["qwen"]["argv"]
    check(q[q.index("--model") + 1] == d.model_path("qwen"), f"argv {q}")
    check(q[q.index("--host") + 1] == d.socket_path("qwen"), f"argv {q}")
    check(q[q.index("--alias") + 1] == "qwen", f"argv {q}")
    check(q[q.index("--ctx-size") + 1] == "4096" and q[q.index("--temp") + 1] == "0.6", f"argv {q}")
    n = starts["nomic"]["argv"]
    check("--embeddings" in n, f"argv {n}")
    # Both children answer on their own sockets, and are llmd's children.
    pids = sorted(d.child_pids())
    check(pids == sorted(r["pid"] for r in starts.values()), f"children {pids} vs {starts}")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_MARKER=qwen-env FOO=bar"),
         env={"LISTEN_FDS": "3", "LISTEN_PID": "1", "WATCHDOG_USEC": "0", "INVOCATION_ID": "x",
              "JOURNAL_STREAM": "1:1", "KEEP_ME": "yes"})
def test_child_environment(d):
    d.wait_status(READY)
    pid = d.pid_of("qwen")
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    for k in (b"NOTIFY_SOCKET", b"LISTEN_FDS", b"LISTEN_PID", b"WATCHDOG_USEC", b"INVOCATION_ID",
              b"JOURNAL_STREAM"):
        check(k not in env, f"child inherited {k.decode()}")
    check(env.get(b"KEEP_ME") == b"yes", "child lost llmd's environment")
    check(env.get(b"FOO") == b"bar", "profile env not set")
    check(d.records("start", "qwen")[0]["env_marker"] == "qwen-env", "marker not seen by the child")
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    check(int(status["SigBlk"], 16) == 0, f"child has blocked signals: {status['SigBlk']}")
    # Its own session: a terminal's Ctrl-C reaches llmd, which stops children in order.
    check(os.getsid(pid) == pid, "child is not in its own session")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_AFTER_MS=300\nrestart-sec = 0.2\nstart-limit-burst = 10"))
def test_crash_restarted(d):
    d.wait_status(READY)
    d.wait_status("qwen restarting after exit status 1 · embed nomic ready")
    # Restarted, ready again, with a new process.
    starts = d.wait_records(3, "start", "qwen")  # their times
    exits = d.records("exit", "qwen")
    check(len({r["pid"] for r in starts}) == len(starts), "a restart reused a process")
    # Backoff: the first restart waits restart-sec, the second twice that.
    gap1 = starts[1]["t"] - exits[0]["t"]
    gap2 = starts[2]["t"] - exits[1]["t"]
    check(gap1 >= 0.19, f"first restart after {gap1:.3f}s, restart-sec is 0.2")
    check(gap2 >= 0.39, f"second restart after {gap2:.3f}s, backoff should double to 0.4")
    # The embedding child was not touched.
    check(len(d.starts("nomic")) == 1, "nomic was restarted")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_WHILE_LOADING=1 LLAMA_SIM_EXIT_CODE=3\n"
                   "restart-sec = 0.05\nstart-limit-burst = 3"))
def test_crash_loop_fails(d):
    d.wait_status("qwen failed: exit status 3 · embed nomic ready")
    n = len(d.starts("qwen"))
    check(n == 3, f"{n} starts, start-limit-burst is 3")
    time.sleep(0.5)
    check(len(d.starts("qwen")) == 3, "restarted after failing")
    check(d.proc.poll() is None, "llmd exited")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_AFTER_MS=100 LLAMA_SIM_EXIT_SIGNAL=SEGV\n"
                   "restart-sec = 0.05\nstart-limit-burst = 2"))
def test_killed_by_signal(d):
    d.wait_status("qwen failed: killed by signal SEGV · embed nomic ready")


@fixture(conf(), start=False)
def test_missing_model(d):
    os.unlink(d.model_path("qwen"))
    d.start()
    d.wait_notify(lambda m: m.get("READY") == "1", "READY=1")
    d.wait_status(f"qwen failed: model file {d.model_path('qwen')}: No such file or directory"
                  " · embed nomic ready")
    check(not d.starts("qwen"), "llama-server was started for a missing model")
    time.sleep(0.3)
    check(d.proc.poll() is None, "llmd exited")


@fixture(conf(), start=False)
def test_unreadable_model(d):
    os.unlink(d.model_path("qwen"))
    os.mkdir(d.model_path("qwen"))  # opens even for root, and no llama-server can load it
    d.start()
    d.wait_status(f"qwen failed: model file {d.model_path('qwen')}: a directory, not a regular file"
                  " · embed nomic ready")
    check(not d.starts("qwen"), "llama-server was started for a directory")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_HANG_LOADING=1\nload-timeout = 0.5s"))
def test_load_timeout(d):
    d.wait_status("qwen failed: not ready within load-timeout (500ms) · embed nomic ready")
    starts = d.starts("qwen")
    check(len(starts) == 1, f"{len(starts)} starts: a load timeout is not retried")
    wait_until(lambda: not pid_alive(starts[0]["pid"]), "the hung child to be gone")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_HEALTH_HANG_AFTER_MS=200\nhealth-interval = 0.1s\n"
                   "restart-sec = 0.1\nstop-timeout = 0.5s"))
def test_health_hang_restarted(d):
    d.wait_status(READY)
    first = d.starts("qwen")[0]["pid"]
    d.wait_status(lambda s: s.startswith("qwen stopping: not answering /health"))
    d.wait_starts(2, "qwen")
    wait_until(lambda: not pid_alive(first), "the unhealthy child to be gone")
    d.wait_status(READY)
    check(d.pid_of("qwen") != first, "not a new process")


@fixture(conf(), start=False)
def test_stale_socket(d):
    for name in ("qwen", "nomic"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(d.socket_path(name))
        s.close()  # leaves the file, as a killed llama-server would
    d.start()
    d.wait_status(READY)


@fixture(conf())
def test_sigterm_stops_in_order(d):
    d.wait_status(READY)
    pids = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    check(all(pids.values()), f"children: {pids}")
    # llmd's own child is llama-server itself (on the real tier: through unshare, sh and
    # chroot, each of which execs), so its signals reach llama-server.
    for m, pid in pids.items():
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = os.path.basename(f.read().split(b"\0")[0].decode())
        check(argv0 in ("llama-server", "llama-sim"), f"{m}: llmd's child is {argv0}, not llama-server")
    rc = d.stop(signal.SIGTERM)
    check(rc == 0, f"exit status {rc}")
    check(d.index_of("STOPPING", "1") is not None, "no STOPPING=1")
    for m, pid in pids.items():
        check(not pid_alive(pid), f"{m} (pid {pid}) survived")
    # Each exited by itself on SIGTERM ("exited"), none needed SIGKILL ("killed"); in order.
    with open(d.log_path, errors="replace") as f:
        stops = re.findall(r"^llmd: (\w+): stopped \((\w+)\)$", f.read(), re.M)
    check(stops == [("qwen", "exited"), ("nomic", "exited")], f"stops {stops}")


@sim_only("its /sim/hold request")
@fixture(conf(qwen="stop-timeout = 0.5s"))
def test_sigterm_escalates_to_sigkill(d):
    d.wait_status(READY)
    pid = d.pid_of("qwen")
    held = d.hold_request("qwen")
    t0 = time.monotonic()
    rc = d.stop(signal.SIGTERM)
    took = time.monotonic() - t0
    held.close()
    check(rc == 0, f"exit status {rc}")
    check(not pid_alive(pid), "qwen survived")
    sigs = d.records("signal", "qwen")
    check(sigs and sigs[0]["action"] == "deferred", f"the simulator did not defer SIGTERM: {sigs}")
    check(not d.records("exit", "qwen"), "qwen exited by itself, so SIGKILL was not needed")
    check(took >= 0.5, f"llmd did not wait stop-timeout before SIGKILL ({took:.3f}s)")
    with open(d.log_path) as f:
        check("sending SIGKILL" in f.read(), "no SIGKILL in the log")


@sim_only("its /sim/hold request")
@fixture(conf(qwen="stop-timeout = 60s"))
def test_second_sigterm_kills_at_once(d):
    d.wait_status(READY)
    pids = [d.pid_of(m) for m in ("qwen", "nomic")]
    check(all(pids), f"children: {pids}")
    held = d.hold_request("qwen")
    d.proc.send_signal(signal.SIGTERM)
    d.wait_notify(lambda m: m.get("STOPPING") == "1", "STOPPING=1")
    # qwen ignores SIGTERM while the request is open; a second signal does not wait 60 s.
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(10)
    held.close()
    check(rc == 0, f"exit status {rc}")
    check(not any(pid_alive(p) for p in pids), "a child survived")
    with open(d.log_path) as f:
        log = f.read()
    check("killing the models now" in log and "restarting in" not in log, log[-2000:])


@fixture(conf())
def test_sigkill_leaves_no_child(d):
    d.wait_status(READY)
    pids = [d.pid_of(m) for m in ("qwen", "nomic")]
    check(all(pids), f"children: {pids}")
    d.stop(signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in pids), "children to die with llmd", timeout=5)


@fixture(conf(), env={"LLAMA_SERVER": "/nonexistent/llama-server"})
def test_binary_missing(d):
    d.wait_status("qwen failed: cannot run /nonexistent/llama-server: No such file or directory "
                  "(set llama-server = PATH in [llmd], or $LLAMA_SERVER) · embed nomic failed: "
                  "cannot run /nonexistent/llama-server: No such file or directory "
                  "(set llama-server = PATH in [llmd], or $LLAMA_SERVER)")


@fixture(conf(qwen="load-on-startup = false"))
def test_load_on_startup_false(d):
    d.wait_status("qwen stopped · embed nomic ready")
    check(not d.starts("qwen"), "qwen was started")


@fixture(conf(), start=False)
def test_bad_config_refuses_start(d):
    d.write_config(conf(qwen="c = 4096"))
    d.start()
    rc = d.proc.wait(10)
    check(rc == 78, f"exit status {rc}")
    errno = d.index_of("ERRNO")
    check(errno is not None, "no ERRNO= sent")
    with open(d.log_path) as f:
        log = f.read()
    check(f"{d.config}:14: [qwen] c: short flag names are not accepted; use 'ctx-size'" in log, log)
    check(not d.starts(), "a child was started")


def second_llmd(d, config):
    """Another llmd on d's runtime and state directories, with its own config; it must exit
    by itself. Its messages go to its own stderr, not to d's notify socket."""
    env = {k: v for k, v in d.env.items() if k != "NOTIFY_SOCKET"}
    try:
        return subprocess.run([LLMD, "--config", config, "--runtime-dir", d.runtime,
                               "--state-dir", d.state], env=env, capture_output=True, text=True,
                              timeout=10)
    except subprocess.TimeoutExpired:
        raise Failure("the second llmd kept running")


@fixture(conf(qwen="health-interval = 0.1s", nomic="health-interval = 0.1s"))
def test_second_instance_refused(d):
    """A second llmd on the same runtime directory changes nothing there, whether it could
    bind its port or not."""
    d.wait_status(READY)
    pids = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    control = os.path.join(d.runtime, "control.sock")
    inode = os.stat(control).st_ino
    other = os.path.join(d.dir, "other.conf")
    with open(d.config) as f:
        text = f.read()
    for port in (free_port(), d.port):
        with open(other, "w") as f:
            f.write(text.replace(f"listen = 127.0.0.1:{d.port}", f"listen = 127.0.0.1:{port}"))
        p = second_llmd(d, other)
        check(p.returncode == 73, f"port {port}: exit status {p.returncode}: {p.stderr}")
        check(f"another llmd (pid {d.proc.pid}) is running on {d.runtime}" in p.stderr, p.stderr)
        check(os.stat(control).st_ino == inode, "the control socket was replaced")
        for m in pids:
            check(os.path.exists(d.socket_path(m)), f"{m}'s socket was removed")
        llmctl(d, "status", check_rc=0)
    # Health probes every 0.1 s would have noticed a child's socket gone by now.
    time.sleep(0.5)
    check({m: d.pid_of(m) for m in pids} == pids, "a child was restarted")
    check(len(d.starts()) == 2, f"starts: {[r['_model'] for r in d.starts()]}")
    check(d.proc.poll() is None, "llmd exited")


def test_check_config():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        good = os.path.join(tmp, "good.conf")
        bad = os.path.join(tmp, "bad.conf")
        with open(good, "w") as f:
            f.write(conf().replace("@MODELS@", tmp))
        with open(bad, "w") as f:
            f.write(conf(qwen="ngl = 99\nsleep-idle-seconds = 5").replace("@MODELS@", tmp))
        p = subprocess.run([LLMD, "--check-config", good], capture_output=True, text=True)
        check(p.returncode == 0, f"good file: exit {p.returncode}: {p.stderr}")
        check(p.stdout == f"{good}: ok, 2 models, default qwen, pinned nomic, routing active\n",
              p.stdout)
        # Missing model files are warnings: llmd would start and fail just that model.
        check(f"[qwen] model: {tmp}/qwen.gguf: No such file or directory" in p.stderr, p.stderr)
        p = subprocess.run([LLMD, f"--check-config={bad}"], capture_output=True, text=True)
        check(p.returncode == 1, f"bad file: exit {p.returncode}")
        check(f"{bad}:13: [qwen] ngl: short flag names are not accepted; use 'n-gpu-layers'"
              in p.stderr, p.stderr)
        check(f"{bad}:14: [qwen] sleep-idle-seconds: refused:" in p.stderr, p.stderr)
        check(p.stdout == "", p.stdout)
        p = subprocess.run([LLMD, "--check-config", os.path.join(tmp, "none.conf")],
                           capture_output=True, text=True)
        check(p.returncode == 1 and "No such file or directory" in p.stderr, p.stderr)
        p = subprocess.run([LLMD, "--bogus"], capture_output=True, text=True)
        check(p.returncode == 2, f"usage error: exit {p.returncode}")


# ---- broken children: a child that answers /health but fails every request ----

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
BROKEN = ("env = LLAMA_SIM_ERROR_WHILE=@FLAG@ LLAMA_SIM_IGNORE_SIGTERM=1\n"
          "max-child-errors = 3\nrestart-sec = 0.1\nstop-timeout = 0.5s")


def broken_conf(extra=""):
    return conf(qwen=BROKEN + "\n" + extra)


def flag_path(d):
    return os.path.join(d.dir, "broken")


def setup_broken(d):
    """The config names the flag file: while it exists, the child answers 500 to every
    completion and 200 to /health (and, broken as after a CUDA error, ignores SIGTERM)."""
    with open(d.config) as f:
        text = f.read()
    d.write_config(text.replace("@FLAG@", flag_path(d)))
    open(flag_path(d), "w").close()
    d.start()
    d.wait_status(READY)


def chat(d, body=None):
    return http(d.port, "POST", "/v1/chat/completions", body or CHAT)


@sim_only("a fault knob")
@fixture(broken_conf(), start=False)
def test_broken_child_restarted(d):
    setup_broken(d)
    first = d.pid_of("qwen")
    for i in range(2):
        r = chat(d)
        check(r.status == 500, f"request {i + 1}: {r}")
    check(d.pid_of("qwen") == first and len(d.starts("qwen")) == 1,
          "restarted before max-child-errors failures")
    r = chat(d)
    check(r.status == 500, f"request 3: {r}")
    # The third failure restarted it: the model is loading again at once, so what comes now is
    # held for the new process (which the flag no longer breaks).
    os.unlink(flag_path(d))
    results = []
    threads = [threading.Thread(target=lambda: results.append(chat(d))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check([r.status for r in results] == [200, 200], f"held requests: {results}")
    check(len(d.starts("qwen")) == 2, f"{len(d.starts('qwen'))} starts")
    check(d.pid_of("qwen") != first, "not a new process")
    wait_until(lambda: not pid_alive(first), "the old child (ignoring SIGTERM) to be killed")
    st = llmctl_json(d, "status")
    check(st["last_failure"]["model"] == "qwen" and
          st["last_failure"]["reason"] == "3 requests failed in a row (the last: HTTP 500)", st)
    out = llmctl(d, "status").stdout
    check("3 requests failed in a row (the last: HTTP 500)" in out, out)


@sim_only("a fault knob")
@fixture(broken_conf(), start=False)
def test_broken_child_4xx_and_success(d):
    setup_broken(d)
    first = d.pid_of("qwen")
    bad = {"max_tokens": 2}  # llama-server: 400 "'messages' is required"
    for _ in range(2):
        check(chat(d).status == 500, "the broken child answers 500")
    # A client's own error counts for nothing, however many.
    for _ in range(5):
        r = chat(d, bad)
        check(400 <= r.status < 500, f"a bad request: {r}")
    os.unlink(flag_path(d))
    check(chat(d).status == 200, "served")  # a success: the count starts again
    open(flag_path(d), "w").close()
    for _ in range(2):
        check(chat(d).status == 500, "the broken child answers 500")
    check(d.pid_of("qwen") == first and len(d.starts("qwen")) == 1,
          "restarted though no 3 failures came in a row")
    check(chat(d).status == 500, "the third in a row")
    d.wait_starts(2, "qwen")


@sim_only("a fault knob")
@fixture(conf(qwen=BROKEN.replace("max-child-errors = 3", "max-child-errors = 0") +
              "\nhealth-check = generate\nhealth-interval = 0.1s"), start=False)
def test_health_check_generate(d):
    setup_broken(d)
    first = d.pid_of("qwen")
    # Nobody sends a request: the periodic one-token completion finds it.
    d.wait_status(lambda s: s.startswith("qwen stopping: not answering a one-token completion"))
    os.unlink(flag_path(d))
    d.wait_starts(2, "qwen")
    d.wait_status(READY)
    check(d.pid_of("qwen") != first, "not a new process")
    check(chat(d).status == 200, "the new child serves")


@fixture(conf(qwen="max-child-errors = 1"))
def test_client_errors_never_restart(d):
    d.wait_status(READY)
    first = d.pid_of("qwen")
    for body in ({"max_tokens": 2}, {**CHAT, "max_tokens": "two"}):
        for _ in range(3):
            r = chat(d, body)
            check(400 <= r.status < 500, f"a bad request: {r}")
    check(chat(d).status == 200, "served")
    check(d.pid_of("qwen") == first and len(d.starts("qwen")) == 1, "restarted by 4xx")


def checks_seen(d, model):
    """How many requests the child served, where nothing but the checks asks it anything: the
    simulator's records of POSTs; a real llama-server's highest task id in GET /slots (it
    numbers more than one task a request, so this counts at least the checks)."""
    if not REAL:
        return sum(1 for r in d.records("request", model)
                   if r["method"] == "POST" and r["status"] == 200)
    status, body = unix_http(d.socket_path(model), "GET", "/slots")
    check(status == 200, f"{model} /slots: {status} {body[:200]!r}")
    return max((s.get("id_task", 0) for s in json.loads(body)), default=0)


@fixture(conf(qwen="health-check = generate\nhealth-interval = 0.05s",
              nomic="health-check = generate\nhealth-interval = 0.05s"))
def test_health_check_generate_healthy(d):
    """A child that works passes the generating check, the chat model's and the embedding
    model's alike: many checks later, still the first process of each."""
    d.wait_status(READY)
    first = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    wait_until(lambda: all(checks_seen(d, m) >= 20 for m in ("qwen", "nomic")),
               "twenty generating checks of each model")
    check(chat(d).status == 200, "served")
    check({m: d.pid_of(m) for m in ("qwen", "nomic")} == first, "a healthy child was restarted")
    check(len(d.starts()) == 2, f"{len(d.starts())} starts")


@sim_only("a fault knob")
@fixture(conf(qwen="env = LLAMA_SIM_STALL_AFTER_TOKENS=2\nupstream-timeout = 1\n"
                   "max-child-errors = 2"))
def test_stalls_restart_child(d):
    """A stall (the child sends nothing for upstream-timeout mid-answer; the client gets an
    error event) counts as a failure like a 5xx."""
    d.wait_status(READY)
    first = d.pid_of("qwen")

    def stalled_stream():
        s = Stream(d.port, "/v1/chat/completions", {**CHAT, "max_tokens": 8, "stream": True})
        try:
            events = s.events()
        finally:
            s.close()
        check(s.status == 200 and "upstream-timeout" in events[-1], f"a stalled stream: {events}")

    stalled_stream()
    check(d.pid_of("qwen") == first and len(d.starts("qwen")) == 1, "restarted after one stall")
    stalled_stream()
    d.wait_starts(2, "qwen")
    st = llmctl_json(d, "status")
    check(st["last_failure"]["reason"] ==
          "2 requests failed in a row (the last sent nothing for upstream-timeout)", st)


if __name__ == "__main__":
    run()
