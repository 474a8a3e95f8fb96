/* SPDX-License-Identifier: MIT */
#include "utf8.h"
#include "varlink.h"

void varlink_reader_init(VarlinkReader *r)
{
        *r = (VarlinkReader) {};
}

void varlink_reader_done(VarlinkReader *r)
{
        free(r->buf);
        *r = (VarlinkReader) {};
}

int varlink_reader_feed(VarlinkReader *r, const void *data, size_t len)
{
        /* Before the first bytes r->buf is NULL, and even NULL + 0 is undefined. */
        if (len == 0) {
                return 0;
        }
        /* Drop what was already handed out before growing. */
        if (r->consumed > 0) {
                memmove(r->buf, r->buf + r->consumed, r->len - r->consumed);
                r->len -= r->consumed;
                r->consumed = 0;
        }
        if (r->len + len > r->size) {
                size_t size = MAX(r->size * 2, r->len + len);
                char *b;

                /* Several whole frames may arrive in one read; only an unterminated one is
                 * bounded, below. The buffer itself is bounded by what one read returns. */
                b = realloc(r->buf, size);
                if (!b) {
                        return -ENOMEM;
                }
                r->buf = b;
                r->size = size;
        }
        memcpy(r->buf + r->len, data, len);
        r->len += len;

        /* The bytes after the last NUL are an unfinished frame. */
        size_t tail = 0;
        for (size_t i = r->len; i > 0 && r->buf[i - 1] != '\0'; i--) {
                tail++;
        }
        if (tail > VARLINK_FRAME_MAX) {
                return -EMSGSIZE;
        }
        return 0;
}

int varlink_reader_next(VarlinkReader *r, const char **ret_frame, size_t *ret_len)
{
        const char *start, *nul;

        if (r->consumed >= r->len) {
                return 0;
        }
        start = r->buf + r->consumed;
        nul = memchr(start, '\0', r->len - r->consumed);
        if (!nul) {
                return 0;
        }
        *ret_frame = start;
        *ret_len = (size_t) (nul - start);
        r->consumed += *ret_len + 1;
        if (*ret_len > VARLINK_FRAME_MAX) {
                return -EMSGSIZE;
        }
        return 1;
}

size_t varlink_reader_pending(const VarlinkReader *r)
{
        return r->len - r->consumed;
}

static int parse_object(const char *frame, size_t len, cJSON **ret)
{
        const char *end = NULL;
        cJSON *j;

        /* cJSON needs the length: frames are not NUL-terminated inside the buffer's view. An
         * embedded NUL cannot occur (it ends the frame). */
        j = cJSON_ParseWithLengthOpts(frame, len, &end, false);
        if (!j) {
                return -EBADMSG;
        }
        /* Only white space may follow the object. */
        for (; end && end < frame + len; end++) {
                if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') {
                        cJSON_Delete(j);
                        return -EBADMSG;
                }
        }
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return -EPROTO;
        }
        *ret = j;
        return 0;
}

/* Takes "parameters" out of o (an empty object when absent); -EPROTO when it is not an object. */
static int take_parameters(cJSON *o, cJSON **ret)
{
        cJSON *p = cJSON_DetachItemFromObjectCaseSensitive(o, "parameters");

        if (!p) {
                p = cJSON_CreateObject();
                if (!p) {
                        return -ENOMEM;
                }
        } else if (!cJSON_IsObject(p)) {
                cJSON_Delete(p);
                return -EPROTO;
        }
        *ret = p;
        return 0;
}

static int get_bool(const cJSON *o, const char *key, bool *ret)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!v) {
                *ret = false;
                return 0;
        }
        if (!cJSON_IsBool(v)) {
                return -EPROTO;
        }
        *ret = cJSON_IsTrue(v);
        return 0;
}

static int compare_keys(const void *a, const void *b)
{
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Whether an object in j (j itself or one nested in it) names a member twice. cJSON would keep
 * both and every lookup would see the first, while another JSON reader sees the last. */
static int json_find_duplicate_keys(const cJSON *j)
{
        _cleanup_free_ const char **keys = NULL;
        size_t n = 0;
        const cJSON *c;

        if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) {
                return 0;
        }
        if (cJSON_IsObject(j)) {
                keys = calloc((size_t) cJSON_GetArraySize(j) + 1, sizeof(char *));
                if (!keys) {
                        return -ENOMEM;
                }
                cJSON_ArrayForEach(c, j) {
                        keys[n++] = c->string ? c->string : "";
                }
                qsort(keys, n, sizeof(char *), compare_keys);
                for (size_t i = 1; i < n; i++) {
                        if (streq(keys[i - 1], keys[i])) {
                                return -ENOTUNIQ;
                        }
                }
        }
        cJSON_ArrayForEach(c, j) {
                int r = json_find_duplicate_keys(c);

                if (r < 0) {
                        return r;
                }
        }
        return 0;
}

int varlink_call_parse(const char *frame, size_t len, VarlinkCall *ret)
{
        cJSON *o = NULL, *p = NULL;
        const cJSON *m;
        bool more, oneway;
        int r;

        /* cJSON takes any bytes in a string: what is not UTF-8 would reach names, logs and the
         * replies that quote the call, which then are not JSON. */
        if (!utf8_valid(frame, len)) {
                return -EILSEQ;
        }
        r = parse_object(frame, len, &o);
        if (r < 0) {
                return r;
        }
        r = json_find_duplicate_keys(o);
        if (r < 0) {
                cJSON_Delete(o);
                return r;
        }
        m = cJSON_GetObjectItemCaseSensitive(o, "method");
        if (!cJSON_IsString(m) || isempty(m->valuestring) || get_bool(o, "more", &more) < 0 ||
            get_bool(o, "oneway", &oneway) < 0) {
                cJSON_Delete(o);
                return -EPROTO;
        }
        r = take_parameters(o, &p);
        if (r < 0) {
                cJSON_Delete(o);
                return r;
        }
        *ret = (VarlinkCall) {
                .method = strdup(m->valuestring),
                .parameters = p,
                .more = more,
                .oneway = oneway,
        };
        cJSON_Delete(o);
        if (!ret->method) {
                cJSON_Delete(p);
                return -ENOMEM;
        }
        return 0;
}

void varlink_call_done(VarlinkCall *c)
{
        free(c->method);
        cJSON_Delete(c->parameters);
        *c = (VarlinkCall) {};
}

int varlink_reply_parse(const char *frame, size_t len, VarlinkReply *ret)
{
        cJSON *o = NULL, *p = NULL;
        const cJSON *e;
        bool continues;
        int r;

        r = parse_object(frame, len, &o);
        if (r < 0) {
                return r;
        }
        e = cJSON_GetObjectItemCaseSensitive(o, "error");
        if ((e && !cJSON_IsString(e)) || get_bool(o, "continues", &continues) < 0) {
                cJSON_Delete(o);
                return -EPROTO;
        }
        r = take_parameters(o, &p);
        if (r < 0) {
                cJSON_Delete(o);
                return r;
        }
        *ret = (VarlinkReply) {
                .error = e ? strdup(e->valuestring) : NULL,
                .parameters = p,
                .continues = continues,
        };
        cJSON_Delete(o);
        if (e && !ret->error) {
                cJSON_Delete(p);
                return -ENOMEM;
        }
        return 0;
}

void varlink_reply_done(VarlinkReply *r)
{
        free(r->error);
        cJSON_Delete(r->parameters);
        *r = (VarlinkReply) {};
}

/* Prints o followed by a NUL. */
static int format_message(cJSON *o, char **ret, size_t *ret_len)
{
        char *s = cJSON_PrintUnformatted(o);

        cJSON_Delete(o);
        if (!s) {
                return -ENOMEM;
        }
        *ret_len = strlen(s) + 1;
        *ret = s;
        return 0;
}

static cJSON *message_new(const cJSON *parameters)
{
        cJSON *o = cJSON_CreateObject();
        cJSON *p = parameters ? cJSON_Duplicate(parameters, true) : cJSON_CreateObject();

        if (!o || !p || !cJSON_AddItemToObject(o, "parameters", p)) {
                cJSON_Delete(o);
                cJSON_Delete(p);
                return NULL;
        }
        return o;
}

int varlink_format_call(const char *method, const cJSON *parameters, bool more, char **ret,
                        size_t *ret_len)
{
        cJSON *o = message_new(parameters);

        if (!o || !cJSON_AddStringToObject(o, "method", method) ||
            (more && !cJSON_AddTrueToObject(o, "more"))) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        return format_message(o, ret, ret_len);
}

int varlink_format_reply(const cJSON *parameters, bool continues, char **ret, size_t *ret_len)
{
        cJSON *o = message_new(parameters);

        if (!o || (continues && !cJSON_AddTrueToObject(o, "continues"))) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        return format_message(o, ret, ret_len);
}

int varlink_format_error(const char *error, const cJSON *parameters, char **ret, size_t *ret_len)
{
        cJSON *o = message_new(parameters);

        if (!o || !cJSON_AddStringToObject(o, "error", error)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        return format_message(o, ret, ret_len);
}
