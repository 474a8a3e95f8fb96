/* SPDX-License-Identifier: MIT */
/*
 * A GGUF file, as far as we read it:
 *
 *   "GGUF"  u32 version (2, 3)  u64 n_tensors  u64 n_kv
 *   n_kv ×      string key  u32 type  value   (an array: u32 type  u64 count  values)
 *   n_tensors × string name  u32 n_dims  u64 dims[n_dims]  u32 ggml type  u64 offset
 *   padding to general.alignment (32), then the tensors' data, each at its offset
 *
 * where a string is u64 length + bytes, all little-endian. Every count and length is checked
 * against gguf.h's caps and against what is left of the header before it is used, so a hostile
 * file ends in -E2BIG or -EBADMSG after at most one pass over its first GGUF_HEADER_MAX bytes,
 * read through one buffer of GGUF_BUF, and memory grows only with what was actually read.
 *
 * It runs on llmd's event loop, so the worst header within the caps must stay cheap too
 * (bench/gguf.py prints the figures: some 20-35 ms on a loaded 2-core machine, for 8 Mi
 * strings, 1 Mi shuffled tensor infos or a file of 64 MiB): arrays of strings are skipped in a
 * tight loop over the buffer, arrays of fixed-size values in one step, tensor infos are sorted
 * by radix only when out of order, and entries named before general.architecture are read
 * again alone. The file is read with pread(), not mapped: a user's file truncated while it
 * is mapped would kill llmd with SIGBUS, where pread() returns short.
 */
#include <endian.h>
#include <stdio.h>
#include <sys/mman.h>

#include "fileio.h"
#include "gguf.h"

#define GGUF_NAME_MAX 64 /* GGML_MAX_NAME: llama.cpp refuses a longer tensor name */
#define GGUF_KEY_MAX 256 /* a longer key is skipped: none we read is that long */
#define GGUF_ARCH_MAX 64
#define GGUF_DIMS_MAX 4   /* GGML_MAX_DIMS */
#define GGUF_ALIGNMENT 32 /* general.alignment's default */
#define GGUF_ALIGNMENT_MAX (UINT64_C(1) << 24)
#define GGUF_GGML_TYPE_MAX 256 /* above: garbage, not a ggml type newer than ours */
#define GGUF_BUF (64 * 1024)

enum {
        GGUF_TYPE_UINT8,
        GGUF_TYPE_INT8,
        GGUF_TYPE_UINT16,
        GGUF_TYPE_INT16,
        GGUF_TYPE_UINT32,
        GGUF_TYPE_INT32,
        GGUF_TYPE_FLOAT32,
        GGUF_TYPE_BOOL,
        GGUF_TYPE_STRING,
        GGUF_TYPE_ARRAY,
        GGUF_TYPE_UINT64,
        GGUF_TYPE_INT64,
        GGUF_TYPE_FLOAT64,
        _GGUF_TYPE_MAX,
};

/* Bytes of a value of each fixed-size type; 0 for string and array. */
static const uint8_t gguf_type_size[_GGUF_TYPE_MAX] = {
        [GGUF_TYPE_UINT8] = 1,   [GGUF_TYPE_INT8] = 1,    [GGUF_TYPE_UINT16] = 2,
        [GGUF_TYPE_INT16] = 2,   [GGUF_TYPE_UINT32] = 4,  [GGUF_TYPE_INT32] = 4,
        [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,    [GGUF_TYPE_UINT64] = 8,
        [GGUF_TYPE_INT64] = 8,   [GGUF_TYPE_FLOAT64] = 8,
};

/* ggml's types: values per block (a power of 2) and bytes per block (gguf-py's GGML_QUANT_SIZES). The ids
 * missing here (4, 5, 31-33, 36-38: removed; newer ones) are sized from the tensors'
 * offsets instead. */
static const struct {
        uint16_t block, bytes;
} ggml_types[] = {
        [0] = { 1, 4 },      /* F32 */
        [1] = { 1, 2 },      /* F16 */
        [2] = { 32, 18 },    /* Q4_0 */
        [3] = { 32, 20 },    /* Q4_1 */
        [6] = { 32, 22 },    /* Q5_0 */
        [7] = { 32, 24 },    /* Q5_1 */
        [8] = { 32, 34 },    /* Q8_0 */
        [9] = { 32, 36 },    /* Q8_1 */
        [10] = { 256, 84 },  /* Q2_K */
        [11] = { 256, 110 }, /* Q3_K */
        [12] = { 256, 144 }, /* Q4_K */
        [13] = { 256, 176 }, /* Q5_K */
        [14] = { 256, 210 }, /* Q6_K */
        [15] = { 256, 292 }, /* Q8_K */
        [16] = { 256, 66 },  /* IQ2_XXS */
        [17] = { 256, 74 },  /* IQ2_XS */
        [18] = { 256, 98 },  /* IQ3_XXS */
        [19] = { 256, 50 },  /* IQ1_S */
        [20] = { 32, 18 },   /* IQ4_NL */
        [21] = { 256, 110 }, /* IQ3_S */
        [22] = { 256, 82 },  /* IQ2_S */
        [23] = { 256, 136 }, /* IQ4_XS */
        [24] = { 1, 1 },     /* I8 */
        [25] = { 1, 2 },     /* I16 */
        [26] = { 1, 4 },     /* I32 */
        [27] = { 1, 8 },     /* I64 */
        [28] = { 1, 8 },     /* F64 */
        [29] = { 256, 56 },  /* IQ1_M */
        [30] = { 1, 2 },     /* BF16 */
        [34] = { 256, 54 },  /* TQ1_0 */
        [35] = { 256, 66 },  /* TQ2_0 */
        [39] = { 32, 17 },   /* MXFP4 */
};

/* The <arch>.* keys we read, by what follows "<arch>.". */
enum {
        KEY_BLOCK_COUNT,
        KEY_EMBEDDING_LENGTH,
        KEY_HEAD_COUNT,
        KEY_HEAD_COUNT_KV,
        KEY_KEY_LENGTH,
        KEY_VALUE_LENGTH,
        KEY_CONTEXT_LENGTH,
        _KEY_MAX,
};

/* clang-format off */
static const char *const arch_keys[_KEY_MAX] = {
        [KEY_BLOCK_COUNT] = "block_count",
        [KEY_EMBEDDING_LENGTH] = "embedding_length",
        [KEY_HEAD_COUNT] = "attention.head_count",
        [KEY_HEAD_COUNT_KV] = "attention.head_count_kv",
        [KEY_KEY_LENGTH] = "attention.key_length",
        [KEY_VALUE_LENGTH] = "attention.value_length",
        [KEY_CONTEXT_LENGTH] = "context_length",
};
/* clang-format on */

typedef struct GgufReader {
        int fd;
        uint64_t size;  /* of the file */
        uint64_t limit; /* of the header: MIN(size, GGUF_HEADER_MAX) */
        uint64_t pos;   /* the next byte to read; never above limit */
        uint64_t buf_pos;
        size_t buf_len;
        uint8_t buf[GGUF_BUF];
} GgufReader;

/* 16 bytes: 1 Mi tensors take 16 MiB, and as much again to sort them. */
typedef struct GgufTensor {
        uint64_t offset; /* from the start of the data */
        uint64_t
                bytes : 54; /* TENSOR_BYTES_UNKNOWN: a type we do not know, sized from the offsets */
        uint64_t layer : 10; /* 0: not blk.N; N + 1 below GGUF_LAYERS_MAX; TENSOR_LAYER_PAST */
} GgufTensor;

/* Above any tensor's room in a file (16 PiB): a known size saturates below it. */
#define TENSOR_BYTES_UNKNOWN (UINT64_MAX >> 10)
/* blk.N with N from GGUF_LAYERS_MAX up: counted in layer_bytes, not in layer[] */
#define TENSOR_LAYER_PAST 1023
_Static_assert(GGUF_LAYERS_MAX < TENSOR_LAYER_PAST, "layer numbers fit the field");

/* One file's header, before the defaults are applied. */
typedef struct GgufParse {
        GgufInfo info;
        uint64_t values[_KEY_MAX];
        bool have[_KEY_MAX];
        uint64_t *early; /* where each <arch>.* key before general.architecture starts */
        size_t n_early, early_allocated;
        uint64_t alignment;
        uint64_t split_count;
        uint64_t header_bytes; /* from the magic to the last tensor info */
} GgufParse;

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        uint64_t r;

        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
        uint64_t r;

        return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* More bytes than the header has: -E2BIG when GGUF_HEADER_MAX cut it short, else -EBADMSG. */
static int reader_past(const GgufReader *r)
{
        return r->size > r->limit ? -E2BIG : -EBADMSG;
}

/* reader_read() past the buffer: refills it from r->pos. */
static int reader_fill(GgufReader *r, void *ret, size_t n)
{
        size_t want;
        ssize_t k;

        if (n > r->limit - r->pos) {
                return reader_past(r);
        }
        if (n > sizeof(r->buf)) {
                return -EBADMSG;
        }
        /* never a byte past the header's cap */
        want = (size_t) MIN((uint64_t) sizeof(r->buf), r->limit - r->pos);
        k = pread(r->fd, r->buf, want, (off_t) r->pos);
        if (k < 0) {
                return -errno;
        }
        r->buf_pos = r->pos;
        r->buf_len = (size_t) k;
        if (r->buf_len < n) {
                return -EBADMSG; /* the file shrank under us */
        }
        memcpy(ret, r->buf, n);
        r->pos += n;
        return 0;
}

/* Bytes of the buffer from r->pos on: 0 when r->pos lies outside it. The buffer never holds a
 * byte past r->limit. */
static inline size_t reader_buffered(const GgufReader *r)
{
        uint64_t at = r->pos - r->buf_pos; /* wraps above buf_len when pos < buf_pos */

        return at <= r->buf_len ? r->buf_len - (size_t) at : 0;
}

static inline __attribute__((always_inline)) int reader_read(GgufReader *r, void *ret, size_t n)
{
        if (n <= reader_buffered(r)) {
                memcpy(ret, r->buf + (r->pos - r->buf_pos), n);
                r->pos += n;
                return 0;
        }
        return reader_fill(r, ret, n);
}

static int reader_skip(GgufReader *r, uint64_t n)
{
        if (n > r->limit - r->pos) {
                return reader_past(r);
        }
        r->pos += n;
        return 0;
}

/* n ≤ 8 bytes, little-endian. */
static inline __attribute__((always_inline)) int reader_le(GgufReader *r, size_t n, uint64_t *ret)
{
        uint64_t v = 0; /* the bytes past n stay 0 */
        int k;

        k = reader_read(r, &v, n);
        if (k < 0) {
                return k;
        }
        *ret = le64toh(v);
        return 0;
}

static inline int reader_u64(GgufReader *r, uint64_t *ret)
{
        return reader_le(r, 8, ret);
}

static inline int reader_u32(GgufReader *r, uint32_t *ret)
{
        uint64_t v;
        int k = reader_le(r, 4, &v);

        if (k >= 0) {
                *ret = (uint32_t) v;
        }
        return k;
}

/* A string into buf (NUL-terminated) when it is shorter than size, else skipped: returns 1
 * when read, 0 when skipped. */
static int reader_string(GgufReader *r, char *buf, size_t size)
{
        uint64_t len;
        int k;

        k = reader_u64(r, &len);
        if (k < 0) {
                return k;
        }
        if (len > GGUF_STRING_MAX) {
                return -E2BIG;
        }
        if (len >= size) {
                k = reader_skip(r, len);
                return k < 0 ? k : 0;
        }
        k = reader_read(r, buf, (size_t) len);
        if (k < 0) {
                return k;
        }
        buf[len] = '\0';
        return 1;
}

static inline uint64_t le64(const uint8_t *b)
{
        uint64_t v;

        memcpy(&v, b, sizeof(v)); /* one load */
        return le64toh(v);
}

/*
 * count strings skipped, as reader_string() would skip them one by one (the same checks, in
 * the same order), but from the buffer in a tight loop: a tokenizer's array of millions of
 * short strings costs a few ns each. Each string takes 8 bytes at least: the loop ends with
 * the header.
 */
static int reader_skip_strings(GgufReader *r, uint64_t count)
{
        while (count > 0) {
                size_t left = reader_buffered(r);
                const uint8_t *b = r->buf + (left > 0 ? r->pos - r->buf_pos : 0);
                char c;
                int k;

                while (count > 0 && left >= 8) {
                        uint64_t len = le64(b);

                        if (len > GGUF_STRING_MAX) {
                                return -E2BIG;
                        }
                        if (len > r->limit - r->pos - 8) {
                                return reader_past(r);
                        }
                        r->pos += 8 + len;
                        count--;
                        if (len > left - 8) {
                                break; /* past the buffer: refilled below */
                        }
                        b += 8 + len;
                        left -= 8 + len;
                }
                if (count == 0) {
                        break;
                }
                /* the next length is not whole in the buffer: read it the slow way, which
                 * refills the buffer from there */
                k = reader_string(r, &c, 0);
                if (k < 0) {
                        return k;
                }
                count--;
        }
        return 0;
}

/* One value of fixed-size type t: 1 with its value when it is a non-negative integer, else 0
 * (read and dropped either way). */
static int reader_integer(GgufReader *r, uint32_t t, uint64_t *ret)
{
        size_t n = gguf_type_size[t];
        uint64_t v;
        int k;

        k = reader_le(r, n, &v);
        if (k < 0) {
                return k;
        }
        if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64 || t == GGUF_TYPE_BOOL) {
                return 0;
        }
        if ((t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
             t == GGUF_TYPE_INT64) &&
            v >> (8 * n - 1) != 0) {
                return 0; /* negative */
        }
        *ret = v;
        return 1;
}

/* The largest non-negative of m little-endian integers of size bytes at b, into *max and *any. */
static void integers_max(const uint8_t *b, size_t m, size_t size, bool is_signed, uint64_t *max,
                         bool *any)
{
        uint64_t top = is_signed ? UINT64_C(1) << (8 * size - 1) : 0, best = *max;
        bool found = *any;

#define INTEGERS_MAX(type, conv)                          \
        for (size_t i = 0; i < m; i++) {                  \
                type x;                                   \
                memcpy(&x, b + i * sizeof(x), sizeof(x)); \
                uint64_t v = conv(x);                     \
                if ((v & top) == 0) {                     \
                        best = MAX(best, v);              \
                        found = true;                     \
                }                                         \
        }
        switch (size) {
        case 1:
                INTEGERS_MAX(uint8_t, (uint64_t));
                break;
        case 2:
                INTEGERS_MAX(uint16_t, le16toh);
                break;
        case 4:
                INTEGERS_MAX(uint32_t, le32toh);
                break;
        default:
                INTEGERS_MAX(uint64_t, le64toh);
                break;
        }
#undef INTEGERS_MAX
        *max = best;
        *any = found;
}

/*
 * A value of type t: skipped, unless want is set and it is an integer, or an array of
 * integers (per-layer counts, such as head_count_kv of models that vary it: the largest is
 * taken, for an estimate that errs high). Returns 1 with *ret set, 0 when skipped. Arrays of
 * arrays are refused, as llama.cpp refuses them.
 */
static int reader_value(GgufReader *r, uint32_t t, bool want, uint64_t *ret)
{
        uint64_t count, v, max = 0;
        uint32_t et;
        bool any = false;
        int k;

        if (t >= _GGUF_TYPE_MAX) {
                return -EBADMSG;
        }
        if (t == GGUF_TYPE_STRING) {
                char c;
                k = reader_string(r, &c, 0);
                return k < 0 ? k : 0;
        }
        if (t != GGUF_TYPE_ARRAY) {
                if (want) {
                        return reader_integer(r, t, ret);
                }
                return reader_skip(r, gguf_type_size[t]);
        }

        k = reader_u32(r, &et);
        if (k < 0) {
                return k;
        }
        k = reader_u64(r, &count);
        if (k < 0) {
                return k;
        }
        if (et >= _GGUF_TYPE_MAX || et == GGUF_TYPE_ARRAY) {
                return -EBADMSG;
        }
        if (count > GGUF_ARRAY_MAX) {
                return -E2BIG;
        }
        if (et == GGUF_TYPE_STRING) {
                return reader_skip_strings(r, count);
        }
        if (count > (r->limit - r->pos) / gguf_type_size[et]) {
                return reader_past(r);
        }
        if (!want || et == GGUF_TYPE_FLOAT32 || et == GGUF_TYPE_FLOAT64 || et == GGUF_TYPE_BOOL) {
                return reader_skip(r, count * gguf_type_size[et]); /* no integer in it */
        }
        while (count > 0) {
                size_t left = reader_buffered(r), size = gguf_type_size[et], m;

                if (left < size) {
                        /* the next value is not whole in the buffer: read it the slow way,
                         * which refills the buffer from there */
                        k = reader_integer(r, et, &v);
                        if (k < 0) {
                                return k;
                        }
                        if (k > 0) {
                                max = MAX(max, v);
                                any = true;
                        }
                        count--;
                        continue;
                }
                /* a tight loop over what the buffer holds: 4 Mi values in a few ms */
                m = (size_t) MIN(count, (uint64_t) (left / size));
                integers_max(r->buf + (r->pos - r->buf_pos), m, size,
                             et == GGUF_TYPE_INT8 || et == GGUF_TYPE_INT16 ||
                                     et == GGUF_TYPE_INT32 || et == GGUF_TYPE_INT64,
                             &max, &any);
                r->pos += m * size;
                count -= m;
        }
        if (any) {
                *ret = max;
        }
        return any;
}

/* Which <arch>.* key this is, or -1. Before the architecture is known, any prefix counts: -2,
 * and the caller reads that entry again once it is. */
static int gguf_arch_key(GgufParse *p, const char *key)
{
        const char *dot = strchr(key, '.');

        if (!dot || startswith(key, "general.")) {
                return -1;
        }
        for (int i = 0; i < _KEY_MAX; i++) {
                if (!streq(dot + 1, arch_keys[i])) {
                        continue;
                }
                if (!p->info.arch) {
                        return -2;
                }
                if (strlen(p->info.arch) != (size_t) (dot - key) ||
                    !strneq(key, p->info.arch, (size_t) (dot - key))) {
                        return -1;
                }
                return i;
        }
        return -1;
}

static int gguf_read_kv(GgufReader *r, GgufParse *p)
{
        uint64_t start = r->pos;
        char key[GGUF_KEY_MAX];
        uint32_t t;
        uint64_t v;
        int k, which;
        bool known;

        k = reader_string(r, key, sizeof(key));
        if (k < 0) {
                return k;
        }
        known = k > 0;
        k = reader_u32(r, &t);
        if (k < 0) {
                return k;
        }
        if (!known) {
                k = reader_value(r, t, false, &v);
                return k < 0 ? k : 0;
        }

        if (streq(key, "general.architecture") && t == GGUF_TYPE_STRING) {
                char arch[GGUF_ARCH_MAX];
                k = reader_string(r, arch, sizeof(arch));
                if (k <= 0) {
                        return k < 0 ? k : -EBADMSG;
                }
                if (!p->info.arch) {
                        p->info.arch = strdup(arch);
                        if (!p->info.arch) {
                                return -ENOMEM;
                        }
                }
                return 0;
        }
        if (streq(key, "general.alignment")) {
                k = reader_value(r, t, true, &v);
                if (k < 0) {
                        return k;
                }
                if (k == 0 || t == GGUF_TYPE_ARRAY || v == 0 || (v & (v - 1)) != 0 ||
                    v > GGUF_ALIGNMENT_MAX) {
                        return -EBADMSG;
                }
                p->alignment = v;
                return 0;
        }
        if (streq(key, "split.count")) {
                k = reader_value(r, t, t != GGUF_TYPE_ARRAY, &v);
                if (k > 0) {
                        p->split_count = v;
                }
                return k < 0 ? k : 0;
        }
        which = gguf_arch_key(p, key);
        if (which == -2 && t == GGUF_TYPE_ARRAY) {
                /* an array of strings gives no value: not worth a second read (of up to
                 * the whole header) */
                uint64_t at = r->pos;
                uint32_t et;

                k = reader_u32(r, &et);
                if (k < 0) {
                        return k;
                }
                r->pos = at;
                which = et == GGUF_TYPE_STRING ? -1 : which;
        }
        if (which == -2 && t != GGUF_TYPE_STRING) {
                if (p->n_early == p->early_allocated) {
                        /* grows with what was read: each entry took 13 bytes at least */
                        size_t more = MAX(p->early_allocated * 2, (size_t) 8);
                        uint64_t *e = reallocarray(p->early, more, sizeof(*e));
                        if (!e) {
                                return -ENOMEM;
                        }
                        p->early = e;
                        p->early_allocated = more;
                }
                p->early[p->n_early++] = start;
        }
        k = reader_value(r, t, which >= 0, &v);
        if (k > 0) {
                p->values[which] = v;
                p->have[which] = true;
        }
        return k < 0 ? k : 0;
}

/* "blk.N.": N + 1 (TENSOR_LAYER_PAST from GGUF_LAYERS_MAX up); 0 for another name. */
static unsigned gguf_layer(const char *name)
{
        const char *s = startswith(name, "blk.");
        uint64_t n = 0;

        if (!s || *s < '0' || *s > '9') {
                return 0;
        }
        while (*s >= '0' && *s <= '9') {
                n = MIN(n * 10 + (uint64_t) (*s - '0'), (uint64_t) GGUF_LAYERS_MAX);
                s++;
        }
        if (*s != '.') {
                return 0;
        }
        return n < GGUF_LAYERS_MAX ? (unsigned) n + 1 : TENSOR_LAYER_PAST;
}

static int gguf_read_tensor(GgufReader *r, const GgufParse *p, GgufTensor *ret)
{
        char name[GGUF_NAME_MAX];
        uint64_t n = 1, row = 1, dim, offset;
        uint32_t n_dims, type;
        int k;

        k = reader_string(r, name, sizeof(name));
        if (k <= 0) {
                return k < 0 ? k : -EBADMSG;
        }
        k = reader_u32(r, &n_dims);
        if (k < 0) {
                return k;
        }
        if (n_dims > GGUF_DIMS_MAX) {
                return -EBADMSG;
        }
        for (uint32_t d = 0; d < n_dims; d++) {
                k = reader_u64(r, &dim);
                if (k < 0) {
                        return k;
                }
                /* ggml's dimensions are int64_t, and so is their product */
                if (dim > INT64_MAX || __builtin_mul_overflow(n, dim, &n) || n > INT64_MAX) {
                        return -EBADMSG;
                }
                row = d == 0 ? dim : row;
        }
        k = reader_u32(r, &type);
        if (k < 0) {
                return k;
        }
        k = reader_u64(r, &offset);
        if (k < 0) {
                return k;
        }
        /* alignment and every block are powers of 2: masks and shifts, not three divisions a
         * tensor (a tenth of the time of 1 Mi tensors) */
        if (type >= GGUF_GGML_TYPE_MAX || (offset & (p->alignment - 1)) != 0) {
                return -EBADMSG;
        }
        if (type < ELEMENTSOF(ggml_types) && ggml_types[type].block > 0) {
                uint64_t block = ggml_types[type].block;

                /* llama.cpp's check: a row is whole blocks */
                if ((row & (block - 1)) != 0) {
                        return -EBADMSG;
                }
                /* n < 2^63 but F32's 4 bytes a value may overflow: saturated, such a tensor
                 * has no room in the file */
                ret->bytes = MIN(sat_mul(n >> __builtin_ctzll(block), ggml_types[type].bytes),
                                 TENSOR_BYTES_UNKNOWN - 1);
        } else {
                ret->bytes = TENSOR_BYTES_UNKNOWN;
        }
        ret->offset = offset;
        ret->layer = gguf_layer(name);
        return 0;
}

/*
 * The n tensors of t in the order of their offsets: t itself, or tmp (room for n more). A real
 * file has them in order already (checked in one pass); another is sorted by radix, 16 bits of
 * the offset a pass, least significant first, from the lowest bit alignment leaves (every
 * offset is a multiple of it) up to the highest bit set: 1 Mi shuffled tensors in some 15 ms, where qsort() took 300.
 */
#define RADIX_BITS 16
static GgufTensor *tensors_sort(GgufTensor *t, GgufTensor *tmp,
                                uint32_t count[static 1 << RADIX_BITS], size_t n,
                                uint64_t alignment)
{
        GgufTensor *src = t, *dst = tmp;
        uint64_t bits = 0;
        bool sorted = true;

        for (size_t i = 0; i < n; i++) {
                sorted = sorted && (i == 0 || src[i - 1].offset <= src[i].offset);
                bits |= src[i].offset;
        }
        if (sorted) {
                return t;
        }
        for (unsigned shift = (unsigned) __builtin_ctzll(alignment);
             shift < 64 && bits >> shift != 0; shift += RADIX_BITS) {
                const uint64_t mask = (1 << RADIX_BITS) - 1;
                uint32_t at = 0; /* n ≤ GGUF_TENSORS_MAX */
                GgufTensor *x;

                memset(count, 0, sizeof(*count) << RADIX_BITS);
                for (size_t i = 0; i < n; i++) {
                        count[src[i].offset >> shift & mask]++;
                }
                if (count[src[0].offset >> shift & mask] == n) {
                        continue; /* one value of these bits: nothing moves */
                }
                for (size_t d = 0; d < 1 << RADIX_BITS; d++) {
                        uint32_t c = count[d];
                        count[d] = at;
                        at += c;
                }
                for (size_t i = 0; i < n; i++) {
                        dst[count[src[i].offset >> shift & mask]++] = src[i];
                }
                x = src;
                src = dst;
                dst = x;
        }
        return src;
}

/* Sums the tensors' bytes (sorted by tensors_sort()), each checked to lie within the data and clear of the next one. */
static int gguf_sum_tensors(GgufTensor *t, size_t n, uint64_t data_size, GgufInfo *info)
{
        if (n == 0) {
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                uint64_t end = i + 1 < n ? t[i + 1].offset : data_size, room;

                if (t[i].offset > data_size || end > data_size) {
                        return -EBADMSG;
                }
                room = end - t[i].offset;
                if (t[i].bytes == TENSOR_BYTES_UNKNOWN) {
                        /* with the padding: at most alignment - 1 more */
                        t[i].bytes = MIN(room, TENSOR_BYTES_UNKNOWN - 1);
                }
                if (t[i].bytes > room) {
                        return -EBADMSG;
                }
                info->tensor_bytes += t[i].bytes;
                if (t[i].layer) {
                        info->layer_bytes += t[i].bytes;
                }
                if (t[i].layer && t[i].layer != TENSOR_LAYER_PAST) {
                        info->layer[t[i].layer - 1] += t[i].bytes;
                }
        }
        return 0;
}

static int gguf_read_kvs(GgufReader *r, uint64_t n_kv, GgufParse *p)
{
        for (uint64_t i = 0; i < n_kv; i++) {
                int k = gguf_read_kv(r, p);
                if (k < 0) {
                        return k;
                }
        }
        return 0;
}

/* budget: the header bytes this file may have (GGUF_HEADER_MAX, less what the other parts of
 * a split model had). */
static int gguf_parse(int fd, uint64_t budget, GgufParse *ret)
{
        _cleanup_free_ GgufReader *r = NULL;
        GgufTensor *tensors = MAP_FAILED, scratch;
        GgufParse p = { .alignment = GGUF_ALIGNMENT };
        uint64_t n_tensors, n_kv, data_start;
        size_t cap = 0, map_size = 0;
        char magic[4];
        uint32_t version;
        struct stat st;
        int k;

        if (fstat(fd, &st) < 0) {
                return -errno;
        }
        if (!S_ISREG(st.st_mode)) {
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADFD;
        }
        r = malloc(sizeof(*r));
        if (!r) {
                return -ENOMEM;
        }
        *r = (GgufReader) {
                .fd = fd,
                .size = (uint64_t) st.st_size,
                .limit = MIN((uint64_t) st.st_size, MIN(budget, GGUF_HEADER_MAX)),
        };
        p.info.file_bytes = r->size;

        if ((k = reader_read(r, magic, sizeof(magic))) < 0 || (k = reader_u32(r, &version)) < 0 ||
            (k = reader_u64(r, &n_tensors)) < 0 || (k = reader_u64(r, &n_kv)) < 0) {
                goto fail;
        }
        /* version 1 had 32-bit counts, and llama.cpp no longer reads it; a big-endian file
         * shows its version byte-swapped */
        if (memcmp(magic, "GGUF", 4) != 0 || version < 2 || version > 3) {
                k = -EBADMSG;
                goto fail;
        }
        if (n_tensors > GGUF_TENSORS_MAX || n_kv > GGUF_KV_MAX) {
                k = -E2BIG;
                goto fail;
        }

        k = gguf_read_kvs(r, n_kv, &p);
        if (k < 0) {
                goto fail;
        }
        if (p.n_early > 0 && p.info.arch) {
                /* those entries again, now that their prefix can be matched; an entry after
                 * general.architecture, read already, came later and wins */
                bool later[_KEY_MAX];
                uint64_t values[_KEY_MAX], end = r->pos;

                memcpy(later, p.have, sizeof(later));
                memcpy(values, p.values, sizeof(values));
                for (size_t i = 0; i < p.n_early; i++) {
                        r->pos = p.early[i];
                        k = gguf_read_kv(r, &p);
                        if (k < 0) {
                                goto fail;
                        }
                }
                for (int i = 0; i < _KEY_MAX; i++) {
                        if (later[i]) {
                                p.values[i] = values[i];
                        }
                }
                r->pos = end;
        }
        free(p.early);
        p.early = NULL;

        /*
         * The tensors, room to sort them and the sort's counts, in one mapping that takes memory only where
         * written, so it grows with what was read; for as many as the header has room for
         * (each takes 24 bytes at least: the loop ends with the header before it is full), in
         * huge pages where the kernel has them (4 KiB ones cost a fault each, 8 Ki of them for
         * 1 Mi tensors).
         */
        cap = (size_t) MIN(n_tensors, (r->limit - r->pos) / 24);
        if (cap > 0) {
                map_size = 2 * cap * sizeof(*tensors) + (sizeof(uint32_t) << RADIX_BITS);
                tensors = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
                if (tensors == MAP_FAILED) {
                        k = -ENOMEM;
                        goto fail;
                }
                (void) madvise(tensors, map_size, MADV_HUGEPAGE);
        }
        for (uint64_t i = 0; i < n_tensors; i++) {
                k = gguf_read_tensor(r, &p, i < cap ? &tensors[i] : &scratch);
                if (k < 0) {
                        goto fail;
                }
        }
        if (n_tensors > cap) {
                k = -EBADMSG; /* cannot be: the last would have ended past the header */
                goto fail;
        }

        p.header_bytes = r->pos;
        data_start = (r->pos + p.alignment - 1) / p.alignment * p.alignment;
        if (n_tensors > 0 && data_start > r->size) {
                k = -EBADMSG;
                goto fail;
        }
        k = gguf_sum_tensors(cap > 0 ? tensors_sort(tensors, tensors + cap,
                                                    (uint32_t *) (tensors + 2 * cap), cap,
                                                    p.alignment)
                                     : NULL,
                             cap, r->size - MIN(data_start, r->size), &p.info);
        if (k < 0) {
                goto fail;
        }
        *ret = p;
        p = (GgufParse) {};
fail:
        if (tensors != MAP_FAILED) {
                munmap(tensors, map_size);
        }
        free(p.early);
        gguf_info_done(&p.info);
        return k;
}

/* The architecture's values, with llama.cpp's defaults for those a file leaves out. */
static int gguf_finish(GgufParse *p, GgufInfo *ret)
{
        GgufInfo *i = &p->info;

        if (!i->arch) {
                gguf_info_done(i);
                return -EBADMSG;
        }
        i->n_layer = p->values[KEY_BLOCK_COUNT];
        i->n_embd = p->values[KEY_EMBEDDING_LENGTH];
        i->n_head = p->values[KEY_HEAD_COUNT];
        i->n_head_kv = p->have[KEY_HEAD_COUNT_KV] ? p->values[KEY_HEAD_COUNT_KV] : i->n_head;
        i->key_length = p->have[KEY_KEY_LENGTH] ? p->values[KEY_KEY_LENGTH]
                        : i->n_head > 0         ? i->n_embd / i->n_head
                                                : 0;
        i->value_length = p->have[KEY_VALUE_LENGTH] ? p->values[KEY_VALUE_LENGTH]
                          : i->n_head > 0           ? i->n_embd / i->n_head
                                                    : 0;
        i->n_ctx_train = p->values[KEY_CONTEXT_LENGTH];
        *ret = *i;
        *i = (GgufInfo) {};
        return 0;
}

int gguf_read_fd(int fd, GgufInfo *ret)
{
        GgufParse p;
        int k;

        k = gguf_parse(fd, GGUF_HEADER_MAX, &p);
        if (k < 0) {
                return k;
        }
        return gguf_finish(&p, ret);
}

static int gguf_parse_path(const char *path, uint64_t budget, GgufParse *ret)
{
        /* a model may be a link: no O_NOFOLLOW */
        _cleanup_close_ int fd = open_regular(path, 0, NULL);

        if (fd < 0) {
                return fd;
        }
        return gguf_parse(fd, budget, ret);
}

/*
 * The other parts of a split model: the first is PREFIX-00001-of-0000N.gguf (llama.cpp's
 * llama_split_path()), the others follow its name. Their tensors and sizes are added to p.
 */
static int gguf_add_splits(const char *path, GgufParse *p)
{
        _cleanup_free_ char *part = NULL;
        char tail[32];
        size_t len = strlen(path), tail_len;

        uint64_t header_bytes = p->header_bytes;

        if (p->split_count > 99999) {
                return -EBADMSG;
        }
        if (p->split_count > GGUF_SPLITS_MAX) {
                return -E2BIG;
        }
        tail_len = (size_t) snprintf(tail, sizeof(tail), "-%05d-of-%05d.gguf", 1,
                                     (int) p->split_count);
        if (len < tail_len || !streq(path + len - tail_len, tail)) {
                return -EBADMSG; /* llama-server finds the parts only from the first one */
        }
        part = strdup(path);
        if (!part) {
                return -ENOMEM;
        }
        for (uint64_t n = 2; n <= p->split_count; n++) {
                GgufParse q;
                int k;

                snprintf(part + len - tail_len, tail_len + 1, "-%05d-of-%05d.gguf", (int) n,
                         (int) p->split_count);
                /* The caps hold for the model, not each part: all headers together are one,
                 * and a part reads no further than what the others left of it. */
                if (header_bytes >= GGUF_HEADER_MAX) {
                        return -E2BIG;
                }
                k = gguf_parse_path(part, GGUF_HEADER_MAX - header_bytes, &q);
                if (k < 0) {
                        return k;
                }
                header_bytes = sat_add(header_bytes, q.header_bytes);
                p->info.tensor_bytes = sat_add(p->info.tensor_bytes, q.info.tensor_bytes);
                p->info.layer_bytes = sat_add(p->info.layer_bytes, q.info.layer_bytes);
                for (size_t l = 0; l < GGUF_LAYERS_MAX; l++) {
                        p->info.layer[l] = sat_add(p->info.layer[l], q.info.layer[l]);
                }
                p->info.file_bytes = sat_add(p->info.file_bytes, q.info.file_bytes);
                gguf_info_done(&q.info);
        }
        return 0;
}

int gguf_read(const char *path, GgufInfo *ret)
{
        GgufParse p;
        int k;

        k = gguf_parse_path(path, GGUF_HEADER_MAX, &p);
        if (k < 0) {
                return k;
        }
        if (p.split_count > 1) {
                k = gguf_add_splits(path, &p);
                if (k < 0) {
                        gguf_info_done(&p.info);
                        return k;
                }
        }
        return gguf_finish(&p, ret);
}

void gguf_info_done(GgufInfo *i)
{
        free(i->arch);
        *i = (GgufInfo) {};
}

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
        return a / b + (a % b != 0);
}

/* Twice the bits a cache value costs: a quantized type carries a 16-bit scale per block of 32. */
static uint64_t cache_half_bits(unsigned bits)
{
        bits = bits == 0 ? 16 : bits;
        return bits >= 16 ? 2 * (uint64_t) bits : 2 * (uint64_t) bits + 1;
}

uint64_t gguf_estimate_gpu_bytes(const GgufInfo *i, const GgufEstimateParams *p)
{
        uint64_t layers, weights, ctx, per_token, kv, margin;
        bool all;

        if (p->n_gpu_layers == 0) {
                return 0;
        }
        /* llama.cpp offloads the last n_gpu_layers repeating layers, and the output layer
         * once n_gpu_layers exceeds them */
        all = p->n_gpu_layers < 0 || (uint64_t) p->n_gpu_layers > i->n_layer;
        layers = all ? i->n_layer : (uint64_t) p->n_gpu_layers;
        if (all || i->n_layer == 0) {
                weights = i->layer_bytes;
        } else {
                /* layers < n_layer: the share is below layer_bytes, exact in 128 bits */
                unsigned __int128 share = (unsigned __int128) i->layer_bytes * layers;
                weights = (uint64_t) ((share + i->n_layer - 1) / i->n_layer);
        }
        if (all) {
                weights = sat_add(weights, i->tensor_bytes - MIN(i->layer_bytes, i->tensor_bytes));
        }

        ctx = p->ctx_size > 0 ? p->ctx_size : i->n_ctx_train;
        ctx = sat_mul(div_round_up(ctx, 256), 256);
        per_token = sat_mul(i->n_head_kv,
                            sat_add(sat_mul(i->key_length, cache_half_bits(p->cache_k_bits)),
                                    sat_mul(i->value_length, cache_half_bits(p->cache_v_bits))));
        kv = sat_mul(sat_mul(ctx, layers), per_token);
        kv = kv == UINT64_MAX ? kv : div_round_up(kv, 16);

        margin = GGUF_MARGIN_FIXED + weights / GGUF_MARGIN_WEIGHT_DIV;
        return sat_add(sat_add(weights, kv), margin);
}

int gguf_estimate_slots(const GgufInfo *i, const GgufEstimateParams *p, uint64_t *ret_slots,
                        unsigned *ret_n)
{
        uint64_t layers, start, ctx, per_token, kv, known = 0;
        bool all, exact;

        *ret_n = 0;
        if (p->n_gpu_layers == 0) {
                return 0;
        }
        if (i->n_layer == 0 || i->n_layer > GGUF_LAYERS_MAX) {
                return -E2BIG;
        }
        all = p->n_gpu_layers < 0 || (uint64_t) p->n_gpu_layers > i->n_layer;
        layers = all ? i->n_layer : (uint64_t) p->n_gpu_layers;
        start = i->n_layer - layers;
        for (uint64_t l = 0; l < i->n_layer; l++) {
                known = sat_add(known, i->layer[l]);
        }
        /* every blk.N below n_layer: their own sizes; else layer_bytes spread evenly */
        exact = known == i->layer_bytes;

        ctx = p->ctx_size > 0 ? p->ctx_size : i->n_ctx_train;
        ctx = sat_mul(div_round_up(ctx, 256), 256);
        per_token = sat_mul(i->n_head_kv,
                            sat_add(sat_mul(i->key_length, cache_half_bits(p->cache_k_bits)),
                                    sat_mul(i->value_length, cache_half_bits(p->cache_v_bits))));
        kv = sat_mul(ctx, per_token);
        kv = kv == UINT64_MAX ? kv : div_round_up(kv, 16);

        for (uint64_t k = 0; k < layers; k++) {
                uint64_t l = start + k, w;

                if (exact) {
                        w = i->layer[l];
                } else {
                        unsigned __int128 b = i->layer_bytes;

                        w = (uint64_t) (b * (l + 1) / i->n_layer - b * l / i->n_layer);
                }
                ret_slots[k] = sat_add(sat_add(w, kv), w / GGUF_MARGIN_WEIGHT_DIV);
        }
        if (all) {
                uint64_t w = i->tensor_bytes - MIN(i->layer_bytes, i->tensor_bytes);

                ret_slots[layers++] = w + w / GGUF_MARGIN_WEIGHT_DIV;
        }
        *ret_n = (unsigned) layers;
        return 0;
}

int gguf_cache_type_bits(const char *name, unsigned *ret)
{
        static const struct {
                const char *name;
                unsigned bits;
        } table[] = {
                { "f32", 32 }, { "f16", 16 },   { "bf16", 16 }, { "q8_0", 8 }, { "q4_0", 4 },
                { "q4_1", 5 }, { "iq4_nl", 4 }, { "q5_0", 5 },  { "q5_1", 6 },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                if (streq(name, table[i].name)) {
                        *ret = table[i].bits;
                        return 0;
                }
        }
        return -EINVAL;
}
