/* SPDX-License-Identifier: MIT */
/* What a request leaves behind — a record in the activity log, its share of the metrics — and
 * the two pages that show them: GET /llmd/metrics and GET /llmd/activity. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <sys/un.h>
#include <time.h>

#include "build-config.h"
#include "parse-util.h"
#include "proxy-internal.h"
#include "strv.h"

void request_note_error(Request *r, const char *type, const char *message)
{
        if (type) {
                r->error_type = type;
        }
        if (!r->error[0]) {
                activity_copy(r->error, sizeof(r->error), message ? message : "");
        }
}

static double usec_s(uint64_t usec)
{
        return (double) usec / USEC_PER_SEC;
}

static void request_client(Request *r, char *buf, size_t size)
{
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;

        snprintf(buf, size, "?");
        if (!sa) {
                return;
        }
        if (sa->sa_family == AF_INET) {
                (void) inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, buf,
                                 (socklen_t) size);
        } else if (sa->sa_family == AF_INET6) {
                (void) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, buf,
                                 (socklen_t) size);
        } else if (sa->sa_family == AF_UNIX) {
                snprintf(buf, size, "unix");
        }
}

/* llmd's own pages and a balancer's health checks would crowd out the requests worth seeing. */
bool request_worth_a_record(const Request *r)
{
        switch (r->route.kind) {
        case ROUTE_METRICS:
        case ROUTE_ACTIVITY:
        case ROUTE_HEALTH:
        case ROUTE_PREFLIGHT:
                return r->status >= 400;
        case ROUTE_LLMD:
                /* The dashboard's page and streams are not; its actions and the router API's
                 * are (a load or an unload is a request worth seeing). */
                return r->status >= 400 || (r->method && streq(r->method, "POST"));
        case ROUTE_GENERATE:
        case ROUTE_EMBED:
        case ROUTE_MODELS:
        case ROUTE_REFUSE:
        case _ROUTE_KIND_MAX:
                break;
        }
        return true;
}

void request_record(Request *r, bool completed)
{
        Proxy *p = r->proxy;
        uint64_t now = proxy_now(p);
        JsonAnswerTokens t = json_answer_tokens(&r->answer);
        unsigned status = r->status ? r->status : 499;
        double held = usec_s(r->held_usec + (r->state == REQ_HELD ? now - r->held_since_usec : 0));
        double tps = t.per_second;
        ActivityRecord *a;

        if (!completed && !r->error[0]) {
                activity_copy(r->error, sizeof(r->error), "client went away");
        }
        /* Without llama-server's own figure: the tokens over the time they took to come, for
         * a stream; an answer in one piece says nothing of the rate (its body comes at once). */
        if (tps < 0 && r->sse && t.completion > 0 && r->first_data_usec &&
            now > r->first_data_usec) {
                tps = (double) t.completion / usec_s(now - r->first_data_usec);
        }
        metrics_request_end(p->metrics,
                            &(MetricsRequest) {
                                    .model = r->target,
                                    .endpoint = r->route.endpoint,
                                    .status = status,
                                    .refused = !r->forwarded && status >= 400
                                                       ? (r->error_type ?: "client_closed")
                                                       : NULL,
                                    .duration_s = usec_s(now - r->start_usec),
                                    .ttfb_s = r->first_byte_usec
                                                      ? usec_s(r->first_byte_usec - r->start_usec)
                                                      : -1,
                                    .held_s = r->held_since_usec ? held : -1,
                                    .prompt_tokens = t.prompt,
                                    .cached_tokens = t.cached,
                                    .completion_tokens = t.completion,
                                    .tokens_per_s = tps,
                            });
        if (!p->activity || !request_worth_a_record(r) || !(a = activity_add(p->activity))) {
                return;
        }
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        a->time = (double) ts.tv_sec + (double) ts.tv_nsec / 1e9 - usec_s(now - r->start_usec);
        request_client(r, a->client, sizeof(a->client));
        a->key = r->route.key;
        activity_copy(a->model, sizeof(a->model), r->target ?: r->model_asked);
        activity_copy(a->endpoint, sizeof(a->endpoint),
                      r->route.path ? r->route.path : r->target_raw);
        a->endpoint[strcspn(a->endpoint, "?")] = '\0';
        a->status = status;
        a->prompt_tokens = t.prompt;
        a->cached_tokens = t.cached;
        a->completion_tokens = t.completion;
        a->held_s = held;
        a->ttft_s = r->first_data_usec ? usec_s(r->first_data_usec - r->start_usec) : -1;
        a->tokens_per_s = tps;
        a->duration_s = usec_s(now - r->start_usec);
        memcpy(a->error, r->error, sizeof(a->error));
}

/* ---- GET /llmd/metrics ---- */

/* A running model's GPU memory on each GPU (several GPUs only): estimated, measured. */
static void write_gpu_memory_per_device(FILE *f, Supervisor *sv, const char *name)
{
        SupervisorDeviceUse use[GPU_DEVICES_MAX];

        if (!supervisor_model_devices(sv, name, use)) {
                return;
        }
        for (unsigned i = 0; i < GPU_DEVICES_MAX; i++) {
                char g[16];

                snprintf(g, sizeof(g), "%u", i);
                if (use[i].estimated > 0) {
                        metrics_write_sample(f, "llmd_gpu_memory_bytes",
                                             (const char *const[]) { "model", name, "source",
                                                                     "estimated", "gpu", g, NULL },
                                             (double) use[i].estimated);
                }
                if (use[i].measured > 0) {
                        metrics_write_sample(f, "llmd_gpu_memory_bytes",
                                             (const char *const[]) { "model", name, "source",
                                                                     "measured", "gpu", g, NULL },
                                             (double) use[i].measured);
                }
        }
}

/* A gauge of the requests of the list first, by the model they are for. */
static void write_per_model(FILE *f, const char *name, const char *help, const Request *first,
                            Child **children, size_t n)
{
        metrics_write_header(f, name, "gauge", help);
        for (size_t i = 0; i < n; i++) {
                unsigned k = 0;

                for (const Request *r = first; r; r = r->next) {
                        k += r->target && streq(r->target, child_name(children[i]));
                }
                metrics_write_sample(
                        f, name, (const char *const[]) { "model", child_name(children[i]), NULL },
                        k);
        }
}

static void write_gauges(Proxy *p, FILE *f)
{
        Supervisor *sv = p->supervisor;
        size_t n;
        Child **children = supervisor_children(sv, &n);
        SupervisorGpu gpu;
        unsigned fresh = 0, idle = 0;

        write_per_model(f, "llmd_requests_in_flight", "Requests a child is answering now",
                        p->forwarded, children, n);
        write_per_model(f, "llmd_held_requests", "Requests waiting for their model to load",
                        p->held_first, children, n);
        metrics_write_header(f, "llmd_model_state", "gauge",
                             "1 for the model's current serving state");
        for (size_t i = 0; i < n; i++) {
                ServingState st = supervisor_serving(sv, child_name(children[i]), NULL);

                for (ServingState s = 0; s < _SERVING_STATE_MAX; s++) {
                        metrics_write_sample(
                                f, "llmd_model_state",
                                (const char *const[]) { "model", child_name(children[i]), "state",
                                                        serving_state_to_string(s), NULL },
                                s == st);
                }
        }
        metrics_write_header(f, "llmd_gpu_memory_bytes", "gauge",
                             "GPU memory a model takes: estimated from its file, measured "
                             "while it ran");
        for (size_t i = 0; i < n; i++) {
                const char *name = child_name(children[i]);
                uint64_t est = supervisor_model_estimate(sv, name);
                uint64_t meas = supervisor_model_measured(sv, name);

                if (est > 0) {
                        metrics_write_sample(f, "llmd_gpu_memory_bytes",
                                             (const char *const[]) { "model", name, "source",
                                                                     "estimated", NULL },
                                             (double) est);
                }
                if (meas > 0) {
                        metrics_write_sample(
                                f, "llmd_gpu_memory_bytes",
                                (const char *const[]) { "model", name, "source", "measured", NULL },
                                (double) meas);
                }
                write_gpu_memory_per_device(f, sv, name);
        }
        supervisor_gpu(sv, &gpu);
        metrics_write_header(f, "llmd_gpu_memory_budget_bytes", "gauge",
                             "The GPU memory llmd's models may take together; 0 unknown");
        metrics_write_sample(f, "llmd_gpu_memory_budget_bytes", NULL, (double) gpu.budget);
        for (unsigned i = 0; gpu.several && i < gpu.n_devices; i++) {
                char g[16];

                snprintf(g, sizeof(g), "%u", gpu.devices[i].index);
                metrics_write_sample(f, "llmd_gpu_memory_budget_bytes",
                                     (const char *const[]) { "gpu", g, NULL },
                                     (double) gpu.devices[i].budget);
        }
        for (Conn *c = p->fresh_first; c; c = c->next) {
                fresh++;
        }
        for (Conn *c = p->idle_first; c; c = c->next) {
                idle++;
        }
        metrics_write_header(f, "llmd_connections", "gauge", "Open HTTP connections");
        metrics_write_sample(f, "llmd_connections",
                             (const char *const[]) { "state", "fresh", NULL }, fresh);
        metrics_write_sample(f, "llmd_connections", (const char *const[]) { "state", "idle", NULL },
                             idle);
        metrics_write_sample(f, "llmd_connections", (const char *const[]) { "state", "busy", NULL },
                             p->n_conns - MIN(p->n_conns, fresh + idle));
        metrics_write_header(f, "llmd_build_info", "gauge", "llmd's version");
        metrics_write_sample(f, "llmd_build_info",
                             (const char *const[]) { "version", LLMD_VERSION, NULL }, 1);
}

/* Each ready child whose profile has metrics = true is asked for its own /metrics while the
 * scrape waits (at most PROXY_SCRAPE_TIMEOUT_USEC); its llamacpp:* samples are passed on with a
 * model label. */
#define PROXY_SCRAPE_TIMEOUT_USEC (2 * USEC_PER_SEC)
#define PROXY_SCRAPE_BODY_MAX (1024 * 1024)

typedef struct ScrapeFetch {
        Scrape *scrape;
        /* The child's name, copied: a reload may free the child (its profile removed) while
         * the scrape waits for the others. */
        char *model;
        Upstream *upstream;
        long status;
        Buffer body;
} ScrapeFetch;

struct Scrape {
        Request *request;
        ScrapeFetch *fetches;
        size_t n_fetches, pending;
        sd_event_source *timer;
};

void request_scrape_free(Request *r)
{
        Scrape *s = r->scrape;

        if (!s) {
                return;
        }
        r->scrape = NULL;
        for (size_t i = 0; i < s->n_fetches; i++) {
                if (s->fetches[i].upstream) {
                        upstream_cancel(s->fetches[i].upstream);
                }
                buffer_done(&s->fetches[i].body);
                free(s->fetches[i].model);
        }
        sd_event_source_disable_unref(s->timer);
        free(s->fetches);
        free(s);
}

/* One family of the children's metrics: its HELP and TYPE lines and its samples, relabelled. */
typedef struct Family {
        char *name;
        char *help, *type;
        char **samples;
} Family;

/* A llama-server has about twenty families: past these bounds a child's text is not one's, and
 * reading more would only cost the loop (a search per line over all families so far). */
#define SCRAPE_FAMILIES_MAX 256
#define SCRAPE_SAMPLES_MAX 4096

static Family *family_get(Family **families, size_t *n, const char *name, size_t len)
{
        Family *f;

        for (size_t i = 0; i < *n; i++) {
                if (strlen((*families)[i].name) == len && strneq((*families)[i].name, name, len)) {
                        return &(*families)[i];
                }
        }
        if (*n >= SCRAPE_FAMILIES_MAX) {
                return NULL;
        }
        f = reallocarray(*families, *n + 1, sizeof(Family));
        if (!f) {
                return NULL;
        }
        *families = f;
        f = &f[(*n)++];
        *f = (Family) { .name = strndup(name, len) };
        return f->name ? f : NULL;
}

/* A child's text into families: only llamacpp:* names, each sample given model="NAME". */
static void scrape_parse(Family **families, size_t *n, const char *model, char *text)
{
        char *save = NULL;
        size_t samples = 0;

        for (char *line = strtok_r(text, "\n", &save); line && samples < SCRAPE_SAMPLES_MAX;
             line = strtok_r(NULL, "\n", &save)) {
                bool help = startswith(line, "# HELP "), type = startswith(line, "# TYPE ");
                const char *name = help || type ? line + 7 : line;
                size_t len = metrics_name_length(name);
                bool own_model;
                Family *f;

                line[strcspn(line, "\r")] = '\0'; /* CRLF line ends */
                if (len == 0 || !startswith(name, "llamacpp:")) {
                        continue;
                }
                /* One bad line would make the whole scrape invalid, llmd's own metrics with it;
                 * a label of its own named model too (two of them): such a line is not passed
                 * on (nor its family made, to count for nothing). */
                if (!metrics_line_valid(line, &own_model) || own_model) {
                        continue;
                }
                if (!(f = family_get(families, n, name, len))) {
                        continue;
                }
                if (help || type) {
                        char **slot = help ? &f->help : &f->type;
                        if (!*slot) {
                                *slot = strdup(line);
                        }
                        continue;
                }
                samples++;
                _cleanup_free_ char *label = NULL, *sample = NULL;
                FILE *m = open_memstream(&label, &(size_t) { 0 });
                if (!m) {
                        continue;
                }
                metrics_write_sample(m, "", (const char *const[]) { "model", model, NULL }, 0);
                fclose(m);
                /* label is '{model="NAME"} 0\n': keep '{model="NAME"' */
                *strrchr(label, '}') = '\0';
                if (asprintf(&sample, "%.*s%s%s%s", (int) len, name, label,
                             name[len] == '{' && name[len + 1] != '}' ? "," : "}",
                             name[len] == '{' ? name + len + 1 + (name[len + 1] == '}')
                                              : name + len) >= 0) {
                        (void) strv_consume(&f->samples, TAKE_PTR(sample));
                }
        }
}

static void write_children(Scrape *s, FILE *f)
{
        Family *families = NULL;
        size_t n = 0;

        for (size_t i = 0; i < s->n_fetches; i++) {
                ScrapeFetch *x = &s->fetches[i];

                if (x->status == 200 && buffer_append(&x->body, "", 1) >= 0) {
                        scrape_parse(&families, &n, x->model, x->body.data + x->body.off);
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (families[i].samples) {
                        if (families[i].help) {
                                fprintf(f, "%s\n", families[i].help);
                        }
                        if (families[i].type) {
                                fprintf(f, "%s\n", families[i].type);
                        }
                        STRV_FOREACH(l, families[i].samples) {
                                fprintf(f, "%s\n", *l);
                        }
                }
                free(families[i].name);
                free(families[i].help);
                free(families[i].type);
                strv_free(families[i].samples);
        }
        free(families);
}

static void request_answer_metrics_now(Request *r)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        struct MHD_Response *resp;

        if (!f) {
                request_scrape_free(r);
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        /* Ours alone: thousands of small writes without taking its lock each time. */
        (void) __fsetlocking(f, FSETLOCKING_BYCALLER);
        if (r->proxy->metrics) {
                metrics_write(r->proxy->metrics, f);
        }
        write_gauges(r->proxy, f);
        if (r->scrape) {
                write_children(r->scrape, f);
                request_scrape_free(r);
        }
        if (fclose(f) != 0 || !text) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        resp = MHD_create_response_from_buffer(len, TAKE_PTR(text), MHD_RESPMEM_MUST_FREE);
        if (resp) {
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                        "text/plain; version=0.0.4; charset=utf-8");
                MHD_add_response_header(resp, "Server", "llmd");
        }
        request_answer(r, 200, resp, REQ_EVENT_ANSWER);
}

static void scrape_on_headers(void *userdata, long status, const char *content_type,
                              int64_t content_length)
{
        ScrapeFetch *x = userdata;

        x->status = status;
}

static int scrape_on_data(void *userdata, const char *data, size_t len)
{
        ScrapeFetch *x = userdata;

        if (buffer_pending(&x->body) + len <= PROXY_SCRAPE_BODY_MAX) {
                (void) buffer_append(&x->body, data, len);
        } else {
                x->status = -1; /* too much: left out */
        }
        return 0;
}

static void scrape_on_done(void *userdata, int error, const char *message)
{
        ScrapeFetch *x = userdata;
        Scrape *s = x->scrape;

        x->upstream = NULL;
        if (error < 0) {
                x->status = -1;
        }
        if (--s->pending == 0) {
                request_answer_metrics_now(s->request);
        }
}

static int scrape_on_timeout(sd_event_source *es, uint64_t usec, void *userdata)
{
        Scrape *s = userdata;

        /* Those that did not answer in time are left out. */
        for (size_t i = 0; i < s->n_fetches; i++) {
                if (s->fetches[i].upstream) {
                        upstream_cancel(TAKE_PTR(s->fetches[i].upstream));
                        s->fetches[i].status = -1;
                }
        }
        request_answer_metrics_now(s->request);
        return 0;
}

static const UpstreamCallbacks scrape_callbacks = {
        .headers = scrape_on_headers,
        .data = scrape_on_data,
        .done = scrape_on_done,
};

void request_answer_metrics(Request *r)
{
        Proxy *p = r->proxy;
        size_t n;
        Child **children = supervisor_children(p->supervisor, &n);
        Scrape *s = NULL;

        for (size_t i = 0; i < n; i++) {
                if (child_state(children[i]) != CHILD_READY ||
                    !strv_contains(child_config(children[i])->args, "--metrics")) {
                        continue;
                }
                if (!s) {
                        s = r->scrape = calloc(1, sizeof(Scrape));
                        if (s) {
                                s->request = r;
                                s->fetches = calloc(n, sizeof(ScrapeFetch));
                        }
                        if (!s || !s->fetches) {
                                request_scrape_free(r);
                                break;
                        }
                }
                ScrapeFetch *x = &s->fetches[s->n_fetches];
                *x = (ScrapeFetch) { .scrape = s, .model = strdup(child_name(children[i])) };
                if (!x->model) {
                        continue;
                }
                s->n_fetches++;
                if (upstream_start(
                            p->upstream,
                            &(UpstreamRequest) { .socket_path = child_socket_path(children[i]),
                                                 .method = "GET",
                                                 .path = "/metrics",
                                                 .content_type = "text/plain",
                                                 .accept = "text/plain" },
                            &scrape_callbacks, x, &x->upstream) >= 0) {
                        s->pending++;
                }
        }
        if (!s || s->pending == 0 ||
            sd_event_add_time_relative(p->event, &s->timer, CLOCK_MONOTONIC,
                                       PROXY_SCRAPE_TIMEOUT_USEC, USEC_PER_MSEC, scrape_on_timeout,
                                       s) < 0) {
                request_answer_metrics_now(r);
                return;
        }
        request_suspend(r);
}

/* ---- GET /llmd/activity?since=SEQ&model=NAME ---- */

void request_answer_activity(Request *r)
{
        static const char *const known[] = { "since", "model", NULL };
        _cleanup_free_ char *unknown = NULL, *since = NULL, *model = NULL, *msg = NULL;
        uint64_t from = 0;
        int ks, km;

        if (route_query_unknown(r->route.path, known, &unknown) != 0) {
                if (!unknown ||
                    asprintf(
                            &msg,
                            "unknown query parameter \"%.64s\": /llmd/activity takes since and model",
                            unknown) < 0) {
                        msg = NULL;
                }
                request_answer_error(r, 400, "invalid_request_error",
                                     msg ? msg : "unknown query parameter", NULL);
                return;
        }
        ks = route_query_param(r->route.path, "since", &since);
        km = ks >= 0 ? route_query_param(r->route.path, "model", &model) : 0;
        if (ks == -ENOMEM || km == -ENOMEM) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        if (ks < 0 || km < 0 || (since && parse_u64(since, &from) < 0)) {
                request_answer_error(r, 400, "invalid_request_error",
                                     ks == -ENOTUNIQ || km == -ENOTUNIQ
                                             ? "a query parameter is given twice"
                                     : km < 0 ? "model is not a model's name"
                                              : "since is not a sequence number",
                                     NULL);
                return;
        }
        if (!r->proxy->activity) {
                request_answer_error(r, 500, "server_error", "out of memory", NULL);
                return;
        }
        /* An alias stands for its model, as in the records. */
        const ModelConfig *mc = model ? config_find_model(proxy_config(r->proxy), model) : NULL;
        request_answer(
                r, 200,
                request_json_response(r, json_print_delete(activity_json(r->proxy->activity, from,
                                                                         mc ? mc->name : model))),
                REQ_EVENT_ANSWER);
}
