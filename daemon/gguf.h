/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * What a model needs of the GPU, from its GGUF header alone (v2 and v3, little-endian): the
 * architecture's dimensions and the bytes of its tensors. The file is not trusted: it is opened
 * with open_regular() (a FIFO, a socket or a device is refused before a byte is read), every
 * count and length in it is checked against the caps below and against the header's size
 * before it is used, nothing is allocated from a size the file states, a file that is not a
 * GGUF llama-server could load gives -EBADMSG, and one past a cap -E2BIG.
 *
 * The caps lie far above any real model's (llama 3: 128k tokens, 280k merges, a header of
 * about 8 MiB; Gemma 3: 262k tokens, 6 MiB; a chat template: 4-60 KiB; DeepSeek V3: some
 * 1,100 tensors, 50 keys), and low enough that the worst file is refused after reading GGUF_HEADER_MAX bytes
 * at most, through one 64 KiB buffer: a 16 GiB sparse file claiming 2^62 strings ends at its
 * first array, in microseconds.
 *
 * A split model (NAME-00001-of-00003.gguf, the first file named) is read whole: the tensors of
 * every part are counted.
 */

#define GGUF_KV_MAX (UINT64_C(1) << 16)      /* metadata entries */
#define GGUF_TENSORS_MAX (UINT64_C(1) << 20) /* tensor infos */
#define GGUF_ARRAY_MAX (UINT64_C(1) << 22)   /* elements of one array (4 Mi) */
#define GGUF_STRING_MAX (UINT64_C(16) << 20) /* bytes of one string: a key, a value, a token */
#define GGUF_HEADER_MAX \
        (UINT64_C(64) << 20) /* bytes from the magic to the last tensor info,
                                              * all parts of a split model together */
#define GGUF_SPLITS_MAX 1024 /* parts of a split model */
#define GGUF_LAYERS_MAX 512  /* layers whose own sizes are kept (llama.cpp's LLAMA_MAX_LAYERS) */

typedef struct GgufInfo {
        char *arch;                 /* general.architecture */
        uint64_t n_layer;           /* <arch>.block_count */
        uint64_t n_embd;            /* <arch>.embedding_length */
        uint64_t n_head, n_head_kv; /* <arch>.attention.head_count(_kv); kv defaults to n_head */
        uint64_t key_length,
                value_length;  /* <arch>.attention.key_length/value_length; default n_embd/n_head */
        uint64_t n_ctx_train;  /* <arch>.context_length */
        uint64_t tensor_bytes; /* all tensors' data */
        uint64_t layer_bytes;  /* tensors named blk.N.*, all layers together */
        uint64_t layer[GGUF_LAYERS_MAX]; /* blk.N.*, by N, for N below GGUF_LAYERS_MAX */
        uint64_t file_bytes;             /* all parts of a split model together */
} GgufInfo;

/* 0, -errno (the file cannot be read; open_regular()'s), -EBADMSG (it is not a GGUF llama-server
 * can load) or -E2BIG (its header is past a cap above). */
int gguf_read(const char *path, GgufInfo *ret);
/* The same for one open file, from its start (no split parts). */
int gguf_read_fd(int fd, GgufInfo *ret);
void gguf_info_done(GgufInfo *i);

typedef struct GgufEstimateParams {
        int64_t n_gpu_layers; /* -1: all (llama-server's default and "auto"/999) */
        uint64_t ctx_size;    /* total context (llama-server's --ctx-size; 0 = n_ctx_train) */
        unsigned cache_k_bits,
                cache_v_bits; /* 16 for f16 (default, also 0), 8 for q8_0, 4 for q4_0 ... */
} GgufEstimateParams;

/* The margin of gguf_estimate_gpu_bytes(): GGUF_MARGIN_FIXED plus 1/GGUF_MARGIN_WEIGHT_DIV
 * of the offloaded weights. A CUDA process holds 518 MiB before it allocates anything (NVML,
 * H200, CUDA 13); llama-server's compute buffers (logits of a batch, attention) add a few
 * hundred MiB more, growing with the model. */
#define GGUF_MARGIN_FIXED (UINT64_C(768) << 20)
#define GGUF_MARGIN_WEIGHT_DIV 20

/*
 * Bytes of GPU memory llama-server will use, 0 when nothing is offloaded:
 *
 *   weights  the offloaded layers' share of layer_bytes (the last n_gpu_layers of n_layer, as
 *            llama.cpp picks them), plus every tensor outside blk.N when n_gpu_layers is -1 or
 *            above n_layer (llama.cpp then puts the output layer on the GPU too)
 *   KV       ctx_size (rounded up to 256, as llama.cpp pads it) tokens × offloaded layers ×
 *            n_head_kv × (key_length × K bits + value_length × V bits); a quantized cache type
 *            (below 16 bits) costs half a bit more per value, its block scale (q8_0: 8.5)
 *   margin   weights / 20 + 768 MiB, for the CUDA context and the compute buffers
 *
 * It errs high: sliding-window layers, MLA's compressed cache and encoders without a cache are
 * counted as full caches. Sums saturate at UINT64_MAX.
 */
uint64_t gguf_estimate_gpu_bytes(const GgufInfo *i, const GgufEstimateParams *p);

/*
 * gguf_estimate_gpu_bytes() by where llama.cpp's layer split (--split-mode layer) puts it:
 * ret_slots (room for GGUF_LAYERS_MAX + 1) gets, for each of *ret_n slots, the bytes that go
 * with it: first the offloaded repeating layers in order (each its weights, from layer[] when
 * every blk.N below n_layer was seen, else layer_bytes spread evenly; its KV cache; its share
 * of the margin), then, when n_gpu_layers offloads it, the output layer with every tensor
 * outside blk.N (llama.cpp keeps the token embedding on the CPU: counted there anyway, as
 * gguf_estimate_gpu_bytes() does). llama.cpp gives slot k of n to the first device whose
 * running share of --tensor-split is above k / n. GGUF_MARGIN_FIXED is not in any slot: each
 * device used holds it (its CUDA context, its compute buffers). Nothing offloaded: *ret_n 0.
 * -E2BIG: more than GGUF_LAYERS_MAX layers (or none), no slots.
 */
int gguf_estimate_slots(const GgufInfo *i, const GgufEstimateParams *p, uint64_t *ret_slots,
                        unsigned *ret_n);

/* The bits per value to pass as cache_k_bits/cache_v_bits for llama-server's --cache-type-k/-v
 * NAME (f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1); -EINVAL for another name. A type
 * with a minimum besides its scale (q4_1, q5_1) is given one bit more, so the estimate covers it. */
int gguf_cache_type_bits(const char *name, unsigned *ret);
