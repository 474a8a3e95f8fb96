#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Real clients drive llmd's proxy: the OpenAI, LangChain, Vercel AI and Anthropic JavaScript
SDKs (tests/js/*.mjs, one case per run), and two coding agents, Continue's `cn` and Qwen Code's
`qwen`, each run once from start to exit with a throwaway HOME.

Needs node and tests/js/node_modules (`npm ci --prefix tests/js`); without them every case
exits 77, which meson counts as skipped. tools/test.sh installs them first, so CI never skips."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from llmdtest import REAL, Failure, LLMCTL, TIMEOUT, check, fixture, run, sim_only, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(os.path.dirname(HERE), "js")
NODE = os.environ.get("NODE", "node")
SKIP = 77
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never $http_proxy

MODELS = ("qwen", "gemma", "nomic")
ALL_IDS = "qwen,qwen3.5,gemma,gemma4,nomic"  # what /v1/models lists: each model, then its aliases
# What the agents send first: cn 6 KB, qwen 30 to 70 KB of system prompt and tools, some 19000
# tokens of the tiny real model, far beyond a 4096-token context. That model says it was trained
# on 4096, and llama-server caps each slot there unless the model's metadata says more. The
# simulator knows no --override-kv (and counts a prompt's words: it never comes near).
AGENT_CTX = 32768
QWEN_CTX = f"ctx-size = {AGENT_CTX}\n" + (
    f"override-kv = qwen2.context_length=int:{AGENT_CTX}\n" if REAL else "")
# Tiny models never stop by themselves: every agent request is capped at this many tokens.
AGENT_MAX_TOKENS = 16
# Seconds an agent may take, start to exit. The real tier reads a 60 KB prompt in ~10 s on two
# idle cores, and in three times that on busy ones; meson.build gives these tests time for it.
AGENT_TIMEOUT = 120


def conf(port=0, gemma="", qwen="", top=""):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{port}
{top}

[*]
ctx-size = 4096
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5
{QWEN_CTX}
{qwen}

[gemma]
model = @MODELS@/gemma.gguf
aliases = gemma4
{gemma}

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""


def pick_port():
    """A TCP port nobody listens on now; llmd binds it next (a race, but a small one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(d, gemma="", qwen="", top=""):
    """Starts d on a fresh port; returns it once the models are ready and the proxy answers."""
    port = pick_port()
    d.write_config(conf(port, gemma, qwen, top))
    d.start()
    d.wait_status("qwen ready · embed nomic ready")

    def answers():
        try:
            with DIRECT.open(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                return r.status == 200
        except OSError:  # urllib's HTTPError and URLError are OSErrors
            return False
    wait_until(answers, f"the proxy to answer on 127.0.0.1:{port}")
    return port


def clean_env(**extra):
    """This environment without proxies (a client must reach 127.0.0.1 itself), plus extra."""
    e = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    e["NO_PROXY"] = e["no_proxy"] = "127.0.0.1,localhost"
    return {**e, **extra}


def spawn(what, argv, env, timeout, cwd=None):
    """Runs argv to its end; returns the CompletedProcess, or fails after timeout seconds."""
    try:
        return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as x:
        raise Failure(f"{what}: still running after {x.timeout} s\n"
                      f"stdout: {x.stdout}\nstderr: {x.stderr}")


def node(port, case, *args, env=None, script="sdk"):
    """Runs one case of tests/js/SCRIPT.mjs; returns its "ok CASE ..." line."""
    e = clean_env(LLMD_BASE_URL=f"http://127.0.0.1:{port}/v1", **(env or {}))
    p = spawn(f"node {script}.mjs {case}", [NODE, os.path.join(JS_DIR, script + ".mjs"), case,
                                          *args], e, TIMEOUT + 10)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode != 0 or not line.startswith(f"ok {case}"):
        raise Failure(f"node {script}.mjs {case}: exit {p.returncode}\n"
                      f"stdout: {p.stdout}\nstderr: {p.stderr}")
    print(line)
    return line


def fields(line):
    """{"model": "gemma", ...} from "ok CASE model=gemma chunks=10 ..."."""
    return dict(w.split("=", 1) for w in line.split()[2:] if "=" in w)


@fixture(conf(), models=MODELS, start=False)
def test_models(d):
    node(start(d), "models", env={"LLMD_EXPECT_MODELS": ALL_IDS})


def client_case(script, case, model):
    """Declares the test of one case of tests/js/SCRIPT.mjs: a fresh llmd, the case run once
    against it. Named test_CASE for the OpenAI SDK's own script (sdk.mjs), test_SCRIPT_CASE for
    the others."""
    def test(d):
        node(start(d), case, model, script=script)
    test.__name__ = "test_" + (case if script == "sdk" else f"{script}_{case}")
    globals()[test.__name__] = fixture(conf(), models=MODELS, start=False)(test)


# (script, case, model asked for): each a test of its own.
for row in [
    ("sdk", "chat", "qwen"),
    ("sdk", "chat_stream", "qwen"),
    ("sdk", "stream_usage", "qwen"),
    ("sdk", "tools", "qwen"),
    ("sdk", "completions", "qwen"),
    ("sdk", "responses", "qwen"),
    ("sdk", "responses_stream", "qwen"),
    ("sdk", "embeddings", "nomic"),
    ("sdk", "models_retrieve", "qwen"),
    ("langchain", "invoke", "qwen"),
    ("langchain", "stream", "qwen"),
    ("langchain", "embeddings", "nomic"),
    ("aisdk", "generate_text", "qwen"),
    ("aisdk", "stream_text", "qwen"),
    ("aisdk", "embed_many", "nomic"),
    ("anthropic", "messages", "qwen"),
    ("anthropic", "messages_stream", "qwen"),
    ("anthropic", "count_tokens", "qwen"),
]:
    client_case(*row)

# llmd's log line for each request it answered (daemon/proxy-request.c, request_log()).
REQUEST_LOG = re.compile(r"^llmd: (\S+) (\S+) model=(\S*) → (\S+) (\d+) .*?( \(client gone\))?$")


def requests_logged(d):
    """[(method, path, target, status, client_gone, line)] of every request llmd logged."""
    out = []
    with open(d.log_path, errors="replace") as f:
        for line in f:
            m = REQUEST_LOG.match(line.rstrip("\n"))
            if m:
                out.append((m[1], m[2], m[4], int(m[5]), bool(m[6]), m[0]))
    return out


@fixture(conf(), models=MODELS, start=False)
def test_abort(d):
    port = start(d)
    node(port, "abort", "qwen")
    # llmd saw the client go, and the model stopped generating for it: the simulator records
    # the client it lost, a real llama-server logs the task it cancelled (llmd's log has both).
    gone = wait_until(lambda: [r for r in requests_logged(d) if r[4]], "llmd to log the abort")
    check([r[:4] for r in gone] == [("POST", "/v1/chat/completions", "qwen", 200)],
          f"requests logged with (client gone): {gone}")
    if REAL:
        def cancelled():
            with open(d.log_path, errors="replace") as f:
                return "cancel task" in f.read()
        wait_until(cancelled, "llama-server to cancel the aborted task")
    else:
        wait_until(lambda: any(r.get("client_gone") for r in d.records("request", "qwen")),
                   "the simulator to see its client go")


@fixture(conf(), models=MODELS, start=False)
def test_stream_during_swap(d):
    port = start(d, gemma="env = LLAMA_SIM_LOAD_MS=1500")
    d.mark()
    ctl = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"),
                            "switch", "gemma"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        d.wait_status(lambda s: s.startswith("gemma loading"))
        t_request = time.monotonic()
        line = node(port, "stream_during_swap", "gemma", env={"LLMD_EXPECT_MODEL": "gemma"})
        check(fields(line).get("model") == "gemma", f"chunks not from gemma: {line}")
        out, err = ctl.communicate(timeout=TIMEOUT)
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait()
    check(ctl.returncode == 0,
          f"llmctl switch gemma: exit {ctl.returncode}\nstdout: {out}\nstderr: {err}")
    # The request went out before gemma was ready: it really started during the swap.
    i = d.wait_status(lambda s: s.startswith("gemma ready"))
    check(d.messages[i][0] > t_request, "gemma was ready before the request: no swap was under way")


# ---- errors that clients retry (issue 21) ----
# Each of llmd's errors for a cause that passes, per API, read by a client that decides by the
# text (tests/js/retry.mjs: the real SDK, pi's retry rule, and Claude Code's for Messages).

RETRY_APIS = ("chat", "messages", "responses")


@sim_only("tokens slow enough to cut a stream between them")
@fixture(conf(), models=MODELS, start=False, env={"LLAMA_SIM_TOKEN_MS": "50"})
def test_retry_after_switch_now(d):
    port = start(d)
    ctl = [LLMCTL, "--socket", os.path.join(d.runtime, "control.sock")]
    model = "qwen"
    for api in RETRY_APIS:
        other = "gemma" if model == "qwen" else "qwen"
        line = node(port, api, model, script="retry",
                    env={"LLMD_CUT": json.dumps([*ctl, "switch", other, "--now"])})
        check(int(fields(line)["tokens"]) >= 1 and "--now" in line, f"{api}: {line}")
        model = other


@sim_only("a child that dies after its third token")
@fixture(conf(), models=MODELS, start=False)
def test_retry_after_child_died(d):
    port = start(d, qwen="env = LLAMA_SIM_EXIT_AFTER_TOKENS=3\nrestart-sec = 0.1")
    for i, api in enumerate(RETRY_APIS):
        if i > 0:  # it is back, and ready for the next
            wait_until(lambda: len(d.starts("qwen")) > i
                       and d.statuses()[-1] == "qwen ready · embed nomic ready",
                       "qwen to start again and be ready")
        line = node(port, api, "qwen", script="retry")
        check(int(fields(line)["tokens"]) == 3, f"{api}: {line}")


@sim_only("a load slower than the hold timeout")
@fixture(conf(), models=MODELS, start=False)
def test_retry_after_hold_timeout(d):
    port = start(d, gemma="env = LLAMA_SIM_LOAD_MS=60000", top="hold-timeout = 0.5s")
    sw = subprocess.Popen([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "switch",
                           "gemma"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        d.wait_starts(1, "gemma")
        for api in RETRY_APIS:
            line = node(port, api, "gemma", script="retry")
            check(int(fields(line)["tokens"]) == 0 and "hold timeout" in line, f"{api}: {line}")
    finally:
        sw.kill()
        sw.wait()


# ---- coding agents, start to exit ----


def package_bin(package, name):
    """The script behind command name of package, from its package.json."""
    root = os.path.join(JS_DIR, "node_modules", package)
    with open(os.path.join(root, "package.json")) as f:
        b = json.load(f)["bin"]
    return os.path.join(root, b[name] if isinstance(b, dict) else b)


def agent(d, what, argv, env, path):
    """Runs an agent (node, argv) once in an empty directory; it must exit 0 having printed
    something, and llmd must have answered its requests to path, all with 200."""
    work = os.path.join(d.dir, "work")
    os.makedirs(work, exist_ok=True)
    p = spawn(what, [NODE, *argv], env, AGENT_TIMEOUT, cwd=work)
    check(p.returncode == 0, f"{what}: exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    check(p.stdout.strip(), f"{what}: printed nothing\nstderr: {p.stderr}")
    # llmd logs a request once it is done, which can be a moment after the client has read it.
    served = wait_until(lambda: [r for r in requests_logged(d) if r[1] == path],
                        f"llmd to log {what}'s requests to {path}")
    print("\n".join(r[5] for r in served))
    check(all(r[3] == 200 and not r[4] for r in served), f"{what}: llmd logged {served}")
    print(f"ok {what}: {len(served)} request(s) to {path}; printed {p.stdout.strip()[:60]!r}")


# Where an agent would take settings from the environment of whoever runs the tests (their keys,
# base URLs, config directories): none of it reaches the agent.
AGENT_ENV_PREFIXES = ("XDG_", "CONTINUE_", "QWEN_", "OPENAI_", "ANTHROPIC_", "GEMINI_")


def agent_env(d, **extra):
    """The environment of one agent: a throwaway HOME, and a resolver that gives up on a name
    after a second. There is no network here but 127.0.0.1, and cn looks api.continue.dev up
    for its version check, which nothing turns off, and waits for the answer (10 s, where a
    name server never answers); glibc reads RES_OPTIONS over /etc/resolv.conf."""
    home = os.path.join(d.dir, "home")
    os.makedirs(home, exist_ok=True)
    e = {k: v for k, v in clean_env().items() if not k.startswith(AGENT_ENV_PREFIXES)}
    return {**e, "HOME": home, "RES_OPTIONS": "timeout:1 attempts:1", **extra}


@fixture(conf(), models=MODELS, start=False)
def test_agent_continue(d):
    """Continue's `cn -p`, headless, with llmd as an OpenAI-compatible provider."""
    port = start(d)
    env = agent_env(d, FORCE_NO_TTY="1", CONTINUE_CLI_ENABLE_TELEMETRY="0",
                    CONTINUE_METRICS_ENABLED="0",
                    # Continue's hub: nothing is asked of it with a local config; if something
                    # were, it gets a refusal here, at once, not a wait for the network.
                    CONTINUE_API_BASE="http://127.0.0.1:1/")
    config = os.path.join(env["HOME"], "llmd.yaml")
    with open(config, "w") as f:
        f.write(f"""name: llmd
version: 1.0.0
schema: v1
models:
  - name: llmd
    provider: openai
    model: qwen
    apiBase: http://127.0.0.1:{port}/v1
    apiKey: sk-no-key
    roles: [chat, edit, apply]
    defaultCompletionOptions:
      contextLength: {AGENT_CTX}
      maxTokens: {AGENT_MAX_TOKENS}
""")
    agent(d, "cn", [package_bin("@continuedev/cli", "cn"), "-p", "Say hello.", "--config", config],
          env, "/v1/chat/completions")


def qwen_code(d, auth_type, path):
    """Qwen Code's `qwen PROMPT` (one-shot, non-interactive) with llmd as its auth_type
    provider: base URLs and token caps from its settings.json, the mode from --auth-type."""
    port = start(d)
    env = agent_env(d, LLMD_API_KEY="sk-no-key", QWEN_TELEMETRY_ENABLED="false")
    home = env["HOME"]
    base = {"openai": f"http://127.0.0.1:{port}/v1",
            # Anthropic's SDK, which qwen uses there, adds /v1/messages itself.
            "anthropic": f"http://127.0.0.1:{port}"}[auth_type]
    settings = {
        "general": {"enableAutoUpdate": False},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        # No second request in the background to distil "memories" from the session: one
        # turn is the test, and on the real tier that request alone takes 5 to 20 s.
        "memory": {"enableManagedAutoMemory": False},
        "security": {"auth": {"selectedType": auth_type}},
        "model": {"name": "qwen"},
        "modelProviders": {auth_type: [{
            "id": "qwen", "name": "llmd", "envKey": "LLMD_API_KEY", "baseUrl": base,
            "generationConfig": {
                "contextWindowSize": AGENT_CTX, "maxRetries": 0,
                "timeout": AGENT_TIMEOUT * 1000,
                "samplingParams": {"max_tokens": AGENT_MAX_TOKENS},
            },
        }]},
    }
    os.makedirs(os.path.join(home, ".qwen"))
    with open(os.path.join(home, ".qwen", "settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
    agent(d, f"qwen --auth-type {auth_type}",
          [package_bin("@qwen-code/qwen-code", "qwen"), "--auth-type", auth_type, "Say hello."],
          env, path)


@fixture(conf(), models=MODELS, start=False)
def test_agent_qwen_openai(d):
    qwen_code(d, "openai", "/v1/chat/completions")


@fixture(conf(), models=MODELS, start=False)
def test_agent_qwen_anthropic(d):
    qwen_code(d, "anthropic", "/v1/messages")



def missing():
    """Why the JavaScript side cannot run here, or None."""
    if not shutil.which(NODE):
        return f"'{NODE}' not found (install Node.js 20 or newer)"
    with open(os.path.join(JS_DIR, "package.json")) as f:
        wanted = json.load(f)["dependencies"]
    for name in wanted:
        if not os.path.isfile(os.path.join(JS_DIR, "node_modules", name, "package.json")):
            return f"{JS_DIR}/node_modules/{name} is missing (run: npm ci --prefix tests/js)"
    return None


if __name__ == "__main__":
    why = missing() if sys.argv[1:] != ["--list"] else None  # listing needs no node
    if why:
        print(f"SKIP: {why}")
        sys.exit(SKIP)
    run()
