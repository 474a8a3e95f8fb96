/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <stdio.h>

#include "fileio.h"
#include "fleet-haproxy.h"
#include "fleet.h"

#define FLEET_MODELS_MAX (4u * 1024 * 1024) /* one box's /v1/models answer, at most */
#define FLEET_KEY_FILE_MAX (64u * 1024)
#define FLEET_CONNECT_TIMEOUT_SEC 5L
#define FLEET_TIMEOUT_SEC 15L
#define FLEET_DEFAULT_LISTEN ":8080"

typedef struct Body {
        char *data;
        size_t size;
        bool too_big;
} Body;

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
        Body *b = userdata;
        size_t len = size * n;
        char *d;

        if (b->size + len > FLEET_MODELS_MAX) {
                b->too_big = true;
                return 0; /* CURLE_WRITE_ERROR */
        }
        d = realloc(b->data, b->size + len + 1);
        if (!d) {
                return 0;
        }
        memcpy(d + b->size, p, len);
        b->size += len;
        d[b->size] = '\0';
        b->data = d;
        return len;
}

/* The first key of a key file written as llmd's api-key-file is: one a line, blanks around it
 * dropped, '#' starting a comment line. */
static int key_from_file(const char *path, char **ret)
{
        _cleanup_free_ char *text = NULL;
        int r = read_file(path, 0, FLEET_KEY_FILE_MAX, &text);

        if (r < 0) {
                return fail(EXIT_USAGE, "cannot read the key file %s: %s", path, file_strerror(r));
        }
        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next) {
                        *next++ = '\0';
                }
                line += strspn(line, " \t\r");
                line[strcspn(line, " \t\r")] = '\0';
                if (*line && *line != '#') {
                        *ret = strdup(line);
                        return *ret ? 0 : fail(EXIT_USAGE, "out of memory");
                }
        }
        return fail(EXIT_USAGE, "the key file %s holds no key", path);
}

/* An error answer's message, when it is llmd's (or OpenAI's) JSON shape. */
static const char *error_message(const cJSON *j)
{
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");

        return jstr(e, "message");
}

/* GET http://ADDRESS/v1/models into *ret. */
static int fetch_models(CURL *curl, const char *address, const char *key, cJSON **ret)
{
        _cleanup_free_ char *url = NULL, *auth = NULL;
        char curl_error[CURL_ERROR_SIZE] = "";
        struct curl_slist *headers = NULL;
        Body body = {};
        long status = 0;
        CURLcode rc;
        cJSON *j;

        if (asprintf(&url, "http://%s/v1/models", address) < 0 ||
            (key && asprintf(&auth, "Authorization: Bearer %s", key) < 0)) {
                return fail(EXIT_USAGE, "out of memory");
        }
        if (auth) {
                headers = curl_slist_append(NULL, auth);
                if (!headers) {
                        return fail(EXIT_USAGE, "out of memory");
                }
        }
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        /* The boxes are llmd's own addresses: no proxy from the environment in between. */
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, FLEET_CONNECT_TIMEOUT_SEC);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, FLEET_TIMEOUT_SEC);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
        rc = curl_easy_perform(curl);
        curl_slist_free_all(headers);
        (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (body.too_big) {
                free(body.data);
                return fail(EXIT_REFUSED, "%s: its /v1/models answer is larger than %u bytes",
                            address, FLEET_MODELS_MAX);
        }
        if (rc != CURLE_OK) {
                free(body.data);
                return fail(EXIT_USAGE, "%s: %s", address,
                            curl_error[0] ? curl_error : curl_easy_strerror(rc));
        }
        j = body.data ? cJSON_ParseWithLength(body.data, body.size) : NULL;
        free(body.data);
        if (status != 200) {
                const char *m = error_message(j);

                fail(EXIT_REFUSED, "%s: GET /v1/models answered %ld%s%s%s", address, status,
                     m ? " (" : "", m ? m : "", m ? ")" : "");
                cJSON_Delete(j);
                return EXIT_REFUSED;
        }
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                return fail(EXIT_REFUSED, "%s: GET /v1/models did not answer a JSON object",
                            address);
        }
        *ret = j;
        return 0;
}

/* A box named twice (with or without a key file) is a typing error, before anything is asked. */
static int boxes_distinct(char **box_args, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                size_t len = strcspn(box_args[i], "@");

                for (size_t o = 0; o < i; o++) {
                        if (strcspn(box_args[o], "@") == len &&
                            strneq(box_args[o], box_args[i], len)) {
                                return fail(EXIT_USAGE, "%.*s is named twice", (int) len,
                                            box_args[i]);
                        }
                }
        }
        return 0;
}

static int fleet_haproxy(Client *cl, char **box_args, size_t n)
{
        _cleanup_free_ FleetBox *boxes = calloc(n, sizeof(FleetBox));
        _cleanup_free_ char *text = NULL, *error = NULL;
        const char *env_key = getenv("LLMD_API_KEY");
        char **addresses = calloc(n, sizeof(char *));
        CURL *curl = NULL;
        int r = 0;

        if (!boxes || !addresses) {
                free(addresses);
                return fail(EXIT_USAGE, "out of memory");
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || !(curl = curl_easy_init())) {
                r = fail(EXIT_USAGE, "cannot set up libcurl");
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *at = strchr(box_args[i], '@');
                _cleanup_free_ char *key = NULL;
                cJSON *models = NULL;

                addresses[i] = at ? strndup(box_args[i], at - box_args[i]) : strdup(box_args[i]);
                if (!addresses[i]) {
                        r = fail(EXIT_USAGE, "out of memory");
                        break;
                }
                if (fleet_box_address_valid(addresses[i]) < 0) {
                        r = fail(EXIT_USAGE, "'%s' is not HOST:PORT or HOST:PORT@KEYFILE",
                                 box_args[i]);
                        break;
                }
                if (at) {
                        r = key_from_file(at + 1, &key);
                } else if (!isempty(env_key)) {
                        key = strdup(env_key);
                        r = key ? 0 : fail(EXIT_USAGE, "out of memory");
                }
                if (r == 0) {
                        r = fetch_models(curl, addresses[i], key, &models);
                }
                boxes[i] = (FleetBox) { .address = addresses[i], .models = models };
        }
        if (r == 0) {
                const char *listen = cl->args.listen ? cl->args.listen : FLEET_DEFAULT_LISTEN;

                r = fleet_haproxy_config(boxes, n, listen, &text, &error);
                if (r == -ENOMEM) {
                        r = fail(EXIT_USAGE, "out of memory");
                } else if (r < 0) {
                        r = fail(EXIT_REFUSED, "%s",
                                 error ? error : "cannot write the configuration");
                } else {
                        fputs(text, stdout);
                        r = fflush(stdout) == 0 ? 0 : fail(EXIT_USAGE, "cannot write: %m");
                }
        }
        for (size_t i = 0; i < n; i++) {
                cJSON_Delete((cJSON *) boxes[i].models);
                free(addresses[i]);
        }
        free(addresses);
        if (curl) {
                curl_easy_cleanup(curl);
        }
        curl_global_cleanup();
        return r;
}

int fleet_main(Client *cl)
{
        if (!streq(cl->args.args[0], "haproxy")) {
                return fail(EXIT_USAGE,
                            "fleet: '%s' is not a kind of configuration llmctl writes "
                            "(usage: llmctl fleet haproxy BOX...)",
                            cl->args.args[0]);
        }
        return boxes_distinct(cl->args.args + 1, cl->args.n_args - 1)
                       ?: fleet_haproxy(cl, cl->args.args + 1, cl->args.n_args - 1);
}
