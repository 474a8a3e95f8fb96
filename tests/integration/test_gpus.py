#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boxes with several GPUs, on the simulator with the fake NVML (tests/nvml-fake) of 2-4
devices: the budget and memory of each GPU."""

import os
import subprocess

from llmdtest import (LLMCTL, LLMD, Skip, check, fixture, http, llmctl, llmctl_json, run, sim_only,
                      wait_until)
from test_residency import FAKE_NVML, G, MODELS, PORT, call, conf, status, wait_ready


def gpus_fixture(totals_gib, config, prepare=None):
    """Starts d with a fake NVML of len(totals_gib) devices, device i of totals_gib[i] GiB
    (skipped without the fake), after prepare(d) where given."""
    def wrap(fn):
        @sim_only("the fake NVML answers from the simulator's reports")
        @fixture(config, models=MODELS, start=False)
        def test(d):
            if not FAKE_NVML:
                raise Skip("no fake libnvidia-ml.so.1 (LLMD_FAKE_NVML_LIB)")
            state = os.path.join(d.dir, "nvml")
            os.makedirs(state, exist_ok=True)
            files = {"total": totals_gib[0] * G, "devices": len(totals_gib)}
            files.update({f"total.{i}": t * G for i, t in enumerate(totals_gib)})
            for name, value in files.items():
                with open(os.path.join(state, name), "w") as f:
                    f.write(f"{value}\n")
            d.env.update({"LD_LIBRARY_PATH": FAKE_NVML, "LLMD_FAKE_NVML": state})
            if prepare:
                prepare(d)
            d.start()
            fn(d)
        test.__name__ = fn.__name__
        return test
    return wrap


def on_terminal(d, *args):
    """llmctl ARGS's output as a terminal gets it (through script(1)), lines ending in \\n."""
    sock = os.path.join(d.runtime, "control.sock")
    p = subprocess.run(["script", "-qec", " ".join([LLMCTL, "--socket", sock, *args]), "/dev/null"],
                       capture_output=True, text=True, timeout=20)
    return p.stdout.replace("\r\n", "\n")


def margin(total):
    """An automatic budget's margin: 5% of the GPU, at least 512 MiB."""
    return max(total // 20, 512 << 20)


@gpus_fixture([24, 48, 24], conf(top="gpus = 0,1", star="env = LLAMA_SIM_GPU_MB=3072"))
def test_budget_per_gpu(d):
    """Each GPU of gpus has its own budget (its memory less its margin), its own use and the
    models llmd put there; a GPU left out of gpus counts nowhere; llmctl status prints a line
    for each."""
    wait_ready(d, "qwen", "nomic")
    # both fit best on GPU 0 (the first of equal holes)
    wait_until(lambda: status(d)["gpu"]["devices"][0]["used"] == 2 * 3072 << 20, "GPU 0's use")
    g = status(d)["gpu"]
    want = [{"index": 0, "total": 24 * G, "used": 2 * 3072 << 20,
             "free": 24 * G - (2 * 3072 << 20), "budget": 24 * G - margin(24 * G),
             "models": ["qwen", "nomic"]},
            {"index": 1, "total": 48 * G, "used": 0, "free": 48 * G, "budget": 48 * G - margin(48 * G),
             "models": []}]
    check(g["devices"] == want, g)
    check(g["total"] == 72 * G and g["used"] == 2 * 3072 << 20, g)
    check(g["budget"] == want[0]["budget"] + want[1]["budget"], g)
    out = on_terminal(d, "status")
    check("\n  gpu 0  6.0 GiB of 24.0 GiB used; budget 22.8 GiB: qwen, nomic\n"
          "  gpu 1  0.0 GiB of 48.0 GiB used; budget 45.6 GiB\n" in out, out)
    check("gpu 2" not in out, out)


@gpus_fixture([24, 72], conf(top="gpus = 1,0\ngpu-memory = 32G"))
def test_configured_budget_shared(d):
    """A configured gpu-memory is shared among the GPUs in proportion to their memory."""
    wait_ready(d, "qwen", "nomic")
    g = status(d)["gpu"]
    check([(x["index"], x["budget"]) for x in g["devices"]] == [(0, 8 * G), (1, 24 * G)], g)
    check(g["budget"] == 32 * G, g)


@gpus_fixture([24], conf())
def test_one_gpu_no_lines(d):
    """One GPU: the status is as before, with no line per GPU."""
    wait_ready(d, "qwen", "nomic")
    g = status(d)["gpu"]
    check(len(g["devices"]) == 1 and g["budget"] == 24 * G - margin(24 * G), g)
    out = on_terminal(d, "status")
    check("\ngpu      nvml: " in out and "  gpu 0" not in out, out)


@gpus_fixture([24, 24], conf(top="gpus = 0,1", star="env = LLAMA_SIM_GPU_MB=1024", qwen="gpus = 0"))
def test_reload_moves_models(d):
    """A reload that changes where a running model may go restarts it there: qwen's gpus = 0
    becomes gpus = 1, and [llmd] gpus = 1 leaves nomic (auto, on GPU 0) no GPU it was on;
    each new child's environment names GPU 1."""
    wait_ready(d, "qwen", "nomic")
    old = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    for m in old:
        check(placement(d, m)[0] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0"],
              (m, placement(d, m)))
    d.write_config(conf(top="gpus = 1", star="env = LLAMA_SIM_GPU_MB=1024", qwen="gpus = 1"))
    llmctl(d, "reload", check_rc=0)
    wait_until(lambda: all(d.pid_of(m) not in (None, old[m]) for m in old), "both started again")
    wait_ready(d, "qwen", "nomic")
    for m in old:
        check(placement(d, m)[0] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=1"],
              (m, placement(d, m)))
    wait_until(lambda: [x["used"] for x in status(d)["gpu"]["devices"]] == [2048 << 20],
               "both on GPU 1, the one GPU of gpus")


@fixture(conf(top="gpus = 0,0"), models=MODELS, start=False)
def test_gpus_refused(d):
    """A GPU named twice is a configuration error that says what is wrong."""
    p = subprocess.run([LLMD, "--check-config", d.config], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "[llmd] gpus: '0,0' is not all or a list of GPU numbers" in p.stderr,
          f"--check-config: {p.returncode} {p.stderr}")


def placement(d, name):
    """What a child got: its CUDA_* variables and the flags after --tensor-split/--split-mode."""
    pid = d.pid_of(name)
    with open(f"/proc/{pid}/environ") as f:
        env = sorted(v for v in f.read().split("\0") if v.split("=")[0] in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES"))
    argv = [s for s in d.starts(name) if s["pid"] == pid][0]["argv"]
    flags = [a for i, a in enumerate(argv) if a in ("--split-mode", "--tensor-split")
             or (i and argv[i - 1] in ("--split-mode", "--tensor-split"))]
    return env, flags


FOUR = [24, 24, 24, 24]  # each: a budget of 22.8 GiB


@gpus_fixture(FOUR, conf(star="env = LLAMA_SIM_GPU_MB=2048", qwen="gpu-memory = 16G",
                         gemma="gpu-memory = 16G", devstral="gpu-memory = 40G"))
def test_children_get_their_gpus(d):
    """On four GPUs: qwen and nomic start on GPU 0 (best fit), gemma (16 GiB) beside them on
    GPU 1 rather than split, devstral (40 GiB, more than any GPU) split over the two emptiest in
    proportion to their free memory; each child gets CUDA_VISIBLE_DEVICES and, when split,
    --split-mode layer --tensor-split; nothing stops; the simulator's use lands on those GPUs."""
    wait_ready(d, "qwen", "nomic")
    order = ["CUDA_DEVICE_ORDER=PCI_BUS_ID"]
    check(placement(d, "qwen") == (order + ["CUDA_VISIBLE_DEVICES=0"], []), placement(d, "qwen"))
    check(placement(d, "nomic") == (order + ["CUDA_VISIBLE_DEVICES=0"], []), placement(d, "nomic"))
    out = on_terminal(d, "plan", "gemma")
    check(out == "gemma on GPU 1 (16.0 GiB, 6.8 GiB left): it fits on one GPU, and leaves the "
          "smallest hole there (best fit); stops nothing\n", out)
    r = call(d, "Switch", "gemma")
    check(r["kind"] == "beside" and r["evicted"] == [] and r["gpus"] == [{"index": 1, "bytes": 16 * G}], r)
    check(placement(d, "gemma") == (order + ["CUDA_VISIBLE_DEVICES=1"], []), placement(d, "gemma"))
    plan = llmctl_json(d, "--json", "plan", "devstral")
    check(plan == {"model": "devstral", "evict": [],
                   "gpus": [{"index": 2, "bytes": 20 * G}, {"index": 3, "bytes": 20 * G}],
                   "why": "devstral on GPUs 2,3 (20.0 GiB, 2.8 GiB left; 20.0 GiB, 2.8 GiB left): it "
                          "fits on no single GPU: split over the fewest that hold it, in proportion "
                          "to their free memory; stops nothing"}, plan)
    out = on_terminal(d, "switch", "devstral")
    check("loaded beside" in out and out.endswith("\non GPUs 2,3 (20.0 + 20.0 GiB)\n"), out)
    check(placement(d, "devstral") == (order + ["CUDA_VISIBLE_DEVICES=2,3"],
                                       ["--split-mode", "layer", "--tensor-split", "20480,20480"]),
          placement(d, "devstral"))
    wait_until(lambda: [x["used"] for x in status(d)["gpu"]["devices"]] ==
               [4096 << 20, 2048 << 20, 1024 << 20, 1024 << 20], "each GPU's use")
    check(d.running_models() == ["devstral", "gemma", "nomic", "qwen"], d.running_models())
    gs = {m["name"]: m["gpu_memory"].get("gpus") for m in llmctl_json(d, "list")["models"]}
    check(gs["devstral"] == [{"index": 2, "bytes": 20 * G}, {"index": 3, "bytes": 20 * G}], gs)
    check(gs["gemma"] == [{"index": 1, "bytes": 16 * G}], gs)


@gpus_fixture([24, 24], conf(qwen="gpu-memory = 16G", gemma="gpu-memory = 16G",
                             devstral="gpu-memory = 16G"))
def test_eviction_on_the_gpu_that_needs_room(d):
    """qwen (with nomic) on GPU 0, gemma on GPU 1 and active: devstral fits on either once one
    model stops there; qwen stops (not the active gemma), and only qwen; devstral takes GPU 0."""
    wait_ready(d, "qwen", "nomic")
    check(call(d, "Switch", "gemma")["kind"] == "beside", "gemma beside qwen")
    gemma = d.pid_of("gemma")
    out = on_terminal(d, "plan", "devstral")
    check(out.startswith("devstral on GPU 0 (16.0 GiB, ") and
          out.endswith("): it fits on one GPU; stops qwen (least recently used first, where room "
                        "is needed)\n"), out)
    r = call(d, "Switch", "devstral")
    check(r["kind"] == "beside" and r["evicted"] == ["qwen"] and
          r["gpus"] == [{"index": 0, "bytes": 16 * G}], r)
    check(d.running_models() == ["devstral", "gemma", "nomic"] and d.pid_of("gemma") == gemma,
          d.running_models())
    check(placement(d, "devstral")[0] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0"],
          placement(d, "devstral"))


@gpus_fixture(FOUR, conf(star="env = LLAMA_SIM_GPU_MB=2048", qwen="gpus = 2",
                         gemma="env = CUDA_VISIBLE_DEVICES=3 LLAMA_SIM_GPU_MB=1024",
                         devstral="tensor-split = 1,1"))
def test_configured_gpus_honoured(d):
    """gpus = 2 puts qwen on GPU 2; a profile with its own CUDA_VISIBLE_DEVICES or
    tensor-split gets nothing of llmd's beside it."""
    wait_ready(d, "qwen", "nomic")
    order = ["CUDA_DEVICE_ORDER=PCI_BUS_ID"]
    check(placement(d, "qwen") == (order + ["CUDA_VISIBLE_DEVICES=2"], []), placement(d, "qwen"))
    check(call(d, "Switch", "gemma")["kind"] == "beside", "gemma beside qwen")
    check(placement(d, "gemma") == (["CUDA_VISIBLE_DEVICES=3"], []), placement(d, "gemma"))
    check(call(d, "Switch", "devstral")["kind"] == "beside", "devstral beside")
    check(placement(d, "devstral") == ([], ["--tensor-split", "1,1"]), placement(d, "devstral"))
    wait_until(lambda: status(d)["gpu"]["devices"][3]["used"] == 1024 << 20, "gemma on GPU 3")


@gpus_fixture([24, 24], conf(devstral="gpus = 1"))
def test_unknown_size_placed(d):
    """Models of unknown size (no estimate, no measure, no gpu-memory) switched to get the GPU
    the plan names, and a configured gpus, all the same."""
    wait_ready(d, "qwen", "nomic")
    plan = llmctl_json(d, "--json", "plan", "gemma")
    r = call(d, "Switch", "gemma")
    check(r["kind"] == "beside", r)
    env, _ = placement(d, "gemma")
    check(env == ["CUDA_DEVICE_ORDER=PCI_BUS_ID",
                  f"CUDA_VISIBLE_DEVICES={plan['gpus'][0]['index']}"], (env, plan))
    check(call(d, "Switch", "devstral")["kind"] in ("beside", "replace"), "devstral")
    check(placement(d, "devstral")[0] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=1"],
          placement(d, "devstral"))


def inherit_visible(d):
    d.env["CUDA_VISIBLE_DEVICES"] = "1"


@gpus_fixture([24, 24], conf(qwen="gpus = 0"), prepare=inherit_visible)
def test_placement_over_inherited_env(d):
    """llmd started with CUDA_VISIBLE_DEVICES of its own: a child llmd places has llmd's choice
    alone (the inherited one came first, and won)."""
    wait_ready(d, "qwen", "nomic")
    with open(f"/proc/{d.pid_of('qwen')}/environ") as f:
        env = [v for v in f.read().split("\0") if v.startswith("CUDA_VISIBLE_DEVICES=")]
    check(env == ["CUDA_VISIBLE_DEVICES=0"], env)


@gpus_fixture([24, 24], conf(gemma="env = LLAMA_ARG_DEVICE=CUDA1",
                             devstral="main-gpu = 1\nreasoning-format = none"))
def test_profile_placement_by_env(d):
    """A profile that picks its GPUs through llama-server's LLAMA_ARG_* variables is placed where
    it says and gets nothing of llmd's; main-gpu without split-mode none is not one GPU (an
    argument "none" of another flag does not make it so)."""
    wait_ready(d, "qwen", "nomic")
    check(call(d, "Switch", "gemma")["kind"] == "beside", "gemma beside")
    check(placement(d, "gemma") == ([], []), placement(d, "gemma"))
    out = on_terminal(d, "plan", "devstral")
    check("on GPU 1 " not in out or "where its configuration puts it" not in out, out)


@gpus_fixture([24, 24], conf(qwen="gpu-memory = 8G", devstral="gpu-memory = 60G"))
def test_too_big_for_all_refused(d):
    """A model larger than all the GPUs together is refused, says why, and nothing stops."""
    wait_ready(d, "qwen", "nomic")
    pids = {m: d.pid_of(m) for m in ("qwen", "nomic")}
    p = llmctl(d, "plan", "devstral")
    check(p.returncode == 2 and "devstral needs 60.0 GiB: it fits nowhere" in p.stdout + p.stderr,
          f"{p.returncode} {p.stdout} {p.stderr}")
    r = call(d, "Switch", "devstral")
    check(r["error"] == "io.llmd.Manager.NoRoom" and
          r["reason"].startswith("devstral needs 60.0 GiB: it fits nowhere") and
          "GPU 0 22.8 GiB, GPU 1 22.8 GiB" in r["reason"], r)
    check({m: d.pid_of(m) for m in pids} == pids, "something was stopped for a model that cannot fit")



MiB = 1 << 20


def write_gguf(path):
    """A llama of two layers of 256 MiB and an output layer of 128 MiB (f32, sparse), 4 KV heads
    of 16, trained for 256 tokens: the GGUF estimate's figures, by layer, are known."""
    import struct
    def s(x):
        return struct.pack("<Q", len(x)) + x.encode()
    kvs = [("general.architecture", 8, s("llama"))] + [
        (f"llama.{k}", 4, struct.pack("<I", v)) for k, v in
        (("block_count", 2), ("context_length", 256), ("embedding_length", 64),
         ("attention.head_count", 4), ("attention.head_count_kv", 4))]
    tensors = [("blk.0.ffn_up.weight", 256 * MiB), ("blk.1.ffn_up.weight", 256 * MiB),
               ("output.weight", 128 * MiB)]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + v
    offset = 0
    for name, size in tensors:
        out += s(name) + struct.pack("<IQQIQ", 2, 64, size // 4 // 64, 0, offset)
        offset += size
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as f:
        f.write(out)
        f.truncate(len(out) + offset)


def gguf_per_device():
    """What the estimate puts on GPU 0 and GPU 1 of a 1:1 split of write_gguf()'s model: of 3
    slots (two layers, the output layer), slots 0 and 1 (k / 3 below 1/2) on the first, the
    output layer on the second, 768 MiB on each. Each layer: its weights, its KV (256 tokens ×
    4 heads × 16 × 2 (K, V) × 2 bytes) and a twentieth of its weights."""
    layer = 256 * MiB + 256 * 4 * 16 * 2 * 2 + 256 * MiB // 20
    return 768 * MiB + 2 * layer, 768 * MiB + 128 * MiB + 128 * MiB // 20


@gpus_fixture([24, 24], conf(star="env = LLAMA_SIM_GPU_MB=3072", qwen="gpus = 1",
                             devstral="gpus = 0,1\nenv = LLAMA_SIM_GPU_MB=2048"),
               prepare=lambda d: write_gguf(d.model_path("devstral")))
def test_per_device_figures(d):
    """llmctl list --json: each running model's figures per GPU. devstral, split over GPUs 0
    and 1 1:1, has the GGUF estimate of the layers each holds and, once measured, what the
    simulator uses on each (half of its 2 GiB); qwen, on GPU 1 alone, no estimate (its file is
    no GGUF) and its 3 GiB measured there."""
    wait_ready(d, "qwen", "nomic")
    check(call(d, "Switch", "devstral")["kind"] == "beside", "devstral beside qwen")
    check(placement(d, "devstral")[0] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1"],
          placement(d, "devstral"))

    def per_device():
        return {m["name"]: m.get("gpu_memory_per_device") for m in llmctl_json(d, "list")["models"]}
    wait_until(lambda: all(x.get("measured") for m in ("qwen", "devstral")
                           for x in per_device()[m] or [{}]), "every device's measured use")
    got = per_device()
    check(got["qwen"] == [{"device": 1, "bytes": 3072 * MiB, "measured": 3072 * MiB}], got)
    dev = got["devstral"]
    check([(x["device"], x["bytes"], x["measured"]) for x in dev] ==
          [(0, 1024 * MiB, 1024 * MiB), (1, 1024 * MiB, 1024 * MiB)], dev)
    want = gguf_per_device()
    # the estimate, spread by layer and rounded per slot: within a few bytes of the figures
    check(all(abs(x["estimated"] - w) < 16 for x, w in zip(dev, want)), (dev, want))
    g = [m["gpu_memory"] for m in llmctl_json(d, "list")["models"] if m["name"] == "devstral"][0]
    check(g["estimated"] == 640 * MiB + 256 * 2 * 4 * 16 * 2 * 2 + 32 * MiB + 768 * MiB, g)


def scrape():
    """/llmd/metrics as Prometheus' client library reads it: {(name, labels): value}."""
    import json
    from test_observe import PARSER
    r = http(PORT, "GET", "/llmd/metrics")
    check(r.status == 200, f"metrics: {r}")
    p = subprocess.run(["/usr/bin/python3", "-c", PARSER], input=r.body.decode(),
                       capture_output=True, text=True)
    check(p.returncode == 0, f"prometheus_client could not parse the scrape: {p.stderr}")
    return {(n, tuple(sorted(labels.items()))): v for n, labels, v, _ in json.loads(p.stdout)}


def gpu_samples(samples, name):
    """name's samples that have a gpu label: {labels: value}."""
    return {labels: v for (n, labels), v in samples.items() if n == name and "gpu" in dict(labels)}


@gpus_fixture([24, 48], conf(star="env = LLAMA_SIM_GPU_MB=3072", qwen="gpus = 1",
                             devstral="gpus = 0,1\nenv = LLAMA_SIM_GPU_MB=2048"),
               prepare=lambda d: write_gguf(d.model_path("devstral")))
def test_metrics_per_gpu(d):
    """/llmd/metrics on two GPUs: llmd_gpu_memory_budget_bytes once unlabelled (all GPUs
    together, as before) and once per GPU; llmd_gpu_memory_bytes per model as before, and per
    GPU for each running model: devstral's estimate by layer and measured use on GPUs 0 and 1,
    qwen's measured use on GPU 1 alone."""
    wait_ready(d, "qwen", "nomic")
    check(call(d, "Switch", "devstral")["kind"] == "beside", "devstral beside qwen")
    budgets = [x["budget"] for x in status(d)["gpu"]["devices"]]
    want_devstral = gguf_per_device()

    def measured():
        s = scrape()
        return s if len([k for k in gpu_samples(s, "llmd_gpu_memory_bytes")
                         if ("source", "measured") in k]) == 4 else None
    s = wait_until(measured, "each GPU's measured use in the metrics")
    check(s[("llmd_gpu_memory_budget_bytes", ())] == sum(budgets), s)
    check(gpu_samples(s, "llmd_gpu_memory_budget_bytes") ==
          {(("gpu", "0"),): budgets[0], (("gpu", "1"),): budgets[1]}, s)
    per = gpu_samples(s, "llmd_gpu_memory_bytes")
    measured = {k: v for k, v in per.items() if ("source", "measured") in k}
    check(measured == {(("gpu", "0"), ("model", "devstral"), ("source", "measured")): 1024 * MiB,
                       (("gpu", "1"), ("model", "devstral"), ("source", "measured")): 1024 * MiB,
                       (("gpu", "0"), ("model", "nomic"), ("source", "measured")): 3072 * MiB,
                       (("gpu", "1"), ("model", "qwen"), ("source", "measured")): 3072 * MiB},
          measured)
    estimated = {k: v for k, v in per.items() if ("source", "estimated") in k}
    check(sorted(k for k in estimated) == [(("gpu", "0"), ("model", "devstral"), ("source", "estimated")),
                                           (("gpu", "1"), ("model", "devstral"), ("source", "estimated"))],
          estimated)
    # the split's weights are the budgets (gpus = 0,1), 1:2: slot 0 (0 / 3 below 1/3) on
    # GPU 0, the second layer and the output layer on GPU 1
    layer = 256 * MiB + 256 * 4 * 16 * 2 * 2 + 256 * MiB // 20
    got = [estimated[(("gpu", g), ("model", "devstral"), ("source", "estimated"))] for g in "01"]
    check(abs(got[0] - (768 * MiB + layer)) < 16 and
          abs(got[1] - (768 * MiB + layer + 128 * MiB + 128 * MiB // 20)) < 16, (got, want_devstral))
    # the totals, without a gpu label, as before
    check(s[("llmd_gpu_memory_bytes", (("model", "devstral"), ("source", "estimated")))] ==
          640 * MiB + 256 * 2 * 4 * 16 * 2 * 2 + 32 * MiB + 768 * MiB, s)


if __name__ == "__main__":
    run()
