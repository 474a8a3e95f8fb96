#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Prints gguf_read()'s time on the worst GGUF headers within gguf.h's caps (a benchmark: it
prints, it asserts nothing about time). gguf.c reads a header on llmd's event loop, so each of
these is how long a hostile (or large) model file can hold the loop.

  strings-8mi        two arrays of 4 Mi empty strings: 64 MiB of 8-byte elements
  strings-early      the same, the arrays named as <arch>.* keys before general.architecture:
                     gguf.c reads such entries twice
  tokens-4mi         one array of 4 Mi three-byte strings, 44 MiB
  big-strings        three 16 MiB string values and their keys, up to 64 MiB
  u8-64mi            an array of 4 Mi u64s and one of 4 Mi u8s (fixed size: skipped whole)
  wanted-u8          15 arrays of 4 Mi u8s, each under a key gguf.c reads (per-layer counts)
  tensors-1mi        1 Mi tensor infos of 4 dims, in shuffled offset order
  kv-64ki            64 Ki integer keys of the architecture
  tokenizer-8mi      a llama-3-like header: 128 Ki tokens, their types, 280 Ki merges, 291 tensors

Usage: bench/gguf.py [BUILD_DIR] [RUNS]   (default build, 5); the files go to a temporary
directory, removed after.
"""

import os
import random
import struct
import subprocess
import tempfile

import benchenv

runs = benchenv.arg(2, 5)
STR, ARR, U8, I32, U32, U64 = 8, 9, 0, 5, 4, 10
MiB = 1 << 20


def s(b):
    b = b if isinstance(b, bytes) else b.encode()
    return struct.pack("<Q", len(b)) + b


def header(n_tensors, n_kv):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def kv(key, t, value):
    return s(key) + struct.pack("<I", t) + value


def arr(key, et, count, body):
    return kv(key, ARR, struct.pack("<IQ", et, count) + body)


ARCH = kv("general.architecture", STR, s("llama"))


def strings_8mi(early=False):
    out = [header(0, 3)]
    n = 4 * MiB
    out.append(arr("a.block_count" if early else "a", STR, n, bytes(8 * n)))
    used = sum(map(len, out)) + len(ARCH)
    n2 = (64 * MiB - used - 64) // 8
    out.append(arr("b.context_length" if early else "b", STR, n2, bytes(8 * n2)))
    out.append(ARCH)
    return b"".join(out)


def tokens_4mi():
    n = 4 * MiB
    return header(0, 2) + ARCH + arr("t", STR, n, s("tok") * n)


def big_strings():
    out = [header(0, 4), ARCH]
    for k in range(3):
        out.append(kv(f"s{k}", STR, s(bytes(16 * MiB - 64))))
    return b"".join(out)


def u8_64mi():
    n = 4 * MiB
    return (header(0, 3) + ARCH + arr("q", U64, n, bytes(8 * n)) +
            arr("b", U8, n, bytes(n)))


def wanted_u8():
    n = 4 * MiB
    return header(0, 16) + ARCH + b"".join(
        arr("llama.attention.head_count_kv", U8, n, bytes(n)) for _ in range(15))


def tensors(n, names):
    """n F32 tensors of 8 values (32 bytes each), their offsets shuffled."""
    offsets = list(range(n))
    random.Random(1).shuffle(offsets)
    body = b"".join(s(names(i)) + struct.pack("<I4QIQ", 4, 8, 1, 1, 1, 0, 32 * o)
                    for i, o in enumerate(offsets))
    return body


def pad(b):
    return b + bytes(-len(b) % 32)


def tensors_1mi():
    n = 1 * MiB
    h = header(n, 1) + ARCH + tensors(n, lambda i: f"blk.{i % 100}.w")
    return pad(h) + bytes(32 * n)


def kv_64ki():
    n = 64 * 1024
    return header(0, n) + ARCH + b"".join(
        kv(f"llama.x{i}", U32, struct.pack("<I", i)) for i in range(n - 1))


def tokenizer_8mi():
    rnd = random.Random(2)
    n_tok, n_merge, n_tensor = 128 * 1024, 280 * 1024, 291
    toks = b"".join(s(bytes(rnd.choice(b"abcdefghijklmnop") for _ in range(rnd.randint(2, 12))))
                    for _ in range(n_tok))
    merges = b"".join(s(b"ab cdefgh") for _ in range(n_merge))
    h = (header(n_tensor, 8) + ARCH +
         kv("llama.block_count", U32, struct.pack("<I", 32)) +
         kv("llama.embedding_length", U32, struct.pack("<I", 4096)) +
         kv("llama.attention.head_count", U32, struct.pack("<I", 32)) +
         kv("tokenizer.ggml.model", STR, s("gpt2")) +
         arr("tokenizer.ggml.tokens", STR, n_tok, toks) +
         arr("tokenizer.ggml.token_type", I32, n_tok, bytes(4 * n_tok)) +
         arr("tokenizer.ggml.merges", STR, n_merge, merges) +
         tensors(n_tensor, lambda i: f"blk.{i // 9}.attn_q.weight"))
    return pad(h) + bytes(32 * n_tensor)


FILES = {
    "strings-8mi": strings_8mi,
    "strings-early": lambda: strings_8mi(early=True),
    "tokens-4mi": tokens_4mi,
    "big-strings": big_strings,
    "u8-64mi": u8_64mi,
    "wanted-u8": wanted_u8,
    "tensors-1mi": tensors_1mi,
    "kv-64ki": kv_64ki,
    "tokenizer-8mi": tokenizer_8mi,
}

test_gguf = os.path.join(benchenv.build, "tests", "unit", "test-gguf")
with tempfile.TemporaryDirectory(prefix="gguf-bench-") as tmp:
    paths = []
    for name, make in FILES.items():
        path = os.path.join(tmp, name + ".gguf")
        with open(path, "wb") as f:
            f.write(make())
        paths.append(path)
    out = subprocess.run([test_gguf, "time", str(runs)] + paths, check=True,
                         capture_output=True, text=True).stdout
    print(f"gguf_read, {runs} runs each (file, result, fastest, median):")
    for line in out.splitlines():
        path, rest = line.split("\t", 1)
        size = os.path.getsize(path) / MiB
        print(f"  {os.path.basename(path)[:-5]:<15} {size:6.1f} MiB  {rest}")
