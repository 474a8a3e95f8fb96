#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A real client: the official OpenAI JavaScript SDK (tests/js/sdk.mjs) drives llmd's proxy.

Needs node and tests/js/node_modules (`npm ci --prefix tests/js`); without them every case
exits 77, which meson counts as skipped. tools/test.sh installs them first, so CI never skips."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

from llmdtest import Failure, LLMCTL, TIMEOUT, check, fixture, run, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(os.path.dirname(HERE), "js")
SDK = os.path.join(JS_DIR, "sdk.mjs")
NODE = os.environ.get("NODE", "node")
SKIP = 77
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never $http_proxy

MODELS = ("qwen", "gemma", "nomic")
ALL_IDS = "qwen,qwen3.5,gemma,gemma4,nomic"  # what /v1/models lists: each model, then its aliases


def conf(port=0, gemma=""):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{port}

[*]
ctx-size = 4096
stop-timeout = 5s

[qwen]
model = @MODELS@/qwen.gguf
aliases = qwen3.5

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


def start(d, gemma=""):
    """Starts d on a fresh port; returns it once the models are ready and the proxy answers."""
    port = pick_port()
    d.write_config(conf(port, gemma))
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


def node(port, case, *args, env=None):
    """Runs one case of sdk.mjs; returns its "ok CASE ..." line."""
    e = {**os.environ, "LLMD_BASE_URL": f"http://127.0.0.1:{port}/v1", **(env or {})}
    try:
        p = subprocess.run([NODE, SDK, case, *args], env=e, capture_output=True, text=True,
                           timeout=TIMEOUT + 10)
    except subprocess.TimeoutExpired as x:
        raise Failure(f"node {case}: no answer in {x.timeout} s\n"
                      f"stdout: {x.stdout}\nstderr: {x.stderr}")
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if p.returncode != 0 or not line.startswith(f"ok {case}"):
        raise Failure(f"node {case}: exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    print(line)
    return line


def fields(line):
    """{"model": "gemma", ...} from "ok CASE model=gemma chunks=10 ..."."""
    return dict(w.split("=", 1) for w in line.split()[2:] if "=" in w)


@fixture(conf(), models=MODELS, start=False)
def models(d):
    node(start(d), "models", env={"LLMD_EXPECT_MODELS": ALL_IDS})


@fixture(conf(), models=MODELS, start=False)
def chat(d):
    node(start(d), "chat", "qwen")


@fixture(conf(), models=MODELS, start=False)
def chat_stream(d):
    node(start(d), "chat_stream", "qwen")


@fixture(conf(), models=MODELS, start=False)
def completions(d):
    node(start(d), "completions", "qwen")


@fixture(conf(), models=MODELS, start=False)
def embeddings(d):
    node(start(d), "embeddings", "nomic")


@fixture(conf(), models=MODELS, start=False)
def stream_during_swap(d):
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


TESTS = {f.__name__: f for f in [
    models, chat, chat_stream, completions, embeddings, stream_during_swap,
]}


def missing():
    """Why the JavaScript side cannot run here, or None."""
    if not shutil.which(NODE):
        return f"'{NODE}' not found (install Node.js 20 or newer)"
    if not os.path.isfile(os.path.join(JS_DIR, "node_modules", "openai", "package.json")):
        return f"{JS_DIR}/node_modules/openai is missing (run: npm ci --prefix tests/js)"
    return None


if __name__ == "__main__":
    why = missing() if sys.argv[1:] != ["--list"] else None  # listing needs no node
    if why:
        print(f"SKIP: {why}")
        sys.exit(SKIP)
    run(TESTS)
