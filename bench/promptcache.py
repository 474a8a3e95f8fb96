#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What a swap costs an agent's next turn, with llmd's prompt cache and without it.

An agent-like conversation (a ~3,000-token prefix of system prompt, tool definitions and
history, then a short new turn) runs on qwen against a real llama-server (Debian's, with the
tests' tiny model). Then qwen is switched away (max-resident = 1: evicted) and back, and the next
turn is sent; then llmd is restarted and one more turn is sent. For each turn: the prompt tokens
the server processed (timings.prompt_n), the time to the first streamed token, and, for the
swaps, what llmd saved and restored and how long that took. Once with prompt-cache on (the
default), once with prompt-cache = false. A benchmark: it prints figures, asserts nothing.

Usage: bench/promptcache.py [BUILD_DIR] [ROUNDS]   (default build, 3)
Needs LLMD_REAL_LLAMA_SERVER and LLMD_REAL_MODELS (tools/real-llama-server.sh prints them).
"""

import http.client
import json
import os
import statistics
import sys
import time

os.environ["LLMD_TIER"] = "real"
import benchenv  # noqa: E402 (sets up paths)
rounds = benchenv.arg(2, 3)

from llmdtest import LLMCTL, Llmd, free_port, wait_until  # noqa: E402
import subprocess  # noqa: E402

if not os.environ.get("LLMD_REAL_LLAMA_SERVER") or not os.environ.get("LLMD_REAL_MODELS"):
    sys.exit("bench/promptcache.py: set LLMD_REAL_LLAMA_SERVER and LLMD_REAL_MODELS "
             "(tools/real-llama-server.sh prints them)")

PORT = free_port()


def conf(cache):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
max-resident = 1
[*]
ctx-size = 4096
parallel = 1
prompt-cache = {"true" if cache else "false"}
[qwen]
model = @MODELS@/qwen.gguf
[gemma]
model = @MODELS@/gemma.gguf
"""


# An agent's context: instructions, tool definitions, earlier turns; ~3,000 tokens for the tiny
# model's tokenizer.
TOOLS = "\n".join(f"tool read_file_{i}(path: string, offset: int) -> string: reads part {i} of a "
                  f"file in the work tree and returns its lines" for i in range(22))
HISTORY = "\n".join(f"user: step {i}: look at module m{i}.c\nassistant: m{i}.c defines f{i} and "
                    f"g{i}; f{i} calls g{i} twice." for i in range(15))
PREFIX = [{"role": "system", "content": "You are a coding agent.\n" + TOOLS},
          {"role": "user", "content": HISTORY}]


def turn(n):
    """The n-th new turn: the same prefix, then a short new question."""
    return {"messages": PREFIX + [{"role": "user", "content": f"turn {n}: what next?"}],
            "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}


def ask(n):
    """(prompt_n, time to first token in ms) of turn n."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
    t0 = time.monotonic()
    c.request("POST", "/v1/chat/completions", json.dumps(turn(n)),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        sys.exit(f"bench/promptcache.py: turn {n}: {r.status} {r.read()[:300]!r}")
    ttft, prompt_n, buf = None, None, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            data = event.decode().removeprefix("data: ")
            if data == "[DONE]":
                continue
            j = json.loads(data)
            delta = (j.get("choices") or [{}])[0].get("delta", {})
            if ttft is None and (delta.get("content") or delta.get("reasoning_content")):
                ttft = (time.monotonic() - t0) * 1000
            if "timings" in j:
                prompt_n = j["timings"]["prompt_n"]
    c.close()
    return prompt_n, ttft


def llmctl_switch(d, model):
    p = subprocess.run([LLMCTL, "--socket", os.path.join(d.runtime, "control.sock"), "--json",
                        "switch", model], capture_output=True, text=True)
    return json.loads(p.stdout)


def ready(d):
    wait_until(lambda: os.path.exists(os.path.join(d.runtime, "control.sock")), "llmd up", 60)
    wait_until(lambda: d.pid_of("qwen"), "qwen up", 60)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)


def run(cache):
    rows = []
    d = Llmd(conf(cache), models=("qwen", "gemma"))
    d.start()
    try:
        ready(d)
        for i in range(rounds):
            first = ask(3 * i)            # the conversation as it stands
            warm = ask(3 * i + 1)         # the next turn, nothing in between
            away = llmctl_switch(d, "gemma")
            back = llmctl_switch(d, "qwen")
            swapped = ask(3 * i + 2)      # the next turn after a switch away and back
            d.stop()
            d.start()
            ready(d)
            restarted = ask(3 * i + 3)
            rows.append({"first": first, "warm": warm, "swapped": swapped,
                         "restarted": restarted,
                         "saved": away.get("prompt_cache", {}).get("saved", {}),
                         "restored": back.get("prompt_cache", {}).get("restored", {}),
                         "switch_away": away.get("total_sec"), "switch_back": back.get("total_sec")})
    finally:
        d.kill_all()
        d.cleanup()
    return rows


def med(rows, f):
    xs = [f(r) for r in rows if f(r) is not None]
    return statistics.median(xs) if xs else float("nan")


print(f"llama-server: {os.environ['LLMD_REAL_LLAMA_SERVER']}; {rounds} rounds; medians")
print()
print("| prompt-cache | turn | prompt tokens processed | first token (ms) |")
print("| --- | --- | --- | --- |")
results = {}
for cache in (True, False):
    rows = results[cache] = run(cache)
    for name, label in (("first", "first turn (cold)"), ("warm", "next turn, no swap"),
                        ("swapped", "next turn after a switch away and back"),
                        ("restarted", "next turn after llmd restarted")):
        # Only the first round's first turn is cold: later rounds begin after a restart.
        rs = rows[:1] if name == "first" else rows
        print(f"| {'on' if cache else 'off'} | {label} | {med(rs, lambda r: r[name][0]):.0f} | "
              f"{med(rs, lambda r: r[name][1]):.1f} |")
print()
print("| prompt-cache | switch away (s) | switch back (s) | saved | save (ms) | restored | restore (ms) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for cache in (True, False):
    rows = results[cache]
    print(f"| {'on' if cache else 'off'} | {med(rows, lambda r: r['switch_away']):.3f} | "
          f"{med(rows, lambda r: r['switch_back']):.3f} | "
          f"{med(rows, lambda r: r['saved'].get('tokens', 0)):.0f} tokens, "
          f"{med(rows, lambda r: r['saved'].get('bytes', 0)) / 1e6:.2f} MB | "
          f"{med(rows, lambda r: r['saved'].get('sec', 0)) * 1000:.1f} | "
          f"{med(rows, lambda r: r['restored'].get('tokens', 0)):.0f} tokens | "
          f"{med(rows, lambda r: r['restored'].get('sec', 0)) * 1000:.1f} |")
