#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The control socket and llmctl: switching, stop/start, reload, the protocol's edges."""

import json
import os
import signal
import socket
import time

from llmdtest import (REAL, Failure, LLMCTL, Skip, Varlink, check, fixture, free_port, llmctl,
                      llmctl_json, pid_alive, run, sim_only, wait_until)


def conf(extra="", qwen="", gemma="", devstral="", nomic=""):
    return f"""
[llmd]
default = qwen

[*]
ctx-size = 4096
stop-timeout = 5s
{extra}

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5
{qwen}

[gemma]
model = @MODELS@/gemma.gguf
aliases = gemma4
{gemma}

[devstral]
model = @MODELS@/devstral.gguf
{devstral}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
{nomic}
"""


MODELS = ("qwen", "gemma", "devstral", "nomic")


def ready(d, model="qwen"):
    d.wait_status(f"{model} ready · embed nomic ready")


def wait_persisted(d, want):
    """llmd saves the choice just after its reply (at idle priority): it is there a moment later."""
    wait_until(lambda: persisted(d) == want, f"{want} saved, not {persisted(d)}")


def persisted(d):
    try:
        with open(os.path.join(d.state, "active-model")) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)
    except FileNotFoundError:
        return None


@fixture(conf(), models=MODELS)
def test_switch_three(d):
    ready(d)
    nomic = d.pid_of("nomic")
    current = "qwen"
    for target, alias in (("gemma", "gemma4"), ("devstral", "devstral"), ("qwen", "qwen3.5")):
        old = d.pid_of(current)
        d.mark()
        r = llmctl_json(d, "switch", alias)
        check(r["phase"] == "done" and r["model"] == target and r["changed"], f"reply {r}")
        check(r["from"] == current, f"reply {r}")
        check(r["total_sec"] >= r["stop_sec"] + r["load_sec"] - 1e-6, f"times {r}")
        check(d.running_models() == sorted([target, "nomic"]), f"running {d.running_models()}")
        check(not pid_alive(old), f"old child {current} (pid {old}) alive")
        current = target
        d.wait_status(f"{target} ready · embed nomic ready")
        wait_persisted(d, {"model": target, "loaded": "yes"})
    check(d.pid_of("nomic") == nomic, "the embedding child was touched")
    check(len(d.starts("nomic")) == 1, "nomic restarted")


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=600"), models=MODELS, model_size=8 << 20)
def test_progress_in_order(d):
    ready(d)
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    replies = v.call("io.llmd.Manager.Switch", {"model": "gemma"}, more=True)
    phases = [r["parameters"]["phase"] for r in replies]
    check(phases[0] == "stopping" and replies[0]["parameters"]["model"] == "qwen", f"{replies}")
    check(phases[-1] == "done" and not replies[-1].get("continues"), f"{replies}")
    check(all(r.get("continues") for r in replies[:-1]), f"{replies}")
    loading = [r["parameters"] for r in replies if r["parameters"]["phase"] == "loading"]
    check(loading and phases.index("loading") > phases.index("stopping"), f"phases {phases}")
    values = [p["progress"] for p in loading if "progress" in p]
    check(values and values == sorted(values), f"progress not rising: {values}")
    check(values[-1] > 0.5, f"progress never got far: {values}")
    # Without "more", only the final reply.
    replies = v.call("io.llmd.Manager.Switch", {"model": "qwen"})
    check(len(replies) == 1 and replies[0]["parameters"]["phase"] == "done", f"{replies}")


@fixture(conf(), models=MODELS)
def test_switch_to_active(d):
    ready(d)
    starts = len(d.starts())
    r = llmctl_json(d, "switch", "qwen3.5")
    check(r["changed"] is False and r["model"] == "qwen", f"reply {r}")
    check(len(d.starts()) == starts, "something was started")


@fixture(conf(), models=MODELS)
def test_unknown_model(d):
    ready(d)
    p = llmctl(d, "switch", "llama", check_rc=2)
    check("no model 'llama' (known: qwen, gemma, devstral)" in p.stderr, p.stderr)
    e = json.loads(p.stdout)
    check(e["error"] == "io.llmd.Manager.UnknownModel", e)
    p = llmctl(d, "switch", "nomic", check_rc=2)
    check("'nomic' is pinned" in p.stderr, p.stderr)


# llmd starts its children with --log-verbosity 2 (issue 21): llama-server's own reasons for a
# failed load are error lines, and still reach llmctl.
@fixture(conf(), models=MODELS, start=False)
def test_failed_load_reason_at_default_verbosity(d):
    if not REAL:
        raise Skip("the simulator loads any file: only a real llama-server refuses a broken model")
    with open(d.model_path("gemma"), "r+b") as f:
        f.write(b"GGUX" + os.urandom(4092))  # not a GGUF: llama-server, not llmd, finds out
    d.start()
    ready(d)
    p = llmctl(d, "switch", "gemma", check_rc=2)
    check("gemma failed to load: exit status 1" in p.stderr, p.stderr)
    check("--log-verbosity" in d.starts("gemma")[-1]["argv"], d.starts("gemma"))
    log = llmctl_json(d, "status")["last_failure"]["log"]
    check(any(" E " in line and "failed to load model" in line for line in log), log)


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_EXIT_WHILE_LOADING=1 LLAMA_SIM_EXIT_CODE=7"), models=MODELS)
def test_failed_switch_rolls_back(d):
    ready(d)
    before = persisted(d)
    d.mark()
    p = llmctl(d, "switch", "gemma", check_rc=2)
    e = json.loads(p.stdout)
    check(e["error"] == "io.llmd.Manager.LoadFailed", e)
    check(e["parameters"]["reason"] == "exit status 7", e)
    check(e["parameters"]["restored"] == "qwen", e)
    check(any("LLAMA_SIM_EXIT_WHILE_LOADING" in line for line in e["parameters"]["log"]), e)
    check("gemma failed to load: exit status 7" in p.stderr, p.stderr)
    ready(d)
    check(d.running_models() == ["nomic", "qwen"], f"running {d.running_models()}")
    check(persisted(d) == before, f"persisted {persisted(d)}, was {before}")
    s = llmctl_json(d, "status")
    check(s["last_failure"]["model"] == "gemma" and s["last_failure"]["reason"] == "exit status 7", s)


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=3000"), models=MODELS)
def test_switch_during_switch(d):
    ready(d)
    first = Varlink(os.path.join(d.runtime, "control.sock"))
    first.send("io.llmd.Manager.Switch", {"model": "gemma"}, more=True)
    d.wait_starts(1, "gemma")
    r = llmctl_json(d, "switch", "devstral")
    check(r["model"] == "devstral" and r["from"] == "qwen", f"reply {r}")
    while True:
        m = first.recv()
        check(m is not None, "first caller got no answer")
        if "error" in m or not m.get("continues"):
            break
    check(m.get("error") == "io.llmd.Manager.Superseded", f"first caller got {m}")
    check(m["parameters"]["by"] == "devstral", f"{m}")
    check(d.running_models() == ["devstral", "nomic"], f"running {d.running_models()}")
    wait_until(lambda: (persisted(d) or {}).get("model") == "devstral", f"devstral saved: {persisted(d)}")


@fixture(conf(), models=MODELS)
def test_persisted_across_restart(d):
    ready(d)
    llmctl(d, "switch", "gemma", check_rc=0)
    check(d.stop() == 0, "llmd exit status")
    d.mark()
    d.start()
    ready(d, "gemma")
    starts = [r["_model"] for r in d.starts()]
    check(starts.count("qwen") == 1, f"qwen started again after the restart: {starts}")


@fixture(conf(), models=MODELS)
def test_stop_and_start(d):
    ready(d)
    qwen = d.pid_of("qwen")
    d.mark()
    r = llmctl_json(d, "stop")
    check(r["model"] is None and r["changed"], f"reply {r}")
    check(not pid_alive(qwen), "qwen still running")
    d.wait_status("qwen stopped · embed nomic ready")
    wait_persisted(d, {"model": "qwen", "loaded": "no"})
    s = llmctl_json(d, "status")
    check(s["loaded"] is False and s["active"]["state"] == "stopped", s)
    # Stays unloaded across a restart.
    d.stop()
    d.mark()
    d.start()
    d.wait_status("qwen stopped · embed nomic ready")
    time.sleep(0.3)
    check(d.running_models() == ["nomic"], f"running {d.running_models()}")
    d.mark()
    r = llmctl_json(d, "start")
    check(r["model"] == "qwen" and r["changed"], f"reply {r}")
    ready(d)
    wait_persisted(d, {"model": "qwen", "loaded": "yes"})


@fixture(conf(), models=MODELS + ("extra",))
def test_reload_applies_difference(d):
    ready(d)
    qwen, nomic = d.pid_of("qwen"), d.pid_of("nomic")
    # gemma removed, extra added, nomic changed (restarts), qwen untouched.
    text = conf(nomic="batch-size = 512").replace("[gemma]", "[extra]").replace(
        "gemma.gguf", "extra.gguf").replace("gemma4", "extra1")
    d.write_config(text)
    d.mark()
    r = llmctl_json(d, "reload")
    check(r["config"] == d.config, f"reply {r}")
    d.wait_starts(2, "nomic")
    ready(d)
    check(d.pid_of("qwen") == qwen, "qwen was restarted")
    check(d.pid_of("nomic") != nomic and not pid_alive(nomic), "nomic was not restarted")
    check("--batch-size" in d.starts("nomic")[-1]["argv"], "new flags not used")
    names = [m["name"] for m in llmctl_json(d, "list")["models"]]
    check(names == ["qwen", "extra", "devstral", "nomic"], f"models {names}")
    check(llmctl_json(d, "switch", "extra1")["model"] == "extra", "alias of the new profile")
    p = llmctl(d, "switch", "gemma", check_rc=2)
    check("no model 'gemma'" in p.stderr, p.stderr)
    d.since = 0
    i = d.index_of("RELOADING", "1")
    check(i is not None and any(m.get("READY") == "1" for _, m in d.messages[i + 1:]),
          "no RELOADING=1 then READY=1")


@fixture(conf(), models=MODELS)
def test_reload_removes_running_model(d):
    ready(d)
    llmctl(d, "switch", "gemma", check_rc=0)
    gemma = d.pid_of("gemma")
    d.write_config(conf().replace("[gemma]", "[other]").replace("gemma4", "other4"))
    d.mark()
    llmctl(d, "reload", check_rc=0)
    # The active model is gone: llmd falls back to the default.
    ready(d, "qwen")
    wait_until(lambda: not pid_alive(gemma), "the removed model to stop")
    check(d.running_models() == ["nomic", "qwen"], f"running {d.running_models()}")


@fixture(conf(), models=MODELS)
def test_reload_bad_file(d):
    ready(d)
    pids = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    d.write_config(conf(qwen="c = 8192"))
    p = llmctl(d, "reload", check_rc=2)
    check(f"{d.config}:14: [qwen] c: short flag names are not accepted; use 'ctx-size'" in p.stderr,
          p.stderr)
    e = json.loads(p.stdout)
    check(e["error"] == "io.llmd.Manager.ConfigInvalid", e)
    check({m: d.pid_of(m) for m in pids} == pids, "a child changed")
    check(llmctl(d, "status", check_rc=0), "")
    check(d.proc.poll() is None, "llmd exited")


@fixture(conf(), models=MODELS)
def test_reload_refuses_listener_change(d):
    """A new port for a model, or another listen address, cannot be applied by a reload: it is
    refused whole, naming what takes a restart, and nothing changes (no child restarted, nothing
    new listening)."""
    ready(d)
    pids = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    port = free_port()
    for changed in (conf(qwen=f"port = {port}"),
                    conf().replace("[llmd]", f"[llmd]\nlisten = 127.0.0.1:{free_port()}")):
        d.write_config(changed)
        p = llmctl(d, "reload", check_rc=2)
        check("take a restart" in p.stderr and "listen, a model's port" in p.stderr, p.stderr)
        check("Reloaded" not in open(d.log_path).read(), "a refused reload was logged as done")
        check({m: d.pid_of(m) for m in pids} == pids, "a child changed")
        with socket.socket() as s:
            check(s.connect_ex(("127.0.0.1", port)) != 0, f"something listens on {port}")
    check(d.proc.poll() is None, "llmd exited")


@fixture(conf(), models=MODELS + ("extra",))
def test_sighup_reloads(d):
    ready(d)
    qwen = d.pid_of("qwen")
    d.write_config(conf(extra="n-gpu-layers = 10").replace("[devstral]", "[extra]").replace(
        "devstral.gguf", "extra.gguf"))
    d.mark()
    d.proc.send_signal(signal.SIGHUP)
    d.wait_notify(lambda m: m.get("RELOADING") == "1", "RELOADING=1")
    d.wait_starts(2, "qwen")  # [*] changed, so every running profile restarts
    ready(d)
    check(not pid_alive(qwen), "qwen not restarted after its flags changed")
    names = [m["name"] for m in llmctl_json(d, "list")["models"]]
    check("extra" in names and "devstral" not in names, f"models {names}")
    # A bad file on SIGHUP changes nothing.
    qwen = d.pid_of("qwen")
    d.write_config("[qwen]\nmodel = relative\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "Reload refused" in open(d.log_path).read(), "the refusal in the log")
    check(d.pid_of("qwen") == qwen and d.proc.poll() is None, "bad reload changed something")


def protocol_error(d, data, reason):
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    v.send_raw(data)
    m = v.recv()
    check(m and m.get("error") == "io.llmd.Manager.ProtocolError", f"reply {m}")
    check(m["parameters"]["reason"] == reason, f"reply {m}")
    check(v.recv() is None, "connection not closed")
    v.close()


@fixture(conf(), models=MODELS)
def test_garbage_frames(d):
    ready(d)
    protocol_error(d, b"hello\0", "not a JSON object")
    protocol_error(d, b'{"method": 5}\0', "not a Varlink call (method, parameters, more)")
    protocol_error(d, b"[1,2,3]\0", "not a Varlink call (method, parameters, more)")
    protocol_error(d, b"{" + b" " * (70 * 1024), "message too large")
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    v.send_raw(b'{"method":"io.llmd.Manager.Status"}')  # no NUL, then EOF
    v.sock.shutdown(socket.SHUT_WR)
    m = v.recv()
    check(m and m["parameters"]["reason"] == "message not terminated by NUL", f"{m}")
    # Unknown methods and bad parameters are answered, and the connection stays.
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    r = v.call("io.llmd.Manager.Frobnicate")
    check(r[-1]["error"] == "org.varlink.service.MethodNotFound", f"{r}")
    r = v.call("io.llmd.Manager.Switch", {"model": 42})
    check(r[-1]["error"] == "org.varlink.service.InvalidParameter"
          and r[-1]["parameters"]["parameter"] == "model", f"{r}")
    r = v.call("org.varlink.service.GetInfo")
    check("io.llmd.Manager" in r[-1]["parameters"]["interfaces"], f"{r}")
    # Two calls in one write: both answered, in order.
    v.send_raw(b'{"method":"io.llmd.Manager.Status"}\0{"method":"org.varlink.service.GetInfo"}\0')
    check("status" in v.recv()["parameters"], "first of two")
    check("vendor" in v.recv()["parameters"], "second of two")
    check(llmctl(d, "status", check_rc=0), "")
    check(d.proc.poll() is None, "llmd exited")


@fixture(conf(), models=MODELS)
def test_reader_that_never_reads(d):
    ready(d)
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    v.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    call = b'{"method":"io.llmd.Manager.Status"}\0' * 200
    t0 = time.monotonic()
    sent = 0
    try:
        v.sock.settimeout(2)
        while time.monotonic() - t0 < 60 and sent < 5000 * len(call):
            sent += v.sock.send(call)
            # Meanwhile others are served.
            if sent % (50 * len(call)) < len(call):
                llmctl(d, "status", check_rc=0)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    check(llmctl(d, "status", check_rc=0), "")
    # The drop comes once its replies fill the buffer: a matter of how many calls llmd has read,
    # which on a busy machine (or under ASan) takes longer than on a quiet one.
    wait_until(lambda: "reads no replies" in open(d.log_path).read(),
               "the silent client to be dropped", timeout=60)
    check(d.proc.poll() is None, "llmd exited")


@fixture(conf(), models=MODELS)
def test_permissions(d):
    ready(d)
    sock = os.path.join(d.runtime, "control.sock")
    st = os.stat(sock)
    check(st.st_mode & 0o777 == 0o660, f"mode {oct(st.st_mode)}")
    os.chmod(d.dir, 0o755)
    # Not in the group: the file mode stops it.
    p = llmctl(d, "status", user=(65534, 65534, []), check_rc=1)
    check("permission denied" in p.stderr and "group 'llmd'" in p.stderr, p.stderr)
    # Past the file mode (opened up for the test), llmd's own check stops it.
    os.chmod(sock, 0o666)
    p = llmctl(d, "status", user=(65534, 65534, []), check_rc=1)
    check("permission denied" in p.stderr, p.stderr)
    with open(d.log_path) as f:
        check("control: refused uid 65534" in f.read(), "no refusal logged")
    # A member of the socket's group is let in.
    os.chmod(sock, 0o660)
    p = llmctl(d, "status", user=(65534, 65534, [st.st_gid]), check_rc=0)


def test_llmctl_without_daemon():
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "control.sock")
        p = subprocess.run([LLMCTL, "--socket", path, "status"], capture_output=True, text=True)
        check(p.returncode == 1, f"exit {p.returncode}")
        check(p.stderr == f"llmctl: llmd is not running (no control socket at {path})\n", p.stderr)
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        p = subprocess.run([LLMCTL, "status"], capture_output=True, text=True,
                           env={**os.environ, "LLMD_SOCKET": path})
        check(p.returncode == 1, f"exit {p.returncode}")
        check(p.stderr == f"llmctl: llmd is not running (nothing listens on {path})\n", p.stderr)
        p = subprocess.run([LLMCTL, "frob"], capture_output=True, text=True)
        check(p.returncode == 1 and "unknown verb 'frob'" in p.stderr, p.stderr)
        p = subprocess.run([LLMCTL, "--help"], capture_output=True, text=True)
        check(p.returncode == 0 and "switch MODEL" in p.stdout, p.stdout)


@fixture(conf(), models=MODELS)
def test_json_output(d):
    ready(d)
    s = llmctl_json(d, "--json", "status")
    check(s["active"]["name"] == "qwen" and s["active"]["state"] == "ready", s)
    check(s["pinned"][0]["name"] == "nomic" and s["pinned"][0]["embeddings"], s)
    check(s["status"] == "qwen ready · embed nomic ready", s)
    # Not a terminal: JSON without --json too.
    lst = llmctl_json(d, "list")
    check([m["name"] for m in lst["models"]] == ["qwen", "gemma", "devstral", "nomic"], lst)
    check([m["active"] for m in lst["models"]] == [True, False, False, False], lst)
    v = llmctl_json(d, "version")
    check(v["product"] == "llmd", v)


@fixture(conf(), models=MODELS)
def test_status_on_terminal(d):
    """The human form, as a terminal gets it (through script(1))."""
    import subprocess
    ready(d)
    sock = os.path.join(d.runtime, "control.sock")
    out = subprocess.run(["script", "-qec", f"{LLMCTL} --socket {sock} status", "/dev/null"],
                         capture_output=True, text=True, timeout=20).stdout
    check("llmd " in out and "qwen ready · embed nomic ready" in out, out)
    check("active   qwen: ready, pid" in out and "embed    nomic: ready" in out, out)
    check("\ngpu      none: " in out or "\ngpu      nvml: " in out, out)
    out = subprocess.run(["script", "-qec", f"{LLMCTL} --socket {sock} switch gemma", "/dev/null"],
                         capture_output=True, text=True, timeout=20).stdout
    last = out.replace("\r", "\n").replace("\x1b[K", "").strip().splitlines()[-1]
    check(last.startswith("qwen → gemma, evicted qwen, loaded: ") and "(stop " in last and ", llmd " in last,
          out)
    check("loading gemma" in out, f"no progress shown: {out!r}")


@sim_only("its /sim/hold request")
@fixture(conf(qwen="stop-timeout = 60s"), models=MODELS)
def test_switch_now_kills(d):
    ready(d)
    qwen = d.pid_of("qwen")
    held = d.hold_request("qwen")
    # llama-server ignores SIGTERM while a request is open; --now does not wait for it.
    r = llmctl_json(d, "switch", "gemma", "--now")
    held.close()
    check(r["model"] == "gemma", f"reply {r}")
    check(not pid_alive(qwen), "qwen survived")
    check(not d.records("exit", "qwen"), "qwen exited by itself: it was not killed")
    with open(d.log_path) as f:
        check("qwen: stopping at once (now): SIGKILL" in f.read(), "no SIGKILL logged")



class as_user:
    """Connections opened inside this block come from uid 65534 in the socket's group: an
    unprivileged client that is let in. SO_PEERCRED takes the effective ids at connect()."""

    def __init__(self, d):
        self.gid = os.stat(os.path.join(d.runtime, "control.sock")).st_gid
        os.chmod(d.dir, 0o755)

    def __enter__(self):
        os.setegid(self.gid)
        os.seteuid(65534)

    def __exit__(self, *exc):
        os.seteuid(0)
        os.setegid(0)


@fixture(conf(), models=MODELS)
def test_idle_clients_leave_room_for_root(d):
    ready(d)
    sock = os.path.join(d.runtime, "control.sock")
    idle = []
    with as_user(d):
        for _ in range(64):
            v = Varlink(sock)
            v.call("org.varlink.service.GetInfo")  # accepted, answered, now idle
            idle.append(v)
        extra = Varlink(sock)
    m = extra.recv()
    check(m and m.get("error") == "io.llmd.Manager.TooManyClients", f"65th unprivileged: {m}")
    # root, and llmd's own user, still get in.
    llmctl(d, "status", check_rc=0)
    v = Varlink(sock)
    check("vendor" in v.call("org.varlink.service.GetInfo")[-1]["parameters"], "root refused")
    for v in idle:
        v.close()


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=4000"), models=MODELS)
def test_partial_frame_times_out(d):
    ready(d)
    sock = os.path.join(d.runtime, "control.sock")
    partial = Varlink(sock)
    partial.send_raw(b'{"method":"io.llmd.Manager.Sta')
    t0 = time.monotonic()
    quiet = Varlink(sock)
    quiet.call("org.varlink.service.GetInfo")
    # A call in progress is never cut, however long it takes.
    switch = Varlink(sock)
    switch.send("io.llmd.Manager.Switch", {"model": "gemma"}, more=True)
    check(partial.recv() is None, "the partial frame got an answer")
    took = time.monotonic() - t0
    check(2 <= took < 10, f"closed after {took:.1f} s")
    while True:
        m = switch.recv()
        check(m is not None, "the switch was cut")
        if "error" in m or not m.get("continues"):
            break
    check(m["parameters"]["phase"] == "done" and m["parameters"]["model"] == "gemma", f"{m}")
    # An idle connection that has sent whole calls waits longer than a partial frame.
    check("vendor" in quiet.call("org.varlink.service.GetInfo")[-1]["parameters"], "quiet cut")


def raw_call(v, frame):
    v.send_raw(frame + b"\0")
    return v.recv()


@fixture(conf(), models=MODELS)
def test_nul_in_string_refused(d):
    ready(d)
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    cases = [
        (rb'{"method":"io.llmd.Manager.Switch","parameters":{"model":"gemma\u0000../x"}}',
         "org.varlink.service.InvalidParameter", "model"),
        (rb'{"method":"io.llmd.Manager.Switch","parameters":{"model":"gemma\u0000"}}',
         "org.varlink.service.InvalidParameter", "model"),
        (rb'{"method":"io.llmd.Manager.Status\u0000.x"}',
         "org.varlink.service.InvalidParameter", "method"),
        # An escaped backslash before u0000 is text, not a NUL.
        (rb'{"method":"io.llmd.Manager.Switch","parameters":{"model":"gemma\\u0000"}}',
         "io.llmd.Manager.UnknownModel", None),
    ]
    for frame, error, parameter in cases:
        m = raw_call(v, frame)
        check(m and m.get("error") == error, f"{frame}: {m}")
        if parameter:
            check(m["parameters"]["parameter"] == parameter, f"{frame}: {m}")
    check(not d.starts("gemma"), "gemma was started")
    check(llmctl_json(d, "status")["active"]["name"] == "qwen", "the active model changed")
    check("vendor" in v.call("org.varlink.service.GetInfo")[-1]["parameters"], "not served")


@fixture(conf(), models=MODELS)
def test_client_strings_escaped_in_log(d):
    ready(d)
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    r = v.call("io.llmd.Manager.Frob\nllmd: FORGED by the method")
    check(r[-1]["error"] == "org.varlink.service.MethodNotFound", f"{r}")
    r = v.call("io.llmd.Manager.Switch", {"model": "nope\nllmd: FORGED by the model"})
    check(r[-1]["error"] == "io.llmd.Manager.UnknownModel", f"{r}")
    r = v.call("io.llmd.Manager.Switch", {"model": "x\u0000\nllmd: FORGED by a NUL"})
    check(r[-1]["error"] == "org.varlink.service.InvalidParameter", f"{r}")
    v.close()
    llmctl(d, "status", check_rc=0)
    with open(d.log_path, errors="replace") as f:
        log = f.read()
    check("Frob\\nllmd: FORGED" in log, "the unknown method is not in the log, escaped")
    forged = [line for line in log.splitlines() if "FORGED" in line and not line.startswith(
        "llmd: control:")]
    check(not forged, f"forged lines: {forged}")


@fixture(conf(), models=MODELS)
def test_bad_utf8_and_duplicate_keys_refused(d):
    ready(d)
    # Bytes that are not UTF-8 anywhere in a call: refused, never quoted back (the reply would
    # not be JSON, and recv() would fail on it).
    for frame in (b'{"method":"io.llmd.Manager.Switch","parameters":{"model":"gemma\xff"}}',
                  b'{"method":"io.llmd.Manager.Frob\xc0\xaf"}',
                  b'{"method":"io.llmd.Manager.Switch","parameters":{"model":"\xed\xa0\x80"}}',
                  b'{"method":"io.llmd.Manager.Switch","parameters":{"\x80":"gemma"}}'):
        v = Varlink(os.path.join(d.runtime, "control.sock"))
        v.send_raw(frame + b"\0")
        while b"\0" not in v.buf:
            data = v.sock.recv(65536)
            check(data, f"{frame}: closed without a reply")
            v.buf += data
        reply = v.buf.split(b"\0", 1)[0]
        check(b"\xff" not in reply and b"\x80" not in reply and b"\xc0" not in reply
              and b"\xed" not in reply, f"{frame}: the bytes came back: {reply}")
        m = json.loads(reply)
        check(m.get("error") == "io.llmd.Manager.ProtocolError"
              and m["parameters"]["reason"] == "not UTF-8", f"{frame}: {m}")
        v.close()
    # A member named twice: refused, whichever of the two a reader would take.
    protocol_error(d, b'{"method":"io.llmd.Manager.Switch",'
                      b'"parameters":{"model":"qwen","model":"gemma"}}\0',
                   "an object names a member twice")
    protocol_error(d, b'{"method":"io.llmd.Manager.Status","method":"io.llmd.Manager.Switch",'
                      b'"parameters":{"model":"gemma"}}\0',
                   "an object names a member twice")
    check(not d.starts("gemma"), "gemma was started")
    # UTF-8 itself is fine: an unknown name, answered as one.
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    r = v.call("io.llmd.Manager.Switch", {"model": "caf\u00e9"})
    check(r[-1]["error"] == "io.llmd.Manager.UnknownModel", f"{r}")
    v.close()
    check(llmctl_json(d, "status")["active"]["name"] == "qwen", "the active model changed")


if __name__ == "__main__":
    run()
