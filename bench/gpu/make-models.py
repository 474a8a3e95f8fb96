#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes a random-weight qwen2 model in F16 for bench/gpu: 7B-shaped (Qwen2.5-7B's layers:
n_embd 3584, 28 layers, 28 heads, 4 KV heads, n_ff 18944; 6.5 B parameters, 13 GB) or, with
--shape tiny, a small one to try the scripts on a CPU. The vocabulary, chat template and output
bias are tests/models/make-tiny-models.py's: byte-level BPE of a few hundred tokens, so any text
tokenizes, and generation never ends early.

The weights are views into one block of random numbers (std 0.02), each tensor at another
offset: nothing is held in memory twice, and writing is as fast as the disk.

Usage: make-models.py [--shape 7b|tiny] OUT.gguf   (needs numpy and gguf-py on PYTHONPATH)
"""

import argparse
import importlib.util
import os

import numpy as np
from gguf import GGUFWriter

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "tiny", os.path.join(here, "..", "..", "tests", "models", "make-tiny-models.py"))
tiny = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny)

SHAPES = {
    # n_embd, n_head, n_head_kv, n_ff, n_layer, n_ctx_train
    "7b": (3584, 28, 4, 18944, 28, 32768),
    "tiny": (256, 4, 2, 512, 2, 8192),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=SHAPES, default="7b")
    ap.add_argument("out")
    opts = ap.parse_args()
    n_embd, n_head, n_head_kv, n_ff, n_layer, n_ctx = SHAPES[opts.shape]
    n_kv = n_head_kv * (n_embd // n_head)
    tokens, types, merges, allowed = tiny.build_bpe_vocab()
    n_vocab = len(tokens)

    rng = np.random.default_rng(20261205)
    block = (rng.standard_normal(max(n_ff * n_embd * 2, 1 << 24), np.float32) * 0.02).astype(np.float16)
    offset = [0]

    def weight(*shape):
        n = int(np.prod(shape))
        o = offset[0] = (offset[0] + 7919 * 64) % (len(block) - n)
        return block[o:o + n].reshape(shape)

    def bias(n):
        return weight(n).astype(np.float32)

    w = GGUFWriter(opts.out, "qwen2")
    w.add_name(f"llmd bench/gpu {opts.shape} qwen2")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(1)  # mostly F16

    tiny.add_bpe_tokenizer(w, tokens, types, merges, tiny.CHATML_TEMPLATE)

    ones = np.ones(n_embd, np.float32)
    w.add_tensor("token_embd.weight", weight(n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "attn_q.bias", bias(n_embd))
        for kv in ("attn_k", "attn_v"):
            w.add_tensor(p + kv + ".weight", weight(n_kv, n_embd))
            w.add_tensor(p + kv + ".bias", bias(n_kv))
        w.add_tensor(p + "attn_output.weight", weight(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", weight(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", weight(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", weight(n_embd, n_ff))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", weight(n_vocab, n_embd))
    w.add_tensor("output.bias", np.where(allowed, 0.0, tiny.SUPPRESSED_LOGIT).astype(np.float32))
    tiny.finish(w)


if __name__ == "__main__":
    main()
