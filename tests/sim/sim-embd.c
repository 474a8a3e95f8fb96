/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-embd.h"
#include "sim-infer.h"
#include "sim-json.h"
#include "sim-tokens.h"

/* llama-server's default physical batch size (--ubatch-size). */
#define EMBD_UBATCH 512

/* One input of a request: text, or token ids printed as JSON. */
struct embd_input {
        char *text;
        int n_tokens;
};

static uint64_t embd_hash(const char *s, uint64_t seed)
{
        uint64_t h = 14695981039346656037ull ^ seed;

        for (; *s; s++) {
                h = (h ^ (unsigned char) *s) * 1099511628211ull;
        }
        return h;
}

/* xorshift64*: a value in [-1, 1) */
static float embd_next(uint64_t *state)
{
        uint64_t x = *state;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return (float) ((double) ((x * 2685821657736338717ull) >> 11) / 4503599627370496.0 - 1.0);
}

/* common_embd_normalize(): -1 none, 0 max absolute int16, 1 taxicab, 2 Euclidean, >2 p-norm */
static void embd_normalize(float *v, int n, int norm)
{
        double sum = 0.0;

        switch (norm) {
        case -1:
                sum = 1.0;
                break;
        case 0:
                for (int i = 0; i < n; i++) {
                        sum = fabs(v[i]) > sum ? fabs(v[i]) : sum;
                }
                sum /= 32760.0;
                break;
        case 2:
                for (int i = 0; i < n; i++) {
                        sum += (double) v[i] * v[i];
                }
                sum = sqrt(sum);
                break;
        default:
                for (int i = 0; i < n; i++) {
                        sum += pow(fabs(v[i]), norm);
                }
                sum = pow(sum, 1.0 / norm);
                break;
        }
        for (int i = 0; i < n; i++) {
                v[i] = sum > 0.0 ? (float) (v[i] / sum) : 0.0f;
        }
}

static cJSON *embd_vector(const char *text, uint64_t row, int norm)
{
        int n = infer_n_embd();
        uint64_t state = embd_hash(text, row) | 1;
        float v[256];
        cJSON *arr = cJSON_CreateArray();

        for (int i = 0; i < n; i++) {
                v[i] = embd_next(&state);
        }
        embd_normalize(v, n, norm);
        for (int i = 0; i < n; i++) {
                /* floats, written as nlohmann writes them: as doubles */
                cJSON_AddItemToArray(arr, json_create_double((double) v[i]));
        }
        return arr;
}

/* base64 of the vector's float32 bytes, for "encoding_format": "base64" */
static char *embd_base64(const char *text, int norm)
{
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int n = infer_n_embd();
        uint64_t state = embd_hash(text, 0) | 1;
        float v[256];
        const unsigned char *b = (const unsigned char *) v;
        size_t len = (size_t) n * sizeof(float), k = 0;
        char *out = malloc((len + 2) / 3 * 4 + 1);

        if (!out) {
                return NULL;
        }
        for (int i = 0; i < n; i++) {
                v[i] = embd_next(&state);
        }
        embd_normalize(v, n, norm);
        for (size_t i = 0; i < len; i += 3) {
                uint32_t x = (uint32_t) b[i] << 16 | (i + 1 < len ? (uint32_t) b[i + 1] << 8 : 0) |
                             (i + 2 < len ? b[i + 2] : 0);

                out[k++] = alphabet[x >> 18 & 63];
                out[k++] = alphabet[x >> 12 & 63];
                out[k++] = i + 1 < len ? alphabet[x >> 6 & 63] : '=';
                out[k++] = i + 2 < len ? alphabet[x & 63] : '=';
        }
        out[k] = '\0';
        return out;
}

static void embd_inputs_free(struct embd_input *in, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(in[i].text);
        }
        free(in);
}

/*
 * tokenize_input_prompts(): a string, an array of token ids (one prompt), or an array whose
 * items are strings or arrays of ids (one prompt each). Returns the count, -1 on a shape it
 * does not take.
 */
static ssize_t embd_inputs(const cJSON *prompt, struct embd_input **ret)
{
        struct embd_input *in;
        const cJSON *item;
        size_t n = 0, count;
        bool ids = cJSON_IsArray(prompt) && cJSON_IsNumber(cJSON_GetArrayItem(prompt, 0));

        count = cJSON_IsString(prompt) || ids ? 1
                : cJSON_IsArray(prompt)       ? (size_t) cJSON_GetArraySize(prompt)
                                              : 0;
        if (!cJSON_IsString(prompt) && !cJSON_IsArray(prompt)) {
                return -1;
        }
        in = calloc(count + 1, sizeof(*in));
        if (!in) {
                return -1;
        }
        if (cJSON_IsString(prompt) || ids) {
                in[0].text = cJSON_IsString(prompt) ? strdup(prompt->valuestring)
                                                    : cJSON_PrintUnformatted(prompt);
                in[0].n_tokens = cJSON_IsString(prompt)
                                         ? tokens_count_words(prompt->valuestring) + 2
                                         : cJSON_GetArraySize(prompt);
                n = 1;
        } else {
                cJSON_ArrayForEach(item, prompt) {
                        if (cJSON_IsString(item)) {
                                in[n].text = strdup(item->valuestring);
                                in[n].n_tokens = tokens_count_words(item->valuestring) + 2;
                        } else if (cJSON_IsArray(item)) {
                                in[n].text = cJSON_PrintUnformatted(item);
                                in[n].n_tokens = cJSON_GetArraySize(item);
                        } else {
                                embd_inputs_free(in, n);
                                return -1;
                        }
                        n++;
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (!in[i].text) {
                        embd_inputs_free(in, n);
                        return -1;
                }
        }
        *ret = in;
        return (ssize_t) n;
}

static bool embd_pooling_none(void)
{
        return sim_config.pooling && streq(sim_config.pooling, "none");
}

/* handle_embeddings_impl(): oai is the /v1/embeddings form, unless the body says "content" */
static enum MHD_Result embd_handle(struct http_request *req, bool oai)
{
        enum MHD_Result r = MHD_NO;
        const cJSON *prompt, *format, *normalize;
        struct embd_input *in = NULL;
        bool base64 = false;
        int norm = 2, total = 0;
        cJSON *body, *root, *data;
        ssize_t n;

        if (!sim_config.embedding) {
                return infer_reply_error(req, 501,
                                         "This server does not support embeddings. Start it "
                                         "with `--embeddings`",
                                         "not_supported_error");
        }
        if (oai && embd_pooling_none()) {
                return infer_reply_error(req, 400,
                                         "Pooling type 'none' is not OAI compatible. Please use "
                                         "a different pooling type",
                                         "invalid_request_error");
        }
        body = infer_body(req, &r);
        if (!body) {
                return r;
        }
        prompt = cJSON_GetObjectItemCaseSensitive(body, "input");
        if (!prompt) {
                prompt = cJSON_GetObjectItemCaseSensitive(body, "content");
                /* "content" is not OpenAI's: the answer is the native one */
                oai = false;
        }
        if (!prompt) {
                return infer_reply_error(req, 400, "\"input\" or \"content\" must be provided",
                                         "invalid_request_error");
        }
        format = cJSON_GetObjectItemCaseSensitive(body, "encoding_format");
        if (format) {
                if (cJSON_IsString(format) && streq(format->valuestring, "base64")) {
                        base64 = true;
                } else if (!cJSON_IsString(format) || !streq(format->valuestring, "float")) {
                        return infer_reply_error(req, 400,
                                                 "The format to return the embeddings in. Can "
                                                 "be either float or base64",
                                                 "invalid_request_error");
                }
        }
        normalize = cJSON_GetObjectItemCaseSensitive(body, "embd_normalize");
        if (cJSON_IsNumber(normalize)) {
                norm = normalize->valueint;
        }
        n = embd_inputs(prompt, &in);
        if (n < 0) {
                return infer_error(req, 400,
                                   "\"prompt\" must be a string, a list of tokens, a list of "
                                   "mixed strings & tokens, or a list of prompts",
                                   "invalid_request_error");
        }

        /* An input must fit one physical batch (-ub, 512 by default), or the task fails. */
        for (ssize_t i = 0; i < n; i++) {
                if (in[i].n_tokens > EMBD_UBATCH) {
                        char msg[160];

                        snprintf(msg, sizeof(msg),
                                 "input (%d tokens) is too large to process. increase the physical "
                                 "batch size (current batch size: %d)",
                                 in[i].n_tokens, EMBD_UBATCH);
                        embd_inputs_free(in, (size_t) n);
                        return infer_error(req, 500, msg, "server_error");
                }
        }
        data = cJSON_CreateArray();
        for (ssize_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject();

                total += in[i].n_tokens;
                if (oai) {
                        if (base64) {
                                char *b = embd_base64(in[i].text, norm);

                                cJSON_AddStringToObject(o, "embedding", b ? b : "");
                                free(b);
                        } else {
                                cJSON_AddItemToObject(o, "embedding",
                                                      embd_vector(in[i].text, 0, norm));
                        }
                        cJSON_AddNumberToObject(o, "index", (double) i);
                        cJSON_AddStringToObject(o, "object", "embedding");
                        if (base64) {
                                cJSON_AddStringToObject(o, "encoding_format", "base64");
                        }
                } else {
                        /* native: a row per token without pooling, else the one pooled row */
                        cJSON *rows = cJSON_CreateArray();
                        int n_rows = embd_pooling_none() ? in[i].n_tokens : 1;

                        for (int k = 0; k < n_rows; k++) {
                                cJSON_AddItemToArray(rows,
                                                     embd_vector(in[i].text, (uint64_t) k,
                                                                 embd_pooling_none() ? -1 : norm));
                        }
                        cJSON_AddNumberToObject(o, "index", (double) i);
                        cJSON_AddItemToObject(o, "embedding", rows);
                }
                cJSON_AddItemToArray(data, o);
        }
        if (!oai) {
                embd_inputs_free(in, (size_t) n);
                return infer_reply_json(req, data);
        }
        root = cJSON_CreateObject();
        {
                const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
                cJSON *usage;

                cJSON_AddStringToObject(root, "model",
                                        cJSON_IsString(model) ? model->valuestring
                                                              : infer_model_name());
                cJSON_AddStringToObject(root, "object", "list");
                usage = cJSON_AddObjectToObject(root, "usage");
                cJSON_AddNumberToObject(usage, "prompt_tokens", total);
                cJSON_AddNumberToObject(usage, "total_tokens", total);
                cJSON_AddItemToObject(root, "data", data);
        }
        embd_inputs_free(in, (size_t) n);
        return infer_reply_json(req, root);
}

enum MHD_Result embd_native(struct http_request *req)
{
        return embd_handle(req, false);
}

enum MHD_Result embd_oai(struct http_request *req)
{
        return embd_handle(req, true);
}

/* How many of the query's words the document has, plus a little that depends on both. */
static double embd_score(const char *query, const char *doc)
{
        double score = -5.0;
        char *d = strdup(doc), *q = strdup(query), *save = NULL;

        if (d && q) {
                for (char *p = d; *p; p++) {
                        *p = (char) tolower((unsigned char) *p);
                }
                for (char *w = strtok_r(q, " \t\n.,;:!?", &save); w;
                     w = strtok_r(NULL, " \t\n.,;:!?", &save)) {
                        for (char *p = w; *p; p++) {
                                *p = (char) tolower((unsigned char) *p);
                        }
                        if (strstr(d, w)) {
                                score += 2.0;
                        }
                }
        }
        free(d);
        free(q);
        /* as a float, the way the model's output is */
        return (double) (float) (score +
                                 (double) (embd_hash(doc, embd_hash(query, 7)) % 1000) / 4000.0);
}

struct embd_rank {
        int index;
        double score;
};

static int embd_rank_cmp(const void *a, const void *b)
{
        const struct embd_rank *x = a, *y = b;

        return x->score < y->score ? 1 : x->score > y->score ? -1 : x->index - y->index;
}

/* handle_rerank: Jina's form, or TEI's when the documents come as "texts". */
enum MHD_Result embd_rerank(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        const cJSON *query, *docs, *item, *top;
        struct embd_rank *ranks;
        int n_docs, top_n, total = 0, i = 0;
        bool tei, return_text;
        cJSON *body, *results, *root;

        if (!sim_config.embedding || !sim_config.pooling || !streq(sim_config.pooling, "rank")) {
                return infer_reply_error(req, 501,
                                         "This server does not support reranking. Start it with "
                                         "`--reranking`",
                                         "not_supported_error");
        }
        body = infer_body(req, &r);
        if (!body) {
                return r;
        }
        tei = cJSON_HasObjectItem(body, "texts");
        query = cJSON_GetObjectItemCaseSensitive(body, "query");
        if (!query) {
                return infer_reply_error(req, 400, "\"query\" must be provided",
                                         "invalid_request_error");
        }
        if (!cJSON_IsString(query)) {
                return infer_reply_error(req, 400, "\"query\" must be a string",
                                         "invalid_request_error");
        }
        docs = cJSON_GetObjectItemCaseSensitive(body, "documents");
        if (!docs) {
                docs = cJSON_GetObjectItemCaseSensitive(body, "texts");
        }
        n_docs = cJSON_IsArray(docs) ? cJSON_GetArraySize(docs) : 0;
        cJSON_ArrayForEach(item, docs) {
                if (!cJSON_IsString(item)) {
                        n_docs = 0;
                }
        }
        if (n_docs == 0) {
                return infer_reply_error(req, 400, "\"documents\" must be a non-empty string array",
                                         "invalid_request_error");
        }
        top = cJSON_GetObjectItemCaseSensitive(body, "top_n");
        top_n = cJSON_IsNumber(top) ? top->valueint : n_docs;
        top_n = top_n < 0 ? 0 : top_n > n_docs ? n_docs : top_n;
        return_text = tei && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "return_text"));

        ranks = calloc((size_t) n_docs, sizeof(*ranks));
        if (!ranks) {
                return MHD_NO;
        }
        cJSON_ArrayForEach(item, docs) {
                ranks[i].index = i;
                ranks[i].score = embd_score(query->valuestring, item->valuestring);
                total += tokens_count_words(query->valuestring) +
                         tokens_count_words(item->valuestring) + 3;
                i++;
        }
        qsort(ranks, (size_t) n_docs, sizeof(*ranks), embd_rank_cmp);

        results = cJSON_CreateArray();
        for (i = 0; i < top_n; i++) {
                cJSON *o = cJSON_CreateObject();

                cJSON_AddNumberToObject(o, "index", ranks[i].index);
                json_add_double(o, tei ? "score" : "relevance_score", ranks[i].score);
                if (return_text) {
                        cJSON_AddStringToObject(
                                o, "text", cJSON_GetArrayItem(docs, ranks[i].index)->valuestring);
                }
                cJSON_AddItemToArray(results, o);
        }
        free(ranks);
        if (tei) {
                return infer_reply_json(req, results);
        }
        root = cJSON_CreateObject();
        {
                const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
                cJSON *usage;

                cJSON_AddStringToObject(root, "model",
                                        cJSON_IsString(model) ? model->valuestring
                                                              : infer_model_name());
                cJSON_AddStringToObject(root, "object", "list");
                usage = cJSON_AddObjectToObject(root, "usage");
                cJSON_AddNumberToObject(usage, "prompt_tokens", total);
                cJSON_AddNumberToObject(usage, "total_tokens", total);
                cJSON_AddItemToObject(root, "results", results);
        }
        return infer_reply_json(req, root);
}
