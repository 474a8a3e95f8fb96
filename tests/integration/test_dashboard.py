#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmd's own pages and llama-server's router API on the proxy's port: GET /models with the
router's "status", POST /models/load and /models/unload, GET /models/sse; the dashboard at
GET /llmd/, its stream GET /llmd/events and its actions (POST /llmd/switch, /llmd/load,
/llmd/unload); their key, header and path rules; and the page in a real browser (Debian's
chromium, driven by puppeteer-core from tests/js: tests/js/dashboard.mjs), with a screenshot of
each step under the build directory (BUILD/dashboard-screenshots/TIER/)."""

import http.client as httpclient
import json
import os
import re
import shutil
import subprocess
import threading

from llmdtest import (LLMD, REAL, Failure, check, fixture, free_port, http, llmctl_json, run,
                      sim_only, wait_until)

PORT = free_port()
MODELS = ("qwen", "gemma", "nomic")
KEY = "dash-key-1"
HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(os.path.dirname(HERE), "js")
NODE = os.environ.get("NODE", "node")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ACTION = {"X-Llmd-Dashboard": "1"}
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def conf(top="", gemma=""):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
max-resident = 2
{top}

[*]
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5

[gemma]
model = @MODELS@/gemma.gguf
{gemma}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


def keyed(d, *more):
    """Starts d with an api-key-file holding KEY (and the keys more)."""
    path = os.path.join(d.dir, "keys")
    with open(path, "w") as f:
        f.write("".join(k + "\n" for k in (KEY, *more)))
    os.chmod(path, 0o600)
    d.write_config(conf(top=f"api-key-file = {path}"))
    d.start()


class Events:
    """A GET stream of server-sent events (/llmd/events, /models/sse), read one at a time."""

    def __init__(self, path, headers=None, source=None):
        self.conn = httpclient.HTTPConnection("127.0.0.1", PORT, timeout=20,
                                              source_address=(source, 0) if source else None)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}

    def next(self):
        """(event name or None, parsed data) of the next event; comments are skipped."""
        name, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                raise Failure("the stream ended")
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    return name, json.loads("\n".join(data))
                continue
            if line.startswith("data: "):
                data.append(line[6:])
            elif line.startswith("event: "):
                name = line[7:]

    def until(self, pred, what):
        """Reads events until pred(name, data) holds; returns every event read."""
        seen = []
        while True:
            try:
                e = self.next()
            except (OSError, httpclient.HTTPException) as ex:
                raise Failure(f"waiting for {what}: {ex}; saw {seen}")
            seen.append(e)
            if pred(*e):
                return seen

    def close(self):
        self.conn.close()


def state_of(data, name):
    return next(m for m in data["models"] if m["name"] == name)


def wait_ready(d, *models):
    def ready():
        if not all(d.pid_of(m) for m in models):
            return False
        return all(m["state"] == "ready" for m in llmctl_json(d, "list")["models"]
                   if m["name"] in models)
    wait_until(ready, f"{', '.join(models)} ready")


# ---- the router API ------------------------------------------------------------------------

@fixture(conf(), models=MODELS)
def test_router_models(d):
    """GET /models: each entry carries the router's status object beside llmd's fields."""
    wait_ready(d, "qwen", "nomic")
    r = http(PORT, "GET", "/models")
    check(r.status == 200, r)
    data = {e["id"]: e for e in r.json()["data"]}
    check(set(data) == {"qwen", "qwen3.5", "gemma", "nomic"}, data.keys())
    for name, value in (("qwen", "loaded"), ("gemma", "unloaded"), ("nomic", "loaded")):
        st = data[name]["status"]
        check(st["value"] == value, f"{name}: {st}")
        check(isinstance(st["args"], list) and "--model" in st["args"] and
              st["args"][st["args"].index("--model") + 1] == d.model_path(name), st)
        check(st["preset"].startswith(f"[{name}]\nmodel = {d.model_path(name)}\n"), st)
        check(data[name]["architecture"]["input_modalities"] == ["text"], data[name])
    check(data["qwen"]["state"] == "loaded" and data["qwen"]["active"], data["qwen"])
    # args are the command line: the running child's as it runs, the next one's before it does.
    for name in ("qwen", "nomic"):
        with open(f"/proc/{d.pid_of(name)}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")[:-1]
        check(data[name]["status"]["args"][1:] == argv[1:],
              f"{name}: {data[name]['status']['args']} against {argv}")
    args = data["gemma"]["status"]["args"]
    check("--slot-save-path" in args and "--alias" in args, f"gemma, not started yet: {args}")


@fixture(conf(), models=MODELS)
def test_router_load_unload(d):
    """POST /models/load and /models/unload answer as the router does, and GET /models/sse tells
    the load and the unload in the router's event format."""
    wait_ready(d, "qwen", "nomic")
    sse = Events("/models/sse")
    check(sse.status == 200 and sse.headers["content-type"] == "text/event-stream", sse.headers)
    r = http(PORT, "POST", "/models/load", {"model": "gemma"})
    check(r.status == 200 and r.json() == {"success": True}, r)
    seen = [e for e in sse.until(lambda n, e: e["model"] == "gemma" and
                                 e["data"]["status"] == "loaded", "gemma loaded")
            if e[1]["model"] == "gemma"]
    check(seen[0][1] == {"model": "gemma", "event": "model_status",
                         "data": {"status": "loading"}}, seen)
    check(all(e["event"] == "status_change" for _, e in seen[1:]), seen)
    check(all(e["data"]["status"] == "loading" and
              set(e["data"]["progress"]) == {"stages", "current", "value"} for _, e in seen[1:-1]),
          seen)
    check(seen[-1][1]["data"]["info"]["id"] == "gemma", seen[-1])
    r = http(PORT, "GET", "/models")
    check({e["id"]: e["status"]["value"] for e in r.json()["data"]}["gemma"] == "loaded", r)
    r = http(PORT, "POST", "/models/load", {"model": "gemma"})
    check(r.status == 400 and r.json()["error"]["message"] == "model is already running", r)
    r = http(PORT, "POST", "/models/unload", {"model": "gemma"})
    check(r.status == 200 and r.json() == {"success": True}, r)
    seen = sse.until(lambda n, e: e["model"] == "gemma" and e["data"]["status"] == "unloaded",
                     "gemma unloaded")
    check(seen[-1][1]["data"]["exit_code"] == 0, seen)
    r = http(PORT, "POST", "/models/unload", {"model": "gemma"})
    check(r.status == 400 and r.json()["error"]["message"] == "model is not running", r)
    # What the router refuses, refused with the reason; llmd keeps serving.
    r = http(PORT, "POST", "/models/load", {"model": "nothing"})
    check(r.status == 404 and "nothing" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/models/load", "not json")
    check(r.status == 400 and r.json()["error"]["type"] == "invalid_request_error", r)
    r = http(PORT, "POST", "/models/load", {"model": 3})
    check(r.status == 400, r)
    r = http(PORT, "POST", "/models/unload", {"model": "qwen"})
    check(r.status == 409 and "active" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/models/unload", {"model": "nomic"})
    check(r.status == 400 and "pinned" in r.json()["error"]["message"], r)
    sse.close()
    check(http(PORT, "POST", "/v1/chat/completions", CHAT).status == 200, "serving stopped")


@fixture(conf().replace("max-resident = 2", "max-resident = 1"), models=MODELS)
def test_router_load_without_room(d):
    """A load that would have to stop the active model is refused, saying which limit it is."""
    wait_ready(d, "qwen", "nomic")
    r = http(PORT, "POST", "/models/load", {"model": "gemma"})
    msg = r.json()["error"]["message"]
    check(r.status == 507 and "max-resident = 1" in msg and "llmctl switch gemma" in msg,
          f"{r.status} {msg}")
    p = llmctl_json(d, "load", "gemma", check_rc=2)
    check(p["error"] == "io.llmd.Manager.NoRoom" and "max-resident = 1" in
          p["parameters"]["reason"], p)
    check(llmctl_json(d, "status")["active"]["name"] == "qwen" and d.pid_of("gemma") is None,
          "something was loaded or stopped")


@sim_only("a llama-server that exits with status 7 while it loads")
@fixture(conf(gemma="env = LLAMA_SIM_EXIT_WHILE_LOADING=1 LLAMA_SIM_EXIT_CODE=7"), models=MODELS)
def test_router_failed_load(d):
    """A load that fails: /models/sse says "unloaded" with the exit code, and GET /models marks
    the model failed, as the router does."""
    wait_ready(d, "qwen", "nomic")
    sse = Events("/models/sse")
    r = http(PORT, "POST", "/models/load", {"model": "gemma"})
    check(r.status == 200, r)
    seen = sse.until(lambda n, e: e["model"] == "gemma" and e["data"]["status"] == "unloaded",
                     "gemma unloaded")
    check(seen[-1][1]["data"] == {"status": "unloaded", "exit_code": 7}, seen)
    st = {e["id"]: e["status"] for e in http(PORT, "GET", "/models").json()["data"]}["gemma"]
    check(st["value"] == "unloaded" and st["failed"] is True and st["exit_code"] == 7, st)
    sse.close()
    # It exited once and was not started again: no restart to count (one was, before).
    m = http(PORT, "GET", "/llmd/metrics").body.decode()
    check(not re.search(r'^llmd_model_restarts_total\{model="gemma".*\} [1-9]', m, re.M),
          [line for line in m.splitlines() if line.startswith("llmd_model_restarts_total")])
    check(len(d.starts("gemma")) == 1, f"gemma started {len(d.starts('gemma'))} times")


# ---- against llama-server's own router (real tier) -----------------------------------------

def shape(v):
    """The JSON shape of v: its type, and for an object its members' shapes, for an array its
    first element's; never the values."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__


def within(router, llmd, path="$"):
    """Where llmd's shape lacks what the router's has, or has it of another type: "path: why"."""
    if isinstance(router, dict):
        if not isinstance(llmd, dict):
            return [f"{path}: an object in the router's, {llmd} in llmd's"]
        return [p for k in router for p in (within(router[k], llmd[k], f"{path}.{k}") if k in llmd
                                            else [f"{path}.{k}: missing in llmd's"])]
    if isinstance(router, list):
        if not isinstance(llmd, list):
            return [f"{path}: an array in the router's, {llmd} in llmd's"]
        return within(router[0], llmd[0], path + "[0]") if router and llmd else []
    return [] if router == llmd else [f"{path}: {router} in the router's, {llmd} in llmd's"]


def sse_story(ev, model, until):
    """The events for model up to the one until(data) accepts, as (event, status) pairs with
    repeats folded (the router and llmd report load progress at different steps), and the
    last event."""
    story = []
    for _, e in ev.until(lambda n, e: e.get("model") == model and until(e["data"]), until):
        if e.get("model") != model:
            continue
        step = (e["event"], e["data"]["status"])
        if not story or story[-1] != step:
            story.append(step)
        last = e
    return story, last


@fixture(conf(), models=("qwen", "gemma", "nomic"))
def test_router_conformance(d):
    """llmd's /models, /models/load, /models/unload and /models/sse against Debian's llama-server
    run as a router (--models-preset) with the same two models: every member of the router's
    answers is in llmd's, of the same type; the same statuses for the same requests; the same
    events in the same order. Real tier only."""
    if not REAL:
        from llmdtest import Skip
        raise Skip("compares with llama-server's router: real tier only")
    import subprocess as sp
    from llmdtest import LLAMA_SERVER
    global PORT
    preset = os.path.join(d.dir, "preset.ini")
    with open(preset, "w") as f:
        for m in ("qwen", "gemma"):
            f.write(f"[{m}]\nmodel = {d.model_path(m)}\nctx-size = 4096\n\n")
    rport = free_port()
    router = sp.Popen([LLAMA_SERVER, "--models-preset", preset, "--host", "127.0.0.1",
                       "--port", str(rport), "--models-max", "2"],
                      stdout=open(os.path.join(d.dir, "router.log"), "wb"), stderr=sp.STDOUT)
    ours = PORT
    try:
        def up():
            try:
                return http(rport, "GET", "/models", timeout=2).status == 200
            except OSError:
                return False
        wait_until(up, "the router up")
        wait_ready(d, "qwen", "nomic")
        # The router's qwen loaded too, so each has one model loaded and one not.
        PORT = rport
        check(http(rport, "POST", "/models/load", {"model": "qwen"}).status == 200, "router qwen")
        ev_router = Events("/models/sse")
        sse_story(ev_router, "qwen", lambda e: e["status"] == "loaded")
        PORT = ours
        ev_llmd = Events("/models/sse")

        def models(port):
            return {e["id"]: e for e in http(port, "GET", "/models").json()["data"]}
        r, o = models(rport), models(ours)
        for name in ("qwen", "gemma"):
            problems = [p for p in within(shape(r[name]), shape(o[name]), name)
                        # Read from the GGUF by the router; llmd has it while loaded, from meta.
                        if not (p == f"{name}.context_length: missing in llmd's" and
                                o[name]["status"]["value"] != "loaded")]
            check(not problems, "GET /models: " + "; ".join(problems))
            check(r[name]["status"]["value"] == o[name]["status"]["value"],
                  f"{name}: {r[name]['status']} vs {o[name]['status']}")

        def both(method, path, body):
            a, b = http(rport, method, path, body), http(ours, method, path, body)
            check(a.status == b.status and within(shape(a.json()), shape(b.json())) == [],
                  f"{method} {path} {body}: router {a} vs llmd {b}")
            return a, b
        both("POST", "/models/load", {"model": "gemma"})
        stories = []
        for port, ev in ((rport, ev_router), (ours, ev_llmd)):
            stories.append(sse_story(ev, "gemma", lambda e: e["status"] == "loaded"))
        check(stories[0][0] == stories[1][0], f"load events: router {stories[0][0]} vs llmd "
              f"{stories[1][0]}")
        check(not within(shape(stories[0][1]), shape(stories[1][1])),
              f"loaded event: router {stories[0][1]} vs llmd {stories[1][1]}")
        a, b = both("POST", "/models/load", {"model": "gemma"})
        check(a.json()["error"]["message"] == b.json()["error"]["message"], f"{a} vs {b}")
        both("POST", "/models/unload", {"model": "gemma"})
        stories = [sse_story(ev, "gemma", lambda e: e["status"] == "unloaded")
                   for ev in (ev_router, ev_llmd)]
        check(stories[0][0] == stories[1][0] and stories[0][1] == stories[1][1],
              f"unload events: router {stories[0]} vs llmd {stories[1]}")
        a, b = both("POST", "/models/unload", {"model": "gemma"})
        check(a.json()["error"]["message"] == b.json()["error"]["message"], f"{a} vs {b}")
        a, b = http(rport, "POST", "/models/load", {"model": "nothing"}), \
            http(ours, "POST", "/models/load", {"model": "nothing"})
        check(a.status == b.status == 404, f"unknown model: router {a} vs llmd {b}")
        ev_router.close()
        ev_llmd.close()
    finally:
        PORT = ours
        router.terminate()
        router.wait(timeout=20)


# ---- the dashboard's stream and actions -----------------------------------------------------

@fixture(conf(), models=MODELS)
def test_dashboard_switch(d):
    """/llmd/events starts with the whole state and follows a switch made with /llmd/switch,
    which the dashboard lists with its kind."""
    wait_ready(d, "qwen", "nomic")
    ev = Events("/llmd/events")
    check(ev.status == 200, ev.status)
    name, st = ev.next()
    check(name == "state" and st["active"] == "qwen", st)
    check([m["name"] for m in st["models"]] == ["qwen", "gemma", "nomic"], st)
    check(state_of(st, "qwen")["state"] == "loaded" and
          state_of(st, "gemma")["state"] == "unloaded", st)
    # Without the header a form cannot send: refused, nothing changes.
    r = http(PORT, "POST", "/llmd/switch", {"model": "gemma"})
    check(r.status == 403 and "X-Llmd-Dashboard" in r.json()["error"]["message"], r)
    r = http(PORT, "POST", "/llmd/switch", {"model": "gemma"}, headers=ACTION)
    check(r.status == 200 and r.json() == {"success": True}, r)
    seen = ev.until(lambda n, s: s["active"] == "gemma" and
                    state_of(s, "gemma")["state"] == "loaded" and s["switches"] and
                    s["switches"][0]["seconds"] is not None, "the switch done")
    last = seen[-1][1]
    w = last["switches"][0]
    check(w["from"] == "qwen" and w["to"] == "gemma" and w["kind"] in ("beside", "replace"), w)
    # Back to the resident qwen: a change of route.
    r = http(PORT, "POST", "/llmd/switch", {"model": "qwen"}, headers=ACTION)
    check(r.status == 200, r)
    seen = ev.until(lambda n, s: s["active"] == "qwen" and len(s["switches"]) == 2, "switch back")
    check(seen[-1][1]["switches"][0]["kind"] == "resident", seen[-1][1]["switches"])
    r = http(PORT, "POST", "/llmd/unload", {"model": "gemma"}, headers=ACTION)
    check(r.status == 200, r)
    ev.until(lambda n, s: state_of(s, "gemma")["state"] == "unloaded", "gemma unloaded")
    r = http(PORT, "POST", "/llmd/switch", {"model": "nothing"}, headers=ACTION)
    check(r.status == 404, r)
    ev.close()


@fixture(conf(), models=MODELS, start=False)
def test_dashboard_keys(d):
    """With keys, the page loads without one (it holds no data) and everything else needs it:
    the stream, the actions and the router API."""
    keyed(d)
    wait_ready(d, "qwen", "nomic")
    auth = {"Authorization": "Bearer " + KEY}
    r = http(PORT, "GET", "/llmd/")
    check(r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8" and
          b"/llmd/events" in r.body, r)
    check("default-src 'none'" in r.headers["content-security-policy"], r.headers)
    r = http(PORT, "GET", "/llmd")
    check(r.status == 308 and r.headers["location"] == "/llmd/", r)
    for method, path in (("GET", "/llmd/events"), ("GET", "/models/sse"),
                         ("POST", "/llmd/switch"), ("POST", "/llmd/load"),
                         ("POST", "/models/load"), ("POST", "/models/unload"),
                         ("GET", "/llmd/activity"), ("GET", "/llmd/nothing")):
        r = http(PORT, method, path, {"model": "gemma"} if method == "POST" else None,
                 headers=ACTION)
        check(r.status == 401, f"{method} {path}: {r}")
    r = http(PORT, "POST", "/llmd/switch", {"model": "gemma"}, headers={**ACTION, "Authorization": "Bearer wrong"})
    check(r.status == 401, r)
    check(llmctl_json(d, "status")["active"]["name"] == "qwen", "a refused action acted")
    ev = Events("/llmd/events", headers=auth)
    check(ev.status == 200 and ev.next()[1]["keys"] is True, "stream with the key")
    ev.close()
    r = http(PORT, "POST", "/llmd/load", {"model": "gemma"}, headers={**ACTION, **auth})
    check(r.status == 200, r)
    wait_ready(d, "gemma")


@fixture(conf(), models=MODELS)
def test_dashboard_hostile(d):
    """/llmd/ paths follow the path normalisation, and without keys the Host and Origin rules;
    a stream's client that leaves is let go; llmd keeps serving."""
    wait_ready(d, "qwen", "nomic")
    for path in ("/llmd/./events", "/llmd/x/../events", "/llmd/%2e%2e/models/load",
                 "/llmd/%2E/", "/llmd/ev%00ents"):
        r = http(PORT, "GET", path)
        check(r.status == 400, f"{path}: {r}")
    r = http(PORT, "GET", "/%6clmd/")
    check(r.status == 200 and b"<title>llmd</title>" in r.body, r)
    r = http(PORT, "GET", "/llmd/nothing")
    check(r.status == 404, r)
    # Another machine's name (DNS rebinding), another site's page: refused before acting.
    r = http(PORT, "POST", "/llmd/switch", {"model": "gemma"},
             headers={**ACTION, "Host": "rebind.example:80"})
    check(r.status == 403, r)
    r = http(PORT, "POST", "/llmd/switch", {"model": "gemma"},
             headers={**ACTION, "Origin": "https://evil.example"})
    check(r.status == 403, r)
    r = http(PORT, "GET", "/llmd/events", headers={"Origin": "https://evil.example"})
    check(r.status == 403, r)
    # What a cross-site form can send: no custom header, a text/plain body.
    r = http(PORT, "POST", "/llmd/switch", '{"model":"gemma"}',
             headers={"Content-Type": "text/plain"})
    check(r.status == 403, r)
    r = http(PORT, "POST", "/llmd/switch", b"{" * 100000, headers=ACTION)
    check(r.status == 400, r)
    # The model read as a completion's is: a NUL in it, or given twice, is refused.
    for body in (b'{"model":"gemma\\u0000../../etc"}', b'{"model":"qwen","model":"gemma"}'):
        r = http(PORT, "POST", "/llmd/switch", body,
                 headers={**ACTION, "Content-Type": "application/json"})
        check(r.status == 400, f"{body}: {r}")
    # A refusal is recorded as one, with the model the body named.
    r = http(PORT, "POST", "/models/unload", {"model": "qwen"})
    check(r.status in (400, 409), r)
    rec = [x for x in http(PORT, "GET", "/llmd/activity").json()["records"]
           if x["endpoint"] == "/models/unload"][-1]
    check(rec["model"] == "qwen" and rec["error"] and rec["status"] == r.status, rec)
    m = http(PORT, "GET", "/llmd/metrics").body.decode()
    check('llmd_refused_total{reason="client_closed"}' not in m, "a refusal counted as a client "
          "that left")
    check(llmctl_json(d, "status")["active"]["name"] == "qwen", "a refused action acted")
    # Streams that come and go, one left open: llmd serves on.
    for _ in range(20):
        Events("/llmd/events").close()
    open_one = Events("/llmd/events")
    check(open_one.next()[0] == "state", "no state")
    check(http(PORT, "POST", "/v1/chat/completions", CHAT).status == 200, "serving stopped")
    open_one.close()


def stream_ended(e):
    """Whether e's stream ends (EOF, or a cut chunk) before events stop coming for 20 s."""
    try:
        while e.resp.readline():
            pass
        return True
    except TimeoutError:
        return False
    except (OSError, httpclient.HTTPException):
        return True


@fixture(conf(), models=MODELS, start=False)
def test_events_fair_share(d):
    """A client that holds every event stream (a page that leaks them, on loopback where every
    local client has one address) does not keep another out: the other's stream ends the
    hog's oldest, and the hog's next one ends its own oldest, not the other's."""
    keyed(d, "other-key-2")
    wait_ready(d, "qwen", "nomic")
    hog = []
    for _ in range(64):
        e = Events("/llmd/events", {"Authorization": "Bearer " + KEY})
        check(e.status == 200 and e.next()[0] == "state", f"stream {len(hog)}: {e.status}")
        hog.append(e)
    other = Events("/models/sse", {"Authorization": "Bearer other-key-2"})
    check(other.status == 200, f"another client's stream with all 64 taken: {other.status}")
    check(stream_ended(hog[0]), "the hog's oldest stream ended")
    extra = Events("/llmd/events", {"Authorization": "Bearer " + KEY})
    check(extra.status == 200 and extra.next()[0] == "state", f"the hog's 65th: {extra.status}")
    check(stream_ended(hog[1]), "the hog's next stream ended its own oldest")
    # The rest still carry events, the other client's too: a load shows on them.
    check(http(PORT, "POST", "/models/load", {"model": "gemma"},
               headers={"Authorization": "Bearer other-key-2"}).status == 200, "load")

    def names_gemma(name, data):
        if name == "state":
            return state_of(data, "gemma")["state"] in ("loading", "ready")
        return data.get("model") == "gemma"

    for e in (other, hog[2], hog[63], extra):
        e.until(names_gemma, "gemma's load on a stream that should be open")
    check(http(PORT, "POST", "/v1/chat/completions", CHAT,
               headers={"Authorization": "Bearer " + KEY}).status == 200, "serving stopped")
    for e in hog + [other, extra]:
        e.close()
    # Streams whose clients have left do not hold their places: 64 clients (64 addresses) open
    # one each and leave, and the next client is served at once (not after the next keep-alive
    # comment finds them gone).
    for i in range(64):
        e = Events("/llmd/events", {"Authorization": "Bearer " + KEY}, source=f"127.0.1.{i + 1}")
        check(e.status == 200 and e.next()[0] == "state", f"stream: {e.status}")
        e.close()
    e = Events("/models/sse", {"Authorization": "Bearer other-key-2"})
    check(e.status == 200, f"a stream after 64 closed ones: {e.status}")
    # 64 clients that stay keep theirs: the 65th is refused, none of theirs is ended.
    held = [Events("/llmd/events", {"Authorization": "Bearer " + KEY}, source=f"127.0.2.{i + 1}")
            for i in range(63)]
    check(all(x.status == 200 for x in held), [x.status for x in held])
    late = Events("/llmd/events", {"Authorization": "Bearer " + KEY}, source="127.0.3.1")
    check(late.status == 503, f"a 65th client with 64 holding one each: {late.status}")
    for x in held + [e, late]:
        x.close()


# ---- in a browser ---------------------------------------------------------------------------

def screenshot_dir():
    build = os.path.dirname(os.path.dirname(os.path.abspath(LLMD)))
    path = os.path.join(build, "dashboard-screenshots", "real" if REAL else "sim")
    os.makedirs(path, exist_ok=True)
    return path


def browser(d, case, key=None):
    """Runs tests/js/dashboard.mjs CASE against d while chat requests run; its steps print one
    JSON line each. Skipped (77) without node, puppeteer-core or chromium."""
    script = os.path.join(JS_DIR, "dashboard.mjs")
    if not (shutil.which(NODE) and os.path.isdir(os.path.join(JS_DIR, "node_modules",
                                                               "puppeteer-core"))
            and os.path.exists(CHROMIUM)):
        from llmdtest import Skip
        raise Skip("needs node, tests/js/node_modules (npm ci --prefix tests/js) and chromium")
    stop = threading.Event()
    done = []

    def load():
        # Requests running throughout, for the activity table.
        while not stop.is_set():
            try:
                r = http(PORT, "POST", "/v1/chat/completions", CHAT,
                         headers={"Authorization": "Bearer " + KEY} if key else None)
                done.append(r.status)
            except OSError:
                pass

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        p = subprocess.run([NODE, script, case, f"http://127.0.0.1:{PORT}/llmd/",
                            screenshot_dir(), key or ""],
                           env={**os.environ, "CHROMIUM": CHROMIUM}, capture_output=True,
                           text=True, timeout=90)
    finally:
        stop.set()
        t.join(timeout=30)
    print(p.stdout, p.stderr, sep="\n")
    check(p.returncode == 0, f"dashboard.mjs {case} exited {p.returncode}: {p.stderr[-2000:]}")
    check(done and all(s == 200 for s in done), f"requests during the test: {set(done)}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


@fixture(conf(), models=MODELS, env={"LLAMA_SIM_LOAD_MS": "1500"})
def test_browser_switch(d):
    """In chromium: the page shows every model and its state; clicking switch shows the load and
    the new active model while requests run; the activity table shows them, gemma's after the
    switch, with their tokens/s."""
    wait_ready(d, "qwen", "nomic")
    steps = browser(d, "switch")
    names = [s["step"] for s in steps]
    check(names == ["open", "switch", "switched", "activity"], names)
    check(steps[0]["models"] == {"qwen": "loaded", "gemma": "unloaded", "nomic": "loaded"},
          steps[0])
    if not REAL:
        # The simulator takes 1.5 s to load: the page showed it loading.
        check("loading" in steps[2]["seen"], steps[2])
    check(steps[2]["active"] == "gemma" and steps[2]["models"]["gemma"] == "loaded", steps[2])
    rows = steps[3]["activity"]
    check({r["model"] for r in rows} >= {"gemma"} and all(r["status"] == "200" for r in rows),
          rows)
    check(any(r["tps"] and float(r["tps"]) > 0 for r in rows if r["model"] == "gemma"), rows)
    check(llmctl_json(d, "status")["active"]["name"] == "gemma", "not switched")


@fixture(conf(), models=MODELS, start=False)
def test_browser_keys(d):
    """In chromium, with keys: the page asks for the key; an action with a wrong key is refused
    and says so, and nothing changes; with the key it acts."""
    keyed(d)
    wait_ready(d, "qwen", "nomic")
    steps = browser(d, "keys", key=KEY)
    names = [s["step"] for s in steps]
    check(names == ["asked", "open", "refused", "switched"], names)
    check(steps[2]["status"] == 401 and "401" in steps[2]["error"] and steps[2]["active"] == "qwen",
          steps[2])
    check(steps[3]["active"] == "gemma", steps[3])


if __name__ == "__main__":
    run()
