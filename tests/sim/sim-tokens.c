/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-infer.h"
#include "sim-tokens.h"

/* Texts are remembered until the table is this full; later ones get ids that detokenize to "". */
#define TOKENS_KEEP_MAX (TOKENS_N_VOCAB / 2)
#define TOKENS_PIECE_MAX 256

static pthread_mutex_t tokens_mutex = PTHREAD_MUTEX_INITIALIZER;
static char *tokens_vocab[TOKENS_N_VOCAB];
static unsigned tokens_kept;

int tokens_count_words(const char *s)
{
        int n = 0;
        bool in_word = false;

        for (; s && *s; s++) {
                bool space = isspace((unsigned char) *s);

                if (!space && !in_word) {
                        n++;
                }
                in_word = !space;
        }
        return n;
}

static uint32_t tokens_hash(const char *s, size_t len)
{
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < len; i++) {
                h = (h ^ (unsigned char) s[i]) * 16777619u;
        }
        return h;
}

int32_t tokens_id(const char *piece, size_t len)
{
        uint32_t h = tokens_hash(piece, len) % TOKENS_N_VOCAB;
        int32_t id = (int32_t) h;

        if (len > TOKENS_PIECE_MAX) {
                return id;
        }
        pthread_mutex_lock(&tokens_mutex);
        /* open addressing: a text keeps the first free id from its hash on */
        for (uint32_t probe = 0; probe < TOKENS_N_VOCAB; probe++) {
                uint32_t i = (h + probe) % TOKENS_N_VOCAB;
                char *p = tokens_vocab[i];

                if (p && strlen(p) == len && memcmp(p, piece, len) == 0) {
                        id = (int32_t) i;
                        break;
                }
                if (!p) {
                        if (tokens_kept < TOKENS_KEEP_MAX) {
                                tokens_vocab[i] = strndup(piece, len);
                                tokens_kept += tokens_vocab[i] != NULL;
                                id = (int32_t) i;
                        }
                        break;
                }
        }
        pthread_mutex_unlock(&tokens_mutex);
        return id;
}

/* The text of an id; "" for one never seen. Texts are never freed, so the pointer stays good. */
static const char *tokens_piece(int32_t id)
{
        const char *p = NULL;

        if (id >= 0 && id < TOKENS_N_VOCAB) {
                pthread_mutex_lock(&tokens_mutex);
                p = tokens_vocab[id];
                pthread_mutex_unlock(&tokens_mutex);
        }
        return p ? p : "";
}

/* The length of the token at s: blanks, then non-blanks. */
static size_t tokens_next(const char *s)
{
        size_t n = 0;

        while (s[n] && isspace((unsigned char) s[n])) {
                n++;
        }
        while (s[n] && !isspace((unsigned char) s[n])) {
                n++;
        }
        return n;
}

static bool tokens_valid_utf8(const unsigned char *s, size_t len)
{
        for (size_t i = 0; i < len;) {
                size_t n = s[i] < 0x80             ? 1
                           : (s[i] & 0xe0) == 0xc0 ? 2
                           : (s[i] & 0xf0) == 0xe0 ? 3
                           : (s[i] & 0xf8) == 0xf0 ? 4
                                                   : 0;

                if (n == 0 || i + n > len) {
                        return false;
                }
                for (size_t k = 1; k < n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80) {
                                return false;
                        }
                }
                i += n;
        }
        return true;
}

static void tokens_add(cJSON *out, const char *piece, size_t len, int32_t id, bool with_pieces)
{
        cJSON *o, *bytes;
        char *text;

        if (!with_pieces) {
                cJSON_AddItemToArray(out, cJSON_CreateNumber(id));
                return;
        }
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", id);
        if (tokens_valid_utf8((const unsigned char *) piece, len)) {
                text = strndup(piece, len);
                cJSON_AddStringToObject(o, "piece", text ? text : "");
                free(text);
        } else {
                /* as llama-server: a piece that is not UTF-8 goes out as its bytes */
                bytes = cJSON_AddArrayToObject(o, "piece");
                for (size_t i = 0; i < len; i++) {
                        cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char) piece[i]));
                }
        }
        cJSON_AddItemToArray(out, o);
}

static void tokens_add_text(cJSON *out, const char *s, bool with_pieces)
{
        for (size_t n; (n = tokens_next(s)) > 0; s += n) {
                tokens_add(out, s, n, tokens_id(s, n), with_pieces);
        }
}

/* {"tokens":[...]}; "content" is a string or, as tokenize_mixed() takes it, an array of
 * strings and token ids. No content: no tokens. */
enum MHD_Result tokens_tokenize(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r), *root, *tokens;
        const cJSON *content, *item;
        bool with_pieces;

        if (!body) {
                return r;
        }
        content = cJSON_GetObjectItemCaseSensitive(body, "content");
        with_pieces = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "with_pieces"));
        root = cJSON_CreateObject();
        tokens = cJSON_AddArrayToObject(root, "tokens");
        if (cJSON_IsString(content)) {
                tokens_add_text(tokens, content->valuestring, with_pieces);
        } else if (cJSON_IsArray(content)) {
                cJSON_ArrayForEach(item, content) {
                        if (cJSON_IsNumber(item)) {
                                const char *p = tokens_piece((int32_t) item->valuedouble);

                                tokens_add(tokens, p, strlen(p), (int32_t) item->valuedouble,
                                           with_pieces);
                        } else if (cJSON_IsString(item)) {
                                tokens_add_text(tokens, item->valuestring, with_pieces);
                        }
                }
        }
        return infer_reply_json(req, root);
}

/* {"content": "..."} from {"tokens": [ids]}. */
enum MHD_Result tokens_detokenize(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r), *root;
        const cJSON *tokens, *item;
        size_t len = 0, size = 1;
        char *text;

        if (!body) {
                return r;
        }
        tokens = cJSON_GetObjectItemCaseSensitive(body, "tokens");
        if (tokens && !cJSON_IsArray(tokens)) {
                return infer_error(req, 500,
                                   "[json.exception.type_error.302] type must be array, but is "
                                   "object",
                                   "server_error");
        }
        cJSON_ArrayForEach(item, tokens) {
                if (!cJSON_IsNumber(item)) {
                        /* nlohmann's get<llama_tokens>() throws, ex_wrapper answers */
                        return infer_error(req, 500,
                                           "[json.exception.type_error.302] type must be number, "
                                           "but is string",
                                           "server_error");
                }
                size += strlen(tokens_piece((int32_t) item->valuedouble));
        }
        text = malloc(size);
        if (!text) {
                return MHD_NO;
        }
        text[0] = '\0';
        cJSON_ArrayForEach(item, tokens) {
                const char *p = tokens_piece((int32_t) item->valuedouble);
                size_t n = strlen(p);

                memcpy(text + len, p, n + 1);
                len += n;
        }
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "content", text);
        free(text);
        return infer_reply_json(req, root);
}

static void tokens_append(char **buf, size_t *len, size_t *size, const char *s)
{
        size_t n = strlen(s);
        char *p;

        if (!*buf) {
                return;
        }
        if (*len + n + 1 > *size) {
                *size = (*len + n + 1) * 2;
                p = realloc(*buf, *size);
                if (!p) {
                        free(*buf);
                        *buf = NULL;
                        return;
                }
                *buf = p;
        }
        memcpy(*buf + *len, s, n + 1);
        *len += n;
}

/* The text of a message's content: a string, or the "text" of its parts. */
static void tokens_content_text(const cJSON *content, char **buf, size_t *len, size_t *size)
{
        const cJSON *part;

        if (cJSON_IsString(content)) {
                tokens_append(buf, len, size, content->valuestring);
        } else if (cJSON_IsArray(content)) {
                cJSON_ArrayForEach(part, content) {
                        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");

                        if (cJSON_IsString(text)) {
                                tokens_append(buf, len, size, text->valuestring);
                        }
                }
        }
}

char *tokens_chat_prompt(const cJSON *messages, const char **ret_error)
{
        const cJSON *m;
        size_t len = 0, size = 256;
        char *buf;

        *ret_error = NULL;
        if (!cJSON_IsArray(messages)) {
                *ret_error = "Expected 'messages' to be an array";
                return NULL;
        }
        buf = malloc(size);
        if (!buf) {
                return NULL;
        }
        buf[0] = '\0';
        cJSON_ArrayForEach(m, messages) {
                const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");

                if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
                        *ret_error = "All messages must have a 'role' field";
                        free(buf);
                        return NULL;
                }
                tokens_append(&buf, &len, &size, "<|im_start|>");
                tokens_append(&buf, &len, &size, role->valuestring);
                tokens_append(&buf, &len, &size, "\n");
                tokens_content_text(cJSON_GetObjectItemCaseSensitive(m, "content"), &buf, &len,
                                    &size);
                tokens_append(&buf, &len, &size, "<|im_end|>\n");
        }
        tokens_append(&buf, &len, &size, "<|im_start|>assistant\n");
        return buf; /* NULL when out of memory */
}

/* {"prompt": "..."}: what /v1/chat/completions would feed the model. */
enum MHD_Result tokens_apply_template(struct http_request *req)
{
        enum MHD_Result r = MHD_NO;
        cJSON *body = infer_body(req, &r), *root;
        const cJSON *messages;
        const char *error;
        char *prompt;

        if (!body) {
                return r;
        }
        messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
        if (!cJSON_IsObject(body) || !messages) {
                return infer_error(req, 400, "'messages' is required", "invalid_request_error");
        }
        prompt = tokens_chat_prompt(messages, &error);
        if (!prompt) {
                return error ? infer_error(req, 400, error, "invalid_request_error") : MHD_NO;
        }
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "prompt", prompt);
        free(prompt);
        return infer_reply_json(req, root);
}
