/* SPDX-License-Identifier: MIT */
/* The proxy's router decides on every request line and header a client sends. The input is
 * NUL-separated fields: method, target, Authorization, X-Api-Key, Content-Length values
 * (comma-separated), Transfer-Encoding values, then one byte of flags (1: keys, 2: a model's
 * own port). Besides not crashing, the router must keep its promises: */
#include "proxy-route.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *field(const char **p, const char *end)
{
        const char *f = *p;
        size_t n = strnlen(f, (size_t) (end - f));

        *p = f + MIN(n + 1, (size_t) (end - f));
        return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ char *text = malloc(size + 1);
        _cleanup_strv_free_ char **cl = NULL, **te = NULL;
        char *keys[] = { (char *) "k0", (char *) "sk-1", NULL };
        const char *p, *end;
        Route r;

        if (!text) {
                return 0;
        }
        memcpy(text, data, size);
        text[size] = '\0';
        p = text;
        end = text + size;
        const char *method = field(&p, end), *target = field(&p, end);
        const char *auth = field(&p, end), *xkey = field(&p, end);
        const char *cls = field(&p, end), *tes = field(&p, end);
        unsigned flags = p < end ? (unsigned char) *p : 0;

        if (*cls && strv_split(cls, ",", &cl) < 0) {
                return 0;
        }
        if (*tes && strv_split(tes, ",", &te) < 0) {
                return 0;
        }
        RouteInput in = {
                .method = method,
                .target = target,
                .authorization = *auth ? auth : NULL,
                .x_api_key = *xkey ? xkey : NULL,
                .content_length = cl,
                .transfer_encoding = te,
                .api_keys = flags & 1 ? keys : NULL,
                .max_body_size = 4096,
                .model_port = flags & 2,
        };
        if (route_request(&in, &r) < 0) {
                return 0;
        }
        if (r.kind == ROUTE_REFUSE && (r.status < 400 || !r.message || !r.error_type)) {
                __builtin_trap(); /* a refusal says what and why */
        }
        if (r.kind == ROUTE_GENERATE || r.kind == ROUTE_EMBED || r.kind == ROUTE_MODELS ||
            r.kind == ROUTE_HEALTH) {
                _cleanup_free_ char *again = NULL;
                const char *why;

                /* What is forwarded is already in normal form: normalising it changes nothing. */
                if (!r.path || route_normalize_path(r.path, &again, &why) < 0 ||
                    strncmp(again, r.path, strlen(again)) != 0 ||
                    (r.path[strlen(again)] != '\0' && r.path[strlen(again)] != '?')) {
                        __builtin_trap();
                }
                /* With keys, nothing reaches a child without one but the public list. */
                if (in.api_keys && !route_key_ok(keys, in.authorization, in.x_api_key) &&
                    (r.kind == ROUTE_EMBED ||
                     (r.kind == ROUTE_GENERATE &&
                      !(in.model_port &&
                        (streq(again, "/health") || streq(again, "/v1/health") ||
                         streq(again, "/models") || streq(again, "/v1/models")))))) {
                        __builtin_trap();
                }
                /* Framing that could smuggle a second request is never let through. */
                if (strv_length(cl) > 0 && strv_length(te) > 0) {
                        __builtin_trap();
                }
        }
        route_done(&r);
        return 0;
}
