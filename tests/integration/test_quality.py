#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmctl bench --suite quality: every scoring path with answers the test chooses (the
simulator's LLAMA_SIM_CANNED), the three scoring bugs of the original write-up designed out,
the sandbox holding against model-written code, and the whole shipped suite on the real tiny
models (scores near zero there; the report must be complete).

The scores asserted are those of known answers under the rubric each task ships: a perfect todo
app is 100, one without parameterised queries 94 (9 of 10 features × 60 + 40), the perfect one
with a syntax error 40 (60 × 2/3: its code cannot run)."""

import json
import os
import shutil
import signal
import subprocess

from llmdtest import (LLMCTL, REAL, Failure, check, fixture, llmctl_json, run, sim_only,
                      wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "..", "..", "ctl", "bench.d")
ANSWERS = os.path.join(HERE, "quality")
TIMEOUT = 280  # seconds for one llmctl bench; meson gives a test of this file 300 (a loaded machine)


def conf(**env):
    """qwen, gemma, devstral and deepseek (which thinks), each answering from its own canned
    file, at full speed."""
    profiles = ""
    for name in ("qwen", "gemma", "devstral", "deepseek"):
        # The thinking model: its vendor's sampling and a larger budget for the bench.
        extra = ("reasoning-format = deepseek\nbench-temperature = 0.6\nbench-top-p = 0.95\n"
                 "bench-max-tokens-factor = 4\n" if name == "deepseek" else "")
        profiles += f"""
[{name}]
model = @MODELS@/{name}.gguf
env = LLAMA_SIM_TOKEN_MS=0 LLAMA_SIM_CANNED=@MODELS@/canned-{name}.json {env.get(name, "")}
{extra}"""
    return f"""
[llmd]
default = qwen

[*]
ctx-size = 8192
stop-timeout = 5s
{profiles}
"""


MODELS = ("qwen", "gemma", "devstral", "deepseek")


def fenced(path_or_text, lang="python"):
    text = path_or_text
    if os.path.exists(os.path.join(ANSWERS, path_or_text)):
        with open(os.path.join(ANSWERS, path_or_text)) as f:
            text = f.read()
    return f"```{lang}\n{text}```\n"


def can(d, model, answers):
    """What model answers: {match: content, or (content, reasoning_content)}."""
    entries = []
    for match, a in answers.items():
        content, reasoning = a if isinstance(a, tuple) else (a, None)
        e = {"match": match, "content": content}
        if reasoning is not None:
            e["reasoning_content"] = reasoning
        entries.append(e)
    with open(os.path.join(d.models, f"canned-{model}.json"), "w") as f:
        json.dump(entries, f)


# A phrase of each task's prompt, for the canned answers to match.
TODO = "command-line todo app"
JSON5 = "Make up 5 user records"
TOOLS = "check that each host answers a ping"
BAYES = "has a real error in 2%"


def tasks(d, *names, extra=None):
    """A --tasks folder: one short speed task, and the shipped quality tasks named (links)."""
    path = os.path.join(d.dir, "tasks")
    os.makedirs(os.path.join(path, "quality"), exist_ok=True)
    with open(os.path.join(path, "10-short.json"), "w") as f:
        json.dump({"name": "short", "prompt": "Say hello.", "max_tokens": 8}, f)
    for n in ("_lib",) + names:
        os.symlink(os.path.abspath(os.path.join(SHIPPED, "quality", n)),
                   os.path.join(path, "quality", n))
    for name, (base, task, prompt) in (extra or {}).items():
        # a copy of a shipped task with its own task.json and prompt
        dst = os.path.join(path, "quality", name)
        shutil.copytree(os.path.join(SHIPPED, "quality", base), dst)
        with open(os.path.join(dst, "task.json"), "w") as f:
            json.dump(task, f)
        with open(os.path.join(dst, "prompt.md"), "w") as f:
            f.write(prompt)
    return path


def bench(d, *args, rc=0):
    cmd = [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "bench", "--suite",
           "quality", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    if rc is not None and p.returncode != rc:
        raise Failure(f"llmctl {' '.join(cmd[3:])}: exit {p.returncode}, expected {rc}\n"
                      f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p.stdout, p.stderr


def result(report, model):
    found = [m for m in report["quality"] if m["model"] == model]
    check(len(found) == 1, f"{model} in {report['quality']}")
    return found[0]


def run_of(report, model, task, k=0):
    return result(report, model)["tasks"][task]["runs"][k]


def missed(run):
    return [i["name"] for i in run["check"]["items"] if i["points"] < i["max"]]


def active(d):
    s = llmctl_json(d, "status")
    return s["active"]["name"] if s.get("active") else None, s["loaded"]


# ---- the scores of known answers ----

@sim_only("canned answers")
@fixture(conf(), models=MODELS)
def test_todo_scores(d):
    """100, 94, × 2/3 for invalid syntax, and an answer only in reasoning_content (bug 2)."""
    d.wait_status("qwen ready")
    perfect = fenced("todo.py")
    can(d, "qwen", {TODO: "Here it is.\n\n" + perfect})
    can(d, "gemma", {TODO: fenced("todo-no-params.py")})
    can(d, "devstral", {TODO: perfect.replace("def main():", "def main(:")})
    # --reasoning-format deepseek put all of it in reasoning_content: content is empty
    can(d, "deepseek", {TODO: ("", perfect)})
    keep = os.path.join(d.dir, "keep")
    path = tasks(d, "1.1-todo")
    out, _ = bench(d, "--tasks", path, "--runs", "1", "--format", "json", "--keep", keep)
    report = json.loads(out)
    r = run_of(report, "qwen", "1.1-todo")
    check(r["score"] == 100 and missed(r) == [], f"perfect: {r}")
    # bug 3: "Buy milk and eggs" reached the program as one argument
    names = [i["name"] for i in r["check"]["items"]]
    check("add keeps the text's blanks (one argument)" in names, f"{names}")
    r = run_of(report, "gemma", "1.1-todo")
    check(r["score"] == 94 and missed(r) == ["parameterised queries"], f"no params: {r}")
    r = run_of(report, "devstral", "1.1-todo")
    check(abs(r["score"] - 40) < 0.01 and r["check"]["parses"] is False, f"syntax error: {r}")
    check(len(missed(r)) == 7 and "parameterised queries" not in missed(r), f"{r}")
    r = run_of(report, "deepseek", "1.1-todo")
    check(r["score"] == 100 and r["answer_from"] == "reasoning_content", f"reasoning only: {r}")
    # the ranks follow the totals; the active model is back
    # (speed counts in the total too: only the last place is certain)
    ranks = {m["model"]: m["rank"] for m in report["quality"]}
    check(ranks["devstral"] == 4, f"{ranks}")
    totals = [m["total"] for m in report["quality"]]
    check(totals == sorted(totals, reverse=True) and [m["rank"] for m in report["quality"]] ==
          [1, 2, 3, 4], f"ranked by total: {report['quality']}")
    check(active(d) == ("qwen", True), f"active {active(d)}")
    # --keep: the request, the response as it came, the answer the check got, its output
    run1 = os.path.join(keep, "deepseek", "1.1-todo", "run-1")
    for f in ("request.json", "response.sse", "work/answer.md", "work/todo.py", "check.out",
              "check.err", "score.json"):
        check(os.path.exists(os.path.join(run1, f)), f"--keep has no {f}: {os.listdir(run1)}")
    with open(os.path.join(run1, "response.sse")) as f:
        check("reasoning_content" in f.read(), "response.sse is not the raw stream")
    # The profile's bench-* keys: deepseek's sampling and 4 × the task's budget; qwen's
    # request leaves sampling to its server.
    with open(os.path.join(SHIPPED, "quality", "1.1-todo", "task.json")) as f:
        budget = json.load(f)["max_tokens"]
    with open(os.path.join(run1, "request.json")) as f:
        req = json.load(f)
    check(req["temperature"] == 0.6 and req["top_p"] == 0.95 and req["max_tokens"] == 4 * budget,
          f"deepseek's request: {req}")
    with open(os.path.join(keep, "qwen", "1.1-todo", "run-1", "request.json")) as f:
        req = json.load(f)
    check("temperature" not in req and "top_p" not in req and req["max_tokens"] == budget,
          f"qwen's request: {req}")

    # the table says which answer came from reasoning_content
    out, _ = bench(d, "deepseek", "--tasks", path, "--runs", "1", "--format", "table")
    check("1.1-todo run 1: the answer was only in reasoning_content, scored from there" in out,
          out)
    check("| deepseek |" in out and "coding" in out and "total" in out, out)


@sim_only("canned answers")
@fixture(conf(), models=MODELS)
def test_thinking_json_and_tools(d):
    """Closed and unclosed <think> blocks never reach the check (bug 1); JSON with prose around
    it loses only "nothing else"; tools in the wrong order lose the order items."""
    d.wait_status("qwen ready")
    perfect = fenced("todo.py")
    # A longer draft inside the thinking: were it taken as the answer, the score would fall.
    draft = "<think>A first try:\n" + fenced("x = (\n" * 200) + "No, better:</think>\n"
    records = [{"id": i, "name": f"User {i}", "email": f"u{i}@example.com", "age": 20 + i,
                "active": i % 2 == 0, "tags": ["a"]} for i in range(1, 6)]
    plan = [{"tool": "read_file", "args": {"path": "/etc/app/hosts.txt"}},
            {"tool": "ping", "args": {"host": "db1"}},
            {"tool": "ping", "args": {"host": "db2"}},
            {"tool": "ping", "args": {"host": "cache1"}},
            {"tool": "write_file", "args": {"path": "/var/report/hosts.txt", "content": "ok"}}]
    wrong = [plan[0], plan[4], plan[1], plan[2], plan[3]]
    can(d, "qwen", {TODO: draft + perfect, JSON5: json.dumps(records),
                    TOOLS: json.dumps(plan)})
    # cut off by the token limit: the thinking holds a perfect app and never ends
    can(d, "gemma", {TODO: "<think>I will write:\n" + perfect,
                     JSON5: "Sure! Here are the records:\n" + fenced(json.dumps(records), "json")
                     + "Let me know if you need more.",
                     TOOLS: json.dumps(wrong)})
    out, _ = bench(d, "qwen", "gemma", "--tasks",
                   tasks(d, "1.1-todo", "4.1-structured-output", "4.2-tool-sequencing"),
                   "--runs", "1", "--format", "json")
    report = json.loads(out)
    r = run_of(report, "qwen", "1.1-todo")
    check(r["score"] == 100 and not r["thinking_cut"], f"closed think: {r}")
    r = run_of(report, "gemma", "1.1-todo")
    check(r["score"] == 0 and r["thinking_cut"] and r["answer_from"] == "nothing",
          f"unclosed think: {r}")
    check(run_of(report, "qwen", "4.1-structured-output")["score"] == 100, f"{report}")
    r = run_of(report, "gemma", "4.1-structured-output")
    check(r["score"] == 80 and missed(r) == ["nothing but the JSON in the answer"], f"{r}")
    check(run_of(report, "qwen", "4.2-tool-sequencing")["score"] == 100, f"{report}")
    r = run_of(report, "gemma", "4.2-tool-sequencing")
    check(r["score"] == 80 and missed(r) ==
          ["writes /var/report/hosts.txt last, after every ping"], f"wrong order: {r}")
    # categories and the total: coding 100 against 0, tools 100 against 80
    q, g = result(report, "qwen"), result(report, "gemma")
    check(q["categories"]["coding"] == 100 and g["categories"]["coding"] == 0, f"{q} {g}")
    check(g["categories"]["tools"] == 80 and q["rank"] == 1 and g["rank"] == 2, f"{g}")


# ---- the sandbox ----

ESCAPE = r'''
import os, socket, sys
found = []
for port in (PORT, 80):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        found.append(f"connected to {port}")
    except OSError as e:
        found.append(f"no connection to {port}: {e.errno}")
for path in ("HOSTFILE", "/usr/escaped", "/etc/escaped", "/escaped"):
    try:
        with open(path, "w") as f:
            f.write("out")
        found.append(f"wrote {path}")
    except OSError as e:
        found.append(f"cannot write {path}: {e.errno}")
for path in ("SOCKET", "HOME"):
    found.append(f"{path} {'exists' if os.path.exists(path) else 'absent'}")
with open("/work/escape.txt", "w") as f:
    f.write("\n".join(found) + "\n")
'''


@sim_only("canned answers")
@fixture(conf(), models=MODELS)
def test_sandbox_holds(d):
    """Model code that tries the network, writes outside its work folder and looks for llmd's
    socket finds none of it; code that loops for ever is stopped at the check's timeout and
    the bench goes on to the next task."""
    d.wait_status("qwen ready")
    host_file = os.path.join(d.dir, "escaped")
    sock = os.path.join(d.runtime, "control.sock")
    escape = (ESCAPE.replace("PORT", str(d.port)).replace("HOSTFILE", host_file)
              .replace("SOCKET", sock).replace("HOME", os.path.expanduser("~")))
    with open(os.path.join(ANSWERS, "todo.py")) as f:
        app = f.read()
    loop = {"category": "coding", "max_tokens": 4096, "timeout": 3}
    can(d, "qwen", {TODO: fenced(escape + app),
                    "LOOP-MARKER": fenced("while True:\n    pass\n" + app),
                    BAYES: "By Bayes: P(alert) = 0.95 × 0.02 + 0.10 × 0.98 = 0.117, so "
                           "P(error | alert) = 0.019 / 0.117 = 16.2%."})
    keep = os.path.join(d.dir, "keep")
    path = tasks(d, "1.1-todo", "3.3-bayes",
                 extra={"1.5-loop": ("1.1-todo", loop, "LOOP-MARKER: " + TODO[:4])})
    out, _ = bench(d, "qwen", "--tasks", path, "--runs", "1", "--format", "json", "--keep", keep)
    report = json.loads(out)
    r = run_of(report, "qwen", "1.1-todo")
    check(r["score"] == 100, f"the escaping app still works as a todo app: {r}")
    with open(os.path.join(keep, "qwen", "1.1-todo", "run-1", "work", "escape.txt")) as f:
        found = f.read().splitlines()
    # a network of its own: a loopback where nothing listens, llmd's port included
    check(found[0].startswith(f"no connection to {d.port}: ") and
          found[1].startswith("no connection to 80: "), f"network: {found}")
    check(not os.path.exists(host_file) and not os.path.exists("/usr/escaped") and
          not os.path.exists("/etc/escaped") and not os.path.exists("/escaped"),
          f"a write escaped: {found}")
    check(f"cannot write /usr/escaped: 30" in found and f"{sock} absent" in found and
          f"{os.path.expanduser('~')} absent" in found, f"{found}")
    # the loop: stopped at 3 s, scored 0, and the next task ran
    r = run_of(report, "qwen", "1.5-loop")
    check(r["score"] is None and r["error"] == "the check timed out after 3 s", f"loop: {r}")
    check(result(report, "qwen")["tasks"]["1.5-loop"]["score"] == 0, f"loop: {report}")
    check(run_of(report, "qwen", "3.3-bayes")["score"] == 100, f"after the loop: {report}")
    check(active(d) == ("qwen", True), f"active {active(d)}")


@sim_only("canned answers, a check held on purpose")
@fixture(conf(), models=MODELS)
def test_interrupt_in_check(d):
    """Ctrl-C while a check runs: the check and all it started end, the model active at the
    start is active again, and llmctl exits 130."""
    d.wait_status("qwen ready")
    with open(os.path.join(ANSWERS, "todo.py")) as f:
        app = f.read()
    # The model's program says it started, then loops under a command line of this test's own
    # (other tests, and other runs of the suite beside this one, run todo.py programs too).
    marker = "llmd-quality-" + os.path.basename(d.dir)
    can(d, "gemma", {TODO: fenced("import os, sys\nopen('/work/started', 'w').close()\n"
                                  f"os.execv(sys.executable, [sys.executable, '-c', "
                                  f"'while True: pass', '{marker}'])\n" + app)})
    keep = os.path.join(d.dir, "keep")
    cmd = [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "bench", "--suite",
           "quality", "gemma", "--tasks", tasks(d, "1.1-todo"), "--runs", "1", "--keep", keep]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = os.path.join(keep, "gemma", "1.1-todo", "run-1", "work", "started")
    # the check has started the model's program (which says so, then loops)
    wait_until(lambda: os.path.exists(out) or p.poll() is not None, "the check to start")
    wait_until(lambda: subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode
               == 0 or p.poll() is not None, "the model's program looping")
    check(p.poll() is None, "llmctl ended before the model's program looped")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=TIMEOUT)
    check(p.returncode == 130, f"exit {p.returncode}: {err}")
    check("interrupted; qwen is active again" in err, err)
    check(active(d) == ("qwen", True), f"active {active(d)}")
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    check(left.strip() == "", f"the model's program outlived the check: {left}")


# ---- what it needs ----

def test_missing_packages():
    """A task that needs a package that is not there: said before anything runs."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        task = os.path.join(tmp, "quality", "9.9-needs")
        os.makedirs(task)
        with open(os.path.join(tmp, "10-short.json"), "w") as f:
            json.dump({"name": "short", "prompt": "Say hello.", "max_tokens": 8}, f)
        with open(os.path.join(task, "task.json"), "w") as f:
            json.dump({"category": "coding", "max_tokens": 10, "requires": [
                {"package": "python3-nonesuch", "path": "/nonexistent/nonesuch"},
                {"package": "node-nonesuch", "path": "/nonexistent/node-nonesuch"}]}, f)
        with open(os.path.join(task, "prompt.md"), "w") as f:
            f.write("x")
        p = subprocess.run([LLMCTL, "--socket", os.path.join(tmp, "none.sock"), "bench",
                            "--suite", "quality", "--tasks", tmp], capture_output=True,
                           text=True, timeout=TIMEOUT)
        check(p.returncode == 1 and "missing: python3-nonesuch node-nonesuch" in p.stderr,
              f"exit {p.returncode}: {p.stderr}")
    p = subprocess.run([LLMCTL, "bench", "--keep", "/tmp/x"], capture_output=True, text=True)
    check(p.returncode == 1 and "--keep goes with --suite quality only" in p.stderr, p.stderr)


# ---- the whole suite ----

@fixture(conf(), models=MODELS)
def test_whole_suite(d):
    """The shipped suite: every task scored, every table there. On the tiny real model on the
    real tier (scores near zero); on the simulator, a known-good answer to each task, which
    must score 100 (each shipped check can give full marks). On the real tier the token
    budgets are cut to 32: on two busy cores the tiny model
    makes as few as 20 tokens a second, and slows further as its context grows, so the
    shipped 4,096 would take minutes a task; the speed task is the short one."""
    d.wait_status("qwen ready")
    # On the simulator, a known-good answer to each task (tests/integration/quality/answers),
    # matched by the first line of its prompt: each check must give it 100.
    good = {}
    for f in sorted(os.listdir(os.path.join(ANSWERS, "answers"))):
        with open(os.path.join(SHIPPED, "quality", f[:-3], "prompt.md")) as p:
            first = p.readline().strip()
        with open(os.path.join(ANSWERS, "answers", f)) as a:
            good[first] = a.read()
    can(d, "qwen", good)
    path = os.path.join(d.dir, "tasks")
    shutil.copytree(os.path.join(SHIPPED, "quality"), os.path.join(path, "quality"))
    shutil.copy(os.path.join(SHIPPED, "10-short.json"), path)
    names = sorted(n for n in os.listdir(os.path.join(path, "quality")) if n[0] != "_")
    for n in names:
        with open(os.path.join(path, "quality", n, "task.json")) as f:
            task = json.load(f)
        task["max_tokens"] = 32 if REAL else 4096
        with open(os.path.join(path, "quality", n, "task.json"), "w") as f:
            json.dump(task, f)
    models = ("qwen",)
    json_file = os.path.join(d.dir, "report.json")
    table, _ = bench(d, *models, "--tasks", path, "--runs", "1", "--format", "markdown", "-o",
                     json_file, rc=None)
    with open(json_file) as f:
        report = json.load(f)
    check(names == ["1.1-todo", "1.2-url-shortener", "1.3-lru-cache", "2.1-bug-fix",
                    "2.2-pagination", "3.1-debug-log", "3.2-architecture", "3.3-bayes",
                    "4.1-structured-output", "4.2-tool-sequencing"], f"{names}")
    check([t["name"] for t in report["quality_tasks"]] == names, f"{report['quality_tasks']}")
    check([t["name"] for t in report["tasks"]] == ["short"], f"{report}")
    for m in models:
        res = result(report, m)
        for n in names:
            runs = res["tasks"][n]["runs"]
            check(len(runs) == 1 and runs[0]["error"] is None and runs[0]["check"] is not None
                  and 0 <= runs[0]["score"] <= 100, f"{m} {n}: {runs}")
            check(REAL or (runs[0]["score"] == 100 and res["tasks"][n]["score"] == 100),
                  f"the known-good answer to {n} scored {runs}")
        check(res["total"] is not None and res["tok_per_sec"] is not None, f"{res}")
    check(active(d) == ("qwen", True), f"active {active(d)}")
    # the tables a user reads
    for head in ("### coding", "### reasoning", "### tools", "### speed", "### total"):
        check(head in table, f"{head} in {table}")
    check(sum(line.startswith("| qwen ") for line in table.splitlines()) == 5,
          f"a row of qwen in each table: {table}")


if __name__ == "__main__":
    run()
