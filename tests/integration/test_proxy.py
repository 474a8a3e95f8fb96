#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The OpenAI-compatible proxy: forwarding, streaming, holding during swaps, cancellation,
routing, errors and limits — bytes on the wire, checked against what the simulator saw."""

import hashlib
import json
import os
import socket
import subprocess
import threading
import time

from llmdtest import (LLMCTL, Stream, check, fixture, free_port, http, llmctl, llmctl_json,
                      pid_alive, run, sim_only, unix_http, wait_until)

MODELS = ("qwen", "gemma", "nomic")
PORT = free_port()
EMBED_PORT = free_port()


def conf(top="", qwen="", gemma="", nomic="", star=""):
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
aliases = qwen3.5
{qwen}

[gemma]
model = @MODELS@/gemma.gguf
aliases = gemma4
{gemma}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
port = {EMBED_PORT}
{nomic}
"""


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def ready(d, model="qwen"):
    # " · N in flight" may follow while requests run.
    d.wait_status(lambda s: s.startswith(f"{model} ready · embed nomic ready"))


def chunks_model(events):
    return {json.loads(e)["model"] for e in events if e != "[DONE]" and "model" in json.loads(e)}


@fixture(conf(), models=MODELS)
def test_chat_and_completions(d):
    ready(d)
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "anything"})
    check(r.status == 200 and r.headers["content-type"].startswith("application/json"), r)
    j = r.json()
    check(j["object"] == "chat.completion" and j["choices"][0]["message"]["content"], r)
    check(j["model"] == "qwen", r)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True})
    check(s.status == 200 and s.headers["content-type"].startswith("text/event-stream"), s.headers)
    check(s.headers.get("cache-control") == "no-cache" and s.headers.get("x-accel-buffering") == "no",
          s.headers)
    ev = s.events()
    check(ev[-1] == "[DONE]", ev)
    first = json.loads(ev[0])
    check(first["choices"][0]["delta"].get("role") == "assistant", ev[0])
    check("timings" in json.loads(ev[-2]), ev[-2])
    check(len(ev) == 1 + 4 + 1 + 1, f"{len(ev)} events: {ev}")
    r = http(PORT, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
    check(r.status == 200 and r.json()["object"] == "text_completion", r)
    r = http(PORT, "POST", "/completion", {"prompt": "x", "n_predict": 2})
    check(r.status == 200 and "content" in r.json(), r)


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_DROP_KEPT=1"), models=MODELS)
def test_kept_connection_closed_by_child(d):
    """llmd keeps its connection to a child after an answer of known length, for the next
    request. A child that closed it meanwhile (its idle timeout ran out, as llama-server's does
    after 5 s) costs nothing: the request goes out again on a new connection, and every client
    gets its whole answer."""
    ready(d)

    def chats():
        return [x for x in d.records("request", "qwen") if x["path"] == "/v1/chat/completions"]
    for i in range(3):
        dropped = len(d.records("dropped", "qwen"))
        r = http(PORT, "POST", "/v1/chat/completions", CHAT)
        check(r.status == 200 and r.json()["choices"][0]["message"]["content"], r)
        wait_until(lambda: len(d.records("dropped", "qwen")) > dropped,
                   "the simulator to close the connection it said it kept")
    check(len(chats()) == 3 and all(x["status"] == 200 for x in chats()), chats())
    st = llmctl_json(d, "status")
    check(st["requests"]["errors"] == 0, st["requests"])


@sim_only("its test-only paths")
@fixture(conf(qwen="env = LLAMA_SIM_LOCKSTEP=1"), models=MODELS)
def test_lockstep_no_buffering(d):
    ready(d)
    sock = d.socket_path("qwen")
    opened = []
    # The response headers come with the first event, so the stream opens in a thread while
    # the first step is given.
    t = threading.Thread(target=lambda: opened.append(
        Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 5})))
    t.start()
    while True:
        status, body = unix_http(sock, "POST", "/sim/step", {"n": 1})
        if json.loads(body)["released"] > 0:
            break
        time.sleep(0.02)
    t.join(10)
    check(opened, "the stream did not open")
    s = opened[0]
    seen = [s.event()]
    # The simulator sends one event per step. Each must reach the client before the next step
    # is given: if llmd held anything back, the read would wait for ever (and time out).
    while not seen or seen[-1] != "[DONE]":
        while True:
            status, body = unix_http(sock, "POST", "/sim/step", {"n": 1})
            check(status == 200, f"/sim/step answered {status}")
            if json.loads(body)["released"] > 0:
                break
            time.sleep(0.02)  # the stream has not reached the simulator yet
        e = s.event()
        check(e is not None, f"stream ended early after {seen}")
        seen.append(e)
    check(seen[-1] == "[DONE]" and len(seen) == 1 + 5 + 1 + 1, f"{len(seen)} events: {seen}")


@sim_only("its test-only paths")
@fixture(conf(qwen="env = LLAMA_SIM_LOCKSTEP=1 LLAMA_SIM_CR_FRAMING=1"), models=MODELS)
def test_cr_framed_events_relayed(d):
    """SSE lets a lone CR end a line: events ending in "\\r\\r" go out as they come, not when
    the stream ends."""
    ready(d)
    sock = d.socket_path("qwen")
    opened = []
    t = threading.Thread(target=lambda: opened.append(
        Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 5},
               timeout=5)))
    t.start()
    while json.loads(unix_http(sock, "POST", "/sim/step", {"n": 1})[1])["released"] == 0:
        time.sleep(0.02)
    t.join(10)
    check(opened, "the stream did not open: its first event was held back")
    s = opened[0]
    got = b""
    for step in range(2):
        # One event per step: it must arrive before the next step is given (or time out).
        while got.count(b"\r\r") <= step:
            chunk = s.resp.read1(65536)
            check(chunk, f"the stream ended after {got!r}")
            got += chunk
        check(b"\n" not in got and got.endswith(b"\r\r"), f"step {step}: {got!r}")
        while json.loads(unix_http(sock, "POST", "/sim/step", {"n": 1})[1])["released"] == 0:
            time.sleep(0.02)
    s.close()


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=2000"), models=MODELS)
def test_embeddings_not_held_by_swap(d):
    ready(d)
    sw = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch", "gemma"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    r = http(PORT, "POST", "/v1/embeddings", {"input": "hello"}, timeout=1.5)
    check(r.status == 200 and r.json()["data"][0]["embedding"], r)
    check(sw.poll() is None, "the swap was already over: the test proved nothing")
    r = http(EMBED_PORT, "POST", "/v1/embeddings", {"input": ["a", "b"]}, timeout=1.5)
    check(r.status == 200 and len(r.json()["data"]) == 2, r)
    check(sw.wait(20) == 0, "switch failed")


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=1000"), models=MODELS)
def test_streams_during_switch(d):
    ready(d)
    sw = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch", "gemma"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    results = [None] * 20

    def one(i):
        try:
            s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True})
            results[i] = (s.status, s.events())
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("exception", repr(e))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    check(sw.wait(20) == 0, "switch failed")
    for i, (status, ev) in enumerate(results):
        check(status == 200 and ev and ev[-1] == "[DONE]", f"stream {i}: {status} {ev}")
        check(chunks_model(ev) == {"gemma"}, f"stream {i} served by {chunks_model(ev)}")


@sim_only("a fault or timing knob")
@fixture(conf(top="hold-queue = 2", gemma="env = LLAMA_SIM_LOAD_MS=3000"), models=MODELS)
def test_hold_queue_full(d):
    ready(d)
    llmctl_bg = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"),
                                  "switch", "gemma"], stdout=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    out = []

    def one():
        out.append(http(PORT, "POST", "/v1/chat/completions", CHAT))
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: llmctl_json(d, "status")["requests"]["held"] == 2, "2 requests held")
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    check(r.status == 503 and r.headers.get("retry-after"), r)
    check(r.json()["error"]["type"] == "unavailable_error", r)
    for t in threads:
        t.join(20)
    check([x.status for x in out] == [200, 200], out)
    check(llmctl_bg.wait(20) == 0, "")


@sim_only("a fault or timing knob")
@fixture(conf(top="hold-timeout = 0.3s", gemma="env = LLAMA_SIM_LOAD_MS=3000"), models=MODELS)
def test_hold_timeout(d):
    ready(d)
    subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch", "gemma"],
                     stdout=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    check(r.status == 503 and r.headers.get("retry-after"), r)
    check("gave up waiting" in r.json()["error"]["message"], r)


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=100"), models=MODELS)
def test_client_abort_mid_stream(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 200})
    s.event()
    s.event()
    s.close()
    wait_until(lambda: any(x.get("client_gone") for x in d.records("request", "qwen")
                           if x["path"] == "/v1/chat/completions"), "the simulator to see the cancel")
    r = [x for x in d.records("request", "qwen") if x["path"] == "/v1/chat/completions"][0]
    check(r["tokens_sent"] < 100, f"generation went on after the client left: {r}")


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=1500"), models=MODELS)
def test_client_abort_while_held(d):
    ready(d)
    sw = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch", "gemma"],
                          stdout=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    import http.client as hc
    conn = hc.HTTPConnection("127.0.0.1", PORT, timeout=5)
    body = json.dumps({**CHAT, "stream": True, "max_tokens": 7})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    wait_until(lambda: llmctl_json(d, "status")["requests"]["held"] == 1, "the request to be held")
    conn.sock.close()
    wait_until(lambda: llmctl_json(d, "status")["requests"]["held"] == 0, "the held request to go")
    check(sw.wait(20) == 0, "")
    time.sleep(0.2)  # a negative check: give a wrongly forwarded request the time to arrive
    sha = hashlib.sha256(body.encode()).hexdigest()
    check(not [x for x in d.records("request_start") if x.get("body_sha256") == sha],
          "the abandoned request was sent to a model")


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=5000"), models=MODELS)
def test_held_answered_at_stop(d):
    """Requests waiting for a model to load when llmd is told to stop get a 503 with
    Retry-After, each in its API's error format, before llmd exits."""
    ready(d)
    sw = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch", "gemma"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    d.wait_starts(1, "gemma")
    got = {}

    def ask(path, body):
        got[path] = http(PORT, "POST", path, {**body, "model": "gemma"})
    asks = [threading.Thread(target=ask, args=a) for a in
            (("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES))]
    for t in asks:
        t.start()
    wait_until(lambda: llmctl_json(d, "status")["requests"]["held"] == 2, "the requests to be held")
    d.stop()
    for t in asks:
        t.join(5)
    sw.wait(5)
    check(len(got) == 2, f"only {sorted(got)} got an answer")
    for path, r in got.items():
        check(r.status == 503 and r.headers.get("retry-after"), f"{path}: {r}")
        check("stopping" in json.dumps(r.json()), f"{path}: {r}")
    check(got["/v1/chat/completions"].json()["error"]["type"] == "unavailable_error",
          got["/v1/chat/completions"])
    check(got["/v1/messages"].json()["type"] == "error", got["/v1/messages"])


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_AFTER_TOKENS=3\nrestart-sec = 0.1"), models=MODELS)
def test_upstream_dies_mid_stream(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 20}, timeout=10)
    ev = s.events()
    check(ev and ev[-1] != "[DONE]", f"{ev}")
    last = json.loads(ev[-1])
    check("error" in last and last["error"]["code"] == 502, ev[-1])
    content = [json.loads(e)["choices"][0]["delta"].get("content") for e in ev[:-1]]
    check(len([c for c in content if c]) == 3, f"tokens before the error: {content}")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_AFTER_TOKENS=3\nrestart-sec = 0.1"), models=MODELS)
def test_upstream_dies_mid_stream_each_api(d):
    """A stream cut short ends with the error event of its own API, after what was relayed."""
    cases = (
        ("/v1/messages", {**MESSAGES, "stream": True, "max_tokens": 20}, "error",
         lambda e: e["type"] == "error" and e["error"]["type"] == "overloaded_error"
         and "ended the stream" in e["error"]["message"]),
        ("/v1/responses", {**RESPONSES, "stream": True, "max_output_tokens": 20}, "response.failed",
         lambda e: e["type"] == "response.failed" and e["response"]["status"] == "failed"
         and e["response"]["error"]["code"] == "server_error"
         and "ended the stream" in e["response"]["error"]["message"]),
    )
    for i, (path, body, name, shape) in enumerate(cases):
        # The child exits after its third token: wait for the next one, then for it to be ready.
        if i > 0:
            wait_until(lambda: len(d.starts("qwen")) > i, "qwen to start again")
            d.mark()  # its "ready" is the one to wait for
        ready(d)
        s = Stream(PORT, path, body, timeout=10)
        ev = s.named_events()
        check(len(ev) > 3 and ev[-1][0] == name and shape(ev[-1][1]), f"{path}: {ev[-2:]}")
        check(all(n and n != name for n, _ in ev[:-1]), f"{path}: {ev}")
        deltas = [e for n, e in ev if n in ("content_block_delta", "response.output_text.delta")]
        check(len(deltas) == 3, f"{path}: tokens before the error: {deltas}")


@fixture(conf(top="routing = reject"), models=MODELS)
def test_routing_reject(d):
    ready(d)
    for name in ("qwen", "qwen3.5"):
        r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": name})
        check(r.status == 200, f"{name}: {r}")
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "gemma"})
    check(r.status == 404 and r.json()["error"]["type"] == "model_not_found", r)
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4"})
    check(r.status == 404, r)


@fixture(conf(top="routing = switch"), models=MODELS)
def test_routing_switch(d):
    ready(d)
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "gemma4"})
    check(r.status == 200 and r.json()["model"] == "gemma", r)
    ready(d, "gemma")
    check(llmctl_json(d, "status")["active"]["name"] == "gemma", "not switched")
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-4"})
    check(r.status == 404, r)
    r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "qwen"})
    check(r.status == 200 and r.json()["model"] == "qwen", r)


MESSAGES = {"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"input": "hi", "max_output_tokens": 4}


@fixture(conf(top="routing = switch"), models=MODELS)
def test_other_apis_forwarded(d):
    """Paths llmd does not know (Anthropic Messages, OpenAI Responses, ...) go to the model, and
    the client gets what the child answers directly, whatever it is; their "model" routes them
    like chat completions do."""
    ready(d)
    for path, body in (("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES),
                       ("/v1/messages/count_tokens", MESSAGES), ("/v1/no-such-api", {})):
        r = http(PORT, "POST", path, body)
        status, raw = unix_http(d.socket_path("qwen"), "POST", path, body)
        check(r.status == status, f"{path}: {r.status} through llmd, {status} direct")
        check(r.status == 404 or r.status < 300, f"{path}: {r}")
        if r.status == 200:
            check(sorted(r.json()) == sorted(json.loads(raw)), f"{path}: {r.json()} vs {raw[:200]!r}")
    # A body that is not a JSON object goes on as it is, to the active model.
    r = http(PORT, "POST", "/v1/no-such-api", b"plain text", {"Content-Type": "text/plain"})
    check(r.status == unix_http(d.socket_path("qwen"), "POST", "/v1/no-such-api", b"plain text")[0], r)
    # Its "model" switches, as for chat completions.
    http(PORT, "POST", "/v1/messages", {**MESSAGES, "model": "gemma4"})
    ready(d, "gemma")
    check(llmctl_json(d, "status")["active"]["name"] == "gemma", "not switched")


@fixture(conf(), models=MODELS)
def test_models_list_and_retrieve(d):
    """/v1/models lists every model under every name with its state, llama-server's "aliases",
    its "meta" while loaded (as the child itself reports it) and the Ollama-style "models" list;
    /v1/models/ID answers one, by any of its names."""
    ready(d)
    status, raw = unix_http(d.socket_path("qwen"), "GET", "/v1/models")
    child_meta = json.loads(raw)["data"][0]["meta"]
    check(status == 200 and child_meta["n_ctx"] > 0, raw)
    # Read from each child once it is ready, in the background: it may take a moment more.
    wait_until(lambda: all("meta" in m for m in http(PORT, "GET", "/v1/models").json()["data"]
                           if m["state"] == "loaded"), "meta of the loaded models")
    r = http(PORT, "GET", "/v1/models")
    check(r.status == 200 and r.json()["object"] == "list", r)
    check([m["name"] for m in r.json()["models"]] == ["qwen", "gemma", "nomic"], r.json()["models"])
    check(r.json()["models"][2]["capabilities"] == ["embedding"], r.json()["models"][2])
    ids = {m["id"]: m for m in r.json()["data"]}
    check(list(ids) == ["qwen", "qwen3.5", "gemma", "gemma4", "nomic"], list(ids))
    check(ids["qwen"]["aliases"] == ["qwen", "qwen3.5"] == ids["qwen3.5"]["aliases"], ids)
    check(ids["qwen"]["meta"] == child_meta, f"{ids['qwen'].get('meta')} vs {child_meta}")
    check(ids["nomic"]["state"] == "loaded" and ids["nomic"]["meta"]["n_embd"] > 0, ids["nomic"])
    check("meta" not in ids["gemma"] and ids["gemma"]["state"] == "unloaded", ids["gemma"])
    for name in ("qwen", "qwen3.5"):
        r = http(PORT, "GET", f"/v1/models/{name}")
        check(r.status == 200 and r.json() == ids[name], f"{name}: {r}")
    check(http(PORT, "GET", "/models/gemma4").json() == ids["gemma4"], "retrieve without /v1")
    r = http(PORT, "GET", "/v1/models/gpt-4")
    check(r.status == 404 and r.json()["error"]["type"] == "model_not_found"
          and "gpt-4" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/v1/models/qwen", {})
    check(r.status == 405, r)
    # The same state, one model at a time, for load balancers.
    check(http(PORT, "GET", "/health?model=qwen3.5").status == 200, "qwen3.5 not ready")
    check(http(PORT, "GET", "/health?model=gemma").status == 503, "gemma ready")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=50", gemma="env = LLAMA_SIM_LOAD_MS=1000"), models=MODELS)
def test_health_per_model(d):
    """/health?model=NAME: 200 while that model is ready here, 503 with why otherwise — what a
    load balancer asks to pick a box; by alias too, and public like /health."""
    ready(d)

    def health(name):
        r = http(PORT, "GET", f"/health?model={name}")
        return r.status, r.json()
    check(health("qwen") == (200, {"model": "qwen", "status": "ok"}), health("qwen"))
    check(health("qwen3.5") == (200, {"model": "qwen", "status": "ok"}), health("qwen3.5"))
    check(health("nomic")[0] == 200, health("nomic"))
    st, body = health("gemma4")
    check(st == 503 and body["status"] == "unloaded" and body["model"] == "gemma"
          and body["error"]["type"] == "unavailable_error", body)
    st, body = health("gpt%2D4")
    check(st == 503 and body["status"] == "not configured" and body["model"] == "gpt-4", body)
    check(http(PORT, "GET", "/health?model=%zz").status == 400, "a bad escape")
    check(http(PORT, "GET", "/health?model=").status == 400, "an empty model")
    # While a switch drains qwen and loads gemma, neither is ready.
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 30})
    check(s.event() is not None, "no first event")
    sw = start_switch(d, "gemma")
    wait_until(lambda: health("qwen")[1]["status"] == "draining", "qwen draining")
    check(health("gemma")[0] == 503, health("gemma"))
    s.events()
    check(sw.wait(20) == 0, "switch failed")
    check(health("gemma")[0] == 200 and health("qwen")[0] == 503, (health("gemma"), health("qwen")))


@fixture(conf(), models=MODELS)
def test_routing_active(d):
    ready(d)
    for name in ("gemma", "gpt-4o", "qwen"):
        r = http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": name})
        check(r.status == 200 and r.json()["model"] == "qwen", f"{name}: {r}")


@sim_only("a fault or timing knob")
@fixture(conf(gemma="env = LLAMA_SIM_EXIT_WHILE_LOADING=1"), models=MODELS)
def test_models_and_health(d):
    d.wait_notify(lambda m: m.get("READY") == "1", "READY=1")
    r = http(PORT, "GET", "/health")
    check(r.status in (200, 503), r)  # 503 while qwen loads, if this came first
    if r.status == 503:
        check(r.json()["error"]["type"] == "unavailable_error" and r.json()["status"] == "loading", r)
    ready(d)
    r = http(PORT, "GET", "/health")
    check(r.status == 200 and r.json()["status"] == "ok", r)
    r = http(PORT, "GET", "/v1/models")
    check(r.status == 200, r)
    ids = {m["id"]: m for m in r.json()["data"]}
    check(set(ids) == {"qwen", "qwen3.5", "gemma", "gemma4", "nomic"}, ids)
    check(ids["qwen"]["state"] == "loaded" and ids["gemma"]["state"] == "unloaded", ids)
    check(r.json()["object"] == "list" and all(m["object"] == "model" for m in ids.values()), r)
    llmctl(d, "stop", check_rc=0)
    r = http(PORT, "GET", "/health")
    check(r.status == 503, r)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    check(r.status == 503 and "llmctl start" in r.json()["error"]["message"], r)
    llmctl(d, "switch", "gemma", check_rc=2)  # fails to load, nothing to restore
    r = http(PORT, "GET", "/health")
    check(r.status == 503 and r.json()["status"] in ("failed", "loading", "unloaded"), r)
    ids = {m["id"]: m for m in http(PORT, "GET", "/v1/models").json()["data"]}
    check(ids["gemma"]["state"] in ("failed", "unloaded"), ids)


@fixture(conf(top="max-body-size = 4K"), models=MODELS)
def test_errors(d):
    ready(d)
    r = http(PORT, "POST", "/v1/chat/completions", b'{"messages": [}', {"Content-Type": "application/json"})
    check(r.status == 400 and "at byte 14" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/v1/chat/completions", b'{"model":"a","model":"b","messages":[]}')
    check(r.status == 400 and "twice" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/v1/nothing", CHAT)
    check(r.status == 404 and r.json()["error"]["type"] == "not_found_error", r)
    r = http(PORT, "GET", "/v1/chat/completions")
    check(r.status == 405, r)
    r = http(PORT, "POST", "/v1/chat/completions", b"x" * 5000)
    check(r.status == 413 and "max-body-size" in r.json()["error"]["message"], r)
    # A chunked body over the limit is read, dropped, and refused.
    import http.client as hc
    c = hc.HTTPConnection("127.0.0.1", PORT, timeout=10)
    c.request("POST", "/v1/chat/completions", body=iter([b"x" * 3000, b"y" * 3000]),
              headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
              encode_chunked=True)
    resp = c.getresponse()
    check(resp.status == 413, f"chunked: {resp.status}")
    c.close()
    # No length at all.
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n")
    status = s.recv(1024).split(b"\r\n")[0]
    check(b" 411 " in status, status)
    s.close()
    for e in ("error", "type", "code"):
        check(e in json.dumps(r.json()), r)
    check(d.proc.poll() is None, "llmd died")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_EXIT_AFTER_TOKENS=0\nrestart-sec = 0.1"), models=MODELS)
def test_upstream_dies_before_answer(d):
    ready(d)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT, timeout=10)
    check(r.status == 502 and r.json()["error"]["type"] == "server_error", r)


@fixture(conf(top="api-key-file = @KEYS@"), models=MODELS, start=False)
def test_api_keys(d):
    keys = os.path.join(d.dir, "keys")
    with open(keys, "w") as f:
        f.write("# keys\nsecret-one\nsecret-two\n")
    os.chmod(keys, 0o600)
    d.write_config(conf(top=f"api-key-file = {keys}"))
    d.start()
    ready(d)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT)
    check(r.status == 401 and r.json()["error"]["type"] == "authentication_error", r)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer secret-on"})
    check(r.status == 401, r)
    r = http(PORT, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer secret-two"})
    check(r.status == 200, r)
    check(http(PORT, "GET", "/health").status == 200, "health is not public")
    check(http(PORT, "GET", "/v1/models").status == 200, "models is not public")
    r = http(EMBED_PORT, "POST", "/v1/embeddings", {"input": "x"})
    check(r.status == 401, f"the model's own port is not protected: {r}")


@sim_only("its records of what it saw")
@fixture(conf(top="max-body-size = 16M"), models=MODELS)
def test_big_body_intact(d):
    ready(d)
    # 5 MB, a number cJSON would round and one it would turn into null: they must arrive as sent.
    body = (b'{"prompt": "' + b"x" * (5 * 1024 * 1024) +
            b'", "n_predict": 1, "n": 9007199254740993, "f": 1e400}')
    r = http(PORT, "POST", "/completion", body, {"Content-Type": "application/json"}, timeout=60)
    check(r.status in (200, 400), r)
    sha = hashlib.sha256(body).hexdigest()
    recs = [x for x in d.records("request_start", "qwen") if x["path"] == "/completion"]
    check(recs and recs[-1]["body_sha256"] == sha and recs[-1]["body_bytes"] == len(body),
          f"body changed on the way: {recs[-1] if recs else None}")


@fixture(conf(), models=MODELS)
def test_options_preflight(d):
    ready(d)
    r = http(PORT, "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization"})
    check(r.status == 200, r)
    # No keys: a page from this machine (test_hostile.py has the whole policy).
    check(r.headers.get("access-control-allow-origin") == "http://localhost:5173", r.headers)
    check("POST" in r.headers.get("access-control-allow-methods", ""), r.headers)
    check("authorization" in r.headers.get("access-control-allow-headers", "").lower(), r.headers)


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=50"), models=MODELS)
def test_graceful_stop(d):
    import signal
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 12})
    first = s.event()
    check(first is not None, "no first event")
    d.proc.send_signal(signal.SIGTERM)
    # No new connections once stopping...
    wait_until(lambda: not _connects(PORT), "llmd to stop accepting")
    # ...but the stream in flight runs to its end.
    ev = s.events()
    check(ev and ev[-1] == "[DONE]", f"the stream was cut: {ev}")
    check(len(ev) == 12 + 2, f"{len(ev) + 1} events")
    check(d.proc.wait(20) == 0, "llmd exit status")
    check(any(m.get("EXTEND_TIMEOUT_USEC") for _, m in d.messages), "no EXTEND_TIMEOUT_USEC")


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@fixture(conf().replace(f"listen = 127.0.0.1:{PORT}", f"listen = [::1]:{PORT} 127.0.0.1:{PORT}"),
         models=MODELS)
def test_ipv6_and_several_addresses(d):
    import http.client as hc
    ready(d)
    check(http(PORT, "GET", "/health").status == 200, "IPv4")
    c = hc.HTTPConnection("::1", PORT, timeout=10)
    c.request("GET", "/health")
    check(c.getresponse().status == 200, "IPv6")
    c.close()


def start_switch(d, model, *extra):
    return subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "--json",
                             "switch", model, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=40"), models=MODELS)
def test_drain_before_stop(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 15})
    check(s.event() is not None, "no first event")
    sw = start_switch(d, "gemma")
    ev = s.events()
    # The stream on the old model runs to its end; only then is qwen stopped.
    check(ev and ev[-1] == "[DONE]" and chunks_model(ev) == {"qwen"}, f"{ev[-2:]}")
    check(sw.wait(20) == 0, "switch failed")
    req = [r for r in d.records("request", "qwen") if r["path"] == "/v1/chat/completions"][0]
    sig = d.records("signal", "qwen")
    check(sig and sig[0]["t"] >= req["t"], f"qwen was signalled before its request ended: {sig} {req}")
    check(not req.get("client_gone"), f"{req}")


@sim_only("a fault or timing knob")
@fixture(conf(top="drain-timeout = 0.3s", qwen="env = LLAMA_SIM_TOKEN_MS=100"), models=MODELS)
def test_drain_timeout_cuts_off(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 200})
    check(s.event() is not None, "no first event")
    sw = start_switch(d, "gemma")
    ev = s.events()
    last = json.loads(ev[-1])
    check("error" in last and "drain-timeout" in last["error"]["message"], f"{ev[-1]}")
    check(sw.wait(20) == 0, "switch failed")
    wait_until(lambda: any(r.get("client_gone") for r in d.records("request", "qwen")
                           if r["path"] == "/v1/chat/completions"), "the upstream request to end")


@sim_only("a fault or timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=100"), models=MODELS)
def test_switch_now_cuts_streams(d):
    ready(d)
    s = Stream(PORT, "/v1/chat/completions", {**CHAT, "stream": True, "max_tokens": 200})
    check(s.event() is not None, "no first event")
    sw = start_switch(d, "gemma", "--now")
    ev = s.events()
    last = json.loads(ev[-1])
    check("error" in last and "--now" in last["error"]["message"], f"{ev[-1]}")
    check(sw.wait(20) == 0, "switch failed")


if __name__ == "__main__":
    run()
