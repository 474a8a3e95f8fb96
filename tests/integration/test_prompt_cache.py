#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prompt caches kept across stops: before a planned stop (an eviction, llmctl unload,
unload-after, llmd's own stop) llmd has the child save its slots under
STATE_DIR/prompt-cache/MODEL/, and restores them when the model is ready again, before any
request. On the real tier the request after a switch away and back processes a handful of
prompt tokens instead of all of them; the simulator keeps no KV cache, so there the tests check
what llmd did (files, results, logs) and its fault knobs."""

import json
import os
import stat
import threading
import time

from llmdtest import (REAL, Varlink, check, fixture, free_port, http, llmctl, llmctl_json, run,
                      sim_only, wait_until)

PORT = free_port()
MODELS = ("qwen", "gemma", "nomic")
# About 1,100 tokens for the real tiny model: over the tests' prompt-cache-min-tokens.
PROMPT = " ".join(f"w{i}" for i in range(300))
LONG = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4, "temperature": 0}


def conf(top="", star="", qwen="", gemma="", resident=1):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
max-resident = {resident}
{top}

[*]
stop-timeout = 5s
prompt-cache-min-tokens = 100
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


def call(d, verb, params=None):
    v = Varlink(os.path.join(d.runtime, "control.sock"))
    reply = v.call(f"io.llmd.Manager.{verb}", params or {})[-1]
    if "error" in reply:
        return {"error": reply["error"], **reply.get("parameters", {})}
    return reply["parameters"]


def model(d, name):
    return {m["name"]: m for m in llmctl_json(d, "list")["models"]}[name]


def wait_ready(d, *names):
    wait_until(lambda: os.path.exists(os.path.join(d.runtime, "control.sock")), "llmd started")
    wait_until(lambda: all(model(d, m)["state"] == "ready" and model(d, m)["serving"] == "ready"
                           for m in names), f"{', '.join(names)} ready")


def cache_dir(d, name):
    return os.path.join(d.state, "prompt-cache", name)


def ask(d, body=LONG):
    r = http(PORT, "POST", "/v1/chat/completions", body)
    check(r.status == 200, r)
    j = r.json()
    return j["timings"]["prompt_n"], j["choices"][0]["message"].get("content")


def switch(d, name):
    r = call(d, "Switch", {"model": name})
    check("error" not in r, r)
    return r


def saved(r):
    return r["prompt_cache"]["saved"]["count"]


def restored(r):
    return r["prompt_cache"]["restored"]["count"]


def away_and_back(d):
    """A long prompt on qwen, a switch to gemma (qwen is evicted and saves) and back (qwen
    restores): the second answer's prompt_n and content, and both switch results."""
    wait_ready(d, "qwen")
    full, text = ask(d)
    r1 = switch(d, "gemma")
    r2 = switch(d, "qwen")
    again, text2 = ask(d)
    return full, text, r1, r2, again, text2


@fixture(conf(), models=MODELS)
def test_switch_away_and_back(d):
    """An evicted model saves its prompt cache and restores it when it is switched back to: on
    a real llama-server the same request then processes a few tokens, with the same answer."""
    full, text, r1, r2, again, text2 = away_and_back(d)
    check(r1["kind"] == "replace" and r1["evicted"] == ["qwen"], r1)
    check(saved(r1) >= 1 and r1["prompt_cache"]["saved"]["tokens"] >= 100, r1)
    check(restored(r2) >= 1 and saved(r2) == 0, r2)  # gemma held nothing worth saving
    if REAL:
        check(full > 100 and again <= 4, f"prompt_n {full} before, {again} after")
        check(text == text2, f"{text!r} vs {text2!r}")
    # The files are llmd's own: a private directory, files only its user may read.
    dir_mode = stat.S_IMODE(os.stat(cache_dir(d, "qwen")).st_mode)
    check(dir_mode == 0o700, oct(dir_mode))
    files = sorted(os.listdir(cache_dir(d, "qwen")))
    check("index.json" in files and any(f.endswith(".bin") for f in files), files)
    for f in files:
        m = stat.S_IMODE(os.stat(os.path.join(cache_dir(d, "qwen"), f)).st_mode)
        check(m == 0o600, f"{f}: {oct(m)}")
    pc = model(d, "qwen")["prompt_cache"]
    check(pc["count"] >= 1 and pc["last_restored"]["count"] >= 1, pc)
    check(model(d, "nomic")["prompt_cache"] is None, "the pinned embedder keeps no cache")
    r = llmctl_json(d, "switch", "gemma")
    check(saved(r) == 1, r)


@fixture(conf(resident=2), models=MODELS)
def test_unload_and_load(d):
    """llmctl unload saves, llmctl load restores."""
    wait_ready(d, "qwen")
    check("error" not in call(d, "Load", {"model": "gemma"}), "load")
    switch(d, "gemma")
    full, _ = ask(d)
    switch(d, "qwen")
    check(call(d, "Unload", {"model": "gemma"})["changed"], "unload")
    wait_until(lambda: model(d, "gemma")["state"] == "stopped", "gemma stopped")
    check(model(d, "gemma")["prompt_cache"]["last_saved"]["count"] >= 1, model(d, "gemma"))
    r = call(d, "Load", {"model": "gemma"})
    check(restored(r) >= 1, r)
    switch(d, "gemma")
    again, _ = ask(d)
    if REAL:
        check(again <= 4, f"prompt_n {full} before, {again} after")


@fixture(conf(resident=2, gemma="unload-after = 1s"), models=MODELS)
def test_unload_after_saves(d):
    """A model stopped by unload-after saved its cache first."""
    wait_ready(d, "qwen")
    switch(d, "gemma")
    ask(d)
    switch(d, "qwen")
    wait_until(lambda: model(d, "gemma")["state"] == "stopped", "gemma unloaded", timeout=20)
    check(model(d, "gemma")["prompt_cache"]["last_saved"]["count"] >= 1, model(d, "gemma"))
    check(model(d, "gemma")["prompt_cache"]["count"] >= 1, "no cache on disk")


@fixture(conf(), models=MODELS)
def test_restart_of_llmd(d):
    """llmd's own stop saves, and the next llmd restores before the first request."""
    wait_ready(d, "qwen")
    full, text = ask(d)
    d.stop()
    check(os.path.exists(os.path.join(cache_dir(d, "qwen"), "index.json")), "nothing saved")
    d.start()
    wait_ready(d, "qwen")
    check(model(d, "qwen")["prompt_cache"]["last_restored"]["count"] >= 1, model(d, "qwen"))
    again, text2 = ask(d)
    if REAL:
        check(again <= 4 and text == text2, f"prompt_n {full} → {again}; {text!r} vs {text2!r}")


@fixture(conf(), models=MODELS)
def test_stop_and_start(d):
    """llmctl stop saves (the requests have finished), llmctl start restores."""
    wait_ready(d, "qwen")
    full, text = ask(d)
    r = call(d, "Stop")
    check(saved(r) >= 1, r)
    r = call(d, "Start")
    check(restored(r) >= 1, r)
    again, text2 = ask(d)
    if REAL:
        check(again <= 4 and text == text2, f"prompt_n {full} → {again}")


@fixture(conf(), models=MODELS)
def test_changed_model_file_drops_cache(d):
    """A cache belongs to one model file: after the file changed it is removed, never
    restored."""
    wait_ready(d, "qwen")
    full, _ = ask(d)
    switch(d, "gemma")
    os.utime(d.model_path("qwen"), (time.time() + 5, time.time() + 5))
    r = switch(d, "qwen")
    check(restored(r) == 0, r)
    check(not any(f.endswith(".bin") for f in os.listdir(cache_dir(d, "qwen"))), "files kept")
    again, _ = ask(d)
    if REAL:
        check(again == full, f"prompt_n {full} then {again}: a stale cache was used")


@fixture(conf(qwen="ctx-size = 2048"), models=MODELS)
def test_changed_flags_drop_cache(d):
    """... and to one command line: a reload that changes ctx-size restarts the model with no
    restore."""
    wait_ready(d, "qwen")
    full, _ = ask(d)
    d.write_config(conf(qwen="ctx-size = 1536"))
    check("error" not in call(d, "Reload"), "reload")
    wait_until(lambda: model(d, "qwen")["prompt_cache"]["last_saved"]["count"] >= 1, "saved")
    wait_ready(d, "qwen")
    check(model(d, "qwen")["prompt_cache"]["last_restored"]["count"] == 0, model(d, "qwen"))
    again, _ = ask(d)
    if REAL:
        check(again == full, f"prompt_n {full} then {again}")


@fixture(conf(qwen="prompt-cache = false", gemma="slot-save-path = @MODELS@"), models=MODELS)
def test_off_and_own_path(d):
    """prompt-cache = false: no --slot-save-path, no files; a profile with its own
    slot-save-path gets it as written and no saving from llmd."""
    wait_ready(d, "qwen")
    ask(d)
    r = switch(d, "gemma")
    check(saved(r) == 0, r)
    check(not os.path.exists(cache_dir(d, "qwen")), "a directory for qwen")
    log = open(d.log_path, errors="replace").read()
    spawns = [l for l in log.splitlines() if "started llama-server" in l]
    check(not any("--slot-save-path" in l for l in spawns if "qwen:" in l), "qwen got a path")
    gemma = [l for l in spawns if "gemma:" in l]
    check(gemma and gemma[-1].count("--slot-save-path") == 1 and d.models in gemma[-1], gemma)
    check(model(d, "qwen")["prompt_cache"] is None and model(d, "gemma")["prompt_cache"] is None,
          "prompt_cache shown for models that keep none")


@fixture(conf(), models=MODELS)
def test_clear(d):
    """llmctl prompt-cache clear [MODEL] removes the files."""
    wait_ready(d, "qwen")
    ask(d)
    switch(d, "gemma")
    check(os.listdir(cache_dir(d, "qwen")), "nothing saved")
    p = llmctl(d, "prompt-cache", "clear", "nosuch", check_rc=2)
    check("nosuch" in p.stderr, p.stderr)
    r = llmctl_json(d, "prompt-cache", "clear", "qwen")
    check(r["model"] == "qwen" and r["removed"] >= 2, r)  # index.json and a slot's file
    check(os.listdir(cache_dir(d, "qwen")) == [], os.listdir(cache_dir(d, "qwen")))
    p = llmctl(d, "prompt-cache", "drop", check_rc=1)
    check("unknown action" in p.stderr, p.stderr)
    r = switch(d, "qwen")
    check(restored(r) == 0, r)


# ---- faults, on the simulator ----

def log_text(d):
    return open(d.log_path, errors="replace").read()


@sim_only("a fault knob")
@fixture(conf(qwen="env = LLAMA_SIM_SLOT_SAVE_ERROR=1"), models=MODELS)
def test_save_fails(d):
    """A save that fails (a full disk) stops nothing: the switch goes on and says it saved
    none; the log says why."""
    wait_ready(d, "qwen")
    ask(d)
    r = switch(d, "gemma")
    check(r["model"] == "gemma" and saved(r) == 0, r)
    check("prompt caches not saved: Failed to save slot" in log_text(d), "no warning")
    check(not any(f.endswith(".bin") for f in os.listdir(cache_dir(d, "qwen"))), "files left")
    check(ask(d)[0] > 0, "gemma does not serve")


@sim_only("a fault knob")
@fixture(conf(qwen="env = LLAMA_SIM_SLOT_RESTORE_ERROR=1"), models=MODELS)
def test_restore_fails(d):
    """A restore that fails is logged and ignored: the model serves, the prompt processed in
    full."""
    wait_ready(d, "qwen")
    full, _ = ask(d)
    switch(d, "gemma")
    r = switch(d, "qwen")
    check(restored(r) == 0, r)
    check("prompt caches not restored: Unable to restore slot" in log_text(d), "no warning")
    check(ask(d)[0] == full, "not served in full")


@sim_only("a timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_SLOT_SAVE_MS=30000\nprompt-cache-save-timeout = 500ms"),
         models=MODELS)
def test_slow_save_is_bounded(d):
    """A save past prompt-cache-save-timeout is given up: the switch is no longer than that
    (plus the stop), and no partial file is left to be restored."""
    wait_ready(d, "qwen")
    ask(d)
    r = switch(d, "gemma")
    check(saved(r) == 0 and r["model"] == "gemma", r)
    check("timed out" in log_text(d), "no timeout logged")
    check([f for f in os.listdir(cache_dir(d, "qwen")) if ".bin" in f] == [],
          os.listdir(cache_dir(d, "qwen")))


@sim_only("a timing knob")
@fixture(conf(qwen="env = LLAMA_SIM_SLOT_SAVE_MS=1500\nprompt-cache-save-timeout = 20s"),
         models=MODELS)
def test_clear_during_a_save(d):
    """llmctl prompt-cache clear while the model saves: the save's files go too, and nothing is
    restored after; the switch is not held up."""
    wait_ready(d, "qwen")
    ask(d)
    result = []
    t = threading.Thread(target=lambda: result.append(switch(d, "gemma")))
    t.start()
    wait_until(lambda: model(d, "qwen")["serving"] == "saving", "qwen saving")
    r = llmctl_json(d, "prompt-cache", "clear", "qwen")
    check(r["model"] == "qwen", r)
    t.join(timeout=60)
    check(result and result[0]["model"] == "gemma", result)
    check(os.listdir(cache_dir(d, "qwen")) == [], f"kept: {os.listdir(cache_dir(d, 'qwen'))}")
    check(model(d, "qwen").get("prompt_cache", {}).get("count", 0) == 0, model(d, "qwen"))
    r = switch(d, "qwen")
    check(restored(r) == 0, r)


@sim_only("writes its own slot files")
@fixture(conf(), models=MODELS)
def test_hostile_files(d):
    """What another process put in the cache directory is never handed to llama-server: a FIFO
    or a symlink in a slot file's place, a file of another size, a copy of another model's
    cache (another fingerprint) — the model loads and serves, restoring nothing."""
    wait_ready(d, "qwen")
    ask(d)
    switch(d, "gemma")
    ask(d)
    switch(d, "qwen")     # gemma saved now too
    qdir, gdir = cache_dir(d, "qwen"), cache_dir(d, "gemma")
    for plant in ("fifo", "symlink", "huge", "corrupt"):
        switch(d, "gemma")  # qwen saves, and is down while its files are changed
        with open(os.path.join(qdir, "index.json")) as f:
            index = json.load(f)
        slot = os.path.join(qdir, index["slots"][0]["file"])
        size = os.path.getsize(slot)
        os.unlink(slot)
        if plant == "corrupt":
            # The right size, the wrong bytes: llmd cannot tell; llama-server refuses it, and
            # the request is served in full.
            with open(slot, "wb") as f:
                f.write(b"\xff" * size)
            r = switch(d, "qwen")
            check(restored(r) == 0, f"{plant}: {r}")
            check(ask(d)[0] > 0, f"{plant}: qwen does not serve")
            check("prompt caches not restored" in log_text(d), f"{plant}: not logged")
            continue
        if plant == "fifo":
            os.mkfifo(slot)
        elif plant == "symlink":
            os.symlink("/etc/passwd", slot)
        else:
            with open(slot, "wb") as f:
                f.truncate(1 << 30)
        r = switch(d, "qwen")
        check(restored(r) == 0, f"{plant}: {r}")
        check(ask(d)[0] > 0, f"{plant}: qwen does not serve")
        check("not what index.json recorded" in log_text(d), f"{plant}: not logged")
    # gemma's cache, files and index, copied over qwen's while qwen is down: another
    # fingerprint (another model file), dropped.
    switch(d, "gemma")
    for f in os.listdir(qdir):
        os.unlink(os.path.join(qdir, f))
    for f in os.listdir(gdir):
        with open(os.path.join(gdir, f), "rb") as src, open(os.path.join(qdir, f), "wb") as dst:
            dst.write(src.read())
    r = switch(d, "qwen")
    check(restored(r) == 0, r)
    check("the model file or its flags changed" in log_text(d), "not dropped")


@sim_only("the simulator's files have a known size")
@fixture(conf(top="prompt-cache-size = 1M"), models=MODELS)
def test_size_limit(d):
    """prompt-cache-size holds for all models together, the least recently used dropped
    first."""
    wait_ready(d, "qwen")
    words = " ".join(f"w{i}" for i in range(1500))
    ask(d, {**LONG, "messages": [{"role": "user", "content": words}]})
    switch(d, "gemma")      # qwen's cache, 1 KiB a token in the simulator: over the limit alone
    check("over prompt-cache-size" in log_text(d), "not trimmed")
    check(model(d, "qwen")["prompt_cache"]["count"] == 0, model(d, "qwen"))


if __name__ == "__main__":
    run()
