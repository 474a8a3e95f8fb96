#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Files that are not what they claim, at every path llmd opens from a user's hands: a FIFO, a
directory, a unix socket, /dev/zero and a 16 GiB sparse file with a hostile GGUF header, as a
model, as the configuration on reload, as the API key file on reload and as the state files at
start. llmd answers /health and its control socket throughout (each call within BOUND), refuses each with
a clear error, and keeps serving."""

import os
import socket
import struct
import threading
import time

from llmdtest import Varlink, check, fixture, free_port, http, llmctl, run, sim_only, wait_until

PORT = free_port()
# Seconds. What the hostile files did to the old llmd is seconds to for ever (a FIFO blocks the
# loop until a writer comes, the sparse GGUF held it 40 s); a bound that a scheduler on a busy
# machine can cross would catch noise, not that.
BOUND = 1.0


def conf(keys):
    return f"""
[llmd]
default = qwen
listen = 127.0.0.1:{PORT}
api-key-file = {keys}

[qwen]
model = @MODELS@/qwen.gguf

[nomic]
model = @MODELS@/nomic.gguf
embeddings = true
pin = true

[bad]
model = @MODELS@/bad.gguf
"""


def hostile_gguf():
    """GGUF v3, no tensors, one entry: key "k", an array of 2^62 strings."""
    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" +
            struct.pack("<IIQ", 9, 8, 1 << 62))


class Planted:
    """What plant() made: a socket to close."""

    def __init__(self):
        self.socks = []

    def close(self):
        for s in self.socks:
            s.close()


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


def plant(path, kind, planted):
    remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        os.mkdir(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        planted.socks.append(s)
    elif kind == "devzero":
        os.symlink("/dev/zero", path)
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.write(hostile_gguf())
            f.truncate(16 << 30)
        os.chmod(path, 0o600)  # as a key file: only its size and its content are wrong
    else:
        raise ValueError(kind)


class Prober:
    """GET /health and io.llmd.Manager.Status, over and over in a thread, each timed."""

    def __init__(self, d):
        self.d = d
        self.worst = {"health": 0.0, "status": 0.0}
        self.failures = []
        self.running = True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def once(self):
        t0 = time.monotonic()
        r = http(PORT, "GET", "/health", timeout=5)
        t1 = time.monotonic()
        if r.status != 200:
            self.failures.append(f"/health: {r}")
        v = Varlink(os.path.join(self.d.runtime, "control.sock"), timeout=5)
        try:
            reply = v.call("io.llmd.Manager.Status")
        finally:
            v.close()
        t2 = time.monotonic()
        if "error" in reply[-1]:
            self.failures.append(f"Status: {reply}")
        self.worst["health"] = max(self.worst["health"], t1 - t0)
        self.worst["status"] = max(self.worst["status"], t2 - t1)

    def loop(self):
        while self.running:
            try:
                self.once()
            except Exception as e:  # a timeout: llmd blocked
                self.failures.append(repr(e))
            time.sleep(0.01)

    def check(self, why):
        self.once()
        check(not self.failures, f"{why}: {self.failures}")
        for what, t in self.worst.items():
            check(t < BOUND, f"{why}: {what} took {t * 1000:.0f} ms")
        # llmctl itself, whose start is not llmd's to answer for: it answers, and in time
        t0 = time.monotonic()
        llmctl(self.d, "status", check_rc=0)
        check(time.monotonic() - t0 < 2, f"{why}: llmctl status took {time.monotonic() - t0:.1f} s")

    def stop(self):
        self.running = False
        self.thread.join()


def refused(p, why, *words):
    out = (p.stdout + p.stderr).lower()
    check(p.returncode == 2 and any(w in out for w in words),
          f"{why}: exit {p.returncode}, expected 2 and one of {words}: {p.stdout} {p.stderr}")


def healthy():
    try:
        return http(PORT, "GET", "/health").status == 200
    except OSError:
        return False


def hostile_files(d, kind):
    keys = os.path.join(d.dir, "keys")
    with open(keys, "w") as f:
        f.write("sk-test-0123456789\n")
    os.chmod(keys, 0o600)
    d.write_config(conf(keys))
    good_config = open(d.config).read()
    planted = Planted()
    bad = d.model_path("bad")
    os.makedirs(d.state)
    plant(bad, kind, planted)
    plant(os.path.join(d.state, "active-model"), kind, planted)
    plant(os.path.join(d.state, "gpu-memory"), kind, planted)
    d.start()
    wait_until(lambda: healthy(), "qwen and nomic ready")
    probe = Prober(d)
    try:
        probe.check("state files at start")
        # The model: listed (its size is estimated from its header), refused by switch and load,
        # with the reason; the sparse one is a regular file, which llama-server is left to refuse.
        llmctl(d, "list", check_rc=0)
        probe.check("llmctl list")
        if kind != "sparse":
            for verb in ("switch", "load"):
                refused(llmctl(d, verb, "bad"), f"{verb} bad", "not a regular file")
                probe.check(f"llmctl {verb}")
        # The configuration on reload: refused whole, the running one stays.
        plant(d.config, kind, planted)
        refused(llmctl(d, "reload"), "reload of the config", "not a regular file", "too large")
        probe.check("reload of the config")
        remove(d.config)
        with open(d.config, "w") as f:
            f.write(good_config)
        # The API key file on reload: likewise.
        plant(keys, kind, planted)
        refused(llmctl(d, "reload"), "reload of the key file", "not a regular file", "too large")
        probe.check("reload of the key file")
        # Still serving, with the old keys.
        r = http(PORT, "POST", "/v1/chat/completions",
                 b'{"model":"qwen","messages":[{"role":"user","content":"hi"}]}',
                 {"Authorization": "Bearer sk-test-0123456789", "Content-Type": "application/json"})
        check(r.status == 200, f"no longer serving: {r}")
    finally:
        probe.stop()
        planted.close()
    d.stop()
    log = open(d.log_path, "rb").read().decode(errors="replace")
    check("not a regular file" in log or "too large" in log or "symbolic link" in log,
          "the state files' refusal is not in the log")


# One test a kind of file, each with an llmd of its own: each reads the model's header afresh.
for _kind in ("fifo", "directory", "socket", "devzero", "sparse"):
    def _test(d, kind=_kind):
        hostile_files(d, kind)
    _test.__name__ = f"test_hostile_{_kind}"
    globals()[_test.__name__] = sim_only("a simulated model")(
        fixture("[llmd]\n", start=False)(_test))


if __name__ == "__main__":
    run()
