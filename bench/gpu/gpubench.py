#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmd on a GPU with a real llama-server: the measuring half of bench/gpu/run.sh (a benchmark:
it prints figures and asserts nothing about time). Standard library only. Four parts, one
table each:

  residency  `llmctl switch` between two models: make-before-break ("beside"), resident and
             evicting ("replace") switches, each with llmd's phases, llmctl's wall time, and
             the requests a client thread sent meanwhile (failures, the longest one);
  memory     each model's GPU memory: llmd's estimate from the GGUF header, what llmd measured
             through NVML, and nvidia-smi's per-process figure;
  prompt     a long agent-like conversation on the F16 model, switched away (evicted) and back,
             then llmd restarted: time to first token and timings.prompt_n of the next turn,
             with llmd's prompt cache as it is by default and with `prompt-cache = false`;
  stream     one stream at a time through llmd and straight to its child's unix socket, in
             turns: time to first token and tokens/s.

Usage: gpubench.py --bin DIR --llama-server PATH --f16 GGUF --q4 GGUF [options]
(run.sh gives the options; --help lists them). Results go to stdout and, as Markdown, --out.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--bin", required=True, help="directory holding llmd and llmctl")
ap.add_argument("--llama-server", required=True)
ap.add_argument("--f16", required=True, help="the F16 model")
ap.add_argument("--q4", required=True, help="the Q4_K_M model")
ap.add_argument("--parts", default="residency,memory,prompt,stream")
ap.add_argument("--switches", type=int, default=10, help="resident switches (default 10)")
ap.add_argument("--beside", type=int, default=4, help="make-before-break switches (default 4)")
ap.add_argument("--evicting", type=int, default=4, help="evicting switches (default 4)")
ap.add_argument("--ctx", type=int, default=8192, help="ctx-size of the residency models")
ap.add_argument("--prompt-tokens", type=int, default=30000)
ap.add_argument("--prompt-ctx", type=int, default=32768, help="ctx-size of the prompt part")
ap.add_argument("--stream-runs", type=int, default=8)
ap.add_argument("--stream-tokens", type=int, default=400)
ap.add_argument("--flags", default="n-gpu-layers = 999",
                help="llama-server flags for every model, as config lines separated by ';'")
ap.add_argument("--llmd", default="",
                help="more [llmd] keys for every llmd started, as lines separated by ';' "
                     "(such as metrics or activity settings)")
ap.add_argument("--work", default=None, help="state, runtime and logs (default: a temporary dir)")
ap.add_argument("--out", default=None, help="also write the tables here, as Markdown")
ap.add_argument("--deadline", type=float, default=None,
                help="a time (seconds since the epoch) by which to end: a part that would not "
                     "is not begun")
opts = ap.parse_args()

LLMD = os.path.join(opts.bin, "llmd")
LLMCTL = os.path.join(opts.bin, "llmctl")
WORK = opts.work or tempfile.mkdtemp(prefix="gpubench-")
os.makedirs(WORK, exist_ok=True)
GiB = 1 << 30
report = []


def say(*a):
    print(*a, flush=True)


def table(title, head, rows, notes=()):
    """Prints a Markdown table and keeps it for --out."""
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines += [""] + [f"{n}" for n in notes] + ([""] if notes else [])
    text = "\n".join(lines)
    say("\n" + text)
    report.append(text)
    if opts.out:  # after each table: a run cut short keeps what it measured
        with open(opts.out, "w") as f:
            f.write("\n\n".join(report) + "\n")


def f3(x):
    return "-" if x is None else f"{x:.3f}"


def ms(x):
    return "-" if x is None else f"{x * 1000:.1f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def span(xs, f=f3):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{f(statistics.median(xs))} ({f(min(xs))}–{f(max(xs))})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- HTTP, to llmd (a TCP port) or to a child (a unix socket path) ----

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def conn(target, timeout=600):
    if isinstance(target, str):
        return UnixHTTP(target, timeout)
    c = http.client.HTTPConnection("127.0.0.1", target, timeout=timeout)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def call(target, method, path, body=None, timeout=600):
    """(status, parsed JSON or text)."""
    c = conn(target, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode("utf-8", "replace")
    finally:
        c.close()


def chat_stream(target, messages, max_tokens, timeout=600, on_first=None):
    """One streaming chat request at temperature 0. Returns a dict: ok, status, ttft (s from
    sending to the first content delta), tokens (content deltas), gen_sec (first to last
    delta), total, text, timings (llama-server's, from the last event), finish, error."""
    out = {"ok": False, "status": None, "ttft": None, "tokens": 0, "gen_sec": None,
           "total": None, "text": "", "timings": None, "finish": None, "error": None}
    body = json.dumps({"messages": messages, "stream": True, "max_tokens": max_tokens,
                       "temperature": 0, "cache_prompt": True}).encode()
    t0 = time.perf_counter()
    try:
        c = conn(target, timeout)
        c.request("POST", "/v1/chat/completions", body=body,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out["status"] = r.status
        if r.status != 200:
            out["error"] = r.read().decode("utf-8", "replace")[:300]
            return out
        first = last = None
        parts = []
        while True:
            line = r.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            d = json.loads(payload)
            if "error" in d:
                out["error"] = json.dumps(d["error"])[:300]
                break
            if d.get("timings"):
                out["timings"] = d["timings"]
            for ch in d.get("choices") or []:
                delta = ch.get("delta") or {}
                piece = delta.get("content") or delta.get("reasoning_content")
                if piece:
                    now = time.perf_counter()
                    if first is None and on_first:
                        on_first()
                    first = first or now
                    last = now
                    out["tokens"] += 1
                    parts.append(piece)
                if ch.get("finish_reason"):
                    out["finish"] = ch["finish_reason"]
        c.close()
        out["text"] = "".join(parts)
        if first is not None:
            out["ttft"] = first - t0
            out["gen_sec"] = last - first
        out["ok"] = out["error"] is None and out["finish"] is not None
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    out["total"] = time.perf_counter() - t0
    return out


class Requests(threading.Thread):
    """A client sending short non-streaming chat requests to llmd, one after another, each on
    a new connection, recording (start, end, status, model that answered)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.done, self.log = port, threading.Event(), []

    def run(self):
        body = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 4,
                "temperature": 0}
        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                st, r = call(self.port, "POST", "/v1/chat/completions", body, timeout=120)
                model = r.get("model") if isinstance(r, dict) else None
            except (OSError, http.client.HTTPException) as e:
                st, model = f"{type(e).__name__}", None
            self.log.append((t0, time.monotonic(), st, model))
            if st != 200:
                time.sleep(0.01)  # not a busy loop against a server that refuses

    def stop(self):
        if not self.done.is_set():
            self.done.set()
            self.join()

    def during(self, t0, t1):
        """The requests that overlapped [t0, t1]: (count, failures, longest seconds)."""
        xs = [x for x in self.log if x[1] >= t0 and x[0] <= t1]
        fails = sum(1 for x in xs if x[2] != 200)
        return len(xs), fails, max((x[1] - x[0] for x in xs), default=None)

    def outside(self, spans):
        xs = [x[1] - x[0] for x in self.log
              if x[2] == 200 and not any(x[1] >= a and x[0] <= b for a, b in spans)]
        return med(xs)


# ---- llmd ----

class Llmd:
    def __init__(self, name, config):
        self.dir = os.path.join(WORK, name)
        self.runtime = os.path.join(self.dir, "run")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.runtime, exist_ok=True)
        os.makedirs(self.state, exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(self.dir, "llama-generate.conf")
        self.write(config)
        self.log_path = os.path.join(self.dir, "llmd.log")
        self.proc = None

    def write(self, config):
        more = "".join(f"\n{x.strip()}" for x in opts.llmd.split(";") if x.strip())
        config = config.replace("[llmd]", f"[llmd]\nlisten = 127.0.0.1:{self.port}\n"
                                f"llama-server = {opts.llama_server}{more}", 1)
        with open(self.config, "w") as f:
            f.write(config)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [LLMD, "--config", self.config, "--runtime-dir", self.runtime, "--state-dir",
             self.state, "--log-level", "info"], stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def ctl(self, *args, check=True):
        """(llmctl's wall time, its JSON answer, exit status)."""
        t0 = time.perf_counter()
        p = subprocess.run([LLMCTL, "--socket", os.path.join(self.runtime, "control.sock"),
                            "--json", *args], capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        if check and p.returncode != 0:
            raise RuntimeError(f"llmctl {' '.join(args)}: exit {p.returncode}: "
                               f"{p.stdout.strip()} {p.stderr.strip()}"[:2000])
        try:
            return wall, json.loads(p.stdout), p.returncode
        except ValueError:
            return wall, p.stdout, p.returncode

    def models(self):
        return {m["name"]: m for m in self.ctl("list")[1]["models"]}

    def wait(self, pred, what, timeout=600):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llmd exited ({self.proc.returncode}) waiting for {what}")
            try:
                if pred():
                    return
            except (RuntimeError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_ready(self, name, timeout=600):
        self.wait(lambda: self.models()[name].get("serving") == "ready", f"{name} ready",
                  timeout)

    def wait_gone(self, name, timeout=600):
        self.wait(lambda: not self.models()[name].get("pid"), f"{name} stopped", timeout)

    def active(self):
        return self.ctl("status")[1]["active"]["name"]

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


def flags():
    return "\n".join(x.strip() for x in opts.flags.split(";") if x.strip())


def residency_config(max_resident):
    return f"""[llmd]
default = q4
max-resident = {max_resident}
[*]
{flags()}
ctx-size = {opts.ctx}
[q4]
model = {opts.q4}
[f16]
model = {opts.f16}
"""


def nvidia_smi_by_pid():
    """{pid: bytes} from nvidia-smi's per-process list; {} without nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return {}
    p = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                        "--format=csv,noheader,nounits"], capture_output=True, text=True)
    out = {}
    for line in p.stdout.splitlines():
        try:
            pid, mib = (x.strip() for x in line.split(","))
            out[int(pid)] = int(mib) * (1 << 20)
        except ValueError:
            pass
    return out


def switch_row(d, reqs, target, stream=None):
    """One switch with the request thread running: the row of the residency table."""
    frm = d.active()
    t0 = time.monotonic()
    wall, r, _ = d.ctl("switch", target)
    t1 = time.monotonic()
    # The requests that overlapped it are counted once the client has stopped: one held by the
    # switch ends after it.
    row = {"from": frm, "to": target, "kind": r.get("kind"), "wall": wall,
           "total": r.get("total_sec"), "stop": r.get("stop_sec"), "load": r.get("load_sec"),
           "llmd": r.get("llmd_sec"), "evicted": ",".join(r.get("evicted") or []) or "-",
           "span": (t0, t1), "stream": None}
    if stream:
        stream.join()
        s = stream.result
        row["stream"] = (f"{s['tokens']}/{stream.max_tokens} tokens, "
                         f"{'complete' if s['ok'] else 'FAILED: ' + str(s['error'])}, "
                         f"ended {s['end'] - t1:+.2f} s after the switch")
    return row


class OldStream(threading.Thread):
    """A long stream on the active model, started before a switch."""

    def __init__(self, port, max_tokens):
        super().__init__(daemon=True)
        self.port, self.max_tokens, self.first = port, max_tokens, threading.Event()

    def run(self):
        msgs = [{"role": "user", "content": "Tell a long story."}]
        self.result = chat_stream(self.port, msgs, self.max_tokens, on_first=self.first.set)
        self.result["end"] = time.monotonic()
        self.first.set()


def start_old_stream(d, max_tokens):
    s = OldStream(d.port, max_tokens)
    s.start()
    # The switch starts once the old model streams its first token.
    if not s.first.wait(120):
        raise RuntimeError("no first token from the stream on the old model")
    return s


def part_residency():
    say("\n== residency ==")
    d = Llmd("residency", residency_config(2))
    rows, mem, reqs = [], None, None
    d.start()
    try:
        d.wait_ready("q4")
        reqs = Requests(d.port)
        reqs.start()
        # make before break: the target is loaded beside the active model, which serves
        for i in range(opts.beside):
            target = "f16" if d.active() == "q4" else "q4"
            if d.models()[target].get("resident"):
                d.ctl("unload", target)
                d.wait_gone(target)
            s = start_old_stream(d, 400)
            rows.append(switch_row(d, reqs, target, s))
        # resident: both loaded, each switch a change of route
        for name in ("q4", "f16"):
            if not d.models()[name].get("resident"):
                d.ctl("load", name)
            d.wait_ready(name)
        mem = memory_snapshot(d)
        for i in range(opts.switches):
            rows.append(switch_row(d, reqs, "f16" if d.active() == "q4" else "q4"))
        # evicting: one model at a time; a reload to max-resident = 1 trims the other
        d.write(residency_config(1))
        d.ctl("reload")
        other = "f16" if d.active() == "q4" else "q4"
        d.wait_gone(other)
        for i in range(opts.evicting):
            rows.append(switch_row(d, reqs, "f16" if d.active() == "q4" else "q4"))
        reqs.stop()
        for r in rows:
            r["n"], r["fails"], r["longest"] = reqs.during(*r["span"])
        normal = reqs.outside([r["span"] for r in rows])
        with open(os.path.join(d.dir, "requests.jsonl"), "w") as f:
            for x in reqs.log:
                f.write(json.dumps({"start": x[0], "end": x[1], "status": x[2], "model": x[3]})
                        + "\n")
            for r in rows:
                f.write(json.dumps({"switch": r["to"], "kind": r["kind"], "start": r["span"][0],
                                    "end": r["span"][1]}) + "\n")
        listing = d.models()
    finally:
        if reqs:
            reqs.stop()
        d.stop()
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    table("Switches: every switch", ["#", "from → to", "kind", "llmctl wall s", "total s",
                                     "stop s", "load s", "llmd s", "evicted", "requests during",
                                     "failed", "longest request s", "stream on the old model"],
          [(i + 1, f"{r['from']} → {r['to']}", r["kind"], f3(r["wall"]), f3(r["total"]),
            f3(r["stop"]), f3(r["load"]), f3(r["llmd"]), r["evicted"], r["n"], r["fails"],
            f3(r["longest"]), r["stream"] or "-") for i, r in enumerate(rows)],
          [f"A client sent short requests (max_tokens 4) to llmd one after another all along; "
           f"the median one outside switches took {f3(normal)} s. \"longest request\" is the "
           f"longest of those that overlapped the switch (a held request shows here)."])
    summary = []
    for kind, rs in by_kind.items():
        for to in ("q4", "f16"):
            xs = [r for r in rs if r["to"] == to]
            if not xs:
                continue
            summary.append((kind, f"→ {to}", len(xs), span([r["wall"] for r in xs], ms),
                            span([r["total"] for r in xs], ms), span([r["stop"] for r in xs], ms),
                            span([r["load"] for r in xs], ms), span([r["llmd"] for r in xs], ms),
                            sum(r["n"] for r in xs), sum(r["fails"] for r in xs),
                            ms(max((r["longest"] or 0) for r in xs))))
    table("Switches: median (min–max), ms", ["kind", "to", "n", "llmctl wall", "total", "stop",
                                             "load", "llmd", "requests during", "failed",
                                             "longest request"], summary)
    return listing, mem


def memory_snapshot(d):
    """While both models are loaded: llmd's view and nvidia-smi's, by model."""
    smi = nvidia_smi_by_pid()
    st = d.ctl("status")[1]
    out = {"gpu": st.get("gpu"), "models": {}}
    for name, m in d.models().items():
        out["models"][name] = {"pid": m.get("pid"), "smi": smi.get(m.get("pid")),
                               "gpu_memory": m.get("gpu_memory")}
    return out


def part_memory(listing, snap):
    say("\n== memory ==")
    rows = []
    for name, m in listing.items():
        g = m.get("gpu_memory") or {}
        est, meas = g.get("estimated"), g.get("measured")
        smi = (snap or {}).get("models", {}).get(name, {}).get("smi")
        ratio = f"{est / meas:.3f}" if est and meas else "-"
        under = "-" if not (est and meas) else ("UNDER" if est < meas else "no")
        rows.append((name, f"{os.path.getsize(m['path']) / GiB:.2f}",
                     f"{est / GiB:.2f}" if est else "-", f"{meas / GiB:.2f}" if meas else "-",
                     f"{smi / GiB:.2f}" if smi else "-", ratio, under, g.get("source") or "-"))
    gpu = (snap or {}).get("gpu") or {}
    note = [f"GPU source: {gpu.get('source')}"
            + (f" ({gpu.get('why')})" if gpu.get("why") else "")
            + (f", total {gpu['total'] / GiB:.1f} GiB, budget {gpu['budget'] / GiB:.1f} GiB"
               if gpu.get("total") and gpu.get("budget") else "")
            + f"; ctx-size {opts.ctx}, flags: {opts.flags}. nvidia-smi read while both were loaded."]
    table("GPU memory per model, GiB", ["model", "file", "llmd estimate", "llmd measured (NVML)",
                                        "nvidia-smi", "estimate / measured", "estimate under?",
                                        "source llmd uses"], rows, note)


# ---- prompt cache ----

def agent_messages(n_blocks):
    """An agent-like conversation: a system prompt with tool definitions, then turns that read
    files (tool results holding source code) and answer. Deterministic."""
    tools = []
    for i in range(8):
        tools.append({"type": "function", "function": {
            "name": f"tool_{i}_{['read', 'write', 'grep', 'run', 'list', 'edit'][i % 6]}",
            "description": f"Tool number {i}: does one thing to the workspace and returns text. "
                           "Use it only when the user's task needs it.",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string", "description": "a path in the workspace"},
                "pattern": {"type": "string", "description": "what to look for"},
                "lines": {"type": "integer", "description": "how many lines"}},
                "required": ["path"]}}})
    system = ("You are a coding agent working in a C repository. Follow the style guide, keep "
              "changes small, run the tests. Tools: " + json.dumps(tools))
    msgs = [{"role": "system", "content": system},
            {"role": "user", "content": "Find why the switch is slow and fix it."}]
    for b in range(n_blocks):
        code = "\n".join(
            f"static int step_{b}_{k}(struct state *s, int v) {{\n"
            f"        if (v < {k * 7 % 97}) return s->count[{k % 16}] += v;\n"
            f"        return step_{b}_{(k + 1) % 10}(s, v - {k % 5 + 1}); /* path {b}.{k} */\n}}"
            for k in range(10))
        msgs.append({"role": "assistant", "content": f"Reading src/part{b}.c."})
        msgs.append({"role": "user", "content": f"Tool result (src/part{b}.c):\n{code}"})
    return msgs


def count_tokens(port, msgs):
    st, r = call(port, "POST", "/apply-template", {"messages": msgs})
    if st != 200:
        raise RuntimeError(f"/apply-template: {st} {r}")
    st, t = call(port, "POST", "/tokenize", {"content": r["prompt"]})
    if st != 200:
        raise RuntimeError(f"/tokenize: {st} {t}")
    return len(t["tokens"])


def prompt_config(cache_off):
    return f"""[llmd]
default = f16
max-resident = 1
[*]
{flags()}
[f16]
model = {opts.f16}
ctx-size = {opts.prompt_ctx}
{"prompt-cache = false" if cache_off else ""}
[q4]
model = {opts.q4}
ctx-size = {opts.ctx}
"""


def llmd_knows_prompt_cache():
    """Whether this llmd has the prompt-cache key: it then refuses a value that is no boolean
    (without it, the key is a llama-server flag, passed on as written)."""
    path = os.path.join(WORK, "probe.conf")
    with open(path, "w") as f:
        f.write(f"[llmd]\nllama-server = {opts.llama_server}\n[f16]\nmodel = {opts.f16}\n"
                "prompt-cache = maybe\n")
    p = subprocess.run([LLMD, "--check-config", path], capture_output=True, text=True)
    return p.returncode != 0 and "prompt-cache" in p.stderr


def du(path):
    total, files = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


def size(n):
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def cache_fields(r):
    """What an answer (a switch, a model of `llmctl list`) says about prompt caches: llmd's
    prompt_cache object in words where it has the shape issue 22 gave it ({saved, restored} or
    {last_saved, last_restored}, each {count, tokens, bytes, sec}), else every field whose name
    is about caches, as JSON; "-" when there is none."""
    if not isinstance(r, dict):
        return "-"
    pc = r.get("prompt_cache")

    def words(x):
        return (f"{x['count']} slot(s), {x['tokens']} tokens, {size(x['bytes'])} in "
                f"{x['sec']:.3f} s")

    if "prompt_cache" in r and pc is None:
        return "none"
    try:
        keys = [k for k in ("saved", "restored", "last_saved", "last_restored") if k in pc]
        if keys:
            return "; ".join(f"{k.replace('last_', '')} {words(pc[k])}" for k in keys
                             if pc[k] and pc[k]["count"]) or "nothing saved or restored"
    except (AttributeError, KeyError, TypeError, ValueError):
        pass
    xs = {k: v for k, v in r.items() if any(w in k for w in ("cache", "save", "restor"))}
    return json.dumps(xs, separators=(",", ":")) if xs else "-"


def prompt_arm(cache_off, n_blocks):
    name = "prompt-off" if cache_off else "prompt-on"
    d = Llmd(name, prompt_config(cache_off))
    d.start()
    rows, extra = [], []
    msgs = agent_messages(n_blocks)
    cache_dir = os.path.join(d.state, "prompt-cache")
    try:
        d.wait_ready("f16")

        def turn(label, question):
            msgs.append({"role": "user", "content": question})
            r = chat_stream(d.port, msgs, 32)
            if not r["ok"]:
                raise RuntimeError(f"{name} {label}: {r['status']} {r['error']}\n{d.tail()}")
            msgs.append({"role": "assistant", "content": r["text"]})
            t = r["timings"] or {}
            rows.append((label, ms(r["ttft"]), t.get("prompt_n", "-"), t.get("cache_n", "-"),
                         f"{t['prompt_ms']:.0f}" if "prompt_ms" in t else "-"))

        turn("first turn (cold)", "What does step_0_0 do?")
        turn("next turn, model still loaded", "And step_1_1?")
        _, away, _ = d.ctl("switch", "q4")
        _, back, _ = d.ctl("switch", "f16")
        extra.append(f"switch away (evicts f16): {f3(away.get('total_sec'))} s (stop "
                     f"{f3(away.get('stop_sec'))}), kind {away.get('kind')}; prompt cache: "
                     f"{cache_fields(away)}")
        extra.append(f"switch back: {f3(back.get('total_sec'))} s (load "
                     f"{f3(back.get('load_sec'))}); prompt cache: {cache_fields(back)}")
        n, files = du(cache_dir)
        extra.append(f"STATE_DIR/prompt-cache after the switch back: {files} files, {size(n)}")
        turn("next turn after switch away and back", "And step_2_2?")
        t0 = time.monotonic()
        d.stop()
        t1 = time.monotonic()
        d.start()
        d.wait_ready("f16")
        extra.append(f"restart of llmd: SIGTERM to exit {t1 - t0:.2f} s, start to f16 ready "
                     f"{time.monotonic() - t1:.2f} s; `llmctl list` then: "
                     f"{cache_fields(d.models()['f16'])}")
        turn("next turn after a restart of llmd", "And step_3_3?")
        n, files = du(cache_dir)
        extra.append(f"STATE_DIR/prompt-cache at the end: {files} files, {size(n)}")
    finally:
        d.stop()
    return rows, extra


def part_prompt():
    say("\n== prompt cache ==")
    knows = llmd_knows_prompt_cache()
    # Size the conversation: a probe llmd with the same model, counting through /tokenize.
    d = Llmd("prompt-size", prompt_config(False))
    d.start()
    try:
        d.wait_ready("f16")
        per = count_tokens(d.port, agent_messages(2)) - count_tokens(d.port, agent_messages(1))
        base = count_tokens(d.port, agent_messages(0))
        n_blocks = max(1, round((opts.prompt_tokens - base) / per))
        total = count_tokens(d.port, agent_messages(n_blocks))
    finally:
        d.stop()
    say(f"conversation: {n_blocks} file reads, {total} tokens")
    arms = [("llmd's prompt cache (default)", False)]
    if knows:
        arms.append(("prompt-cache = false", True))
    for title, off in arms:
        rows, extra = prompt_arm(off, n_blocks)
        note = [f"{total}-token agent-like prompt (system prompt with 8 tools, {n_blocks} "
                f"file reads) on the F16 model, ctx-size {opts.prompt_ctx}, max-resident = 1; "
                "each turn adds a question and keeps the answer (32 tokens, temperature 0)."]
        if not knows:
            note.append("This llmd has no prompt-cache key (it passes `prompt-cache` to "
                        "llama-server as a flag): the run above is llmd as it is, so the "
                        "`prompt-cache = false` run was not made.")
        table(f"Prompt cache: {title}", ["request", "time to first token ms",
                                         "timings.prompt_n", "timings.cache_n", "prompt ms"],
              rows, note + ["- " + e for e in extra])


# ---- streaming ----

def part_stream():
    say("\n== streaming ==")
    d = Llmd("stream", f"""[llmd]
default = q4
[*]
{flags()}
ctx-size = {opts.ctx}
[q4]
model = {opts.q4}
""")
    d.start()
    res = {"llmd": [], "direct": []}
    try:
        d.wait_ready("q4")
        targets = {"llmd": d.port, "direct": os.path.join(d.runtime, "q4.sock")}
        msgs = [{"role": "user", "content": "Write a story."}]
        for t in targets.values():  # warm-up
            chat_stream(t, msgs, 16)
        for i in range(opts.stream_runs):
            for name in (("llmd", "direct") if i % 2 == 0 else ("direct", "llmd")):
                r = chat_stream(targets[name], msgs, opts.stream_tokens)
                if not r["ok"]:
                    raise RuntimeError(f"stream to {name}: {r['status']} {r['error']}")
                res[name].append(r)
        m_st, _ = call(d.port, "GET", "/llmd/metrics")
        a_st, _ = call(d.port, "GET", "/llmd/activity")
    finally:
        d.stop()

    def rate(r):
        return (r["tokens"] - 1) / r["gen_sec"] if r["gen_sec"] else None

    rows = []
    for name in ("direct", "llmd"):
        rs = res[name]
        rows.append((name, len(rs), span([r["ttft"] for r in rs], ms),
                     span([rate(r) for r in rs], lambda x: f"{x:.1f}"),
                     f"{med([r['timings'].get('predicted_per_second') for r in rs if r['timings']]) or 0:.1f}"))
    rd, rl = med([rate(r) for r in res["direct"]]), med([rate(r) for r in res["llmd"]])
    td, tl = med([r["ttft"] for r in res["direct"]]), med([r["ttft"] for r in res["llmd"]])
    table("Streaming: one stream at a time, in turns", [
        "target", "runs", "time to first token ms, median (min–max)",
        "tokens/s seen by the client", "llama-server's predicted_per_second"], rows, [
        f"Q4_K_M model, {opts.stream_tokens} tokens a stream, a short prompt. llmd / direct: "
        f"tokens/s {rl / rd:.4f}, first token {(tl - td) * 1000:+.2f} ms. "
        f"GET /llmd/metrics answered {m_st}, GET /llmd/activity {a_st} (404: this llmd has "
        "no such endpoint)."])


def main():
    parts = opts.parts.split(",")
    version = os.path.join(opts.bin, "..", "VERSION")
    say(f"llmd {open(version).read().strip() if os.path.exists(version) else '?'}; work in {WORK}")
    failed, skipped = [], []
    listing = snap = None
    # What each part takes on an H200, roughly, with a margin: a part that would not end before
    # --deadline is not begun, so that the run ends with whole tables and its logs.
    need = {"residency": 60, "memory": 0, "prompt": 100, "stream": 45}
    for p, fn in (("residency", part_residency), ("memory", None), ("prompt", part_prompt),
                  ("stream", part_stream)):
        if p not in parts:
            continue
        left = opts.deadline - time.time() if opts.deadline else None
        if left is not None and need[p] and left < need[p]:
            say(f"\n!! part {p} not run: {left:.0f} s left before --deadline, it needs ~{need[p]} s")
            skipped.append(p)
            continue
        try:
            if p == "residency":
                listing, snap = fn()
            elif p == "memory":
                if listing:
                    part_memory(listing, snap)
            else:
                fn()
        except Exception as e:  # one part failing does not lose the others' tables
            say(f"\n!! part {p} failed: {type(e).__name__}: {e}")
            failed.append(p)
    if failed or skipped:
        say(f"\nfailed: {', '.join(failed) or 'none'}; not run: {', '.join(skipped) or 'none'}")
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
