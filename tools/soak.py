#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A soak: mixed traffic against one llmd for DURATION seconds, on loopback only (see
tools/soak.sh, which runs this). Clients send streams (read to the end, or left after the first
event), non-streaming requests, embeddings, Messages and Responses; one control thread switches
models (to a resident one, beside the active one, and replacing it), loads and unloads, reloads
the configuration, kills children (SIGKILL) and floods llmd with a burst of requests.

It ends with a summary: requests sent, answered, failed. Only a request running on a child when
it was killed may fail (it overlaps the time from the kill until llmd reaped the process, and
it asked that model's kind: generation or embeddings); any other failure fails the soak. llmd's
RSS and open descriptors are measured after a warm-up and at the end, both times in the same
state (no request open, the first model active, no other model resident, every connection
closed): the end may have no more descriptors than the start, and RSS may grow by at most
--max-rss-growth KiB.

Exit status: 0 passed, 1 failed (the reason is printed), 77 no llama-server to run.
"""

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import llmdtest  # noqa: E402
from llmdtest import Llmd, http, llmctl, wait_until  # noqa: E402

GEN = ("qwen", "gemma", "devstral")
READY = "qwen ready · embed nomic ready"

CONFIG = """
[llmd]
default = qwen
max-resident = 2
hold-queue = {hold_queue}
drain-timeout = 60s

[*]
ctx-size = 4096
stop-timeout = 5s
restart-sec = 0.2
; the soak kills children on purpose: they must keep coming back, soon
start-limit-burst = 1000
start-limit-interval = 10s

[qwen]
model = @MODELS@/qwen.gguf

[gemma]
model = @MODELS@/gemma.gguf

[devstral]
model = @MODELS@/devstral.gguf

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true
"""

CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (kind, what, t0, t1, error or None)
        self.kills = []  # (kind, t_kill, t_reaped)
        self.actions = {}

    def add(self, kind, what, t0, t1, error):
        with self.lock:
            self.requests.append((kind, what, t0, t1, error))

    def action(self, name):
        with self.lock:
            self.actions[name] = self.actions.get(name, 0) + 1


def one_request(port, what):
    """Sends one request of the mix; returns None when it was answered as it should be, else
    what was wrong."""
    if what == "chat":
        r = http(port, "POST", "/v1/chat/completions", CHAT, timeout=120)
        return None if r.status == 200 and r.json()["choices"] else f"chat: {r}"
    if what == "completion":
        r = http(port, "POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 8},
                 timeout=120)
        return None if r.status == 200 else f"completion: {r}"
    if what == "embeddings":
        r = http(port, "POST", "/v1/embeddings", {"input": ["one", "two", "three"]},
                 timeout=120)
        return None if r.status == 200 and len(r.json()["data"]) == 3 else f"embeddings: {r}"
    if what == "messages":
        r = http(port, "POST", "/v1/messages",
                 {"model": "x", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "Say hello."}]}, timeout=120)
        return None if r.status == 200 and r.json()["type"] == "message" else f"messages: {r}"
    if what == "responses":
        r = http(port, "POST", "/v1/responses", {"input": "Say hello.", "max_output_tokens": 8},
                 timeout=120)
        return (None if r.status == 200 and r.json()["status"] == "completed"
                else f"responses: {r}")
    if what in ("stream", "abort", "messages-stream"):
        path, body = (("/v1/messages", {"model": "x", "max_tokens": 8, "stream": True,
                                        "messages": [{"role": "user", "content": "Hi."}]})
                      if what == "messages-stream" else
                      ("/v1/chat/completions", {**CHAT, "max_tokens": 16, "stream": True}))
        s = llmdtest.Stream(port, path, body, timeout=120)
        try:
            if s.status != 200:
                return f"{what}: HTTP {s.status}: {s.resp.read()[:300]!r}"
            if what == "abort":
                # The client leaves after the first event: llmd must cancel, not leak.
                return None if s.event() is not None else "abort: no first event"
            events = s.named_events()
        finally:
            s.close()
        last = events[-1] if events else (None, None)
        if what == "messages-stream":
            return None if last[0] == "message_stop" else f"messages-stream ended with {last}"
        return None if last[1] == "[DONE]" else f"stream ended with {last}"
    raise ValueError(what)


MIX = (["chat"] * 3 + ["completion", "embeddings", "embeddings", "messages", "responses",
                       "stream", "stream", "abort", "messages-stream"])


def kind_of(what):
    return "embed" if what == "embeddings" else "gen"


def client(port, res, stop, rng):
    while not stop.is_set():
        what = rng.choice(MIX)
        t0 = time.monotonic()
        try:
            err = one_request(port, what)
        except Exception as e:  # a reset connection, a timeout: a failure like any other
            err = f"{what}: {type(e).__name__}: {e}"
        res.add(kind_of(what), what, t0, time.monotonic(), err)


def status(d):
    p = llmctl(d, "status")
    if p.returncode != 0:
        raise RuntimeError(f"llmctl status: {p.stderr}")
    return json.loads(p.stdout)


def resident_gen(st):
    names = [m["name"] for m in st["resident"]]
    if st.get("active"):
        names.insert(0, st["active"]["name"])
    return names


def ctl(d, res, *args):
    p = llmctl(d, *args)
    if p.returncode != 0:
        raise RuntimeError(f"llmctl {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")


def kill_child(d, res, model, kind):
    pid = d._children_by_model().get(model)
    if not pid:
        return
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # Reaped by llmd: from then on it knows, and new requests wait for the restart.
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), f"{model}'s killed child to be reaped",
               timeout=60)
    res.kills.append((kind, t, time.monotonic()))
    res.action("kill " + kind)


def flood(port, res, n):
    threads = [threading.Thread(target=lambda: client_once(port, res, "chat")) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.action("flood")


def client_once(port, res, what):
    t0 = time.monotonic()
    try:
        err = one_request(port, what)
    except Exception as e:
        err = f"{what}: {type(e).__name__}: {e}"
    res.add(kind_of(what), what, t0, time.monotonic(), err)


def control(d, res, stop, rng, flood_size):
    """One action at a time, each waited for: the kinds of switch in turn, with the others
    mixed in."""
    plan = ["resident", "reload", "beside", "kill", "replace", "flood", "resident", "unload",
            "beside", "kill-embed", "replace", "reload"]
    i = 0
    hold_queue = 1024
    while not stop.wait(rng.uniform(0.5, 2.0)):
        step = plan[i % len(plan)]
        i += 1
        # A switch to a model that crashed and waits to restart fails (LoadFailed) and leaves
        # it failed, by design (residency/switch_to_failed_model_while_it_stops): the killed
        # ones are back first.
        wait_until(lambda: not any(w in status(d)["status"] for w in ("restarting", "loading")),
                   "every model up again", timeout=180)
        st = status(d)
        res_gen = resident_gen(st)
        active = st["active"]["name"]
        others = [m for m in GEN if m not in res_gen]
        if step == "resident":
            if len(res_gen) < 2 and others:
                ctl(d, res, "load", rng.choice(others))  # now one is resident beside it
                res.action("load")
                res_gen = resident_gen(status(d))
            target = [m for m in res_gen if m != active]
            if target:
                ctl(d, res, "switch", target[0])
                res.action("switch resident")
        elif step == "beside":
            for m in res_gen[1:]:
                ctl(d, res, "unload", m)  # room beside the active one
                res.action("unload")
            ctl(d, res, "switch", rng.choice([m for m in GEN if m != active]))
            res.action("switch beside")
        elif step == "replace":
            # Two resident (max-resident = 2): a third replaces one.
            if len(res_gen) < 2:
                ctl(d, res, "load", rng.choice(others))
                res.action("load")
                res_gen = resident_gen(status(d))
            rest = [m for m in GEN if m not in res_gen]
            if rest:
                ctl(d, res, "switch", rest[0])
                res.action("switch replace")
        elif step == "unload":
            for m in res_gen[1:]:
                ctl(d, res, "unload", m)
                res.action("unload")
        elif step == "reload":
            # A change llmd applies without restarting a model.
            hold_queue = 2048 if hold_queue == 1024 else 1024
            d.write_config(CONFIG.format(hold_queue=hold_queue))
            ctl(d, res, "reload")
            res.action("reload")
        elif step == "kill":
            kill_child(d, res, active, "gen")
        elif step == "kill-embed":
            kill_child(d, res, "nomic", "embed")
        elif step == "flood":
            flood(d.port, res, flood_size)


def run_traffic(d, res, seconds, workers, flood_size, seed):
    stop = threading.Event()
    rng = random.Random(seed)
    threads = [threading.Thread(target=client, args=(d.port, res, stop, random.Random(seed + i)))
               for i in range(workers)]
    errors = []

    def ctl_thread():
        try:
            control(d, res, stop, rng, flood_size)
        except Exception as e:
            errors.append(e)
            stop.set()

    threads.append(threading.Thread(target=ctl_thread))
    for t in threads:
        t.start()
    # A line every 30 s, so a long run shows it is alive and how it goes.
    t0 = time.monotonic()
    while not stop.wait(min(30, max(0, t0 + seconds - time.monotonic()))):
        if time.monotonic() >= t0 + seconds:
            break
        n, failed = len(res.requests), sum(1 for r in list(res.requests) if r[4])
        print(f"soak: +{time.monotonic() - t0:.0f} s: {n} requests, {failed} failed (a killed child's among them), "
              f"llmd RSS {rss_kib(d.proc.pid)} KiB", flush=True)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def settle(d):
    """The same state for both measurements: qwen active and alone, no request open, every
    client connection closed (the clients close theirs after each request)."""
    st = status(d)
    if st["active"]["name"] != "qwen":
        llmctl(d, "switch", "qwen", check_rc=0)
    for m in resident_gen(status(d))[1:]:
        llmctl(d, "unload", m, check_rc=0)
    wait_until(lambda: status(d)["status"] == READY, "qwen and nomic ready, alone", timeout=120)
    wait_until(lambda: (lambda r: r["in_flight"] == 0 and r["held"] == 0)(status(d)["requests"]),
               "no request open", timeout=120)


def fds(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        kind = target.split(":")[0] if ":" in target else "file"
        out[kind] = out.get(kind, 0) + 1
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def quiet_requests(d):
    """One generation and one embedding request, one after the other. llmd closes the
    connections it keeps to children (those more than 2 s old, to children gone or not) only
    when it starts a transfer: these let it."""
    for what in ("chat", "embeddings"):
        err = one_request(d.port, what)
        if err:
            raise RuntimeError(f"settled, and still: {err}")


def measure(d, start=None):
    """RSS and descriptors once settled. The start is taken after three rounds of quiet
    requests; the end after as many rounds as it takes (at most 30) to be back to the start's
    count: a kept connection to a dead child that llmd has not looked at yet is not a leak."""
    settle(d)
    pid = d.proc.pid
    for i in range(30 if start else 3):
        quiet_requests(d)
        if start and sum(fds(pid).values()) <= sum(start[1].values()):
            break
        time.sleep(1.1)  # kept connections age out after 2 s (see quiet_requests)
    if start and sum(fds(pid).values()) > sum(start[1].values()):
        os.system(f"ss -a -p -x -t | grep 'pid={pid},' >&2")  # what they are
    return rss_kib(pid), fds(pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("duration", type=float, help="seconds of traffic after the warm-up")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of the same traffic before the first measurement "
                         "(default: a fifth of the duration, 20 to 120)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--flood", type=int, default=48, help="requests in a flood")
    ap.add_argument("--max-rss-growth", type=int, default=1024, help="KiB")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else min(120, max(20, a.duration / 5))
    if not llmdtest.LLAMA_SERVER or (llmdtest.REAL and not llmdtest.REAL_MODELS):
        print("soak: no llama-server (LLAMA_SIM, or LLMD_REAL_LLAMA_SERVER and LLMD_REAL_MODELS)")
        return 77
    tier = "real llama-server" if llmdtest.REAL else "simulator"
    d = Llmd(CONFIG.format(hold_queue=1024), models=(*GEN, "nomic"),
             env={"LLAMA_SIM_RECORD": "/dev/null"})
    ok = False
    try:
        # debug would write a few lines for every request: info is what a user runs.
        d.start("--log-level", "info")
        wait_until(lambda: os.path.exists(os.path.join(d.runtime, "control.sock")),
                   "the control socket", timeout=60)
        wait_until(lambda: status(d)["status"] == READY, "the models", timeout=120)
        res = Results()
        t0 = time.monotonic()
        run_traffic(d, res, warmup, a.workers, a.flood, a.seed)
        start = measure(d)
        n_warm = len(res.requests)
        run_traffic(d, res, a.duration, a.workers, a.flood, a.seed + 1000)
        end = measure(d, start)
        elapsed = time.monotonic() - t0
        ok = report(d, res, tier, warmup, a, start, end, n_warm, elapsed)
    finally:
        if not ok:
            d.dump()
        d.kill_all()
        d.cleanup()
    return 0 if ok else 1


def excused(res, kind, t0, t1):
    return any(k == kind and t0 < reaped and t1 > killed for k, killed, reaped in res.kills)


def report(d, res, tier, warmup, a, start, end, n_warm, elapsed):
    failed = [r for r in res.requests if r[4]]
    bad = [r for r in failed if not excused(res, r[0], r[2], r[3])]
    by_what = {}
    for r in res.requests:
        by_what[r[1]] = by_what.get(r[1], 0) + 1
    growth = end[0] - start[0]
    fd_start, fd_end = sum(start[1].values()), sum(end[1].values())
    print(f"soak: {tier}, {warmup:.0f} s warm-up + {a.duration:.0f} s, {a.workers} clients, "
          f"{elapsed:.0f} s in all")
    print(f"requests: {len(res.requests)} sent, {len(res.requests) - len(failed)} answered, "
          f"{len(failed)} failed ({len(failed) - len(bad)} running on a killed child, "
          f"{len(bad)} others); {n_warm} of them in the warm-up")
    print("  by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(by_what.items())))
    print("actions: " + ", ".join(f"{k} {v}" for k, v in sorted(res.actions.items())))
    print(f"llmd RSS: {start[0]} KiB after the warm-up, {end[0]} KiB at the end "
          f"({growth:+d} KiB; at most +{a.max_rss_growth})")
    print(f"llmd descriptors: {fd_start} after the warm-up {start[1]}, {fd_end} at the end "
          f"{end[1]}")
    for r in bad[:10]:
        print(f"  FAILED: {r[1]} at +{r[2] - bad[0][2]:.1f} s: {r[4]}")
    verdict = []
    if bad:
        verdict.append(f"{len(bad)} requests failed that no killed child explains")
    if fd_end > fd_start:
        verdict.append(f"{fd_end - fd_start} descriptors more at the end")
    if growth > a.max_rss_growth:
        verdict.append(f"RSS grew {growth} KiB")
    if not res.requests or len(failed) == len(res.requests):
        verdict.append("nothing was answered")
    print("soak: " + ("FAILED: " + "; ".join(verdict) if verdict else "passed"))
    return not verdict


if __name__ == "__main__":
    sys.exit(main())
