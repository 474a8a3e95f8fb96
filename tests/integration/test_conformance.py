#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Conformance of the llama-server simulator to a real llama-server. Standard library only.

Starts llama-sim (LLAMA_SIM) and a real llama-server (LLMD_REAL_LLAMA_SERVER, loading the tiny
models of tests/models/make-tiny-models.py from LLMD_REAL_MODELS) side by side, each on its own
unix socket with the same flags, as llmd runs them; sends both the same requests and compares
what a proxy relaying them sees: the status, the headers that matter, the SSE framing and the
JSON shape (keys and value types, recursively; never the generated text or the numbers).
Each comparison is one case; a failure lists the differing paths as "path: sim vs real".

Run: LLAMA_SIM=BUILD/tests/sim/llama-sim LLMD_REAL_LLAMA_SERVER=... LLMD_REAL_MODELS=...
     python3 test_conformance.py [CASE...]   (--list prints the cases). Needs root (the
real server's wrapper chroots); exits 77 (skipped) when anything is missing.
"""

import atexit
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llmdtest import SKIP, Failure, Skip, check, run, wait_until  # noqa: E402

SIM = os.environ.get("LLAMA_SIM")
REAL = os.environ.get("LLMD_REAL_LLAMA_SERVER")
MODELS = os.environ.get("LLMD_REAL_MODELS")
TIMEOUT = float(os.environ.get("LLMD_TEST_TIMEOUT", "30"))
CTX = 4096
CHAT = [{"role": "user", "content": "hello world"}]


# ---- two servers -----------------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=TIMEOUT)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def request(sock, method, path, body=None, headers=None, chunked=False):
    """One request on a fresh connection; body: bytes, or a JSON-able object; chunked: sent
    with Transfer-Encoding: chunked."""
    h = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c = UnixConnection(sock)
    try:
        if chunked:
            c.request(method, path, body=iter([body]), headers=h, encode_chunked=True)
        else:
            c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        c.close()


class Server:
    def __init__(self, name, argv, env, sock):
        self.name, self.sock = name, sock
        self.log = open(sock + ".log", "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.loading = None  # the first answer to /health before it was 200, if one was seen

    def poll_health(self):
        if self.proc.poll() is not None:
            with open(self.sock + ".log", errors="replace") as f:
                raise Failure(f"{self.name} exited ({self.proc.returncode}): {f.read()[-2000:]}")
        try:
            r = request(self.sock, "GET", "/health")
        except OSError:
            return False
        if r.status != 200 and self.loading is None:
            self.loading = r
        return r.status == 200

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


TMP = None
PAIRS = {}


def pair(kind):
    """The (sim, real) pair serving the tiny model kind (chat, reasoning, embed), started once."""
    global TMP
    if kind in PAIRS:
        return PAIRS[kind]
    if TMP is None:
        TMP = tempfile.TemporaryDirectory(prefix="llmd-conf-")
    model = os.path.join(MODELS, kind + ".gguf")
    args = ["--model", model, "--alias", kind, "--ctx-size", str(CTX)]
    if kind == "embed":
        args.append("--embeddings")
    if kind == "reasoning":
        args += ["--reasoning-format", "deepseek"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_SIM_", "LLAMA_ARG_"))}
    # Loading takes the real server ~0.2 s; the simulator is made as slow, so the 503 of
    # /health during loading is caught on both.
    sim_env = {**env, "LLAMA_SIM_LOAD_MS": "500"}
    socks = [os.path.join(TMP.name, f"{kind}-{n}.sock") for n in ("sim", "real")]
    servers = (Server("simulator", [SIM, *args, "--host", socks[0]], sim_env, socks[0]),
               Server("llama-server", [REAL, *args, "--host", socks[1]], env, socks[1]))
    PAIRS[kind] = servers
    # both at once: a /health answered while loading is caught on each
    wait_until(lambda: all([s.poll_health() for s in servers]), f"/health 200 from both ({kind})",
               TIMEOUT, 0.005)
    return servers


def stop_all():
    for servers in PAIRS.values():
        for s in servers:
            s.stop()
    if TMP:
        TMP.cleanup()


# ---- comparing -------------------------------------------------------------------------------

def kind_of(v):
    # Numbers are one kind: cJSON writes 1.0 as 1, nlohmann as 1.0.
    return {type(None): "null", bool: "bool", int: "number", float: "number", str: "str",
            list: "list", dict: "object"}[type(v)]


def ignored(path, ignore):
    return any(re.fullmatch(re.escape(p).replace(r"\*", r"[^.]*"), path) for p in ignore)


# Values that clients branch on, compared as well as their kind: the object's kind, why a
# generation ended, the role, and the error's type, code and message (its numbers masked); in
# the Messages and Responses APIs also every "type" (of the event, block, item, part), the
# stop_reason and the status.
VALUE_KEYS = re.compile(r"(^|\.)(object|finish_reason|role|stop|error\.(type|code|message)|type|"
                        r"stop_reason|status)$")


def value_of(path, v):
    return re.sub(r"\d+", "N", v) if isinstance(v, str) and path.endswith(".message") else v


def shape_diff(a, b, path="", ignore=()):
    """The differences in shape between a (sim) and b (real), as "path: sim vs real" lines."""
    if ignored(path, ignore):
        return []
    where = path or "(top)"
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return [f"{where}: {ka} vs {kb}"]
    if VALUE_KEYS.search(path) and value_of(path, a) != value_of(path, b):
        return [f"{where}: {json.dumps(a)} vs {json.dumps(b)}"]
    out = []
    if ka == "object":
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else k
            if ignored(sub, ignore):
                continue
            if k not in a or k not in b:
                out.append(f"{sub}: {kind_of(a[k]) if k in a else 'missing'} vs "
                           f"{kind_of(b[k]) if k in b else 'missing'}")
            else:
                out += shape_diff(a[k], b[k], sub, ignore)
    elif ka == "list":
        scalars = all(kind_of(x) not in ("list", "object") for x in a + b)
        if scalars:  # tokens, vectors: their length follows the text and the model
            sa, sb = sorted({kind_of(x) for x in a}), sorted({kind_of(x) for x in b})
            if a and b and sa != sb:
                out.append(f"{where}[]: {'|'.join(sa)} vs {'|'.join(sb)}")
            elif bool(a) != bool(b):
                out.append(f"{where}: {len(a)} items vs {len(b)}")
        else:
            if len(a) != len(b):
                out.append(f"{where}: {len(a)} items vs {len(b)}")
            for i, (x, y) in enumerate(zip(a, b)):
                out += shape_diff(x, y, f"{path}[{i}]", ignore)
    return out


def header_diff(a, b, sse=False):
    def framing(r):
        if "chunked" in r.headers.get("transfer-encoding", ""):
            return "Transfer-Encoding: chunked"
        return "Content-Length" if "content-length" in r.headers else "neither"
    out = []
    for what, f in [("Content-Type", lambda r: r.headers.get("content-type")),
                    ("framing", framing),
                    ("Connection", lambda r: r.headers.get("connection")),
                    ("Keep-Alive present", lambda r: "keep-alive" in r.headers),
                    ("Access-Control-Allow-Origin present",
                     lambda r: "access-control-allow-origin" in r.headers),
                    *[(h, lambda r, h=h: r.headers.get(h.lower())) for h in (
                        "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                        "Access-Control-Allow-Credentials")]]:
        if f(a) != f(b):
            out.append(f"header {what}: {f(a)!r} vs {f(b)!r}")
    if sse or "x-accel-buffering" in a.headers or "x-accel-buffering" in b.headers:
        va, vb = a.headers.get("x-accel-buffering"), b.headers.get("x-accel-buffering")
        if va != vb:
            out.append(f"header X-Accel-Buffering: {va!r} vs {vb!r}")
    return out


def body_json(r):
    try:
        return json.loads(r.body)
    except ValueError:
        return None


def sse_events(body):
    """The events of an SSE body, and a description of its framing (what must be equal)."""
    text = body.decode("utf-8", "replace")
    blocks = text.split("\n\n")
    frame = {"ends with a blank line": text.endswith("\n\n"), "CR": "\r" in text}
    if frame["ends with a blank line"]:
        blocks.pop()
    frame["blocks not one data: line"] = sum(
        1 for blk in blocks if "\n" in blk or not blk.startswith("data: "))
    events = [blk[6:] if blk.startswith("data: ") else blk for blk in blocks]
    frame["last event"] = "[DONE]" if events and events[-1] == "[DONE]" else "JSON"
    frame["[DONE] elsewhere"] = "[DONE]" in events[:-1]
    return [e for e in events if e != "[DONE]"], frame


def chunk_role(c):
    ch = c.get("choices")
    if ch == []:
        return "usage"
    if "error" in c:
        return "error"
    first = ch[0] if isinstance(ch, list) and ch else {}
    if first.get("finish_reason") is not None or c.get("stop") is True:
        return "final"
    delta = first.get("delta") or {}
    if "role" in delta:
        return "first"
    return "reasoning" if "reasoning_content" in delta else "content"


def sse_diff(a, b, ignore=(), may_lack=()):
    (ea, fa), (eb, fb) = sse_events(a.body), sse_events(b.body)
    out = [f"SSE {k}: {fa[k]!r} vs {fb[k]!r}" for k in fa if fa[k] != fb[k]]
    try:
        ca, cb = [json.loads(e) for e in ea], [json.loads(e) for e in eb]
    except ValueError as e:
        return out + [f"SSE event not JSON: {e}"]
    ra, rb = [chunk_role(c) for c in ca], [chunk_role(c) for c in cb]

    def squeeze(roles):  # a token's chunk repeats as many times as there are tokens
        return [r for i, r in enumerate(roles) if i == 0 or r != roles[i - 1]]
    sa, sb = squeeze(ra), squeeze(rb)
    for role in may_lack:  # an exception of the case: these chunks may be on one side only
        if (role in sa) != (role in sb):
            sa, sb = squeeze([r for r in sa if r != role]), squeeze([r for r in sb if r != role])
    if sa != sb:
        out.append(f"SSE event sequence: {' '.join(sa)} vs {' '.join(sb)}")
    for role in ("first", "reasoning", "content", "final", "usage", "error"):
        xs = [c for c, r in zip(ca, ra) if r == role]
        ys = [c for c, r in zip(cb, rb) if r == role]
        out += [f"{role} chunk: {d}" for d in role_diff(xs, ys, ignore)]
    return out


def role_diff(xs, ys, ignore):
    """The shape differences between the events of one role on each side: every event of one
    side against the first of that role on the other side."""
    if not xs or not ys:
        return []
    seen = []
    for x in xs:
        seen += shape_diff(x, ys[0], "", ignore)
    for y in ys:
        seen += shape_diff(xs[0], y, "", ignore)
    return list(dict.fromkeys(seen))


def named_sse_events(body):
    """The events of an SSE body of the Messages or Responses API, as (event name or None, data
    text), and a description of its framing (what must be equal)."""
    text = body.decode("utf-8", "replace")
    blocks = text.split("\n\n")
    frame = {"ends with a blank line": text.endswith("\n\n"), "CR": "\r" in text}
    if frame["ends with a blank line"]:
        blocks.pop()
    events, bad = [], 0
    for blk in blocks:
        lines = blk.split("\n")
        name = lines.pop(0)[len("event: "):] if lines[0].startswith("event: ") else None
        if len(lines) != 1 or not lines[0].startswith("data: "):
            bad += 1
            continue
        events.append((name, lines[0][len("data: "):]))
    frame["blocks not [event: line] data: line"] = bad
    frame["[DONE]"] = any(d == "[DONE]" for _, d in events)
    frame["events without a name"] = sum(1 for n, _ in events if n is None)
    return events, frame


def event_role(name, data):
    """What an event is: its name, and the type of what it carries (block, delta, item, part)."""
    if not isinstance(data, dict):
        return f"{name}:?"
    if name is None:
        return "data:" + ",".join(data)
    inner = [data.get(k) for k in ("content_block", "delta", "item", "part")]
    kinds = [x.get("type") for x in inner if isinstance(x, dict) and "type" in x]
    return name + (f"/{kinds[0]}" if kinds else "")


def named_sse_diff(a, b, ignore=()):
    (ea, fa), (eb, fb) = named_sse_events(a.body), named_sse_events(b.body)
    out = [f"SSE {k}: {fa[k]!r} vs {fb[k]!r}" for k in fa if fa[k] != fb[k]]
    try:
        ca = [(n, json.loads(d)) for n, d in ea]
        cb = [(n, json.loads(d)) for n, d in eb]
    except ValueError as e:
        return out + [f"SSE event not JSON: {e}"]
    out += [f"event {n}: data type {d.get('type')!r}" for n, d in ca + cb
            if n is not None and isinstance(d, dict) and d.get("type") != n]
    ra, rb = [event_role(n, d) for n, d in ca], [event_role(n, d) for n, d in cb]

    def squeeze(roles):  # a token's event repeats as many times as there are tokens
        return [r for i, r in enumerate(roles) if i == 0 or r != roles[i - 1]]
    if squeeze(ra) != squeeze(rb):
        out.append(f"SSE event sequence: {' '.join(squeeze(ra))} vs {' '.join(squeeze(rb))}")
    for role in dict.fromkeys(ra):
        xs = [d for (_, d), r in zip(ca, ra) if r == role]
        ys = [d for (_, d), r in zip(cb, rb) if r == role]
        out += [f"{role}: {d}" for d in role_diff(xs, ys, ignore)]
    return out


def compare(kind, method, path, body=None, headers=None, ignore=(), may_lack=(), chunked=False):
    """Sends one request to both servers of the pair kind; fails listing every difference."""
    sim, real = pair(kind)
    a = request(sim.sock, method, path, body, headers, chunked)
    b = request(real.sock, method, path, body, headers, chunked)
    check_same(a, b, ignore, may_lack)


def check_same(a, b, ignore=(), may_lack=()):
    diffs = [f"status: {a.status} vs {b.status}"] if a.status != b.status else []
    sse = "text/event-stream" in (b.headers.get("content-type") or "")
    diffs += header_diff(a, b, sse)
    named = any(r.body.startswith(b"event: ") for r in (a, b))
    if sse and named:
        diffs += named_sse_diff(a, b, ignore)
    elif sse:
        diffs += sse_diff(a, b, ignore, may_lack)
    else:
        ja, jb = body_json(a), body_json(b)
        if (ja is None) != (jb is None):
            diffs.append(f"body: {'text' if ja is None else 'JSON'} vs "
                         f"{'text' if jb is None else 'JSON'} ({a.body[:80]!r} vs {b.body[:80]!r})")
        elif ja is not None:
            diffs += shape_diff(ja, jb, "", ignore)
    if diffs:
        raise Failure(f"{len(diffs)} difference(s), simulator vs llama-server:\n  "
                      + "\n  ".join(diffs))


# ---- the cases -------------------------------------------------------------------------------

def chat(**kw):
    return {"model": "chat", "messages": CHAT, "max_tokens": 4, **kw}


def messages(**kw):
    return {"model": "chat", "max_tokens": 4, "messages": CHAT, **kw}


def responses(**kw):
    return {"model": "chat", "max_output_tokens": 4, "input": "hello world", **kw}


TOOL_A = {"name": "get_weather", "description": "Get the weather",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TOOL_R = {"type": "function", "name": "get_weather", "description": "Get the weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
TURNS = [{"role": "user", "content": "hello world"},
         {"type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                               "text": "hi"}]},
         {"role": "user", "content": [{"type": "input_text", "text": "again"}]}]
BIG = "hello world " * CTX


def completion(**kw):
    return {"model": "chat", "prompt": "hello world", "max_tokens": 4, **kw}


def test_health_loading():
    sim, real = pair("chat")
    if real.loading is None:
        raise Skip("llama-server loaded before a /health could catch it loading")
    check(sim.loading is not None, "the simulator never answered /health while loading")
    check_same(sim.loading, real.loading)


def slots():
    # A slot that served a request carries its task and parameters; an idle one does not.
    # Which and how many slots served is the server's choice (the real one prefers the slot
    # whose cache shares the prompt): compare one used slot with one, one idle with one.
    sim, real = pair("chat")
    for s in (sim, real):
        request(s.sock, "POST", "/v1/chat/completions", chat())
    a, b = (request(s.sock, "GET", "/slots") for s in (sim, real))
    for r in (a, b):
        v = body_json(r)
        if isinstance(v, list):
            used = [x for x in v if "params" in x][:1]
            r.body = json.dumps({"slots": len(v), "used": used,
                                 "idle": [x for x in v if "params" not in x][:1]}).encode()
    ja, jb = body_json(a), body_json(b)
    if ja and jb and not (ja["idle"] and jb["idle"]):  # every slot of one side has served
        ja["idle"] = jb["idle"] = []
        a.body, b.body = json.dumps(ja).encode(), json.dumps(jb).encode()
    # Exception: the sampling parameters of a slot (params.*, as in /props) mirror
    # llama.cpp's sampler struct, which changes from build to build; llmd never reads them.
    check_same(a, b, ignore=["used[*].params.*"])


# Exception: /props's default_generation_settings.params is the sampler struct, see slots();
# llmd relays /props without reading it.
PROPS_IGNORE = ["default_generation_settings.params.*"]

# The other cases, one request each: test_NAME compares the two servers' answers to it.
for name, case in {
    "health": lambda: compare("chat", "GET", "/health"),
    "chat": lambda: compare("chat", "POST", "/v1/chat/completions", chat()),
    "chat_stream": lambda: compare("chat", "POST", "/v1/chat/completions", chat(stream=True)),
    "chat_stream_usage": lambda: compare(
        "chat", "POST", "/v1/chat/completions",
        chat(stream=True, stream_options={"include_usage": True})),
    "v1_completions": lambda: compare("chat", "POST", "/v1/completions", completion()),
    "v1_completions_stream": lambda: compare("chat", "POST", "/v1/completions",
                                             completion(stream=True)),
    "completion": lambda: compare("chat", "POST", "/completion",
                                  {"prompt": "hello world", "n_predict": 4}),
    "completion_stream": lambda: compare("chat", "POST", "/completion",
                                         {"prompt": "hello world", "n_predict": 4,
                                          "stream": True}),
    "tokenize": lambda: compare("chat", "POST", "/tokenize", {"content": "hello world"}),
    "tokenize_pieces": lambda: compare("chat", "POST", "/tokenize",
                                       {"content": "hello world", "with_pieces": True}),
    "detokenize": lambda: compare("chat", "POST", "/detokenize", {"tokens": [72, 101, 108]}),
    "props": lambda: compare("chat", "GET", "/props", ignore=PROPS_IGNORE),
    "slots": slots,
    "models": lambda: compare("chat", "GET", "/v1/models"),
    "cors_origin": lambda: compare("chat", "GET", "/health",
                                   headers={"Origin": "http://example.org"}),
    "cors_preflight": lambda: compare("chat", "OPTIONS", "/v1/chat/completions", headers={
        "Origin": "http://example.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"}),
    "connection_close": lambda: compare("chat", "GET", "/health", headers={"Connection": "close"}),
    "chunked_request_body": lambda: compare("chat", "POST", "/v1/chat/completions",
                                            chat(stream=True), chunked=True),
    "error_bad_json": lambda: compare("chat", "POST", "/v1/chat/completions", b"{not json",
                                      {"Content-Type": "application/json"}),
    "error_no_messages": lambda: compare("chat", "POST", "/v1/chat/completions",
                                         {"model": "chat", "max_tokens": 4}),
    "error_max_tokens_type": lambda: compare("chat", "POST", "/v1/chat/completions",
                                             chat(max_tokens="4")),
    "error_over_context": lambda: compare(
        "chat", "POST", "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": "hello world " * CTX}])),
    "error_over_context_stream": lambda: compare(
        "chat", "POST", "/v1/chat/completions",
        chat(stream=True, messages=[{"role": "user", "content": "hello world " * CTX}])),
    "error_not_found": lambda: compare("chat", "GET", "/no/such/path"),
    "reasoning": lambda: compare("reasoning", "POST", "/v1/chat/completions",
                                 chat(model="reasoning")),
    # Exception: the tiny real model never closes its <think> block, so it streams reasoning
    # chunks only; the simulator thinks for half of max_tokens and then answers.
    "reasoning_stream": lambda: compare("reasoning", "POST", "/v1/chat/completions",
                                        chat(model="reasoning", stream=True),
                                        may_lack=["content"]),
    # The Anthropic Messages API and the OpenAI Responses API (samples in tests/sim/samples/)
    "messages": lambda: compare("chat", "POST", "/v1/messages", messages()),
    "messages_stream": lambda: compare("chat", "POST", "/v1/messages", messages(stream=True)),
    "messages_system_tools": lambda: compare(
        "chat", "POST", "/v1/messages",
        messages(system=[{"type": "text", "text": "Be terse."}], tools=[TOOL_A])),
    "messages_system_tools_stream": lambda: compare(
        "chat", "POST", "/v1/messages",
        messages(stream=True, system="Be terse.", tools=[TOOL_A], tool_choice={"type": "auto"})),
    "messages_count_tokens": lambda: compare("chat", "POST", "/v1/messages/count_tokens",
                                             messages()),
    "messages_no_v1": lambda: compare("chat", "POST", "/messages", messages()),
    "error_messages_bad_json": lambda: compare("chat", "POST", "/v1/messages", b"{not json",
                                               {"Content-Type": "application/json"}),
    "error_messages_no_messages": lambda: compare("chat", "POST", "/v1/messages",
                                                  {"model": "chat", "max_tokens": 4}),
    "error_messages_max_tokens_type": lambda: compare("chat", "POST", "/v1/messages",
                                                      messages(max_tokens="4")),
    "error_messages_over_context_stream": lambda: compare(
        "chat", "POST", "/v1/messages",
        messages(stream=True, messages=[{"role": "user", "content": BIG}])),
    "error_count_tokens_no_messages": lambda: compare("chat", "POST",
                                                      "/v1/messages/count_tokens", {}),
    "responses": lambda: compare("chat", "POST", "/v1/responses", responses()),
    "responses_turns": lambda: compare("chat", "POST", "/v1/responses",
                                       responses(instructions="Be terse.", input=TURNS)),
    "responses_stream": lambda: compare("chat", "POST", "/v1/responses", responses(stream=True)),
    "responses_tools_stream": lambda: compare("chat", "POST", "/v1/responses",
                                              responses(stream=True, tools=[TOOL_R])),
    "responses_no_v1": lambda: compare("chat", "POST", "/responses", responses()),
    "error_responses_no_input": lambda: compare("chat", "POST", "/v1/responses",
                                                {"model": "chat"}),
    "error_responses_untyped_item": lambda: compare(
        "chat", "POST", "/v1/responses",
        responses(input=[{"role": "assistant", "content": "hi"}])),
    "error_responses_over_context": lambda: compare("chat", "POST", "/v1/responses",
                                                    responses(input=BIG)),
    # two tokens: the simulator thinks for the first (half of them), the second ends the
    # thinking, so neither side has text (the tiny real model never ends its thinking)
    "messages_reasoning_stream": lambda: compare(
        "reasoning", "POST", "/v1/messages", messages(model="reasoning", stream=True,
                                                      max_tokens=2)),
    "responses_reasoning": lambda: compare(
        "reasoning", "POST", "/v1/responses", responses(model="reasoning", max_output_tokens=2)),
    "responses_reasoning_stream": lambda: compare(
        "reasoning", "POST", "/v1/responses", responses(model="reasoning", stream=True,
                                                        max_output_tokens=2)),
    "embeddings": lambda: compare("embed", "POST", "/v1/embeddings",
                                  {"model": "embed", "input": "hello world"}),
    "embeddings_batch": lambda: compare("embed", "POST", "/v1/embeddings",
                                        {"model": "embed", "input": ["hello", "world"]}),
    # llama-server embeds an input in one physical batch (-ub, 512 tokens by default)
    "error_embeddings_too_large": lambda: compare("embed", "POST", "/v1/embeddings",
                                                  {"model": "embed", "input": "hello " * 600}),
    "embed_health": lambda: compare("embed", "GET", "/health"),
    "error_chat_on_embeddings": lambda: compare("embed", "POST", "/v1/chat/completions", chat()),
}.items():
    globals()["test_" + name] = case


def main():
    if sys.argv[1:] != ["--list"]:
        missing = [n for n, v in (("LLAMA_SIM", SIM), ("LLMD_REAL_LLAMA_SERVER", REAL),
                                  ("LLMD_REAL_MODELS", MODELS)) if not v]
        if missing:
            print(f"skipped: {', '.join(missing)} not set", file=sys.stderr)
            sys.exit(SKIP)
        need = [SIM, REAL] + [os.path.join(MODELS, m + ".gguf")
                              for m in ("chat", "reasoning", "embed")]
        absent = [p for p in need if not os.path.exists(p)]
        if absent or os.geteuid() != 0:
            print(f"skipped: {'missing ' + ', '.join(absent) if absent else 'needs root'}",
                  file=sys.stderr)
            sys.exit(SKIP)
        atexit.register(stop_all)
    run()


if __name__ == "__main__":
    main()
