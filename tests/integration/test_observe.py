#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What llmd shows of what it does: GET /llmd/metrics (Prometheus text), the activity log
(GET /llmd/activity, the Activity method, llmctl activity) — checked against a scripted
sequence of requests and switches."""

import json
import os
import shutil
import socket
import subprocess

from llmdtest import (Stream, check, fixture, free_port, http, llmctl, llmctl_json, run,
                      sim_only, wait_until)

MODELS = ("qwen", "gemma", "nomic")
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


if __name__ == "__main__":
    run()
