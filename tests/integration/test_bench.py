#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmctl bench: what it measures against the simulator's own figures, how it marks runs that
end early or fail, and that the model active at the start is active again at the end, also
after Ctrl-C. The shipped tasks and the table run on the real llama-server too.

Nothing here compares a duration with a wall-clock bound: each figure llmctl reports is held
against the figure the server reported for the same request, with a tolerance wide enough that
a loaded machine cannot break it, and narrow enough that a figure taken over the wrong span
(TTFT to the first byte, a rate over the whole request) fails."""

import json
import os
import signal
import subprocess
import tempfile

from llmdtest import (LLMCTL, REAL, SANITIZER_REPORT, Failure, check, fake_http_server, fixture,
                      llmctl_json, run, sim_only, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED_TASKS = os.path.join(HERE, "..", "..", "ctl", "bench.d")
# Seconds for one llmctl bench; meson gives a test of this file 300. The real tiny model writes
# thousands of tokens a second on a quiet machine and tens on a busy one: the bound is for a
# bench that hangs, not for one that is slow.
BENCH_TIMEOUT = 280


def conf(qwen="", gemma="", devstral="", deepseek=None):
    reasoning = "" if deepseek is None else f"""
[deepseek]
model = @MODELS@/deepseek.gguf
reasoning-format = deepseek
{deepseek}
"""
    return f"""
[llmd]
default = qwen

[*]
ctx-size = 4096
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5
{qwen}

[gemma]
model = @MODELS@/gemma.gguf
{gemma}

[devstral]
model = @MODELS@/devstral.gguf
{devstral}
{reasoning}
[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


MODELS = ("qwen", "gemma", "devstral", "nomic")


def tasks_dir(d, **tasks):
    """A folder of tasks NAME=MAX_TOKENS, in the order given."""
    path = os.path.join(d.dir, "tasks")
    os.makedirs(path, exist_ok=True)
    for i, (name, max_tokens) in enumerate(tasks.items()):
        with open(os.path.join(path, f"{i:02d}-{name}.json"), "w") as f:
            json.dump({"name": name, "prompt": f"Write {max_tokens} tokens about {name}.",
                       "max_tokens": max_tokens}, f)
    return path


def bench(d, *args, rc=None, proc=False, env=None):
    """Runs llmctl bench against d (stdout is a pipe: JSON unless --format says otherwise)."""
    cmd = [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "bench", *args]
    if proc:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=BENCH_TIMEOUT,
                       env={**os.environ, **(env or {})})
    return finished(p.returncode, p.stdout, p.stderr, args, rc)


def finished(code, out, err, args, rc):
    reports = [line for line in err.splitlines() if SANITIZER_REPORT.search(line)]
    if reports:
        raise Failure(f"a sanitizer reported an error in llmctl bench: {reports[0]}\n{err}")
    if rc is not None and code != rc:
        raise Failure(f"llmctl bench {' '.join(args)}: exit {code}, expected {rc}\n"
                      f"stdout: {out}\nstderr: {err}")
    return out, err


def ready(d):
    d.wait_status("qwen ready · embed nomic ready")


def active(d):
    s = llmctl_json(d, "status")
    return s["active"]["name"] if s.get("active") else None, s["loaded"]


def model(report, name):
    found = [m for m in report["models"] if m["name"] == name]
    check(len(found) == 1, f"{name} in {[m['name'] for m in report['models']]}")
    return found[0]


def chat_requests(d, name):
    return [r for r in d.records("request", name) if r["path"] == "/v1/chat/completions"]


def check_consistent(t):
    """The mark follows the figures: set exactly when the medians differ by more than 5%."""
    m = t["median"]
    if m["tok_per_sec"] is None or m["server_tok_per_sec"] is None:
        check(not t["rate_mismatch"], f"{t['task']}: a mark without both rates: {m}")
        return
    apart = abs(m["tok_per_sec"] - m["server_tok_per_sec"]) > 0.05 * m["server_tok_per_sec"]
    check(t["rate_mismatch"] == apart, f"{t['task']}: rate_mismatch {t['rate_mismatch']}, {m}")


# ---- what it measures ----

@sim_only("a fixed token rate and prompt time, and the simulator's records")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=5 LLAMA_SIM_PROMPT_MS=150",
              gemma="env = LLAMA_SIM_TOKEN_MS=12 LLAMA_SIM_PROMPT_MS=60"), models=MODELS)
def test_rate_and_ttft_two_models(d):
    ready(d)
    tasks = tasks_dir(d, a=30, b=60)
    out_file = os.path.join(d.dir, "bench.json")
    out, err = bench(d, "qwen", "gemma", "--tasks", tasks, "-o", out_file, rc=0)
    report = json.loads(out)
    with open(out_file) as f:
        check(json.load(f) == report, "--output wrote something else than stdout shows")
    # Fastest first; the embedding model is not measured.
    check([m["name"] for m in report["models"]] == ["qwen", "gemma"], f"{report['models']}")
    check(report["runs"] == 3 and [t["name"] for t in report["tasks"]] == ["a", "b"], f"{report}")
    for name, token_ms, prompt_ms in (("qwen", 5, 150), ("gemma", 12, 60)):
        m = model(report, name)
        check(isinstance(m["swap_sec"], float) and m["swap_sec"] > 0, f"{name} swap {m['swap_sec']}")
        # One warm-up, then 3 runs of each task, all streamed, all reaching the simulator.
        reqs = chat_requests(d, name)
        check(len(reqs) == 7 and all(r["stream"] for r in reqs), f"{name}: {reqs}")
        for t in m["tasks"]:
            check(t["complete"] == 3 and t["early"] == 0 and t["failed"] == 0, f"{name} {t}")
            check_consistent(t)
            for r in t["runs"]:
                tm = r["timings"]
                check(r["end"] == "complete" and r["tokens"] == t["max_tokens"] and
                      tm["predicted_n"] == t["max_tokens"], f"{name} {r}")
                # The simulator measured its own prompt wait; the first token came after it.
                # (No upper bound: on a busy machine the client reads late, and how late is
                # noise, not llmctl's doing. bench/ prints such figures; tests do not bound them.)
                check(tm["prompt_ms"] >= prompt_ms, f"{name} {r}")
                check(tm["prompt_ms"] <= r["ttft_ms"], f"{name}: TTFT {r['ttft_ms']} against {tm}")
                check(r["tok_per_sec"] > 0, f"{name}: {r['tok_per_sec']} tok/s against {tm}")
            med = t["median"]
            check(med["ttft_ms"] >= med["prompt_ms"] >= prompt_ms, f"{name} {med}")
        # The simulator's rate is its token time's.
        # (never faster; slower by however busy the machine is)
        rates = [t["median"]["server_tok_per_sec"] for t in m["tasks"]]
        check(all(0 < x <= 1000 / token_ms for x in rates), f"{name} {rates}")
    check(active(d) == ("qwen", True), f"active {active(d)}")


@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=2", gemma="env = LLAMA_SIM_TOKEN_MS=2"),
         models=MODELS)
def test_formats_and_choice(d):
    """The table a user reads, markdown and CSV, a model chosen by alias, the default output
    off a terminal (JSON), and the active model back at the end."""
    ready(d)
    tasks = tasks_dir(d, short=8, long=16)
    out, _ = bench(d, "gemma", "qwen3.5", "--runs", "1", "--tasks", tasks, "--format", "table",
                   rc=0)
    lines = out.splitlines()
    check([c.strip() for c in lines[0].split("|")[1:-1]] ==
          ["Model", "short tok/s", "long tok/s", "short TTFT", "long TTFT", "Swap"], out)
    check(set(lines[1]) == {"|", "-"}, out)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:4]]
    check(sorted(r[0] for r in rows) == ["gemma", "qwen"], out)
    for r in rows:
        # "client (server)" for each task, a TTFT in ms, a swap time in seconds. The tiny real
        # model makes 8 tokens in a millisecond: they may all arrive in one read, and then
        # llmctl has no rate of its own to show ("-").
        for cell in r[1:3]:
            client, server = cell.rstrip("*~!").split(" (")
            check((REAL and client == "-") or float(client) > 0, f"{cell} in {out}")
            check(float(server.rstrip(")")) > 0, f"{cell} in {out}")
        check(all(c.endswith(" ms") or c.endswith(" s") for c in r[3:5]), out)
        check(r[5].endswith(" s"), out)
    check(lines[4] == "" and lines[5].startswith("tok/s: llmctl's own rate"), out)

    out, _ = bench(d, "gemma", "--runs", "1", "--tasks", tasks, "--format", "markdown", rc=0)
    check(out.splitlines()[1].startswith("|-------|") and "--:|" in out.splitlines()[1], out)
    check(out.splitlines()[2].startswith("| gemma |"), out)

    out, _ = bench(d, "gemma", "--runs", "2", "--tasks", tasks, "--format", "csv", rc=0)
    rows = [line.split(",") for line in out.splitlines()]
    check(rows[0][:4] == ["model", "task", "max_tokens", "runs"], out)
    check([r[:5] for r in rows[1:]] == [["gemma", "short", "8", "2", "2"],
                                         ["gemma", "long", "16", "2", "2"]], out)

    # Off a terminal, without --format: JSON, as every verb prints.
    report = json.loads(bench(d, "gemma", "--runs", "1", "--tasks", tasks, rc=0)[0])
    check([m["name"] for m in report["models"]] == ["gemma"], f"{report}")
    check(report["url"] == f"http://127.0.0.1:{d.port}/v1/chat/completions", report["url"])
    check(active(d) == ("qwen", True), f"active {active(d)}")


@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=1", deepseek="env = LLAMA_SIM_TOKEN_MS=1"),
         models=("qwen", "gemma", "devstral", "deepseek", "nomic"))
def test_shipped_tasks(d):
    """The three tasks the package installs, over a chat and a thinking model: llama-server's
    own timings in every run, thinking counted apart from the answer, and the 5% mark where
    the two rates part. One run of each (the default of three is the simulator tests'): the
    long task is 2,048 tokens, which a busy machine's real server writes in tens of seconds."""
    ready(d)
    runs = "1"
    # What a user reads on stdout (shown in the test's log), and the JSON kept with --output.
    out_file = os.path.join(d.dir, "bench.json")
    table, err = bench(d, "qwen", "deepseek", "--tasks", SHIPPED_TASKS, "--runs", runs, "--format",
                       "table", "-o", out_file, rc=0)
    print(table)
    with open(out_file) as f:
        report = json.load(f)
    check([(t["name"], t["max_tokens"]) for t in report["tasks"]] ==
          [("short", 128), ("medium", 512), ("long", 2048)], f"{report['tasks']}")
    for name in ("qwen", "deepseek"):
        m = model(report, name)
        for t in m["tasks"]:
            check(t["complete"] + t["early"] == int(runs) and t["failed"] == 0, f"{name} {t}")
            check_consistent(t)
            for r in t["runs"]:
                tm = r["timings"]
                check(tm and tm["predicted_n"] > 0 and tm["predicted_per_second"] > 0 and
                      tm["prompt_ms"] > 0, f"{name}: no timings in {r}")
                check(r["tokens"] == tm["predicted_n"], f"{name} {r}")
                thinking = r["reasoning_tokens"]
                check((thinking > 0) == (name == "deepseek"), f"{name}: thinking {r}")
                check(r["answer_tokens"] + thinking <= r["tokens"], f"{name} {r}")
        # Over the long task's seconds of generation, what llmctl saw and what the server says
        # are close (a rate over the wrong span or count would be far off). How close, the 5%
        # mark tells; on a loaded machine the short tasks, over in milliseconds, may part.
        long = m["tasks"][2]["median"]
        check(0.75 < long["tok_per_sec"] / long["server_tok_per_sec"] < 1.33, f"{name} {long}")
    check("deepseek thinks: median thinking + answer tokens:" in table, table)
    check(active(d) == ("qwen", True), f"active {active(d)}")


@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=2"), models=MODELS)
def test_tasks_from_user_folder(d):
    """Without --tasks, the user's own folder comes first: its tasks are run, and a file
    there hides the package's of the same name."""
    ready(d)
    home = os.path.join(d.dir, "home")
    mine = os.path.join(home, ".config", "llmd", "bench.d")
    os.makedirs(mine)
    with open(os.path.join(mine, "05-tiny.json"), "w") as f:
        json.dump({"name": "tiny", "prompt": "Hi", "max_tokens": 4,
                   "sampling": {"temperature": 0.5, "seed": 1}}, f)
    for hidden in ("10-short.json", "20-medium.json", "30-long.json"):
        open(os.path.join(mine, hidden), "w").close()
    env = {"HOME": home, "XDG_CONFIG_HOME": ""}
    report = json.loads(bench(d, "qwen", "--runs", "1", env=env, rc=0)[0])
    check([(t["name"], t["file"]) for t in report["tasks"]] ==
          [("tiny", os.path.join(mine, "05-tiny.json"))], f"{report['tasks']}")
    check(model(report, "qwen")["tasks"][0]["runs"][0]["tokens"] == 4, f"{report}")
    # $XDG_CONFIG_HOME, where set, is the user's folder instead.
    xdg = os.path.join(d.dir, "xdg")
    os.makedirs(os.path.join(xdg, "llmd", "bench.d"))
    os.rename(os.path.join(mine, "05-tiny.json"), os.path.join(xdg, "llmd", "bench.d", "05-x.json"))
    for hidden in ("10-short.json", "20-medium.json", "30-long.json"):
        open(os.path.join(xdg, "llmd", "bench.d", hidden), "w").close()
    report = json.loads(bench(d, "qwen", "--runs", "1", env={"XDG_CONFIG_HOME": xdg}, rc=0)[0])
    check([t["name"] for t in report["tasks"]] == ["tiny"], f"{report['tasks']}")


# ---- runs that end early or fail ----

@sim_only("LLAMA_SIM_EOS_AFTER_TOKENS")
@fixture(conf(gemma="env = LLAMA_SIM_TOKEN_MS=2 LLAMA_SIM_EOS_AFTER_TOKENS=10"), models=MODELS)
def test_early_eos_marked(d):
    ready(d)
    tasks = tasks_dir(d, a=30)
    report = json.loads(bench(d, "gemma", "--runs", "2", "--tasks", tasks, rc=0)[0])
    t = model(report, "gemma")["tasks"][0]
    check(t["early"] == 2 and t["complete"] == 0 and t["failed"] == 0, f"{t}")
    check(all(r["end"] == "early" and r["finish_reason"] == "stop" and r["tokens"] == 10
              for r in t["runs"]), f"{t['runs']}")
    # Early runs still have a rate: it is in the median, and the table says so.
    check(t["median"]["tokens"] == 10 and t["median"]["tok_per_sec"] > 0, f"{t}")
    out, _ = bench(d, "gemma", "--runs", "2", "--tasks", tasks, "--format", "table", rc=0)
    row = [line for line in out.splitlines() if line.startswith("| gemma")][0]
    check(row.split("|")[2].strip().endswith("~"), out)
    check("~ a run ended before max_tokens; its figures are in the median" in out, out)
    check("gemma a run 1: ended after 10 of 30 tokens (finish_reason stop)" in out, out)
    check("gemma a run 2: ended after 10 of 30 tokens (finish_reason stop)" in out, out)


@sim_only("LLAMA_SIM_ERROR_AFTER_TOKENS")
@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=2",
              gemma="env = LLAMA_SIM_TOKEN_MS=2 LLAMA_SIM_ERROR_AFTER_TOKENS=5"), models=MODELS)
def test_erroring_model(d):
    ready(d)
    tasks = tasks_dir(d, a=20)
    out, err = bench(d, "gemma", "qwen", "--runs", "2", "--tasks", tasks, "--format", "table",
                     rc=2)
    lines = out.splitlines()
    # The model that works comes first; the failed runs are not in any median.
    check(lines[2].startswith("| qwen ") and lines[3].startswith("| gemma "), out)
    check(lines[3].split("|")[2].strip() == "failed!", out)
    check("! a run failed; it is left out of the median" in out, out)
    for k in (1, 2):
        check(f"gemma a run {k}: failed: " in out, out)
    report = json.loads(bench(d, "gemma", "--runs", "1", "--tasks", tasks, rc=2)[0])
    r = model(report, "gemma")["tasks"][0]["runs"][0]
    check(r["end"] == "error" and r["error"] and r["tokens"] == 5, f"{r}")
    check(active(d) == ("qwen", True), f"active {active(d)}")


@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=2",
              devstral="env = LLAMA_SIM_EXIT_WHILE_LOADING=1"), models=MODELS)
def test_model_fails_to_load(d):
    """A model that cannot load is reported, the others are measured, and the one active at
    the start serves again."""
    ready(d)
    # On the real tier, a file that is no GGUF model; the simulator exits while loading.
    with open(d.model_path("devstral"), "wb") as f:
        f.write(b"not a model" * 100)
    tasks = tasks_dir(d, a=8)
    out, err = bench(d, "devstral", "qwen", "--runs", "1", "--tasks", tasks, "--format", "table",
                     rc=2)
    lines = out.splitlines()
    check(lines[2].startswith("| qwen ") and lines[3].startswith("| devstral "), out)
    check(lines[3].rstrip(" |").endswith("failed"), out)
    check("devstral: not measured: failed to load: exit status 1" in out, out)
    check(active(d) == ("qwen", True), f"active {active(d)}")


@sim_only("LLAMA_SIM_STALL_AFTER_TOKENS")
@fixture(conf(gemma="env = LLAMA_SIM_TOKEN_MS=2 LLAMA_SIM_STALL_AFTER_TOKENS=3"), models=MODELS)
def test_timeout_marked(d):
    ready(d)
    tasks = tasks_dir(d, a=20)
    report = json.loads(bench(d, "gemma", "--runs", "1", "--timeout", "1", "--tasks", tasks,
                              rc=2)[0])
    t = model(report, "gemma")["tasks"][0]
    r = t["runs"][0]
    check(t["failed"] == 1 and r["end"] == "timeout" and r["error"] == "nothing arrived for 1 s",
          f"{t}")
    check(active(d) == ("qwen", True), f"active {active(d)}")


# ---- the model active at the start ----

def interrupted(p, d):
    out, err = p.communicate(timeout=BENCH_TIMEOUT)
    finished(p.returncode, out, err, ("(interrupted)",), 130)
    check(out == "", f"a report after Ctrl-C: {out}")
    return err


@fixture(conf(gemma="env = LLAMA_SIM_TOKEN_MS=20"), models=MODELS)
def test_ctrl_c_mid_run(d):
    """Ctrl-C while a run streams: the run is given up, qwen serves again, no report."""
    ready(d)
    # Long enough to be interrupted: 10 s a run on the simulator; on the real server, whose
    # tiny model makes the three shipped tasks in about a second, many runs of them.
    if REAL:
        p = bench(d, "gemma", "--tasks", SHIPPED_TASKS, "--runs", "30", proc=True)
    else:
        p = bench(d, "gemma", "--tasks", tasks_dir(d, a=500), proc=True)

    def streaming():
        s = llmctl_json(d, "status")
        return s["active"]["name"] == "gemma" and s["requests"]["in_flight"] > 0
    wait_until(streaming, "a request of llmctl bench in flight to gemma")
    p.send_signal(signal.SIGINT)
    err = interrupted(p, d)
    check("llmctl: interrupted; qwen is active again" in err, err)
    check(active(d) == ("qwen", True), f"active {active(d)}")
    if not REAL:
        # The run in progress was given up: its stream closed before the answer's end.
        r = wait_until(lambda: [r for r in chat_requests(d, "gemma") if r.get("client_gone")],
                       "the record of gemma's request given up")
        check(r[0]["tokens_sent"] < 500, f"{r}")


@sim_only("a slow load to interrupt")
@fixture(conf(gemma="env = LLAMA_SIM_LOAD_MS=20000"), models=MODELS)
def test_ctrl_c_while_switching(d):
    ready(d)
    tasks = tasks_dir(d, a=10)
    p = bench(d, "gemma", "--tasks", tasks, proc=True)
    d.wait_starts(1, "gemma")
    p.send_signal(signal.SIGINT)
    err = interrupted(p, d)
    check("llmctl: interrupted; qwen is active again" in err, err)
    check(active(d) == ("qwen", True), f"active {active(d)}")
    check(not chat_requests(d, "gemma") and not d.records("request_start", "gemma"),
          "gemma got a request")


@fixture(conf(qwen="env = LLAMA_SIM_TOKEN_MS=2", gemma="env = LLAMA_SIM_TOKEN_MS=2"),
         models=MODELS)
def test_stopped_state_restored(d):
    """After `llmctl stop`, bench loads what it measures, and stops again at the end."""
    ready(d)
    llmctl_json(d, "stop")
    check(active(d) == ("qwen", False), f"active {active(d)}")
    tasks = tasks_dir(d, a=8)
    report = json.loads(bench(d, "--runs", "1", "--tasks", tasks, rc=0)[0])
    # Every generation model; each was switched to, the active one too (nothing was loaded).
    check(sorted(m["name"] for m in report["models"]) == ["devstral", "gemma", "qwen"],
          f"{report['models']}")
    check(all(m["swap_sec"] is not None for m in report["models"]), f"{report['models']}")
    check(active(d) == ("qwen", False), f"active {active(d)}")


# ---- refusals ----

@fixture(conf(), models=MODELS)
def test_refusals(d):
    ready(d)
    tasks = tasks_dir(d, a=8)
    _, err = bench(d, "nope", "--tasks", tasks, rc=2)
    check(err == "llmctl: unknown model 'nope' (llmctl list shows them)\n", err)
    _, err = bench(d, "nomic", "--tasks", tasks, rc=2)
    check(err == "llmctl: nomic is an embedding model: bench measures generation models\n", err)
    _, err = bench(d, "--tasks", os.path.join(d.dir, "missing"), rc=1)
    check(err.startswith("llmctl: --tasks ") and "No such file or directory" in err, err)
    empty = os.path.join(d.dir, "empty")
    os.mkdir(empty)
    _, err = bench(d, "--tasks", empty, rc=1)
    check(err == f"llmctl: no bench tasks (*.json) in {empty}\n", err)
    with open(os.path.join(empty, "x.json"), "w") as f:
        f.write('{"name": "x", "prompt": "p"}')
    _, err = bench(d, "--tasks", empty, rc=1)
    check(f"{empty}/x.json: \"max_tokens\" must be a whole number" in err, err)
    _, err = bench(d, "--runs", "0", rc=1)
    check(err == "llmctl: --runs: '0' is not a number from 1 to 100\n", err)
    # Nothing listens at --url: every run fails, and says why.
    with tempfile.TemporaryDirectory() as t:
        out, err = bench(d, "gemma", "--runs", "1", "--tasks", tasks, "--url",
                         "http://127.0.0.1:9/v1", "-o", os.path.join(t, "r.json"), rc=2)
        r = json.loads(out)["models"][0]["tasks"][0]["runs"][0]
        check(r["end"] == "error" and "127.0.0.1" in r["error"], f"{r}")
    check(active(d) == ("qwen", True), f"active {active(d)}")


# ---- what a server says, on the terminal ----

FORGED = "\x1b[31mred\x1b[0m\nllmctl: forged by the server"


def forging_server(method, path):
    """Each chat completion answered with an error event whose message holds an escape
    sequence and a line of its own."""
    return 200, "text/event-stream", (b"data: " + json.dumps({"error": {"message": FORGED}})
                                      .encode() + b"\n\n")


@fixture(conf(), models=MODELS)
def test_server_strings_escaped(d):
    ready(d)
    tasks = tasks_dir(d, a=8)
    server = fake_http_server(forging_server)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        for fmt in ("table", "markdown", "csv"):
            out, err = bench(d, "gemma", "--runs", "1", "--tasks", tasks, "--url", url,
                             "--format", fmt, rc=2)
            for text in (out, err):
                check("\x1b" not in text, f"{fmt}: an escape sequence reached the terminal: "
                      f"{text!r}")
                check(not any(line.startswith("llmctl: forged") for line in text.splitlines()),
                      f"{fmt}: a forged line: {text!r}")
            # CSV has no column for a run's error, only for a model's.
            check(fmt == "csv" or "\\e[31mred\\e[0m\\nllmctl: forged by the server" in out,
                  f"{fmt}: {out!r}")
        # JSON keeps the message as the server sent it (cJSON escapes the controls).
        out, _ = bench(d, "gemma", "--runs", "1", "--tasks", tasks, "--url", url, rc=2)
        r = json.loads(out)["models"][0]["tasks"][0]["runs"][0]
        check(r["error"] == FORGED, f"{r}")
    finally:
        server.shutdown()
    # Bytes that are not UTF-8 would make the JSON report invalid: escaped there too.
    server = fake_http_server(lambda method, path: (
        200, "text/event-stream", b'data: {"error":{"message":"bad \xff byte"}}\n\n'))
    try:
        out, _ = bench(d, "gemma", "--runs", "1", "--tasks", tasks, "--url",
                       f"http://127.0.0.1:{server.server_address[1]}/v1", rc=2)
        r = json.loads(out)["models"][0]["tasks"][0]["runs"][0]
        check(r["error"] == "bad \\xff byte", f"{r}")
    finally:
        server.shutdown()
    check(active(d) == ("qwen", True), f"active {active(d)}")


if __name__ == "__main__":
    run()
