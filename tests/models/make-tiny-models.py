#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate tiny random-weight GGUF models for llmd's integration tests.

Usage: make-tiny-models.py OUTDIR

Writes three files that a real llama-server loads in a fraction of a second,
so the tests can exercise the real server instead of a simulator:

  chat.gguf       qwen2 decoder (2 layers, n_embd 64, ctx 4096) with a ChatML
                  template and a byte-level BPE vocabulary built here.
  reasoning.gguf  the same weights with a Qwen3-style template whose generation
                  prompt opens a "<think>" block, so llama-server's reasoning
                  parser puts the output into reasoning_content.
  embed.gguf      bert encoder (2 layers, n_embd 64, mean pooling) with a small
                  WordPiece vocabulary, for llama-server --embeddings.

The weights are random, so the text generated is gibberish.  An output bias
keeps it usable: every token that is not printable ASCII (bytes >= 0x80,
control bytes other than newline) and every special token, <|im_end|>
included, gets a logit of -30, so each sampled token is valid UTF-8 on its own
and generation always runs until max_tokens (or, without it, to the end of the
context).  All randomness comes from fixed
seeds: the output is byte-identical from run to run.
"""

import os
import sys

import numpy as np
from gguf import GGUFWriter, PoolingType, TokenType

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen3 / DeepSeek-R1 style: past reasoning is rendered inside <think> tags
# and the generation prompt leaves a <think> block open.
REASONING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.get('reasoning_content') %}"
    "{{- '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)

# Merges of common English letter pairs, words and space-prefixed pieces
# (space is written "Ġ" in the GPT-2 byte alphabet).  Each entry joins two
# tokens that already exist when it is reached.
BPE_MERGES = [
    ("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("r", "e"),
    ("o", "n"), ("a", "t"), ("e", "n"), ("n", "d"), ("t", "i"), ("e", "s"),
    ("o", "r"), ("t", "e"), ("o", "f"), ("e", "d"), ("i", "s"), ("i", "t"),
    ("a", "l"), ("a", "r"), ("s", "t"), ("t", "o"), ("n", "t"), ("n", "g"),
    ("s", "e"), ("h", "a"), ("o", "u"), ("l", "e"), ("l", "l"), ("Ġ", "t"),
    ("Ġ", "a"), ("Ġ", "s"), ("Ġ", "w"), ("Ġ", "o"), ("Ġ", "i"), ("Ġ", "h"),
    ("Ġ", "c"), ("Ġ", "b"), ("Ġ", "f"), ("Ġ", "m"), ("Ġ", "p"), ("Ġ", "d"),
    ("Ġt", "he"), ("in", "g"), ("Ġa", "nd"), ("Ġo", "f"), ("Ġt", "o"),
    ("Ġi", "s"), ("Ġi", "n"), ("Ġi", "t"), ("he", "ll"), ("hell", "o"),
    ("l", "d"), ("Ġw", "or"), ("Ġwor", "ld"), ("Ġh", "i"), ("Ġ", "hello"),
    ("e", "a"), ("o", "w"),
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

SUPPRESSED_LOGIT = -30.0


def gpt2_byte_alphabet():
    """Map each byte to the printable character GPT-2 byte-level BPE uses."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in kept:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def build_bpe_vocab():
    """Return (tokens, token types, merges, allowed-in-output flags)."""
    alphabet = gpt2_byte_alphabet()
    tokens = [alphabet[b] for b in range(256)]
    allowed = [b == 0x0A or 0x20 <= b < 0x7F for b in range(256)]
    merges = []
    for left, right in BPE_MERGES:
        assert left in tokens and right in tokens, (left, right)
        merges.append(f"{left} {right}")
        tokens.append(left + right)
        allowed.append(True)
    types = [TokenType.NORMAL] * len(tokens)
    tokens += SPECIAL_TOKENS
    types += [TokenType.CONTROL] * len(SPECIAL_TOKENS)
    allowed += [False] * len(SPECIAL_TOKENS)
    return tokens, types, merges, allowed


def add_bpe_tokenizer(w, tokens, types, merges, template):
    """The tokenizer keys of build_bpe_vocab()'s vocabulary (bench/gpu/make-models.py too)."""
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(template)


def normal(rng, shape, std):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def write_decoder(path, name, template):
    """Write a 2-layer qwen2 model with the given chat template."""
    n_embd, n_head, n_head_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    head_dim = n_embd // n_head
    tokens, types, merges, allowed = build_bpe_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(20240601)

    w = GGUFWriter(path, "qwen2")
    w.add_name(name)
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(0)  # all F32

    add_bpe_tokenizer(w, tokens, types, merges, template)

    w.add_tensor("token_embd.weight", normal(rng, (n_vocab, n_embd), 1.0))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "attn_q.weight", normal(rng, (n_embd, n_embd), 0.1))
        w.add_tensor(p + "attn_q.bias", normal(rng, (n_embd,), 0.1))
        for kv in ("attn_k", "attn_v"):
            w.add_tensor(p + kv + ".weight", normal(rng, (n_head_kv * head_dim, n_embd), 0.1))
            w.add_tensor(p + kv + ".bias", normal(rng, (n_head_kv * head_dim,), 0.1))
        w.add_tensor(p + "attn_output.weight", normal(rng, (n_embd, n_embd), 0.1))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(p + "ffn_gate.weight", normal(rng, (n_ff, n_embd), 0.1))
        w.add_tensor(p + "ffn_up.weight", normal(rng, (n_ff, n_embd), 0.1))
        w.add_tensor(p + "ffn_down.weight", normal(rng, (n_embd, n_ff), 0.1))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", normal(rng, (n_vocab, n_embd), 2.0 / np.sqrt(n_embd)))
    bias = np.where(allowed, 0.0, SUPPRESSED_LOGIT).astype(np.float32)
    w.add_tensor("output.bias", bias)
    finish(w)


def build_wordpiece_vocab():
    """BERT vocabulary in llama.cpp's form: word starts carry a "▁" prefix,
    continuation pieces ("##x" in BERT's vocab.txt) are stored bare."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(0x21, 0x7F)]
    words = ["hello", "world", "the", "and", "of", "to", "is", "in", "it", "test"]
    pieces = ["ing", "ed", "er", "ly", "est"]
    tokens = specials + ["\u2581" + c for c in chars + words] + chars + pieces
    types = [TokenType.CONTROL] * len(specials)
    types += [TokenType.NORMAL] * (len(tokens) - len(specials))
    return tokens, types


def write_embedder(path):
    """Write a 2-layer bert encoder with mean pooling."""
    n_embd, n_head, n_ff, n_layer, n_ctx = 64, 4, 128, 2, 512
    tokens, types = build_wordpiece_vocab()
    rng = np.random.default_rng(20240602)

    w = GGUFWriter(path, "bert")
    w.add_name("llmd tiny embed")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_block_count(n_layer)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(PoolingType.MEAN)
    w.add_file_type(0)

    w.add_tokenizer_model("bert")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_type_count(2)
    w.add_bos_token_id(tokens.index("[CLS]"))  # llama.cpp uses BOS as CLS
    w.add_sep_token_id(tokens.index("[SEP]"))
    w.add_pad_token_id(tokens.index("[PAD]"))
    w.add_unk_token_id(tokens.index("[UNK]"))
    w.add_mask_token_id(tokens.index("[MASK]"))

    def layer_norm(name):
        w.add_tensor(name + ".weight", np.ones(n_embd, np.float32))
        w.add_tensor(name + ".bias", np.zeros(n_embd, np.float32))

    def linear(name, n_out, n_in):
        w.add_tensor(name + ".weight", normal(rng, (n_out, n_in), 0.1))
        w.add_tensor(name + ".bias", normal(rng, (n_out,), 0.02))

    w.add_tensor("token_embd.weight", normal(rng, (len(tokens), n_embd), 1.0))
    w.add_tensor("token_types.weight", normal(rng, (2, n_embd), 0.1))
    w.add_tensor("position_embd.weight", normal(rng, (n_ctx, n_embd), 0.1))
    layer_norm("token_embd_norm")
    for i in range(n_layer):
        p = f"blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            linear(p + name, n_embd, n_embd)
        layer_norm(p + "attn_output_norm")
        linear(p + "ffn_up", n_ff, n_embd)
        linear(p + "ffn_down", n_embd, n_ff)
        layer_norm(p + "layer_output_norm")
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_decoder(os.path.join(out, "chat.gguf"), "llmd tiny chat", CHATML_TEMPLATE)
    write_decoder(os.path.join(out, "reasoning.gguf"), "llmd tiny reasoning", REASONING_TEMPLATE)
    write_embedder(os.path.join(out, "embed.gguf"))


if __name__ == "__main__":
    main()
