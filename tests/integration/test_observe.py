#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What llmd shows of what it does: GET /llmd/metrics (Prometheus text), the activity log
(GET /llmd/activity, the Activity method, llmctl activity) — checked against a scripted
sequence of requests and switches."""

import json
import os
import pty
import re
import tempfile
import shutil
import subprocess
import threading
import time
from http.client import HTTPConnection

from llmdtest import (Stream, check, fixture, free_port, http, llmctl, llmctl_json, run,
                      sim_only, wait_until)

MODELS = ("qwen", "gemma", "llama", "nomic")
PORT = free_port()


def conf(top="", qwen="", gemma="", star=""):
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

[llama]
model = @MODELS@/llama.gguf

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def ready(d, model="qwen"):
    d.wait_status(lambda s: s.startswith(f"{model} ready · embed nomic ready"))


def activity(since=0, headers=None, query=""):
    r = http(PORT, "GET", f"/llmd/activity?since={since}{query}", headers=headers)
    check(r.status == 200, f"activity: {r}")
    return r.json()


@fixture(conf("routing = switch"), models=MODELS)
def test_activity_records_requests(d):
    ready(d)
    check(activity()["records"] == [], "activity before any request")
    r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model="qwen"))
    check(r.status == 200, f"chat: {r}")
    usage = r.json()["usage"]
    s = Stream(PORT, "/v1/chat/completions",
               dict(CHAT, model="qwen", stream=True, stream_options={"include_usage": True}))
    events = s.events()
    s.close()
    check(events and events[-1] == "[DONE]", f"stream: {events}")
    r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model="nope"))
    check(r.status == 404, f"unknown model: {r}")
    a = wait_until(lambda: (lambda a: len(a["records"]) >= 3 and a)(activity()),
                   "three activity records")
    recs = a["records"]
    check(a["next"] == recs[-1]["seq"] + 1, f"next: {a}")
    check([x["seq"] for x in recs] == sorted(x["seq"] for x in recs), "oldest first")
    keys = {"seq", "time", "client", "key", "model", "endpoint", "status", "prompt_tokens",
            "cached_tokens", "completion_tokens", "held_s", "ttft_s", "tokens_per_s",
            "duration_s", "error"}
    for x in recs:
        check(set(x) == keys, f"fields: {sorted(x)}")
    first = recs[0]
    check(first["model"] == "qwen" and first["endpoint"] == "/v1/chat/completions" and
          first["status"] == 200 and first["client"] == "127.0.0.1" and first["key"] is None,
          f"first record: {first}")
    check(first["prompt_tokens"] == usage["prompt_tokens"] and
          first["completion_tokens"] == usage["completion_tokens"], f"tokens {first} vs {usage}")
    check(first["error"] is None and first["duration_s"] >= first["ttft_s"] >= 0,
          f"times: {first}")
    check(recs[1]["completion_tokens"] == 4 and recs[1]["tokens_per_s"] > 0,
          f"stream record: {recs[1]}")
    check(recs[2]["status"] >= 400 and recs[2]["error"] and recs[2]["model"] == "nope",
          f"refused record: {recs[2]}")
    # since: only what is new.
    later = activity(since=a["next"])
    check(later["records"] == [] and later["next"] == a["next"], f"since next: {later}")
    only = activity(since=recs[1]["seq"])
    check([x["seq"] for x in only["records"]] == [recs[1]["seq"], recs[2]["seq"]],
          f"since: {only}")
    # Its own requests are not recorded.
    check(activity()["records"] == recs, "activity requests recorded themselves")


@fixture(conf(), models=MODELS)
def test_activity_tokens_of_each_api(d):
    """Responses and Messages streams carry their usage inside "response" and "message": the
    activity (and so the token metrics) reads it there too."""
    ready(d)
    s = Stream(PORT, "/v1/responses", {"input": "hi", "max_output_tokens": 4, "stream": True})
    events = [json.loads(e) for e in s.events() if e.startswith("{")]
    s.close()
    done = [e for e in events if e.get("type") == "response.completed"]
    check(done, f"no response.completed: {events[-2:]}")
    usage = done[-1]["response"]["usage"]
    s = Stream(PORT, "/v1/messages", {"model": "qwen", "max_tokens": 4, "stream": True,
                                      "messages": [{"role": "user", "content": "hi"}]})
    events = [json.loads(e) for e in s.events() if e.startswith("{")]
    s.close()
    start = [e for e in events if e.get("type") == "message_start"]
    delta = [e for e in events if e.get("type") == "message_delta"]
    check(start and delta, f"message events: {events}")
    recs = wait_until(lambda: (lambda r: len(r) >= 2 and r)(activity()["records"]),
                      "two activity records")
    check(recs[0]["endpoint"] == "/v1/responses" and
          recs[0]["prompt_tokens"] == usage["input_tokens"] and
          recs[0]["completion_tokens"] == usage["output_tokens"], f"{recs[0]} vs {usage}")
    check(recs[1]["endpoint"] == "/v1/messages" and
          recs[1]["prompt_tokens"] == start[-1]["message"]["usage"]["input_tokens"] and
          recs[1]["completion_tokens"] == delta[-1]["usage"]["output_tokens"],
          f"{recs[1]} vs {start[-1]['message']['usage']}, {delta[-1]['usage']}")


# Debian's parser, python3-prometheus-client (tools/deps.sh), in Debian's python: the test's own
# python may be another one.
PARSER = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, s.value, fam.type])
print(json.dumps(out))
"""


class Scrape:
    """One scrape of /llmd/metrics, as Prometheus' own client library reads it."""

    def __init__(self, headers=None):
        r = http(PORT, "GET", "/llmd/metrics", headers=headers)
        check(r.status == 200, f"metrics: {r}")
        ctype = r.headers.get("Content-Type") or r.headers.get("content-type")
        check(ctype == "text/plain; version=0.0.4; charset=utf-8", f"Content-Type {ctype}")
        self.text = r.body.decode()
        p = subprocess.run(["/usr/bin/python3", "-c", PARSER], input=self.text,
                           capture_output=True, text=True)
        check(p.returncode == 0, f"prometheus_client could not parse the scrape "
              f"(is python3-prometheus-client installed? tools/deps.sh): {p.stderr}\n{self.text}")
        self.samples = json.loads(p.stdout)
        self.types = {s[0]: s[3] for s in self.samples}

    def get(self, name, **labels):
        """The value of the one sample with these labels (others may be there too); 0 when
        there is no such sample."""
        found = [s[2] for s in self.samples
                 if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]
        check(len(found) <= 1, f"{name} {labels}: {len(found)} samples")
        return found[0] if found else 0

    def total(self, name, **labels):
        return sum(s[2] for s in self.samples
                   if s[0] == name and all(s[1].get(k) == v for k, v in labels.items()))


def promtool_check(text, children=False):
    """promtool's lint finds nothing in llmd's own metrics. With children, the llamacpp:*
    samples passed on keep llama.cpp's names and types, which the lint finds fault with (the
    ':', a counter without _total): only with those."""
    promtool = shutil.which("promtool")
    check(promtool, "no promtool (Debian's prometheus package; tools/deps.sh installs it)")
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    problems = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    if children:
        problems = [line for line in problems if not re.match(r"llamacpp:[a-z_]+ ", line.strip())]
        check(p.returncode in (0, 3), f"promtool check metrics: {p.returncode}")
    else:
        check(p.returncode == 0, f"promtool check metrics: {p.returncode} {problems}")
    check(not problems, f"promtool check metrics: {problems}")


def scrape_until(pred, what, headers=None):
    return wait_until(lambda: (lambda s: pred(s) and s)(Scrape(headers)), what)


def chat(model, **kw):
    r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model=model, **kw))
    check(r.status == 200, f"chat {model}: {r}")
    return r.json()["usage"]


@fixture(conf("routing = switch\nmax-resident = 2", star="restart-sec = 0.1"), models=MODELS)
def test_metrics_after_a_sequence(d):
    ready(d)
    tokens = {"prompt": 0, "completion": 0}

    def count(u):
        tokens["prompt"] += u["prompt_tokens"]
        tokens["completion"] += u["completion_tokens"]

    # 3 chat answers, 2 streamed ones (with their usage), 2 text completions, 2 embeddings.
    for _ in range(3):
        count(chat("qwen"))
    for _ in range(2):
        s = Stream(PORT, "/v1/chat/completions",
                   dict(CHAT, model="qwen", stream=True, stream_options={"include_usage": True}))
        events = s.events()
        s.close()
        check(events[-1] == "[DONE]", f"stream {events}")
        count(json.loads(events[-2])["usage"])
    for _ in range(2):
        r = http(PORT, "POST", "/v1/completions", {"model": "qwen", "prompt": "hi",
                                                   "max_tokens": 3})
        check(r.status == 200, f"completion {r}")
        count(r.json()["usage"])
    for _ in range(2):
        r = http(PORT, "POST", "/v1/embeddings", {"model": "nomic", "input": "hi"})
        check(r.status == 200, f"embeddings {r}")
    # gemma loaded beside, then a switch to it: resident.
    llmctl(d, "load", "gemma", check_rc=0)
    llmctl(d, "switch", "gemma", check_rc=0)
    # gemma crashes and is started again.
    os.kill(d.pid_of("gemma"), 9)
    scrape_until(lambda s: s.get("llmd_model_restarts_total", model="gemma",
                                 reason="crashed") == 1 and
                 s.get("llmd_model_state", model="gemma", state="ready") == 1,
                 "gemma restarted and ready")
    # A request for llama: held while llama loads beside gemma, and qwen makes room.
    u = chat("llama")
    # Refused by llmd: an unknown model, a body that is no JSON.
    r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model="nope"))
    check(r.status == 404, f"unknown model {r}")
    r = http(PORT, "POST", "/v1/chat/completions", b"{not json")
    check(r.status == 400, f"bad JSON {r}")

    s = Scrape()
    promtool_check(s.text)
    chat_path, cmpl, emb = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
    per_series = {}
    for model, path, code, n in [("qwen", chat_path, "200", 5), ("qwen", cmpl, "200", 2),
                                 ("nomic", emb, "200", 2), ("llama", chat_path, "200", 1),
                                 ("", chat_path, "404", 1), ("", chat_path, "400", 1)]:
        got = s.get("llmd_requests_total", model=model, endpoint=path, code=code)
        check(got == n, f"requests_total {model} {path} {code}: {got}, expected {n}")
        per_series[(model, path)] = per_series.get((model, path), 0) + n
    for (model, path), n in per_series.items():
        check(s.total("llmd_requests_total", model=model, endpoint=path) == n,
              f"requests_total {model} {path}: other codes")
        check(s.get("llmd_request_duration_seconds_count", model=model, endpoint=path) == n,
              f"duration count {model} {path}")
        # Those llmd refused never reached a child: no first byte.
        check(s.get("llmd_time_to_first_byte_seconds_count", model=model, endpoint=path) ==
              (n if model else 0), f"ttfb count {model} {path}")
    check(s.get("llmd_prompt_tokens_total", model="qwen") == tokens["prompt"],
          f"prompt tokens {s.get('llmd_prompt_tokens_total', model='qwen')} vs {tokens}")
    check(s.get("llmd_completion_tokens_total", model="qwen") == tokens["completion"],
          f"completion tokens {s.get('llmd_completion_tokens_total', model='qwen')} vs {tokens}")
    check(s.get("llmd_completion_tokens_total", model="llama") == u["completion_tokens"],
          "llama's completion tokens")
    check(s.get("llmd_generation_tokens_per_second_count", model="qwen") == 7,
          "tokens/s observed once per generation")
    check(s.get("llmd_hold_wait_seconds_count", model="llama") == 1, "one held request")
    check(s.get("llmd_hold_wait_seconds_count", model="qwen") == 0, "qwen's were not held")
    check(s.get("llmd_refused_total", reason="model_not_found") == 1, "refused: unknown model")
    check(s.get("llmd_refused_total", reason="invalid_request_error") == 1, "refused: bad JSON")
    check(s.get("llmd_switches_total", kind="resident") == 1, "one resident switch")
    check(s.get("llmd_switches_total", kind="beside") == 1, "one switch beside")
    check(s.total("llmd_switches_total") == 2, "no other switch")
    check(s.get("llmd_switch_duration_seconds_count", kind="beside") == 1, "switch histogram")
    check(s.get("llmd_evictions_total", reason="evicted") == 1, "qwen evicted to make room")
    check(s.total("llmd_evictions_total") == 1, "no other eviction")
    for model, loads in [("qwen", 1), ("gemma", 2), ("llama", 1), ("nomic", 1)]:
        got = s.get("llmd_model_load_seconds_count", model=model)
        check(got == loads, f"loads of {model}: {got}, expected {loads}")
    check(s.total("llmd_model_restarts_total") == 1, "one restart in all")
    for model, state in [("qwen", "absent"), ("gemma", "ready"), ("llama", "ready"),
                         ("nomic", "ready")]:
        check(s.get("llmd_model_state", model=model, state=state) == 1, f"{model} {state}")
        check(s.total("llmd_model_state", model=model) == 1, f"{model}: one state")
    check(s.total("llmd_requests_in_flight") == 0 and s.total("llmd_held_requests") == 0,
          "nothing in flight")
    # What says nothing of a rate adds no observation: llmd's own refusals above, and an
    # answer in one piece without timings (Anthropic Messages).
    check(s.get("llmd_generation_tokens_per_second_count", model="") == 0, "refusals' rate")
    r = http(PORT, "POST", "/v1/messages", {"model": "llama", "max_tokens": 3,
                                           "messages": [{"role": "user", "content": "hi"}]})
    check(r.status == 200, f"messages {r}")
    s = Scrape()
    check(s.get("llmd_generation_tokens_per_second_count", model="llama") == 1,
          "a rate of a Messages answer in one piece")
    rec = activity()["records"][-1]
    check(rec["endpoint"] == "/v1/messages" and rec["tokens_per_s"] is None, rec)
    check(s.get("llmd_build_info") == 1, "build_info")
    # Every metric the shipped Grafana board queries is one llmd exports.
    with open(os.path.join(DOCS, "grafana-llmd.json")) as f:
        board = json.load(f)
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\bllmd_[a-z_]+", e)}
    missing = sorted(n for n in names if n not in s.types and n + "_total" not in s.types and
                     n not in ("llmd_gpu_memory_bytes",))
    check(names and not missing, f"the Grafana board asks for {missing}")
    check(s.types.get("llmd_request_duration_seconds_count") == "histogram" and
          s.types.get("llmd_requests_total") == "counter" and
          s.types.get("llmd_model_state") == "gauge", f"types {s.types}")


@fixture(conf("routing = switch\nmax-resident = 1"), models=MODELS)
def test_metrics_replace_switch(d):
    ready(d)
    llmctl(d, "switch", "gemma", check_rc=0)
    s = Scrape()
    check(s.get("llmd_switches_total", kind="replace") == 1, "a replace switch")
    check(s.get("llmd_evictions_total", reason="evicted") == 1, "qwen made room")
    check(s.get("llmd_model_state", model="qwen", state="absent") == 1, "qwen is down")


DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")


def test_prometheus_config_checks():
    """docs/prometheus.yml as promtool reads it (with a key file where it points)."""
    promtool = shutil.which("promtool")
    check(promtool, "no promtool (Debian's prometheus package; tools/deps.sh installs it)")
    with open(os.path.join(DOCS, "prometheus.yml")) as f:
        text = f.read()
    check("credentials_file: /etc/prometheus/llmd.key" in text and
          "metrics_path: /llmd/metrics" in text, "the scrape config changed shape")
    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "llmd.key")
        with open(key, "w") as f:
            f.write("sk-x\n")
        conf_path = os.path.join(tmp, "prometheus.yml")
        with open(conf_path, "w") as f:
            f.write(text.replace("/etc/prometheus/llmd.key", key))
        p = subprocess.run([promtool, "check", "config", conf_path], capture_output=True,
                           text=True)
        check(p.returncode == 0, f"promtool check config: {p.stdout} {p.stderr}")


@fixture(conf(qwen="metrics = true", star=""), models=MODELS)
def test_children_metrics_reexported(d):
    ready(d)
    # nomic too: two children's families must come out grouped, one HELP and TYPE each.
    d.write_config(conf(qwen="metrics = true").replace("pin = true", "pin = true\nmetrics = true"))
    llmctl(d, "reload", check_rc=0)
    ready(d)
    chat("qwen")
    s = scrape_until(lambda s: s.get("llamacpp:prompt_tokens_total", model="qwen") > 0 and
                     any(x[0].startswith("llamacpp:") and x[1].get("model") == "nomic"
                         for x in s.samples), "both children's metrics in the scrape")
    promtool_check(s.text, children=True)
    names = [x[0] for x in s.samples if x[0].startswith("llamacpp:")]
    check(all(x[1].get("model") in ("qwen", "nomic") for x in s.samples
              if x[0].startswith("llamacpp:")), "a llamacpp sample without its model")
    check(s.text.count("# TYPE llamacpp:prompt_tokens_total ") == 1, "one TYPE per family")
    check(len(names) == len(set((x[0], x[1]["model"]) for x in s.samples
                                if x[0].startswith("llamacpp:"))), "a sample twice")
    # gemma has no metrics = true and is not loaded: nothing of it.
    check(not any(x[1].get("model") == "gemma" for x in s.samples if x[0].startswith("llamacpp:")),
          "gemma's metrics")


def child_lines(text, model):
    """The llamacpp:* sample lines of one child in llmd's scrape."""
    return [line for line in text.splitlines()
            if line.startswith("llamacpp:") and f'model="{model}"' in line]


@sim_only("LLAMA_SIM_METRICS_EXTRA: a child whose /metrics says what it likes")
@fixture(conf(qwen="metrics = true\nenv = LLAMA_SIM_METRICS_EXTRA=@MODELS@/extra.prom").replace(
    "pin = true", "pin = true\nmetrics = true"), models=MODELS)
def test_children_metrics_bounded(d):
    """A child's /metrics is passed on within bounds: llamacpp:* names only, a sample with a
    model label of its own left out, at most 256 families and 4096 samples a child, and a text
    over 1 MiB not at all; what is passed on parses, and the other child's is unharmed."""
    extra = os.path.join(os.path.dirname(d.model_path("qwen")), "extra.prom")

    def write(text):
        with open(extra + ".tmp", "wb") as f:
            f.write(text.encode().replace(b"@FF@", b"\xff"))  # a byte that is not UTF-8
        os.rename(extra + ".tmp", extra)

    write('llamacpp:forged{model="gemma"} 1\nllamacpp:forged2{a="b",model="gemma"} 1\n'
          'llamacpp:forged3{ model="gemma"} 1\nllamacpp:forged4{a="}",model="gemma"} 1\n'
          'llamacpp:bare\nllamacpp:junk 1 # {model="x"}\n# TYPE llamacpp:badtype bogus\n'
          'llamacpp:crlf 3\r\nllamacpp:open{a="b 1\nllamacpp:latin{a="@FF@"} 1\n'
          'process_cpu_seconds_total 9\n# HELP llamacpp:odd help with "quotes" and \\\\ \n'
          '# TYPE llamacpp:odd gauge\nllamacpp:odd{kind="x\\"y"} 2\n' +
          "".join(f"# TYPE llamacpp:extra_{i} gauge\nllamacpp:extra_{i} {i}\n"
                  for i in range(300)))
    ready(d)
    s = scrape_until(lambda s: s.get("llamacpp:odd", model="qwen", kind='x"y') == 2,
                     "qwen's extra families in the scrape")
    lines = child_lines(s.text, "qwen")
    families = {line.split("{")[0] for line in lines}
    check(len(families) == 256, f"qwen's families: {len(families)}, at most 256 passed on")
    check("llamacpp:extra_0" in families and "llamacpp:extra_299" not in families,
          "the first ones are kept, the rest left out")
    check(not any("forged" in line for line in s.text.splitlines()),
          "a sample with a model label of its own was passed on")
    check(s.get("llamacpp:crlf", model="qwen") == 3, "a CRLF line end")
    check(not any(x in s.text for x in ("llamacpp:bare", "llamacpp:junk", "llamacpp:badtype",
                                         "llamacpp:open", "llamacpp:latin")),
          "an invalid line was passed on")
    # It parses (Scrape() read it with prometheus_client): promtool finds no error either,
    # only its lint's remarks on llama.cpp's names (exit status 3, not 1).
    p = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                       input=s.text, capture_output=True, text=True)
    check(p.returncode in (0, 3) and "error" not in p.stderr.lower(),
          f"promtool: {p.returncode} {p.stderr[:500]}")
    check(not [x for x in s.samples if x[0].startswith("process_") and x[1].get("model")],
          "a name outside llamacpp:* was passed on")
    check(s.get("llamacpp:forged", model="gemma") == 0, "qwen spoke for gemma")
    check(child_lines(s.text, "nomic"), "nomic's metrics are missing")

    write("# TYPE llamacpp:many gauge\n" +
          "".join(f'llamacpp:many{{i="{i}"}} {i}\n' for i in range(5000)))
    s = scrape_until(lambda s: s.get("llamacpp:many", model="qwen", i="0") == 0 and
                     any(x[0] == "llamacpp:many" for x in s.samples), "qwen's many samples")
    lines = child_lines(s.text, "qwen")
    check(len(lines) == 4096, f"qwen's samples: {len(lines)}, at most 4096 passed on")
    check(child_lines(s.text, "nomic"), "nomic's metrics are missing")

    write("# TYPE llamacpp:big gauge\n" + 'llamacpp:big{pad="' + "x" * (1 << 20) + '"} 1\n')
    s = scrape_until(lambda s: not any(x[0] == "llamacpp:many" for x in s.samples),
                     "the 1 MiB text left out")
    check(not child_lines(s.text, "qwen"), "a text over 1 MiB was passed on in part")
    check(child_lines(s.text, "nomic") and s.get("llmd_build_info") == 1,
          "the rest of the scrape went with it")
    check(http(PORT, "POST", "/v1/chat/completions", {**CHAT, "model": "qwen"}).status == 200,
          "serving stopped")


@sim_only("LLAMA_SIM_METRICS_MS")
@fixture(conf(qwen="metrics = true\nenv = LLAMA_SIM_METRICS_MS=5000").replace(
    "pin = true", "pin = true\nmetrics = true"), models=MODELS)
def test_children_metrics_of_a_removed_model(d):
    """A scrape waits for the children's /metrics (2 s at most); a reload that removes a model
    whose answer is in meanwhile frees its child: the scrape still names it right (it named
    freed memory: garbage labels, a use after free under the sanitizers)."""
    ready(d)
    got = {}
    t = threading.Thread(target=lambda: got.update(r=http(PORT, "GET", "/llmd/metrics")))
    t.start()
    time.sleep(0.3)  # nomic has answered; qwen answers in 5 s, past the scrape's 2 s
    d.write_config(conf(qwen="metrics = true\nenv = LLAMA_SIM_METRICS_MS=5000").split(
        "[nomic]")[0])
    llmctl(d, "reload", check_rc=0)
    wait_until(lambda: "nomic" not in d.running_models(), "nomic stopped", timeout=5)
    t.join()
    r = got["r"]
    check(r.status == 200, r)
    labels = set(re.findall(r'^llamacpp:[^{ ]*\{model="([^"]*)"', r.body.decode(errors="replace"),
                            re.M))
    check(labels <= {"qwen", "nomic"}, f"model labels {labels}")


KEYS = ("sk-first-0123456789", "sk-second-0123456789")


def with_keys(d, top=""):
    path = os.path.join(d.dir, "keys")
    with open(path, "w") as f:
        f.write("# the team's keys\n" + "\n".join(KEYS) + "\n")
    os.chmod(path, 0o600)
    d.write_config(conf(f"api-key-file = {path}\n{top}"))
    d.start()
    ready(d)


def bearer(k):
    return {"Authorization": "Bearer " + k}


@fixture(conf(), models=MODELS, start=False)
def test_keys_guard_metrics_and_activity(d):
    with_keys(d)
    for path in ("/llmd/metrics", "/llmd/activity", "/llmd/%6detrics", "/llmd/activity?since=1"):
        r = http(PORT, "GET", path)
        check(r.status == 401, f"{path} without a key: {r}")
        r = http(PORT, "GET", path, headers=bearer(KEYS[0] + "x"))
        check(r.status == 401, f"{path} with a wrong key: {r}")
    check(http(PORT, "GET", "/llmd/./metrics").status == 400, "a dot segment")
    r = http(PORT, "GET", "/llmd/%6detrics", headers=bearer(KEYS[1]))
    check(r.status == 200 and b"llmd_build_info" in r.body, f"%-escaped path: {r}")
    r = http(PORT, "POST", "/llmd/metrics", b"{}", headers=bearer(KEYS[1]))
    check(r.status == 405, f"POST: {r}")
    r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model="qwen"),
             headers={"X-Api-Key": KEYS[1]})
    check(r.status == 200, f"chat: {r}")
    recs = activity(headers=bearer(KEYS[0]))["records"]
    # The 401s are there too, without a key; the chat carried the second key of the file.
    check([x["key"] for x in recs if x["status"] == 200] == [2], f"keys: {recs}")
    check(all(x["key"] is None for x in recs if x["status"] == 401), f"401s: {recs}")
    check(not any(KEYS[0] in json.dumps(x) or KEYS[1] in json.dumps(x) for x in recs),
          "a key in the activity log")
    r = http(PORT, "GET", "/llmd/activity?since=x", headers=bearer(KEYS[0]))
    check(r.status == 400 and b"since" in r.body, f"since=x: {r}")
    r = http(PORT, "GET", "/llmd/activity?model=%00", headers=bearer(KEYS[0]))
    check(r.status == 400 and b"model is not" in r.body, f"model=%00: {r}")
    r = http(PORT, "GET", "/llmd/activity?sinse=1", headers=bearer(KEYS[0]))
    check(r.status == 400 and b"sinse" in r.body, f"unknown parameter: {r}")


@fixture(conf(), models=MODELS, start=False)
def test_metrics_public(d):
    with_keys(d, "metrics-public = true")
    check(http(PORT, "GET", "/llmd/metrics").status == 200, "metrics without a key")
    check(http(PORT, "GET", "/llmd/%6detrics").status == 200, "the same path, escaped")
    check(http(PORT, "GET", "/llmd/activity").status == 401, "activity stays behind the key")
    check(http(PORT, "GET", "/llmd/metrics", b"x").status == 400,
          "a public path takes no body")


HOSTILE = ["\x1b[2J\x1b]0;pwned\x07evil\r\nllmd: forged line", "\"}<script>alert(1)</script>",
           "ünïcødé-名前", "x" * 1000]


@fixture(conf("routing = switch", qwen="aliases = qwen3.5"), models=MODELS)
def test_activity_escapes_what_clients_sent(d):
    ready(d)
    for name in HOSTILE:
        r = http(PORT, "POST", "/v1/chat/completions", dict(CHAT, model=name))
        check(r.status == 404, f"{name!r}: {r}")
    # Not UTF-8 at all.
    r = http(PORT, "POST", "/v1/chat/completions", b'{"model":"bad\xff\xfebytes","messages":[]}')
    check(r.status == 404, f"bad bytes: {r}")
    raw = http(PORT, "GET", "/llmd/activity").body
    recs = json.loads(raw.decode("utf-8"))["records"]  # strict: valid UTF-8, valid JSON
    models = [x["model"] for x in recs]
    check(models[:3] == HOSTILE[:3], f"recorded {models}")
    check(models[3] == "x" * 95, f"a long name is cut: {len(models[3])}")
    check(models[4] == "bad??bytes", f"bytes that are not UTF-8: {models[4]!r}")
    check(b"\x1b" not in raw and b"<script>" in raw, "JSON escapes control characters")
    # On a terminal: a table, every byte of the clients' escaped.
    master, slave = pty.openpty()
    p = subprocess.Popen([*llmctl_cmd(d), "activity"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    check(p.wait(timeout=10) == 0, f"llmctl activity: {p.stderr.read()}")
    check(b"MODEL" in out and b"ENDPOINT" in out, f"no table: {out!r}")
    check(b"\x1b" not in out and b"\x07" not in out, f"a control byte reached the terminal: {out!r}")
    check(b"\\e[2J" in out, f"ESC not shown escaped: {out!r}")
    lines = out.decode("utf-8").splitlines()
    check(len(lines) == 1 + len(HOSTILE) + 1, f"a record spans lines: {lines}")
    # Not a terminal: JSON, the same as over HTTP.
    j = llmctl_json(d, "activity")
    check(j["records"] == recs, "llmctl activity --json differs from /llmd/activity")
    j = llmctl_json(d, "activity", HOSTILE[2])
    check([x["model"] for x in j["records"]] == [HOSTILE[2]], f"one model: {j}")
    # A name neither configured nor in the log is a typo: said, not an empty table.
    p = llmctl(d, "activity", "nosuch")
    check(p.returncode != 0 and "no model 'nosuch'" in p.stderr and
          json.loads(p.stdout)["error"] == "io.llmd.Manager.UnknownModel",
          f"llmctl activity nosuch: {p.returncode} {p.stdout!r} {p.stderr!r}")
    # An alias is its model.
    check(llmctl_json(d, "activity", "qwen3.5")["records"] ==
          llmctl_json(d, "activity", "qwen")["records"], "an alias lists its model's records")
    check(activity(query="&model=qwen3.5")["records"] == activity(query="&model=qwen")["records"],
          "over HTTP too")


@fixture(conf(), models=MODELS)
def test_llmctl_activity_follows(d):
    ready(d)
    chat("qwen")
    # Not a terminal: one JSON record a line, the old ones first, then each as it ends.
    p = subprocess.Popen([*llmctl_cmd(d), "activity", "-f", "qwen"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        check(first["seq"] == 1 and first["model"] == "qwen", f"first line {first}")
        r = http(PORT, "POST", "/v1/embeddings", {"model": "nomic", "input": "x"})
        check(r.status == 200, f"embeddings {r}")
        chat("qwen")
        second = json.loads(p.stdout.readline())  # waits for the line: nomic's is not shown
        check(second["seq"] == 3 and second["model"] == "qwen" and second["status"] == 200,
              f"followed {second}")
        check(p.poll() is None, "llmctl activity -f ended")
    finally:
        p.kill()
        p.wait()


def llmctl_cmd(d):
    from llmdtest import LLMCTL
    return [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock")]


@fixture(conf(), models=MODELS)
def test_scraping_does_not_disturb_serving(d):
    """Scraping as fast as wrk can (bench/scrape.py gives the figures: about 10,000 a second
    here) while streams run: every scrape is whole, every stream gets all its tokens, and the
    activity log holds the streams, not the scrapes."""
    ready(d)
    wrk = shutil.which("wrk")
    check(wrk, "no wrk (Debian's wrk; tools/deps.sh installs it)")
    p = subprocess.Popen([wrk, "-t1", "-c8", "-d3s", "--latency",
                          f"http://127.0.0.1:{PORT}/llmd/metrics"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    streams = 0
    try:
        while streams < 6 or p.poll() is None:
            s = Stream(PORT, "/v1/chat/completions",
                       dict(CHAT, model="qwen", stream=True, max_tokens=16))
            events = s.events()
            s.close()
            check(events[-1] == "[DONE]", f"stream cut: {events}")
            deltas = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]
                      if json.loads(e).get("choices")]
            check(sum(1 for x in deltas if x) == 16, f"tokens lost: {events}")
            streams += 1
    finally:
        out = p.communicate(timeout=60)[0]
    print("\n".join("# " + line for line in out.splitlines()))
    n = re.search(r"(\d+) requests in", out)
    check(p.returncode == 0 and n and int(n.group(1)) > 0, f"wrk: {out}")
    check("Non-2xx" not in out and "Socket errors" not in out, f"scrapes failed: {out}")
    # Each scrape whole: one more, read as Prometheus reads it.
    Scrape()
    print(f"# beside {streams} streams")
    recs = activity()["records"]
    check(len(recs) == streams and all(x["status"] == 200 for x in recs),
          f"activity holds scrapes or lost streams: {len(recs)}")
    served = llmctl_json(d, "status")["requests"]["served"]
    check(served == streams, f"status counts {served} served: the scrapes are not requests")


if __name__ == "__main__":
    run()
