/* SPDX-License-Identifier: MIT */
/*
 * gguf.c against GGUF files written here, byte by byte, the way gguf-py writes them; and,
 * with "real", against the tiny models of the real tier ($LLMD_REAL_MODELS); with
 * "time RUNS FILE...", gguf_read()'s time on each file (bench/gguf.py's figures).
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "gguf.h"
#include "tests.h"
#include "time-util.h"

#define MiB (UINT64_C(1) << 20)

enum { T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };
enum { F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, Q6_K = 14, BF16 = 30 };

typedef struct Buf {
        uint8_t *data;
        size_t len, cap;
} Buf;

static void put(Buf *b, const void *p, size_t n)
{
        if (b->len + n > b->cap) {
                b->cap = MAX(b->cap * 2, b->len + n);
                b->data = realloc(b->data, b->cap);
                check(b->data);
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

static void put_u32(Buf *b, uint32_t v)
{
        uint8_t le[4] = { v, v >> 8, v >> 16, v >> 24 };
        put(b, le, 4);
}

static void put_u64(Buf *b, uint64_t v)
{
        put_u32(b, (uint32_t) v);
        put_u32(b, (uint32_t) (v >> 32));
}

static void put_str(Buf *b, const char *s)
{
        put_u64(b, strlen(s));
        put(b, s, strlen(s));
}

static void header(Buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
        put(b, "GGUF", 4);
        put_u32(b, version);
        put_u64(b, n_tensors);
        put_u64(b, n_kv);
}

/* A key, its type, and the value's bytes as they are. */
static void kv_raw(Buf *b, const char *key, uint32_t type, const void *value, size_t n)
{
        put_str(b, key);
        put_u32(b, type);
        put(b, value, n);
}

static void kv_u32(Buf *b, const char *key, uint32_t v)
{
        put_str(b, key);
        put_u32(b, T_U32);
        put_u32(b, v);
}

static void kv_str(Buf *b, const char *key, const char *v)
{
        put_str(b, key);
        put_u32(b, T_STR);
        put_str(b, v);
}

typedef struct Tensor {
        const char *name;
        uint32_t n_dims;
        uint64_t dims[4];
        uint32_t type;
        uint64_t bytes; /* its data, as gguf-py's GGML_QUANT_SIZES gives it */
} Tensor;

/* The tensor infos, each at the next multiple of alignment, then the padding and the data:
 * the file ends where the last tensor does. */
static void tensors(Buf *b, const Tensor *t, size_t n, uint64_t alignment)
{
        uint64_t offset = 0, start;

        for (size_t i = 0; i < n; i++) {
                put_str(b, t[i].name);
                put_u32(b, t[i].n_dims);
                for (uint32_t d = 0; d < t[i].n_dims; d++) {
                        put_u64(b, t[i].dims[d]);
                }
                put_u32(b, t[i].type);
                put_u64(b, offset);
                offset += t[i].bytes;
                if (i + 1 < n) {
                        offset = (offset + alignment - 1) / alignment * alignment;
                }
        }
        start = (b->len + alignment - 1) / alignment * alignment;
        while (b->len < start + offset) {
                put(b, "\x5a", 1);
        }
}

/* The model most tests use: llama, 2 layers, every metadata type, tensors of six types. */
static const Tensor model_tensors[] = {
        { "token_embd.weight", 2, { 64, 4 }, Q8_0, 4 * 2 * 34 },
        { "blk.0.attn_norm.weight", 1, { 64 }, F32, 64 * 4 },
        { "blk.0.attn_q.weight", 2, { 256, 2 }, Q4_K, 2 * 144 },
        { "blk.1.ffn_down.weight", 2, { 256, 1 }, Q6_K, 210 },
        { "blk.1.attn_k.weight", 2, { 64, 2 }, BF16, 64 * 2 * 2 },
        { "blk1.not_a_layer", 1, { 3 }, F32, 12 },
        { "output_norm.weight", 1, { 64 }, F32, 64 * 4 },
        { "output.weight", 3, { 64, 2, 2 }, F16, 64 * 4 * 2 },
};
#define MODEL_LAYER_BYTES (64 * 4 + 2 * 144 + 210 + 64 * 2 * 2)
#define MODEL_TENSOR_BYTES (4 * 2 * 34 + MODEL_LAYER_BYTES + 12 + 64 * 4 + 64 * 4 * 2)

static void model_kvs(Buf *b)
{
        static const char *const tokens[] = { "<s>", "hello", "" };

        kv_str(b, "general.architecture", "llama");
        kv_str(b, "general.name", "a test");
        kv_u32(b, "llama.block_count", 2);
        kv_u32(b, "llama.context_length", 4096);
        kv_u32(b, "llama.embedding_length", 256);
        kv_u32(b, "llama.attention.head_count", 8);
        kv_raw(b, "llama.attention.head_count_kv", T_I32, "\x02\0\0\0", 4); /* signed */
        /* one key of each other type, to be skipped */
        kv_raw(b, "x.u8", T_U8, "\x01", 1);
        kv_raw(b, "x.i8", T_I8, "\xff", 1);
        kv_raw(b, "x.u16", T_U16, "\x01\x02", 2);
        kv_raw(b, "x.i16", T_I16, "\x01\x02", 2);
        kv_raw(b, "x.f32", T_F32, "\0\0\x80\x3f", 4);
        kv_raw(b, "x.bool", T_BOOL, "\x01", 1);
        kv_raw(b, "x.u64", T_U64, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
        kv_raw(b, "x.i64", T_I64, "\x01\0\0\0\0\0\0\0", 8);
        kv_raw(b, "x.f64", T_F64, "\0\0\0\0\0\0\0\0", 8);
        put_str(b, "tokenizer.ggml.tokens");
        put_u32(b, T_ARR);
        put_u32(b, T_STR);
        put_u64(b, ELEMENTSOF(tokens));
        for (size_t i = 0; i < ELEMENTSOF(tokens); i++) {
                put_str(b, tokens[i]);
        }
        put_str(b, "tokenizer.ggml.scores");
        put_u32(b, T_ARR);
        put_u32(b, T_F32);
        put_u64(b, 3);
        for (int i = 0; i < 3; i++) {
                put_u32(b, 0);
        }
        put_str(b, "x.empty");
        put_u32(b, T_ARR);
        put_u32(b, T_U64);
        put_u64(b, 0);
        put_str(b, "x.bools");
        put_u32(b, T_ARR);
        put_u32(b, T_BOOL);
        put_u64(b, 5);
        put(b, "\x00\x01\x00\x01\x01", 5);
}
#define MODEL_N_KV 20

static void model(Buf *b)
{
        header(b, 3, ELEMENTSOF(model_tensors), MODEL_N_KV);
        model_kvs(b);
        tensors(b, model_tensors, ELEMENTSOF(model_tensors), 32);
}

/* gguf_read_fd() on the bytes, from a memfd. */
static int parse(const Buf *b, GgufInfo *ret)
{
        int fd = memfd_create("gguf", MFD_CLOEXEC), r;

        check(fd >= 0);
        check(write(fd, b->data, b->len) == (ssize_t) b->len);
        r = gguf_read_fd(fd, ret);
        close(fd);
        return r;
}

static int parse_bad(Buf *b)
{
        GgufInfo i = {};
        int r = parse(b, &i);

        check(!i.arch); /* nothing to free after a failure */
        free(b->data);
        *b = (Buf) {};
        return r;
}

TEST(model)
{
        Buf b = {};
        GgufInfo i;

        model(&b);
        check_inteq(parse(&b, &i), 0);
        check_streq(i.arch, "llama");
        check_inteq(i.n_layer, 2);
        check_inteq(i.n_embd, 256);
        check_inteq(i.n_head, 8);
        check_inteq(i.n_head_kv, 2);
        check_inteq(i.key_length, 32); /* n_embd / n_head */
        check_inteq(i.value_length, 32);
        check_inteq(i.n_ctx_train, 4096);
        check_inteq(i.tensor_bytes, MODEL_TENSOR_BYTES);
        check_inteq(i.layer_bytes, MODEL_LAYER_BYTES);
        check_inteq(i.layer[0], 64 * 4 + 2 * 144);
        check_inteq(i.layer[1], 210 + 64 * 2 * 2);
        check_inteq(i.layer[2], 0);
        check_inteq(i.file_bytes, b.len);
        gguf_info_done(&i);
        check(!i.arch);
        gguf_info_done(&i); /* twice is fine */
        free(b.data);
}

/* Every strict prefix of a model is refused, whichever field it ends in. */
TEST(truncated)
{
        int fd = memfd_create("gguf", MFD_CLOEXEC);
        Buf b = {};

        model(&b);
        check(fd >= 0);
        check(write(fd, b.data, b.len) == (ssize_t) b.len);
        for (size_t len = b.len; len-- > 0;) {
                GgufInfo i = {};

                check(ftruncate(fd, (off_t) len) == 0);
                if (gguf_read_fd(fd, &i) != -EBADMSG) {
                        fprintf(stderr, "a prefix of %zu of %zu bytes was not refused\n", len,
                                b.len);
                        abort();
                }
        }
        close(fd);
        free(b.data);
}

/* The architecture named after its keys, a version 2 file, another alignment, per-layer head
 * counts, explicit key/value lengths, and a ggml type newer than gguf.c. */
TEST(variants)
{
        const Tensor t[] = {
                { "blk.0.new_type", 1, { 7 }, 200, 100 }, /* sized from the next offset */
                { "blk.0.b", 1, { 64 }, F32, 256 },
                { "tail", 1, { 1 }, F32, 4 },
        };
        Buf b = {};
        GgufInfo i;

        header(&b, 2, ELEMENTSOF(t), 7);
        kv_u32(&b, "gemma.attention.key_length", 256);
        kv_u32(&b, "gemma.attention.value_length", 128);
        kv_u32(&b, "gemma.attention.head_count", 4);
        kv_u32(&b, "other.block_count", 99); /* another architecture's */
        put_str(&b, "gemma.attention.head_count_kv");
        put_u32(&b, T_ARR);
        put_u32(&b, T_I32);
        put_u64(&b, 3);
        put_u32(&b, 1);
        put_u32(&b, (uint32_t) -1);
        put_u32(&b, 3);
        kv_u32(&b, "general.alignment", 64);
        kv_str(&b, "general.architecture", "gemma");
        tensors(&b, t, ELEMENTSOF(t), 64);

        check_inteq(parse(&b, &i), 0);
        check_streq(i.arch, "gemma");
        check_inteq(i.n_layer, 0);
        check_inteq(i.n_head, 4);
        check_inteq(i.n_head_kv, 3); /* the largest */
        check_inteq(i.key_length, 256);
        check_inteq(i.value_length, 128);
        /* the new type's 100 bytes and its padding up to the next tensor at 128 */
        check_inteq(i.layer_bytes, 128 + 256);
        check_inteq(i.tensor_bytes, 128 + 256 + 4);
        gguf_info_done(&i);
        free(b.data);
}

static void tensor_case(const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                        uint64_t offset, int expect)
{
        Buf b = {};
        GgufInfo i = {};

        header(&b, 3, 1, 1);
        kv_str(&b, "general.architecture", "llama");
        put_str(&b, name);
        put_u32(&b, n_dims);
        for (uint32_t d = 0; d < n_dims; d++) {
                put_u64(&b, dims[d]);
        }
        put_u32(&b, type);
        put_u64(&b, offset);
        while (b.len % 32 != 0) {
                put(&b, "", 1);
        }
        for (int k = 0; k < 64; k++) {
                put(&b, "", 1);
        }
        if (expect == 0) {
                check_inteq(parse(&b, &i), 0);
                gguf_info_done(&i);
                free(b.data);
        } else {
                check_inteq(parse_bad(&b), expect);
        }
}

TEST(hostile_tensors)
{
        const uint64_t one[] = { 16 }, five[] = { 1, 1, 1, 1, 1 };
        const uint64_t huge[] = { UINT64_C(1) << 32, UINT64_C(1) << 32 };
        const uint64_t wraps[] = { UINT64_C(1) << 31, UINT64_C(1) << 31 };
        const uint64_t negative[] = { (uint64_t) -16 }, row[] = { 100 };
        char name[80];

        tensor_case("ok", 1, one, F32, 0, 0);
        tensor_case("ok", 1, one, F32, 32, -EBADMSG); /* data past the end */
        tensor_case("ok", 1, one, F32, 1, -EBADMSG);  /* not aligned */
        tensor_case("ok", 1, one, F32, UINT64_MAX - 31, -EBADMSG);
        tensor_case("ok", 5, five, F32, 0, -EBADMSG);     /* more than 4 dimensions */
        tensor_case("ok", 2, huge, F32, 0, -EBADMSG);     /* 2^64 elements */
        tensor_case("ok", 2, wraps, F32, 0, -EBADMSG);    /* 2^62 × 4 bytes: not 0 */
        tensor_case("ok", 1, negative, F32, 0, -EBADMSG); /* ggml's dims are signed */
        tensor_case("ok", 1, row, Q4_K, 0, -EBADMSG);     /* not whole blocks */
        tensor_case("ok", 1, one, 300, 0, -EBADMSG);      /* no ggml type */
        tensor_case("", 1, one, F32, 0, 0);
        memset(name, 'n', sizeof(name));
        name[63] = '\0';
        tensor_case(name, 1, one, F32, 0, 0);
        name[63] = 'n';
        name[64] = '\0';
        tensor_case(name, 1, one, F32, 0, -EBADMSG); /* GGML_MAX_NAME */

        /* two tensors on the same bytes */
        Buf b = {};
        header(&b, 3, 2, 1);
        kv_str(&b, "general.architecture", "llama");
        for (int k = 0; k < 2; k++) {
                put_str(&b, k ? "b" : "a");
                put_u32(&b, 1);
                put_u64(&b, 16);
                put_u32(&b, F32);
                put_u64(&b, 0);
        }
        while (b.len % 32 != 0 || b.len < 256) {
                put(&b, "", 1);
        }
        check_inteq(parse_bad(&b), -EBADMSG);
}

/* One metadata entry after a valid header with no tensors: its bytes are raw. */
static int kv_case(const void *raw, size_t n)
{
        Buf b = {};

        header(&b, 3, 0, 2);
        kv_str(&b, "general.architecture", "llama");
        put(&b, raw, n);
        return parse_bad(&b);
}

TEST(hostile_metadata)
{
        Buf b = {};
        GgufInfo i;

        /* a key of 2^64 - 1 bytes, then 2^63: past GGUF_STRING_MAX */
        check_inteq(kv_case("\xff\xff\xff\xff\xff\xff\xff\xff", 8), -E2BIG);
        check_inteq(kv_case("\x00\x00\x00\x00\x00\x00\x00\x80", 8), -E2BIG);
        /* key "k", type 13 */
        check_inteq(kv_case("\x01\0\0\0\0\0\0\0k\x0d\0\0\0", 13), -EBADMSG);
        /* a string value of 2^64 - 1 bytes */
        check_inteq(kv_case("\x01\0\0\0\0\0\0\0k\x08\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff", 21),
                    -E2BIG);
        /* an array of 2^61 u64, of 2^64 - 1 strings (past GGUF_ARRAY_MAX), of arrays, of type 13 */
        check_inteq(kv_case("\x01\0\0\0\0\0\0\0k\x09\0\0\0\x0a\0\0\0\0\0\0\0\0\0\0\x20", 25),
                    -E2BIG);
        check_inteq(
                kv_case("\x01\0\0\0\0\0\0\0k\x09\0\0\0\x08\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff",
                        25),
                -E2BIG);
        check_inteq(kv_case("\x01\0\0\0\0\0\0\0k\x09\0\0\0\x09\0\0\0\0\0\0\0\0\0\0\0", 25),
                    -EBADMSG);
        check_inteq(kv_case("\x01\0\0\0\0\0\0\0k\x09\0\0\0\x0d\0\0\0\0\0\0\0\0\0\0\0", 25),
                    -EBADMSG);
        /* general.alignment 0, 3, as a string */
        header(&b, 3, 0, 2);
        kv_str(&b, "general.architecture", "llama");
        kv_u32(&b, "general.alignment", 0);
        check_inteq(parse_bad(&b), -EBADMSG);
        header(&b, 3, 0, 2);
        kv_str(&b, "general.architecture", "llama");
        kv_u32(&b, "general.alignment", 3);
        check_inteq(parse_bad(&b), -EBADMSG);
        header(&b, 3, 0, 2);
        kv_str(&b, "general.architecture", "llama");
        kv_str(&b, "general.alignment", "32");
        check_inteq(parse_bad(&b), -EBADMSG);
        /* no architecture; one too long to be one */
        header(&b, 3, 0, 1);
        kv_u32(&b, "llama.block_count", 2);
        check_inteq(parse_bad(&b), -EBADMSG);
        header(&b, 3, 0, 1);
        kv_str(&b, "general.architecture",
               "an-architecture-name-far-too-long-to-be-one-that-llama.cpp-knows");
        check_inteq(parse_bad(&b), -EBADMSG);

        /* the counts: over the limits, and within them but with nothing behind */
        header(&b, 3, UINT64_MAX, 0);
        check_inteq(parse_bad(&b), -E2BIG);
        header(&b, 3, 0, UINT64_MAX);
        check_inteq(parse_bad(&b), -E2BIG);
        header(&b, 3, GGUF_TENSORS_MAX + 1, 0);
        check_inteq(parse_bad(&b), -E2BIG);
        header(&b, 3, 0, GGUF_KV_MAX + 1);
        check_inteq(parse_bad(&b), -E2BIG);
        header(&b, 3, GGUF_TENSORS_MAX, 0);
        check_inteq(parse_bad(&b), -EBADMSG);
        header(&b, 3, 0, GGUF_KV_MAX);
        check_inteq(parse_bad(&b), -EBADMSG);

        /* the smallest valid file */
        header(&b, 3, 0, 1);
        kv_str(&b, "general.architecture", "x");
        check_inteq(parse(&b, &i), 0);
        check_streq(i.arch, "x");
        check_inteq(i.tensor_bytes, 0);
        gguf_info_done(&i);
        free(b.data);
}

TEST(hostile_header)
{
        static const uint32_t versions[] = { 0, 1, 4, 0x03000000, UINT32_MAX };
        Buf b = {};

        for (size_t v = 0; v < ELEMENTSOF(versions); v++) {
                header(&b, versions[v], 0, 1);
                kv_str(&b, "general.architecture", "llama");
                check_inteq(parse_bad(&b), -EBADMSG);
        }
        put(&b, "GGUG", 4);
        put_u32(&b, 3);
        put_u64(&b, 0);
        put_u64(&b, 0);
        check_inteq(parse_bad(&b), -EBADMSG);
        check_inteq(parse_bad(&b), -EBADMSG); /* empty */
}

static void write_file(const char *path, const Buf *b)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        check(fd >= 0);
        check(write(fd, b->data, b->len) == (ssize_t) b->len);
        close(fd);
}

/* A model in three parts is counted whole, from its first part's name. */
TEST(split)
{
        const Tensor part[] = {
                { "blk.1.a", 1, { 64 }, F32, 256 },
                { "output.weight", 1, { 64 }, F16, 128 },
        };
        char dir[] = "/tmp/test-gguf-XXXXXX", path[3][128], other[128];
        uint64_t total = 0;
        Buf b = {};
        GgufInfo i;

        check(mkdtemp(dir));
        for (int n = 0; n < 3; n++) {
                snprintf(path[n], sizeof(path[n]), "%s/m-%05d-of-00003.gguf", dir, n + 1);
                header(&b, 3, n == 0 ? ELEMENTSOF(model_tensors) : ELEMENTSOF(part),
                       n == 0 ? MODEL_N_KV + 1 : 1);
                if (n == 0) {
                        model_kvs(&b);
                }
                kv_raw(&b, "split.count", T_U16, "\x03\x00", 2);
                if (n == 0) {
                        tensors(&b, model_tensors, ELEMENTSOF(model_tensors), 32);
                } else {
                        tensors(&b, part, ELEMENTSOF(part), 32);
                }
                write_file(path[n], &b);
                total += b.len;
                free(b.data);
                b = (Buf) {};
        }

        check_inteq(gguf_read(path[0], &i), 0);
        check_streq(i.arch, "llama");
        check_inteq(i.n_layer, 2);
        check_inteq(i.tensor_bytes, MODEL_TENSOR_BYTES + 2 * (256 + 128));
        check_inteq(i.layer_bytes, MODEL_LAYER_BYTES + 2 * 256);
        check_inteq(i.file_bytes, total);
        gguf_info_done(&i);

        /* a part on its own has no architecture; the first under another name finds no parts */
        check_inteq(gguf_read(path[1], &i), -EBADMSG);
        snprintf(other, sizeof(other), "%s/m.gguf", dir);
        check(rename(path[0], other) == 0);
        check_inteq(gguf_read(other, &i), -EBADMSG);
        check(rename(other, path[0]) == 0);
        /* a part missing */
        check(unlink(path[2]) == 0);
        check_inteq(gguf_read(path[0], &i), -ENOENT);

        check(unlink(path[0]) == 0);
        check(unlink(path[1]) == 0);
        check_inteq(gguf_read(path[0], &i), -ENOENT);
        check_inteq(gguf_read(dir, &i), -EISDIR);

        /* Parts each within the header cap, together over it: the cap is the model's. */
        for (int n = 0; n < 2; n++) {
                _cleanup_free_ char *big = malloc(GGUF_STRING_MAX);

                check(big);
                memset(big, 'x', GGUF_STRING_MAX - 1);
                big[GGUF_STRING_MAX - 1] = '\0';
                snprintf(path[n], sizeof(path[n]), "%s/b-%05d-of-00002.gguf", dir, n + 1);
                header(&b, 3, n == 0 ? ELEMENTSOF(model_tensors) : ELEMENTSOF(part),
                       (n == 0 ? MODEL_N_KV : 0) + 1 + 3);
                if (n == 0) {
                        model_kvs(&b);
                }
                kv_raw(&b, "split.count", T_U16, "\x02\x00", 2);
                for (int k = 0; k < 3; k++) {
                        kv_str(&b, k == 0 ? "x.a" : k == 1 ? "x.b" : "x.c", big);
                }
                if (n == 0) {
                        tensors(&b, model_tensors, ELEMENTSOF(model_tensors), 32);
                } else {
                        tensors(&b, part, ELEMENTSOF(part), 32);
                }
                write_file(path[n], &b);
                free(b.data);
                b = (Buf) {};
        }
        check_inteq(gguf_read(path[1], &i), -EBADMSG); /* a part alone: no architecture */
        check_inteq(gguf_read(path[0], &i), -E2BIG);
        check(unlink(path[0]) == 0);
        check(unlink(path[1]) == 0);

        /* More parts than GGUF_SPLITS_MAX: refused before any other part is opened. */
        snprintf(path[0], sizeof(path[0]), "%s/m-00001-of-02000.gguf", dir);
        header(&b, 3, ELEMENTSOF(model_tensors), MODEL_N_KV + 1);
        model_kvs(&b);
        kv_raw(&b, "split.count", T_U16, "\xd0\x07", 2);
        tensors(&b, model_tensors, ELEMENTSOF(model_tensors), 32);
        write_file(path[0], &b);
        free(b.data);
        check_inteq(gguf_read(path[0], &i), -E2BIG);
        check(unlink(path[0]) == 0);
        check(rmdir(dir) == 0);
}

/* A Llama-3-8B shape with round sizes: 32 layers of 100 MiB, 800 MiB besides, 8 KV heads of
 * 128, trained for 8192. Its f16 cache at 8192 is 8192 × 32 × 8 × 128 × 2 (K, V) × 2 bytes. */
static const GgufInfo llama8b = {
        .n_layer = 32,
        .n_embd = 4096,
        .n_head = 32,
        .n_head_kv = 8,
        .key_length = 128,
        .value_length = 128,
        .n_ctx_train = 8192,
        .layer_bytes = 3200 * MiB,
        .tensor_bytes = 4000 * MiB,
};

TEST(estimate)
{
        const GgufInfo i = llama8b;
        GgufEstimateParams p = {
                .n_gpu_layers = -1, .ctx_size = 8192, .cache_k_bits = 16, .cache_v_bits = 16
        };
        GgufInfo big = i;
        unsigned bits;

        /* all of it: 4000 MiB + 1 GiB + 4000 / 20 + 768 MiB */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 1024 + 200 + 768) * MiB);
        p.ctx_size = 0; /* the trained context */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 1024 + 200 + 768) * MiB);
        p.n_gpu_layers = 999;
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 1024 + 200 + 768) * MiB);
        p.n_gpu_layers = 33; /* the output layer too */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 1024 + 200 + 768) * MiB);
        p.n_gpu_layers = 32; /* all repeating layers, the output layer stays on the CPU */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (3200 + 1024 + 160 + 768) * MiB);
        p.n_gpu_layers = 16; /* half the layers and half the cache */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (1600 + 512 + 80 + 768) * MiB);
        p.n_gpu_layers = 0;
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), 0);

        p.n_gpu_layers = -1;
        p.cache_k_bits = p.cache_v_bits = 8; /* q8_0: 8.5 bits */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 544 + 200 + 768) * MiB);
        p.cache_k_bits = 4; /* q4_0 K (4.5 bits), f16 V */
        p.cache_v_bits = 16;
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 144 + 512 + 200 + 768) * MiB);
        p.cache_k_bits = p.cache_v_bits = 0; /* f16 */
        p.ctx_size = 100;                    /* padded to 256 */
        check_inteq(gguf_estimate_gpu_bytes(&i, &p), (4000 + 32 + 200 + 768) * MiB);

        /* a hostile header's numbers saturate */
        big.n_head_kv = UINT64_MAX;
        check_inteq(gguf_estimate_gpu_bytes(&big, &p), UINT64_MAX);
        big = i;
        big.tensor_bytes = big.layer_bytes = UINT64_MAX;
        check_inteq(gguf_estimate_gpu_bytes(&big, &p), UINT64_MAX);

        check_inteq(gguf_cache_type_bits("q8_0", &bits), 0);
        check_inteq(bits, 8);
        check_inteq(gguf_cache_type_bits("q4_1", &bits), 0);
        check_inteq(bits, 5);
        check_inteq(gguf_cache_type_bits("f16", &bits), 0);
        check_inteq(bits, 16);
        check_inteq(gguf_cache_type_bits("q3_k", &bits), -EINVAL);
}

/* The same model by layer: 32 slots of 100 MiB, their KV (1 GiB / 32) and margin (5 MiB), and
 * the output layer's (800 MiB and 40); GGUF_MARGIN_FIXED on each GPU besides. */
TEST(estimate_slots)
{
        static GgufInfo i;
        GgufEstimateParams p = {
                .n_gpu_layers = -1, .ctx_size = 8192, .cache_k_bits = 16, .cache_v_bits = 16
        };
        uint64_t slot[GGUF_LAYERS_MAX + 1], sum = 0;
        unsigned n;

        i = llama8b;
        /* no per-layer sizes: layer_bytes evenly */
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(n, 33);
        check_inteq(slot[0], (100 + 32 + 5) * MiB);
        check_inteq(slot[31], (100 + 32 + 5) * MiB);
        check_inteq(slot[32], (800 + 40) * MiB);
        for (unsigned k = 0; k < n; k++) {
                sum += slot[k];
        }
        /* on one GPU, the slots and one fixed margin are the whole estimate */
        check_inteq(sum + GGUF_MARGIN_FIXED, gguf_estimate_gpu_bytes(&i, &p));

        /* each layer its own size: a first layer of 400 MiB */
        i.layer[0] = 400 * MiB;
        for (unsigned l = 1; l < 32; l++) {
                i.layer[l] = 100 * MiB;
        }
        i.layer_bytes = 3500 * MiB;
        i.tensor_bytes = 4300 * MiB;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(n, 33);
        check_inteq(slot[0], (400 + 32 + 20) * MiB);
        check_inteq(slot[1], (100 + 32 + 5) * MiB);
        check_inteq(slot[32], (800 + 40) * MiB);

        /* 16 layers offloaded: the last 16, and the output layer stays on the CPU */
        p.n_gpu_layers = 16;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(n, 16);
        check_inteq(slot[0], (100 + 32 + 5) * MiB);
        check_inteq(slot[15], (100 + 32 + 5) * MiB);
        /* 32: every repeating layer, the first one (400 MiB) too, not the output layer */
        p.n_gpu_layers = 32;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(n, 32);
        check_inteq(slot[0], (400 + 32 + 20) * MiB);
        p.n_gpu_layers = 0;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(n, 0);

        /* the sizes do not add up to layer_bytes (a blk.N past n_layer): evenly again, 112.5
         * MiB a layer */
        p.n_gpu_layers = -1;
        i.layer_bytes = 3600 * MiB;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), 0);
        check_inteq(slot[0], 225 * MiB / 2 + 32 * MiB + 225 * MiB / 2 / 20);
        /* more layers than llama.cpp has: no slots */
        i.n_layer = GGUF_LAYERS_MAX + 1;
        check_inteq(gguf_estimate_slots(&i, &p, slot, &n), -E2BIG);
        check_inteq(n, 0);
}

/* The tiny models of the real tier, as tests/models/make-tiny-models.py documents them: what
 * "test-gguf real" runs instead of the tests above (it is the real tier's test, real/gguf). */
static int real_models(void)
{
        const char *dir = getenv("LLMD_REAL_MODELS");
        static const struct {
                const char *file, *arch;
                uint64_t n_head_kv, n_ctx;
        } models[] = {
                { "chat.gguf", "qwen2", 2, 4096 },
                { "reasoning.gguf", "qwen2", 2, 4096 },
                { "embed.gguf", "bert", 4, 512 },
        };

        if (isempty(dir)) {
                printf("1..0 # SKIP no $LLMD_REAL_MODELS\n");
                return 77;
        }
        for (size_t m = 0; m < ELEMENTSOF(models); m++) {
                GgufEstimateParams p = { .n_gpu_layers = -1 };
                char path[4096];
                struct stat st;
                GgufInfo i;

                snprintf(path, sizeof(path), "%s/%s", dir, models[m].file);
                check_inteq(gguf_read(path, &i), 0);
                check(stat(path, &st) == 0);
                check_streq(i.arch, models[m].arch);
                check_inteq(i.n_layer, 2);
                check_inteq(i.n_embd, 64);
                check_inteq(i.n_head, 4);
                check_inteq(i.n_head_kv, models[m].n_head_kv);
                check_inteq(i.key_length, 16);
                check_inteq(i.n_ctx_train, models[m].n_ctx);
                check_inteq(i.file_bytes, st.st_size);
                /* the header and its padding are all the rest */
                check(i.tensor_bytes < i.file_bytes && i.file_bytes - i.tensor_bytes < 16384);
                check(i.layer_bytes > 0 && i.layer_bytes < i.tensor_bytes);
                printf("# %s: %llu bytes, tensors %llu (layers %llu), estimate %llu\n",
                       models[m].file, (unsigned long long) i.file_bytes,
                       (unsigned long long) i.tensor_bytes, (unsigned long long) i.layer_bytes,
                       (unsigned long long) gguf_estimate_gpu_bytes(&i, &p));
                gguf_info_done(&i);
        }
        printf("ok - real_models\n");
        return 0;
}

/* The header of an array of count strings, key "k", at off. */
static void sparse_array(int fd, off_t off, uint64_t count)
{
        Buf b = {};

        put_str(&b, "k");
        put_u32(&b, T_ARR);
        put_u32(&b, T_STR);
        put_u64(&b, count);
        check(pwrite(fd, b.data, b.len, off) == (ssize_t) b.len);
        free(b.data);
}

/* A 16 GiB sparse file is read no further than the caps allow: a count past GGUF_ARRAY_MAX
 * ends at once, and arrays of empty strings within it, one after another, end at
 * GGUF_HEADER_MAX, long before the file. */
TEST(caps_sparse)
{
        int fd = memfd_create("gguf", MFD_CLOEXEC);
        uint64_t start;
        GgufInfo i = {};
        Buf b = {};
        off_t off;

        check(fd >= 0);
        check(ftruncate(fd, (off_t) 16 << 30) == 0);
        header(&b, 3, 0, GGUF_KV_MAX);
        check(pwrite(fd, b.data, b.len, 0) == (ssize_t) b.len);
        off = (off_t) b.len;
        free(b.data);

        sparse_array(fd, off, UINT64_C(1) << 62);
        /* -E2BIG is the proof that the count stopped it: without the cap, it reads 16 GiB. */
        start = now_usec(CLOCK_MONOTONIC);
        check_inteq(gguf_read_fd(fd, &i), -E2BIG);
        printf("# %llu ms to refuse an array of 2^62 strings\n",
               (unsigned long long) ((now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_MSEC));
        sparse_array(fd, off, GGUF_ARRAY_MAX + 1);
        check_inteq(gguf_read_fd(fd, &i), -E2BIG);

        /* each array: 4 Mi strings of 8 bytes, the next entry behind it */
        for (int k = 0; k < 4; k++) {
                sparse_array(fd, off, GGUF_ARRAY_MAX);
                off += 8 + 1 + 4 + 4 + 8 + (off_t) (GGUF_ARRAY_MAX * 8);
        }
        check((uint64_t) off > GGUF_HEADER_MAX);
        start = now_usec(CLOCK_MONOTONIC);
        check_inteq(gguf_read_fd(fd, &i), -E2BIG);
        printf("# %llu ms to refuse a header past GGUF_HEADER_MAX\n",
               (unsigned long long) ((now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_MSEC));
        check(!i.arch);
        close(fd);
}

/* Tensor infos out of the order of their offsets (a file may list them so): sorted before they
 * are summed, with offsets past 16 bits at alignment 1, so the sort takes more than one pass;
 * one of an unknown type is sized from the next offset, and a duplicate offset overlaps. */
TEST(shuffled_tensors)
{
        enum { N = 3001 }; /* odd: i × 1999 mod N visits every i */
        Buf b = {}, bad = {};
        GgufInfo i;

        for (int dup = 0; dup < 2; dup++) {
                Buf *f = dup ? &bad : &b;

                header(f, 3, N, 2);
                kv_str(f, "general.architecture", "llama");
                kv_u32(f, "general.alignment", 1);
                for (uint64_t k = 0; k < N; k++) {
                        uint64_t j = k * 1999 % N; /* the j-th tensor's data: 32 bytes at 32 j */
                        bool unknown = j == 7;

                        put_str(f, j % 2 ? "blk.1.w" : "out");
                        put_u32(f, 1);
                        put_u64(f, unknown ? 3 : 8);
                        put_u32(f, unknown ? 200 : F32);
                        put_u64(f, 32 * (dup && j == 5 ? 4 : j));
                }
                for (int k = 0; k < 32 * N; k++) {
                        put(f, "", 1);
                }
        }
        check_inteq(parse(&b, &i), 0);
        check_inteq(i.tensor_bytes, 32 * N);
        check_inteq(i.layer_bytes, 32 * (N / 2));
        gguf_info_done(&i);
        free(b.data);
        check_inteq(parse_bad(&bad), -EBADMSG);
}

/* The caps let the largest real tokenizers through: an array of 1 Mi strings. */
TEST(caps_tokenizer)
{
        Buf b = {};
        GgufInfo i;

        header(&b, 3, 0, 2);
        kv_str(&b, "general.architecture", "llama");
        put_str(&b, "tokenizer.ggml.tokens");
        put_u32(&b, T_ARR);
        put_u32(&b, T_STR);
        put_u64(&b, UINT64_C(1) << 20);
        for (int k = 0; k < 1 << 20; k++) {
                put_str(&b, "tok");
        }
        check_inteq(parse(&b, &i), 0);
        check_streq(i.arch, "llama");
        gguf_info_done(&i);
        free(b.data);
}

/* "time RUNS FILE...": per file (RUNS ≤ 100), its result and the fastest and median of RUNS reads, in ms. */
static int time_files(int runs, char **files)
{
        for (char **f = files; *f; f++) {
                uint64_t t[100] = {};
                int k = 0;

                for (int n = 0; n < runs; n++) {
                        GgufInfo i;
                        uint64_t t0 = now_usec(CLOCK_MONOTONIC);

                        k = gguf_read(*f, &i);
                        t[n] = now_usec(CLOCK_MONOTONIC) - t0;
                        if (k >= 0) {
                                gguf_info_done(&i);
                        }
                        /* insertion sort: runs is small */
                        for (int m = n; m > 0 && t[m - 1] > t[m]; m--) {
                                uint64_t x = t[m];
                                t[m] = t[m - 1];
                                t[m - 1] = x;
                        }
                }
                printf("%s\t%s\tmin %.1f ms\tmedian %.1f ms\n", *f, k < 0 ? strerror(-k) : "ok",
                       t[0] / 1000.0, t[runs / 2] / 1000.0);
        }
        return 0;
}

int main(int argc, char *argv[])
{
        if (argc > 1 && streq(argv[1], "real")) {
                return real_models();
        }
        if (argc > 3 && streq(argv[1], "time") && atoi(argv[2]) > 0 && atoi(argv[2]) <= 100) {
                return time_files(atoi(argv[2]), argv + 3);
        }
        return tests_run();
}
