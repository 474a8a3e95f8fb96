/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <math.h>

#include "metrics.h"
#include "strv.h"
#include "time-util.h"
#include "utf8.h"

/* Bounds of the histograms' buckets, in base units; +Inf is implied. */
static const double buckets_request[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                          1,     2.5,  5,     10,   30,  60,   300 };
static const double buckets_load[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300 };
static const double buckets_rate[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000 };

#define BUCKETS_MAX 16

typedef struct Histogram {
        const double *bounds;
        size_t n_bounds;
        uint64_t counts[BUCKETS_MAX]; /* not cumulative; [n_bounds] is +Inf */
        uint64_t count;
        double sum;
} Histogram;

#define HISTOGRAM(b) ((Histogram) { .bounds = (b), .n_bounds = ELEMENTSOF(b) })

static void histogram_observe(Histogram *h, double v)
{
        size_t i = 0;

        while (i < h->n_bounds && v > h->bounds[i]) {
                i++;
        }
        h->counts[i]++;
        h->count++;
        h->sum += v;
}

#define CODES_MAX 24

/* One model and endpoint. */
typedef struct EndpointSeries {
        char *model;
        const char *endpoint;
        struct {
                unsigned code;
                uint64_t n;
        } codes[CODES_MAX];
        uint64_t other_codes; /* past CODES_MAX distinct codes: code="other" */
        Histogram duration, ttfb;
} EndpointSeries;

typedef enum Restart {
        RESTART_CRASHED_READY,   /* it exited or was found unhealthy while serving */
        RESTART_CRASHED_LOADING, /* while loading */
        _RESTART_MAX,
} Restart;

static const char *const restart_names[_RESTART_MAX] = {
        [RESTART_CRASHED_READY] = "crashed",
        [RESTART_CRASHED_LOADING] = "crashed-loading",
};

/* One model. */
typedef struct ModelSeries {
        char *model; /* "" for requests no model took */
        uint64_t prompt_tokens, cached_tokens, completion_tokens;
        Histogram rate, hold, load;
        uint64_t restarts[_RESTART_MAX];
        uint64_t loading_since; /* usec: its process started; 0 not loading */
        int restart_pending;    /* a Restart after a crash, counted when the process starts */
} ModelSeries;

typedef struct NamedCount {
        const char *name; /* static */
        uint64_t n;
        Histogram h;
} NamedCount;

#define NAMED_MAX 32

struct Metrics {
        EndpointSeries *endpoints;
        size_t n_endpoints;
        ModelSeries *models;
        size_t n_models;
        NamedCount refused[NAMED_MAX];
        NamedCount switches[NAMED_MAX];
        uint64_t evictions[_SERVING_WHY_MAX];
};

int metrics_new(Metrics **ret)
{
        Metrics *m = calloc(1, sizeof(Metrics));

        if (!m) {
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

Metrics *metrics_free(Metrics *m)
{
        if (!m) {
                return NULL;
        }
        for (size_t i = 0; i < m->n_endpoints; i++) {
                free(m->endpoints[i].model);
        }
        for (size_t i = 0; i < m->n_models; i++) {
                free(m->models[i].model);
        }
        free(m->endpoints);
        free(m->models);
        free(m);
        return NULL;
}

/* The series of model, made the first time; NULL without memory. */
static ModelSeries *metrics_model(Metrics *m, const char *model)
{
        ModelSeries *s;

        model = model ? model : "";
        for (size_t i = 0; i < m->n_models; i++) {
                if (streq(m->models[i].model, model)) {
                        return &m->models[i];
                }
        }
        s = reallocarray(m->models, m->n_models + 1, sizeof(ModelSeries));
        if (!s) {
                return NULL;
        }
        m->models = s;
        s = &m->models[m->n_models];
        *s = (ModelSeries) {
                .model = strdup(model),
                .rate = HISTOGRAM(buckets_rate),
                .hold = HISTOGRAM(buckets_request),
                .load = HISTOGRAM(buckets_load),
                .restart_pending = -1,
        };
        if (!s->model) {
                return NULL;
        }
        m->n_models++;
        return s;
}

static EndpointSeries *metrics_endpoint(Metrics *m, const char *model, const char *endpoint)
{
        EndpointSeries *s;

        model = model ? model : "";
        for (size_t i = 0; i < m->n_endpoints; i++) {
                if (streq(m->endpoints[i].endpoint, endpoint) &&
                    streq(m->endpoints[i].model, model)) {
                        return &m->endpoints[i];
                }
        }
        s = reallocarray(m->endpoints, m->n_endpoints + 1, sizeof(EndpointSeries));
        if (!s) {
                return NULL;
        }
        m->endpoints = s;
        s = &m->endpoints[m->n_endpoints];
        *s = (EndpointSeries) {
                .model = strdup(model),
                .endpoint = endpoint,
                .duration = HISTOGRAM(buckets_request),
                .ttfb = HISTOGRAM(buckets_request),
        };
        if (!s->model) {
                return NULL;
        }
        m->n_endpoints++;
        return s;
}

static NamedCount *named_find(NamedCount *t, const char *name, const double *bounds, size_t n)
{
        for (size_t i = 0; i < NAMED_MAX; i++) {
                if (!t[i].name) {
                        t[i] = (NamedCount) { .name = name,
                                              .h = { .bounds = bounds, .n_bounds = n } };
                }
                if (streq(t[i].name, name)) {
                        return &t[i];
                }
        }
        return NULL;
}

void metrics_request_end(Metrics *m, const MetricsRequest *r)
{
        EndpointSeries *e;
        ModelSeries *ms;
        size_t i;

        if (!m) {
                return;
        }
        e = metrics_endpoint(m, r->model, r->endpoint ? r->endpoint : "other");
        if (e) {
                for (i = 0; i < CODES_MAX && e->codes[i].code != 0; i++) {
                        if (e->codes[i].code == r->status) {
                                break;
                        }
                }
                if (i < CODES_MAX) {
                        e->codes[i].code = r->status;
                        e->codes[i].n++;
                } else {
                        e->other_codes++;
                }
                histogram_observe(&e->duration, r->duration_s);
                if (r->ttfb_s >= 0) {
                        histogram_observe(&e->ttfb, r->ttfb_s);
                }
        }
        if (r->refused) {
                NamedCount *n = named_find(m->refused, r->refused, NULL, 0);
                if (n) {
                        n->n++;
                }
        }
        ms = metrics_model(m, r->model);
        if (!ms) {
                return;
        }
        ms->prompt_tokens += (uint64_t) MAX(r->prompt_tokens, 0);
        ms->cached_tokens += (uint64_t) MAX(r->cached_tokens, 0);
        ms->completion_tokens += (uint64_t) MAX(r->completion_tokens, 0);
        if (r->tokens_per_s >= 0) {
                histogram_observe(&ms->rate, r->tokens_per_s);
        }
        if (r->held_s >= 0) {
                histogram_observe(&ms->hold, r->held_s);
        }
}

void metrics_switch_end(Metrics *m, const char *kind, double seconds)
{
        NamedCount *n;

        if (!m) {
                return;
        }
        n = named_find(m->switches, kind, buckets_load, ELEMENTSOF(buckets_load));
        if (n) {
                n->n++;
                histogram_observe(&n->h, seconds);
        }
}

void metrics_serving_event(Metrics *m, const char *model, ServingState old, ServingState new,
                           ServingEvent e, ServingWhy why, uint64_t now_usec)
{
        ModelSeries *s;

        /* A crash while loading stays LOADING: a restart all the same. */
        if (!m || (old == new &&e != SERVING_EVENT_CRASHED)) {
                return;
        }
        s = metrics_model(m, model);
        if (!s) {
                return;
        }
        if (old == SERVING_LOADING && new == SERVING_READY && s->loading_since > 0) {
                histogram_observe(&s->load, (double) (now_usec - s->loading_since) / USEC_PER_SEC);
        }
        if (new != SERVING_LOADING) {
                s->loading_since = 0;
                s->restart_pending = -1; /* stopped or failed instead: no restart came */
        }
        if (e == SERVING_EVENT_CRASHED) {
                /* Counted when the new process starts (metrics_model_started()): a load that
                 * gives up on it after the crash restarts nothing. The wait before it is not
                 * load time. */
                s->restart_pending =
                        old == SERVING_LOADING ? RESTART_CRASHED_LOADING : RESTART_CRASHED_READY;
                s->loading_since = 0;
        }
        /* A resident model leaving: an eviction, with its reason. */
        if (serving_state_resident(old) && serving_state_leaving(new) && why >= 0 &&
            why < _SERVING_WHY_MAX) {
                m->evictions[why]++;
        }
}

void metrics_model_started(Metrics *m, const char *model, uint64_t now_usec)
{
        ModelSeries *s = m ? metrics_model(m, model) : NULL;

        if (!s) {
                return;
        }
        if (s->restart_pending >= 0 && s->restart_pending < _RESTART_MAX) {
                s->restarts[s->restart_pending]++;
        }
        s->restart_pending = -1;
        s->loading_since = now_usec;
}

/* ---- reading a child's text ---- */

size_t metrics_name_length(const char *s)
{
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:");
}

static const char *skip_blanks(const char *p)
{
        return p + strspn(p, " \t");
}

/* A label set's body after '{': name="value" pairs, escapes \\ \" \n only; *ret_model when one
 * is named model. The end, just past '}', or NULL. */
static const char *read_labels(const char *p, bool *ret_model)
{
        for (;;) {
                size_t n;

                p = skip_blanks(p);
                if (*p == '}') {
                        return p + 1;
                }
                n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
                if (n == 0 || (*p >= '0' && *p <= '9')) {
                        return NULL;
                }
                *ret_model = *ret_model || (n == 5 && strneq(p, "model", 5));
                p = skip_blanks(p + n);
                if (*p++ != '=') {
                        return NULL;
                }
                p = skip_blanks(p);
                if (*p++ != '"') {
                        return NULL;
                }
                while (*p != '"') {
                        if (*p == '\0' || *p == '\n') {
                                return NULL;
                        }
                        if (*p == '\\' && !strchr("\\\"n", *++p)) {
                                return NULL;
                        }
                        p++;
                }
                p = skip_blanks(p + 1);
                if (*p == ',') {
                        p++;
                } else if (*p != '}') {
                        return NULL;
                }
        }
}

static bool read_number(const char *p, const char **ret_end, bool integer)
{
        char *end;

        errno = 0;
        if (integer) {
                (void) strtoll(p, &end, 10);
        } else {
                (void) strtod(p, &end);
        }
        *ret_end = end;
        return end != p && (errno == 0 || errno == ERANGE);
}

bool metrics_line_valid(const char *line, bool *ret_model)
{
        static const char *const types[] = { "counter", "gauge",   "histogram",
                                             "summary", "untyped", NULL };
        size_t n = metrics_name_length(line);
        const char *p;

        *ret_model = false;
        if (!utf8_valid(line, strlen(line))) {
                return false;
        }
        if ((p = startswith(line, "# TYPE "))) {
                n = metrics_name_length(p);
                return n > 0 && p[n] == ' ' && strv_contains((char **) types, p + n + 1);
        }
        if ((p = startswith(line, "# HELP "))) {
                n = metrics_name_length(p);
                if (n == 0 || (p[n] != ' ' && p[n] != '\0')) {
                        return false;
                }
                for (p += n; *p; p++) {
                        if (*p == '\\' && !strchr("\\n", *++p)) {
                                return false;
                        }
                }
                return true;
        }
        if (n == 0 || (line[0] >= '0' && line[0] <= '9')) {
                return false;
        }
        p = line + n;
        if (*p == '{' && !(p = read_labels(p + 1, ret_model))) {
                return false;
        }
        /* The value, then an optional timestamp, then nothing. */
        if ((*p != ' ' && *p != '\t') || !read_number(skip_blanks(p), &p, false)) {
                return false;
        }
        p = skip_blanks(p);
        if (*p != '\0' && !read_number(p, &p, true)) {
                return false;
        }
        return *skip_blanks(p) == '\0';
}

/* ---- the text format ---- */

void metrics_write_header(FILE *f, const char *name, const char *type, const char *help)
{
        fputs("# HELP ", f);
        fputs(name, f);
        fputc(' ', f);
        fputs(help, f);
        fputs("\n# TYPE ", f);
        fputs(name, f);
        fputc(' ', f);
        fputs(type, f);
        fputc('\n', f);
}

static void write_label_value(FILE *f, const char *v)
{
        while (*v) {
                size_t n = strcspn(v, "\\\"\n");

                fwrite(v, 1, n, f);
                v += n;
                if (*v) {
                        fputs(*v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", f);
                        v++;
                }
        }
}

static void write_uint(FILE *f, uint64_t u)
{
        char buf[24], *p = buf + sizeof(buf);

        do {
                *--p = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0);
        fwrite(p, 1, (size_t) (buf + sizeof(buf) - p), f);
}

static void write_value(FILE *f, double v)
{
        if (isinf(v)) {
                fputs(v > 0 ? "+Inf" : "-Inf", f);
        } else if (v == floor(v) && fabs(v) < 1e15) {
                /* Whole numbers (counts, bytes, states) are most of a scrape: no printf. */
                if (v < 0) {
                        fputc('-', f);
                }
                write_uint(f, (uint64_t) fabs(v));
        } else {
                fprintf(f, "%.17g", v);
        }
}

static void write_labels(FILE *f, const char *const *labels, const char *le)
{
        bool any = false;

        for (size_t i = 0; labels && labels[i]; i += 2) {
                fputs(any ? "," : "{", f);
                fputs(labels[i], f);
                fputs("=\"", f);
                write_label_value(f, labels[i + 1] ? labels[i + 1] : "");
                fputc('"', f);
                any = true;
        }
        if (le) {
                fputs(any ? ",le=\"" : "{le=\"", f);
                fputs(le, f);
                fputc('"', f);
                any = true;
        }
        if (any) {
                fputc('}', f);
        }
}

void metrics_write_sample(FILE *f, const char *name, const char *const *labels, double value)
{
        fputs(name, f);
        write_labels(f, labels, NULL);
        fputc(' ', f);
        write_value(f, value);
        fputc('\n', f);
}

/* The le="..." of bound i of bounds (one of the tables above), written once. */
static const char *bound_string(const double *bounds, size_t n, size_t i)
{
        static struct {
                const double *bounds;
                char le[BUCKETS_MAX][24];
        } seen[8];

        for (size_t k = 0; k < ELEMENTSOF(seen); k++) {
                if (!seen[k].bounds) {
                        seen[k].bounds = bounds;
                        for (size_t j = 0; j < n; j++) {
                                snprintf(seen[k].le[j], sizeof(seen[k].le[j]), "%g", bounds[j]);
                        }
                }
                if (seen[k].bounds == bounds) {
                        return seen[k].le[i];
                }
        }
        return NULL;
}

static void write_histogram(FILE *f, const char *name, const char *const *labels,
                            const Histogram *h)
{
        uint64_t cumulative = 0;
        char le[32];

        for (size_t i = 0; i <= h->n_bounds; i++) {
                const char *b = i < h->n_bounds ? bound_string(h->bounds, h->n_bounds, i) : "+Inf";

                cumulative += h->counts[i];
                if (!b) {
                        snprintf(le, sizeof(le), "%g", h->bounds[i]);
                        b = le;
                }
                fputs(name, f);
                fputs("_bucket", f);
                write_labels(f, labels, b);
                fputc(' ', f);
                write_uint(f, cumulative);
                fputc('\n', f);
        }
        fputs(name, f);
        fputs("_sum", f);
        write_labels(f, labels, NULL);
        fputc(' ', f);
        write_value(f, h->sum);
        fputc('\n', f);
        fputs(name, f);
        fputs("_count", f);
        write_labels(f, labels, NULL);
        fputc(' ', f);
        write_uint(f, h->count);
        fputc('\n', f);
}

static void write_requests(const Metrics *m, FILE *f)
{
        metrics_write_header(f, "llmd_requests_total", "counter",
                             "Requests answered, by the model that took them, path and status");
        for (size_t i = 0; i < m->n_endpoints; i++) {
                const EndpointSeries *e = &m->endpoints[i];
                char code[16];

                for (size_t j = 0; j < CODES_MAX && e->codes[j].code != 0; j++) {
                        snprintf(code, sizeof(code), "%u", e->codes[j].code);
                        metrics_write_sample(f, "llmd_requests_total",
                                             (const char *const[]) { "model", e->model, "endpoint",
                                                                     e->endpoint, "code", code,
                                                                     NULL },
                                             (double) e->codes[j].n);
                }
                if (e->other_codes > 0) {
                        metrics_write_sample(f, "llmd_requests_total",
                                             (const char *const[]) { "model", e->model, "endpoint",
                                                                     e->endpoint, "code", "other",
                                                                     NULL },
                                             (double) e->other_codes);
                }
        }
        metrics_write_header(f, "llmd_request_duration_seconds", "histogram",
                             "From the request line to the last byte of the answer");
        for (size_t i = 0; i < m->n_endpoints; i++) {
                const EndpointSeries *e = &m->endpoints[i];
                write_histogram(
                        f, "llmd_request_duration_seconds",
                        (const char *const[]) { "model", e->model, "endpoint", e->endpoint, NULL },
                        &e->duration);
        }
        metrics_write_header(f, "llmd_time_to_first_byte_seconds", "histogram",
                             "From the request line to the child's answer headers");
        for (size_t i = 0; i < m->n_endpoints; i++) {
                const EndpointSeries *e = &m->endpoints[i];
                write_histogram(
                        f, "llmd_time_to_first_byte_seconds",
                        (const char *const[]) { "model", e->model, "endpoint", e->endpoint, NULL },
                        &e->ttfb);
        }
}

typedef enum ModelCounter {
        MODEL_PROMPT,
        MODEL_CACHED,
        MODEL_COMPLETION,
        _MODEL_COUNTER_MAX,
} ModelCounter;

static void write_models(const Metrics *m, FILE *f)
{
        static const struct {
                const char *name, *help;
                size_t offset;
        } counters[_MODEL_COUNTER_MAX] = {
                [MODEL_PROMPT] = { "llmd_prompt_tokens_total",
                                   "Prompt tokens of the answers, cached ones included",
                                   offsetof(ModelSeries, prompt_tokens) },
                [MODEL_CACHED] = { "llmd_cached_prompt_tokens_total",
                                   "Prompt tokens taken from the child's cache",
                                   offsetof(ModelSeries, cached_tokens) },
                [MODEL_COMPLETION] = { "llmd_completion_tokens_total", "Tokens generated",
                                       offsetof(ModelSeries, completion_tokens) },
        };
        static const struct {
                const char *name, *help;
                size_t offset;
        } histograms[] = {
                { "llmd_generation_tokens_per_second", "Generation speed of each answer",
                  offsetof(ModelSeries, rate) },
                { "llmd_hold_wait_seconds", "How long held requests waited for their model",
                  offsetof(ModelSeries, hold) },
                { "llmd_model_load_seconds", "From starting a child to its being ready",
                  offsetof(ModelSeries, load) },
        };

        for (size_t c = 0; c < _MODEL_COUNTER_MAX; c++) {
                metrics_write_header(f, counters[c].name, "counter", counters[c].help);
                for (size_t i = 0; i < m->n_models; i++) {
                        const ModelSeries *s = &m->models[i];
                        uint64_t v = *(const uint64_t *) ((const char *) s + counters[c].offset);

                        if (*s->model) {
                                metrics_write_sample(
                                        f, counters[c].name,
                                        (const char *const[]) { "model", s->model, NULL },
                                        (double) v);
                        }
                }
        }
        for (size_t c = 0; c < ELEMENTSOF(histograms); c++) {
                metrics_write_header(f, histograms[c].name, "histogram", histograms[c].help);
                for (size_t i = 0; i < m->n_models; i++) {
                        const ModelSeries *s = &m->models[i];

                        if (*s->model) {
                                write_histogram(f, histograms[c].name,
                                                (const char *const[]) { "model", s->model, NULL },
                                                (const Histogram *) ((const char *) s +
                                                                     histograms[c].offset));
                        }
                }
        }
        metrics_write_header(f, "llmd_model_restarts_total", "counter",
                             "Children that exited or went unhealthy and were started again");
        for (size_t i = 0; i < m->n_models; i++) {
                const ModelSeries *s = &m->models[i];

                for (size_t r = 0; r < _RESTART_MAX && *s->model; r++) {
                        metrics_write_sample(f, "llmd_model_restarts_total",
                                             (const char *const[]) { "model", s->model, "reason",
                                                                     restart_names[r], NULL },
                                             (double) s->restarts[r]);
                }
        }
}

void metrics_write(const Metrics *m, FILE *f)
{
        write_requests(m, f);
        write_models(m, f);
        metrics_write_header(f, "llmd_refused_total", "counter",
                             "Requests llmd answered with an error itself, by its type");
        for (size_t i = 0; i < NAMED_MAX && m->refused[i].name; i++) {
                metrics_write_sample(f, "llmd_refused_total",
                                     (const char *const[]) { "reason", m->refused[i].name, NULL },
                                     (double) m->refused[i].n);
        }
        metrics_write_header(f, "llmd_switches_total", "counter",
                             "Switches of the active model, by how they went");
        for (size_t i = 0; i < NAMED_MAX && m->switches[i].name; i++) {
                metrics_write_sample(f, "llmd_switches_total",
                                     (const char *const[]) { "kind", m->switches[i].name, NULL },
                                     (double) m->switches[i].n);
        }
        metrics_write_header(f, "llmd_switch_duration_seconds", "histogram",
                             "From asking for a switch to its end");
        for (size_t i = 0; i < NAMED_MAX && m->switches[i].name; i++) {
                write_histogram(f, "llmd_switch_duration_seconds",
                                (const char *const[]) { "kind", m->switches[i].name, NULL },
                                &m->switches[i].h);
        }
        metrics_write_header(f, "llmd_evictions_total", "counter",
                             "Resident models stopped, by why");
        for (ServingWhy w = 0; w < _SERVING_WHY_MAX; w++) {
                if (w != SERVING_WHY_NONE) {
                        metrics_write_sample(
                                f, "llmd_evictions_total",
                                (const char *const[]) { "reason", serving_why_to_string(w), NULL },
                                (double) m->evictions[w]);
                }
        }
}
