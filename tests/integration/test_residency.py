#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Residency: several generation models loaded at once within the GPU's memory and
max-resident; switching to a resident model, loading beside the active one (make before break),
eviction, idle unload, llmctl load/unload, and GPU memory read through NVML (a fake
libnvidia-ml.so.1 the tests build, answering from what the simulators say they use)."""

import itertools
import os
import signal
import socket
import subprocess
import threading
import time

from llmdtest import (Failure, Stream, Varlink, check, fixture, free_port, http, llmctl, llmctl_json, pid_alive,
                      run, sim_only, wait_until)

PORT = free_port()
MODELS = ("qwen", "gemma", "devstral", "nomic")
FAKE_NVML = os.environ.get("LLMD_FAKE_NVML_LIB")  # the directory of the fake libnvidia-ml.so.1
G = 1 << 30


def conf(top="", star="", qwen="", gemma="", devstral=""):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
{top}

[*]
stop-timeout = 5s
{star}

[qwen]
model = @MODELS@/qwen.gguf
{qwen}

[gemma]
model = @MODELS@/gemma.gguf
{gemma}

[devstral]
model = @MODELS@/devstral.gguf
{devstral}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def status(d):
    return llmctl_json(d, "status")


def call(d, verb, model=None):
    """io.llmd.Manager.VERB: its final reply's parameters, or {"error": NAME, ...}."""
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    reply = v.call(f"io.llmd.Manager.{verb}", {"model": model} if model else {})[-1]
    if "error" in reply:
        return {"error": reply["error"], **reply.get("parameters", {})}
    return reply["parameters"]


def wait_ready(d, *models):
    wait_until(lambda: all(d.pid_of(m) and model(d, m)["state"] == "ready" for m in models),
               f"{', '.join(models)} ready")


def model(d, name):
    return {m["name"]: m for m in llmctl_json(d, "list")["models"]}[name]


@fixture(conf(top="max-resident = 2"), models=MODELS)
def test_resident_switch(d):
    """A model loaded beside the active one (llmctl load) is switched to without a process
    started or stopped; the one it replaces stays resident."""
    wait_ready(d, "qwen", "nomic")
    r = llmctl_json(d, "load", "gemma")
    check(r["model"] == "gemma" and r["changed"] and r["kind"] == "beside" and r["evicted"] == [], r)
    wait_ready(d, "gemma")
    check(status(d)["active"]["name"] == "qwen", "load switched")
    pids = {m: d.pid_of(m) for m in ("qwen", "gemma", "nomic")}
    starts = len(d.starts())
    r = call(d, "Switch", "gemma")
    check(r["kind"] == "resident" and r["from"] == "qwen" and r["evicted"] == [], r)
    check({m: d.pid_of(m) for m in pids} == pids and len(d.starts()) == starts, "a process changed")
    st = status(d)
    check(st["active"]["name"] == "gemma" and [m["name"] for m in st["resident"]] == ["qwen"], st)
    # With routing = active, the resident qwen would not answer its own requests: not "ready"
    # for a load balancer.
    r = http(PORT, "GET", "/health?model=qwen")
    check(r.status == 503 and "not active" in r.json()["status"], r)
    check(http(PORT, "GET", "/health?model=gemma").status == 200, "gemma not ready")
    check(st["status"] == "gemma ready · resident qwen ready · embed nomic ready", st["status"])
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    check(r.status == 200 and r.json()["model"] == "gemma", r)
    r = call(d, "Switch", "qwen")
    check(r["kind"] == "resident", r)


@fixture(conf(top="max-resident = 2"), models=MODELS)
def test_evict_least_recently_used(d):
    """With no room, the least recently used model that is not active goes first; the active one
    keeps serving while the new one loads beside it."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    call(d, "Switch", "gemma")   # gemma active, qwen resident and older
    gemma = d.pid_of("gemma")
    r = call(d, "Switch", "devstral")
    check(r["kind"] == "beside" and r["evicted"] == ["qwen"], r)
    wait_until(lambda: not d.pid_of("qwen"), "qwen stopped")
    check(d.pid_of("gemma") == gemma, "gemma was restarted")
    check(d.running_models() == ["devstral", "gemma", "nomic"], d.running_models())
    # The active model goes last: with max-resident 1 nothing else is left to evict first.
    r = call(d, "Unload", "gemma")
    check(r == {"model": "gemma", "changed": True}, r)
    wait_until(lambda: model(d, "gemma")["state"] == "stopped", "gemma stopped")
    check(call(d, "Unload", "gemma") == {"model": "gemma", "changed": False}, "a second unload")
    p = llmctl(d, "unload", "devstral", check_rc=2)
    check("is the active model" in p.stderr, p.stderr)
    r = call(d, "Unload", "nomic")
    check(r["error"] == "io.llmd.Manager.ModelUnavailable" and "pinned" in r["reason"], r)


@sim_only("a fault or timing knob")
@fixture(conf(top="max-resident = 2", qwen="env = LLAMA_SIM_TOKEN_MS=30",
              gemma="env = LLAMA_SIM_LOAD_MS=1500"), models=MODELS)
def test_make_before_break(d):
    """While the target loads beside it, the active model serves every request: the stream in
    flight completes, and new requests are answered at once, not held."""
    wait_ready(d, "qwen", "nomic")
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 60})
    check(s.event() is not None, "no first event")
    done = {}
    t = threading.Thread(target=lambda: done.update(r=call(d, "Switch", "gemma")))
    t.start()
    wait_until(lambda: model(d, "gemma")["state"] == "loading", "gemma loading")
    answered = []
    while model(d, "gemma")["state"] == "loading":
        r = http(PORT, "POST", "/v1/chat/completions", CHAT)
        # gemma may have become ready (and active) while this request was on its way.
        check(r.status == 200 and (r.json()["model"] == "qwen" or model(d, "gemma")["state"] == "ready"),
              r)
        answered.append(r)
    check(answered, "no request was sent while gemma loaded")
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream on qwen did not complete: {ev[-2:]}")
    t.join(20)
    check(done.get("r", {}).get("kind") == "beside", done)
    check(status(d)["active"]["name"] == "gemma" and d.pid_of("qwen"), "qwen not resident")
    check(http(PORT, "POST", "/v1/chat/completions", CHAT).json()["model"] == "gemma", "not routed")
    check(status(d)["requests"]["held"] == 0, "requests were held")


@fixture(conf(top="max-resident = 2", gemma="unload-after = 1s"), models=MODELS)
def test_idle_unload(d):
    """A resident model that is not active and served nothing for unload-after is stopped; the
    active one never is."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    wait_ready(d, "gemma")
    wait_until(lambda: not d.pid_of("gemma"), "gemma unloaded", timeout=15)
    check(d.pid_of("qwen") and d.pid_of("nomic"), "the active or pinned model was stopped")
    # The active model with unload-after is never unloaded.
    call(d, "Switch", "gemma")
    time.sleep(2)
    check(d.pid_of("gemma"), "the active model was unloaded")


def nvml_env(d, total_gib):
    """A fake NVML for llmd, answering from d's directory: one device of total_gib."""
    if not FAKE_NVML:
        return None
    state = os.path.join(d.dir, "nvml")
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "total"), "w") as f:
        f.write(str(total_gib * G))
    return {"LD_LIBRARY_PATH": FAKE_NVML, "LLMD_FAKE_NVML": state}


def nvml_fixture(total_gib, config):
    """Starts d with the fake NVML in its environment (skipped without it)."""
    def wrap(fn):
        @sim_only("the fake NVML answers from the simulator's reports")
        @fixture(config, models=MODELS, start=False)
        def test(d):
            env = nvml_env(d, total_gib)
            if env is None:
                from llmdtest import Skip
                raise Skip("no fake libnvidia-ml.so.1 (LLMD_FAKE_NVML_LIB)")
            d.env.update(env)
            d.start()
            fn(d)
        test.__name__ = fn.__name__
        return test
    return wrap


@nvml_fixture(16, conf(star="env = LLAMA_SIM_GPU_MB=3072", qwen="gpu-memory = 6G",
                       gemma="gpu-memory = 6G", devstral="gpu-memory = 40G"))
def test_gpu_budget(d):
    """With NVML, the budget is the GPU's memory less a margin: two 6 GiB models fit beside
    each other in 16 GiB, a 40 GiB one does not fit even alone (nothing is stopped for it); the
    memory each child really uses is measured and shown next to the estimate."""
    wait_ready(d, "qwen", "nomic")
    st = status(d)
    check(st["gpu"]["source"] == "nvml" and st["gpu"]["total"] == 16 * G, st["gpu"])
    check(st["gpu"]["budget"] < 16 * G and st["gpu"]["max_resident"] is None, st["gpu"])
    r = call(d, "Switch", "gemma")
    check(r["kind"] == "beside" and r["evicted"] == [], r)
    wait_until(lambda: model(d, "qwen")["gpu_memory"].get("measured") == 3072 << 20,
               "qwen's measured GPU memory")
    pids = {m: d.pid_of(m) for m in ("qwen", "gemma", "nomic")}
    r = call(d, "Switch", "devstral")
    check(r["error"] == "io.llmd.Manager.NoRoom" and "does not fit even alone" in r["reason"], r)
    check({m: d.pid_of(m) for m in pids} == pids, "something was stopped for a model that cannot fit")
    q = model(d, "qwen")["gpu_memory"]
    check(q["source"] == "configured" and q["bytes"] == 6 * G and q["measured"] == 3072 << 20, q)


@nvml_fixture(16, conf(star="env = LLAMA_SIM_GPU_MB=3072", qwen="gpu-memory = 9G",
                       gemma="gpu-memory = 9G"))
def test_gpu_evicts_to_fit(d):
    """Two 9 GiB models do not fit in 16 GiB: the active one is stopped first (break before
    make), and the switch says so."""
    wait_ready(d, "qwen", "nomic")
    r = call(d, "Switch", "gemma")
    check(r["kind"] == "replace" and r["evicted"] == ["qwen"], r)
    check(d.running_models() == ["gemma", "nomic"], d.running_models())


@fixture(conf(top="max-resident = 3"), models=MODELS)
def test_reload_lowers_limits(d):
    """A reload that lowers max-resident stops the resident models beyond it, least recently used
    first; the active model stays."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    call(d, "Load", "devstral")
    wait_ready(d, "gemma", "devstral")
    d.write_config(conf(top="max-resident = 2"))
    llmctl(d, "reload", check_rc=0)
    wait_until(lambda: not d.pid_of("gemma"), "gemma (least recently used) stopped")
    check(d.pid_of("devstral") and d.pid_of("qwen"), d.running_models())
    d.write_config(conf(top="max-resident = 1"))
    llmctl(d, "reload", check_rc=0)
    wait_until(lambda: d.running_models() == ["nomic", "qwen"], "only the active model left")


@sim_only("a fault or timing knob")
@fixture(conf(top="max-resident = 2", gemma="env = LLAMA_SIM_LOAD_MS=1500",
              devstral="env = LLAMA_SIM_LOAD_MS=1500"), models=MODELS)
def test_same_target_joins(d):
    """Two clients asking for the same switch (or a load, then a switch) get one operation and
    both succeed; a switch to another model stops the load it supersedes."""
    wait_ready(d, "qwen", "nomic")
    out = {}
    ts = [threading.Thread(target=lambda k=k, v=v: out.update({k: call(d, v, "gemma")}))
          for k, v in (("a", "Switch"), ("b", "Load"), ("c", "Switch"))]
    for t in ts:
        t.start()
        time.sleep(0.2)
    for t in ts:
        t.join(20)
    check(all("error" not in r and r["model"] == "gemma" for r in out.values()) and len(out) == 3, out)
    check(status(d)["active"]["name"] == "gemma" and len(d.starts("gemma")) == 1, status(d))
    # devstral's load (beside gemma) superseded by a switch back to gemma, which is ready: the
    # load it no longer wants stops.
    t = threading.Thread(target=lambda: out.update(d=call(d, "Switch", "devstral")))
    t.start()
    wait_until(lambda: model(d, "devstral")["state"] == "loading", "devstral loading")
    r = call(d, "Switch", "gemma")
    t.join(20)
    check(r["model"] == "gemma" and not r["changed"] and out["d"]["error"] == "io.llmd.Manager.Superseded",
          (r, out["d"]))
    wait_until(lambda: not d.pid_of("devstral"), "the superseded load stopped")
    check(status(d)["active"]["name"] == "gemma", status(d))


def chat_to(model_name, **kw):
    return {**CHAT, "model": model_name, **kw}


def chat_pids(d, model_name):
    """The pids of model_name's processes that received a chat request, in order."""
    return [r["pid"] for r in d.records("request_start", model_name)
            if r["path"] == "/v1/chat/completions"]


@sim_only("a slow stream (token delay knob) and the simulator's records of who served what")
@fixture(conf(top="max-resident = 2\nrouting = switch", gemma="env = LLAMA_SIM_TOKEN_MS=50"),
         models=MODELS)
def test_unload_takes_no_new_work(d):
    """After llmctl unload, a model drains: the stream on it completes, /health?model= says
    "draining" at that moment, and a new request for it is not sent to the draining process —
    it waits, and a new process serves it once the old one is down."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    wait_ready(d, "gemma")
    old = d.pid_of("gemma")
    s = Stream(PORT, "/v1/chat/completions", chat_to("gemma", stream=True, max_tokens=40))
    check(s.event() is not None, "no first event")
    r = call(d, "Unload", "gemma")
    check(r.get("changed") is True, r)
    h = http(PORT, "GET", "/health?model=gemma")
    check(h.status == 503 and h.json()["status"] == "draining", h)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=http(PORT, "POST", "/v1/chat/completions",
                                                          chat_to("gemma"))))
    t.start()
    # The draining process still runs its stream, and receives nothing new.
    wait_until(lambda: status(d)["requests"]["held"] == 1, "the request for gemma held")
    check(chat_pids(d, "gemma") == [old], chat_pids(d, "gemma"))
    check(model(d, "gemma")["serving"] == "draining" and not model(d, "gemma")["resident"],
          model(d, "gemma"))
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream on the draining gemma was cut: {ev[-2:]}")
    t.join(30)
    check(out["r"].status == 200 and out["r"].json()["model"] == "gemma", out)
    pids = chat_pids(d, "gemma")
    check(len(pids) == 2 and pids[0] == old and pids[1] != old, pids)
    check(not pid_alive(old), "the drained process still runs")


@sim_only("a load that fails (fault knob)")
@fixture(conf(top="max-resident = 1", gemma="env = LLAMA_SIM_LOAD_MS=1500 LLAMA_SIM_EXIT_WHILE_LOADING=1"),
         models=MODELS)
def test_failed_switch_releases_held(d):
    """routing = active: a request sent while a switch to gemma loads waits for gemma; gemma's
    load fails and qwen is restored, and the request is served by qwen then — not answered 503
    after the hold timeout."""
    wait_ready(d, "qwen", "nomic")
    out = {}
    t = threading.Thread(target=lambda: out.update(sw=call(d, "Switch", "gemma")))
    t.start()
    wait_until(lambda: model(d, "gemma")["state"] == "loading", "gemma loading")
    check(status(d)["active"]["name"] == "gemma", "not break before make")
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    t.join(20)
    check(out["sw"].get("error") == "io.llmd.Manager.LoadFailed" and out["sw"].get("restored") == "qwen",
          out)
    check(r.status == 200 and r.json()["model"] == "qwen", r)
    h = http(PORT, "GET", "/health?model=gemma")
    check(h.status == 503 and h.json()["status"] == "failed", h)


@sim_only("a slow load (timing knob)")
@fixture(conf(top="max-resident = 1", gemma="env = LLAMA_SIM_LOAD_MS=3000"), models=MODELS)
def test_superseded_switch_releases_held(d):
    """A request held for a switch that a switch back supersedes is served by the model that
    serves then; the superseded load stops."""
    wait_ready(d, "qwen", "nomic")
    out = {}
    t = threading.Thread(target=lambda: out.update(sw=call(d, "Switch", "gemma")))
    t.start()
    wait_until(lambda: model(d, "gemma")["state"] == "loading", "gemma loading")
    held = {}
    h = threading.Thread(target=lambda: held.update(r=http(PORT, "POST", "/v1/chat/completions", CHAT)))
    h.start()
    wait_until(lambda: status(d)["requests"]["held"] == 1, "the request held for gemma")
    r = call(d, "Switch", "qwen")
    check("error" not in r and r["model"] == "qwen", r)
    t.join(20)
    h.join(20)
    check(out["sw"].get("error") == "io.llmd.Manager.Superseded", out)
    check(held.get("r") and held["r"].status == 200 and held["r"].json()["model"] == "qwen",
          f"the request held for gemma: {held}")
    wait_until(lambda: not d.pid_of("gemma"), "the superseded load stopped")


@sim_only("a load that fails (fault knob)")
@fixture(conf(top="max-resident = 1\nrouting = switch", gemma="env = LLAMA_SIM_EXIT_WHILE_LOADING=1"),
         models=MODELS)
def test_failed_target_not_retried(d):
    """routing = switch: a request for a model that fails to load gets 503 with the reason once,
    after one attempt; the working model is restored once, and a second request for the failed
    model is answered at once without another attempt."""
    wait_ready(d, "qwen", "nomic")
    r = http(PORT, "POST", "/v1/chat/completions", chat_to("gemma"))
    check(r.status == 503 and "gemma failed to load" in r.json()["error"]["message"], r)
    wait_ready(d, "qwen")
    check(len(d.starts("gemma")) == 1 and len(d.starts("qwen")) == 2,
          f"gemma started {len(d.starts('gemma'))}×, qwen {len(d.starts('qwen'))}×")
    r = http(PORT, "POST", "/v1/chat/completions", chat_to("gemma"))
    check(r.status == 503 and "gemma failed to load" in r.json()["error"]["message"], r)
    check(len(d.starts("gemma")) == 1, "the failed model was tried again")
    # An explicit switch does try again.
    r = call(d, "Switch", "gemma")
    check(r.get("error") == "io.llmd.Manager.LoadFailed" and len(d.starts("gemma")) == 2, r)


@sim_only("a slow stream (token delay knob)")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=50"), models=MODELS)
def test_reload_restart_drains(d):
    """A reload that changes the active model's profile lets the stream on it finish (as a
    switch does), then restarts it; requests in between wait and are served by the new one."""
    wait_ready(d, "qwen", "nomic")
    old = d.pid_of("qwen")
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 40})
    check(s.event() is not None, "no first event")
    d.write_config(conf(qwen="env = LLAMA_SIM_TOKEN_MS=50\nctx-size = 2048"))
    llmctl(d, "reload", check_rc=0)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream was cut by the reload: {ev[-2:]}")
    check(r.status == 200 and r.json()["model"] == "qwen", r)
    new = d.pid_of("qwen")
    check(new and new != old and "2048" in d.starts("qwen")[-1]["argv"], d.starts("qwen"))


@sim_only("a slow load (timing knob)")
@fixture(conf(top="max-resident = 2\nrouting = switch", gemma="env = LLAMA_SIM_LOAD_MS=1500"),
         models=MODELS)
def test_switch_to_active_during_request_load(d):
    """routing = switch: llmctl switch to the active model while a request's load of another
    runs supersedes that load; nothing is left stuck: the request is served, reload and
    switch answer."""
    wait_ready(d, "qwen", "nomic")
    out = {}
    t = threading.Thread(target=lambda: out.update(r=http(PORT, "POST", "/v1/chat/completions",
                                                          chat_to("gemma"))))
    t.start()
    wait_until(lambda: model(d, "gemma")["state"] == "loading", "gemma loading")
    r = call(d, "Switch", "qwen")
    check("error" not in r and r["model"] == "qwen", r)
    t.join(30)
    check(out.get("r") and out["r"].status == 200 and out["r"].json()["model"] == "gemma",
          f"the request for gemma: {out}")
    wait_until(lambda: "switch" not in status(d), "the switch done")
    llmctl(d, "reload", check_rc=0)
    r = call(d, "Switch", "gemma")
    check("error" not in r and r["model"] == "gemma", r)
    r = call(d, "Switch", "qwen")
    check("error" not in r and r["kind"] == "resident", r)


@sim_only("the fake NVML answers from the simulator's reports")
@fixture(conf(star="env = LLAMA_SIM_GPU_MB=3072"), models=MODELS, start=False)
def test_measured_model_runs_alone(d):
    """A model once seen to use more than the budget ran then, alone: it may always run alone
    (everything but the pinned models makes room), and it is not refused as too big."""
    env = nvml_env(d, 16)
    if env is None:
        from llmdtest import Skip
        raise Skip("no fake libnvidia-ml.so.1 (LLMD_FAKE_NVML_LIB)")
    d.env.update(env)
    os.makedirs(d.state, exist_ok=True)
    with open(os.path.join(d.state, "gpu-memory"), "w") as f:
        f.write(f"gemma {int(15.5 * G)} {d.model_path('gemma')}\n")
    d.start()
    wait_ready(d, "qwen", "nomic")
    r = call(d, "Switch", "gemma")
    check("error" not in r and r["kind"] == "replace" and r["evicted"] == ["qwen"], r)
    check(d.running_models() == ["gemma", "nomic"], d.running_models())


@sim_only("a slow stream (token delay knob)")
@fixture(conf(top="max-resident = 2\nrouting = switch",
              gemma="unload-after = 1s\nenv = LLAMA_SIM_TOKEN_MS=100"), models=MODELS)
def test_idle_counts_from_last_byte(d):
    """unload-after counts from the end of the last request: a model streaming for longer than
    its unload-after is not unloaded under the stream; once idle, it is."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    wait_ready(d, "gemma")
    pid = d.pid_of("gemma")
    s = Stream(PORT, "/v1/chat/completions", chat_to("gemma", stream=True, max_tokens=30))
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream was cut: {ev[-2:]}")
    # Used until now: the next request is served by the same process, not a new load.
    r = http(PORT, "POST", "/v1/chat/completions", chat_to("gemma"))
    check(r.status == 200 and chat_pids(d, "gemma")[-1] == pid,
          f"gemma was unloaded while it streamed: {chat_pids(d, 'gemma')}, was {pid}")
    wait_until(lambda: not d.pid_of("gemma"), "gemma unloaded once idle", timeout=15)


@fixture(conf(top="routing = switch"), models=MODELS)
def test_stop_holds_under_switch(d):
    """After llmctl stop, a request naming a model does not load it, even with routing =
    switch: 503 saying how to load again, nothing started, and the stop stays saved."""
    wait_ready(d, "qwen", "nomic")
    llmctl(d, "stop", check_rc=0)
    wait_until(lambda: not d.pid_of("qwen"), "qwen stopped")
    starts = len(d.starts())
    r = http(PORT, "POST", "/v1/chat/completions", chat_to("gemma"))
    check(r.status == 503 and "llmctl start" in r.json()["error"]["message"], r)
    time.sleep(0.5)
    check(len(d.starts()) == starts and not status(d)["loaded"], "a request undid llmctl stop")
    llmctl(d, "start", check_rc=0)
    check(status(d)["loaded"] and d.pid_of("qwen"), status(d))


@sim_only("a health check that hangs (fault knob), a request held open in the simulator")
@fixture(conf(top="max-resident = 2", gemma="health-interval = 200ms\n"
              "env = LLAMA_SIM_HEALTH_HANG_AFTER_MS=1500"), models=MODELS)
def test_switch_to_failed_model_while_it_stops(d):
    """A switch to a model that just failed while its old process is still on its way down
    waits for it, then loads one new process, which the machine counts: list, status and the
    process agree, and nothing is left stuck."""
    wait_ready(d, "qwen", "nomic")
    call(d, "Load", "gemma")
    wait_ready(d, "gemma")
    held = d.hold_request("gemma")  # the old process outlives its SIGTERM while this runs
    wait_until(lambda: model(d, "gemma")["state"] == "killing", "gemma found unhealthy", timeout=10)
    r = call(d, "Switch", "gemma")
    check(r.get("error") == "io.llmd.Manager.LoadFailed", r)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=call(d, "Switch", "gemma")))
    t.start()
    time.sleep(0.3)
    held.close()
    t.join(30)
    check(out.get("r") and "error" not in out["r"], out)
    g = model(d, "gemma")
    check(g["serving"] == "ready" and g["resident"] and g.get("pid") == d.pid_of("gemma"), g)
    check(status(d)["active"]["name"] == "gemma", status(d))
    llmctl(d, "reload", check_rc=0)


QWEN_SECTION = "[qwen]\nmodel = @MODELS@/qwen.gguf\n"
NOMIC_SECTION = "[nomic]\nmodel = @MODELS@/nomic.gguf\nembeddings = true\npin = true\n"


@sim_only("a slow stream (token delay knob)")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=100"), models=MODELS)
def test_reload_removes_draining_model(d):
    """A model a reload removes while it drains for an earlier reload's restart is not loaded
    again: it stops once its stream is done, and the default takes over."""
    wait_ready(d, "qwen", "nomic")
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 30})
    check(s.event() is not None, "no first event")
    d.write_config(conf(qwen="env = LLAMA_SIM_TOKEN_MS=101"))
    llmctl(d, "reload", check_rc=0)
    d.write_config(conf(qwen="env = LLAMA_SIM_TOKEN_MS=101")
                   .replace(QWEN_SECTION + "env = LLAMA_SIM_TOKEN_MS=101\n", "")
                   .replace("default = qwen", "default = gemma"))
    llmctl(d, "reload", check_rc=0)
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream was cut: {ev[-2:]}")
    wait_until(lambda: status(d)["active"]["name"] == "gemma" and d.pid_of("gemma")
               and model(d, "gemma")["serving"] == "ready", "gemma serving")
    wait_until(lambda: not d.pid_of("qwen"), "the removed qwen down")
    time.sleep(0.5)
    check(not d.pid_of("qwen") and len(d.starts("qwen")) == 1, f"qwen started again: {d.starts('qwen')}")
    llmctl(d, "reload", check_rc=0)


@sim_only("a request held open in the simulator")
@fixture(conf(), models=MODELS)
def test_readded_model_waits_for_its_namesake(d):
    """A pinned model removed by a reload and added back while its old process still finishes
    a request starts once that one is down (they share a socket path); then it serves."""
    wait_ready(d, "qwen", "nomic")
    held = d.hold_request("nomic")
    old = d.pid_of("nomic")
    d.write_config(conf().replace(NOMIC_SECTION, ""))
    llmctl(d, "reload", check_rc=0)
    d.write_config(conf())
    llmctl(d, "reload", check_rc=0)
    time.sleep(0.5)
    alive = [r["pid"] for r in d.records("start", "nomic") if pid_alive(r["pid"])]
    check(alive == [old], f"two nomic processes at once: {alive}")
    held.close()
    wait_until(lambda: d.pid_of("nomic") not in (None, old), "the new nomic started")
    wait_until(lambda: model(d, "nomic")["serving"] == "ready", "the new nomic ready")
    r = http(PORT, "POST", "/v1/embeddings", {"input": "hi", "model": "nomic"})
    check(r.status == 200, r)


MB = 1 << 20


def cached(path):
    """Bytes of path in the page cache (fincore, which asks mincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", path],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip())


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@sim_only("reads the simulator's model files")
@fixture(conf(top="prefetch = 40M"), models=MODELS, model_size=32 * MB, start=False)
def test_prefetch_within_limit(d):
    """After start, the files of the models that are not loaded are read into the page cache,
    in order, within the limit: gemma's 32 MiB whole, devstral's only to the 40 MiB cap."""
    for m in ("gemma", "devstral"):
        drop_cache(d.model_path(m))
        check(cached(d.model_path(m)) < MB, f"{m} still cached")
    d.start()
    wait_ready(d, "qwen", "nomic")
    wait_until(lambda: cached(d.model_path("gemma")) == 32 * MB, "gemma's file cached")
    wait_until(lambda: cached(d.model_path("devstral")) >= 7 * MB, "devstral's file read")
    time.sleep(0.5)  # the helper is done; nothing more comes
    total = cached(d.model_path("gemma")) + cached(d.model_path("devstral"))
    check(total <= 41 * MB, f"{total} bytes cached, over the 40 MiB limit")


@sim_only("reads the simulator's model files")
@fixture(conf(top="prefetch = false"), models=MODELS, model_size=8 * MB, start=False)
def test_prefetch_off(d):
    drop_cache(d.model_path("gemma"))
    d.start()
    wait_ready(d, "qwen", "nomic")
    time.sleep(1)
    check(cached(d.model_path("gemma")) < MB, "prefetch = false read gemma's file")


def llmd_fds(pid):
    """{fd: what it points at} of a process."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def not_cloexec(pid):
    """The descriptors of pid that a program it ran would inherit."""
    out = []
    for fd in llmd_fds(pid):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
        except (FileNotFoundError, IndexError):
            continue
        if fd > 2 and not flags & os.O_CLOEXEC:
            out.append((fd, llmd_fds(pid).get(fd)))
    return out


def llmd_children(d):
    with open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children") as f:
        return [int(p) for p in f.read().split()]


def niceness(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def catch_prefetch(d, trigger, tries=20):
    """The prefetch helper that trigger() (a switch to a resident model) starts, stopped
    (SIGSTOP) once it is reading (it has lowered its priority), so that what it holds can be
    read."""
    known = set(llmd_children(d))
    exe = os.readlink(f"/proc/{d.proc.pid}/exe")
    for _ in range(tries):
        drop_cache(d.model_path("devstral"))
        t = threading.Thread(target=trigger)
        t.start()
        while True:
            new = [p for p in llmd_children(d) if p not in known]
            for pid in new:
                try:
                    if os.readlink(f"/proc/{pid}/exe") == exe and niceness(pid) == 19:
                        os.kill(pid, signal.SIGSTOP)
                        t.join(10)
                        return pid
                except (FileNotFoundError, ProcessLookupError):
                    pass
            if not t.is_alive() and not new:
                break
        t.join(10)
        time.sleep(0.05)
    raise Failure("never saw the prefetch helper")


@sim_only("a timing knob and the simulator's records")
@fixture(conf(top="max-resident = 2\nidle-timeout = 1s",
              qwen="env = LLAMA_SIM_TOKEN_MS=100"), models=MODELS, model_size=64 * MB)
def test_children_inherit_nothing(d):
    """With clients connected (one idle, one streaming), a llama-server llmd starts and its
    prefetch helper hold none of llmd's descriptors; every descriptor of llmd is close-on-exec.
    While the helper runs, a client that leaves still cancels its generation, and llmd's close
    of an idle connection still reaches the client."""
    wait_ready(d, "qwen", "nomic")
    idle = socket.create_connection(("127.0.0.1", PORT))
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    check(idle.recv(65536).startswith(b"HTTP/1.1 200"), "/health")
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 200})
    s.event()
    check(not_cloexec(d.proc.pid) == [], f"llmd's inheritable descriptors: {not_cloexec(d.proc.pid)}")
    ours = {v for k, v in llmd_fds(d.proc.pid).items()}

    llmctl(d, "load", "gemma", check_rc=0)
    wait_ready(d, "gemma")
    # Its 0, 1 and 2 are /dev/null and the pipe llmd reads; the rest must be its own.
    leaked = {k: v for k, v in llmd_fds(d.pid_of("gemma")).items() if k > 2 and v in ours}
    check(not leaked, f"llama-server holds llmd's {leaked}")

    # Each try a real switch (one to the model already active starts no helper): gemma and
    # qwen in turn, both loaded.
    targets = itertools.cycle(["gemma", "qwen"])
    helper = catch_prefetch(d, lambda: llmctl(d, "switch", next(targets), check_rc=0))
    try:
        # 0, 1 and 2, and the model file it reads, if caught in the middle of one.
        fds = llmd_fds(helper)
        check(set(fds) >= {0, 1, 2} and all(v.endswith(".gguf") for k, v in fds.items() if k > 2),
              f"the helper holds {fds}")
        s.close()
        wait_until(lambda: any(x.get("client_gone") for x in d.records("request", "qwen")
                               if x["path"] == "/v1/chat/completions"),
                   "the simulator to see the client leave", timeout=5)
        idle.settimeout(5)
        check(idle.recv(65536) == b"", "llmd's close of an idle connection did not arrive")
        check(pid_alive(helper), "the helper ended: the test proved nothing")
    finally:
        os.kill(helper, signal.SIGKILL)


if __name__ == "__main__":
    run()
