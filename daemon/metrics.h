/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>

#include "macro.h"
#include "serving.h"

/*
 * llmd's counters and histograms, and the Prometheus text format (0.0.4) they are read in. The
 * proxy and the supervisor record into them with one call per event (a request's end, a
 * switch's end, a model's change of state); series are made the first time a label set is seen
 * and kept, so an event costs a lookup and a few additions, no allocation. What is a state
 * rather than an event (requests in flight, a model's state, GPU memory) is not recorded here:
 * whoever answers the scrape reads it then, with metrics_write_header() and
 * metrics_write_sample().
 */

typedef struct Metrics Metrics;

int metrics_new(Metrics **ret);
Metrics *metrics_free(Metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Metrics *, metrics_free);

typedef struct MetricsRequest {
        const char *model;    /* the profile that served it (or was to), or NULL */
        const char *endpoint; /* a label from a fixed set (Route.endpoint) */
        unsigned status;
        const char *refused; /* llmd answered it with an error itself: why (an error type) */
        double duration_s;
        double ttfb_s; /* to the child's headers; < 0 none */
        double held_s; /* < 0 never held */
        int64_t prompt_tokens, cached_tokens, completion_tokens; /* < 0 unknown */
        double tokens_per_s;                                     /* < 0 unknown */
} MetricsRequest;

/* m may be NULL (nothing is recorded). */
void metrics_request_end(Metrics *m, const MetricsRequest *r);
/* kind: "resident", "beside", "replace", "failed", "superseded". */
void metrics_switch_end(Metrics *m, const char *kind, double seconds);
/* A model's serving state went from old to new on event e (why, as the machine keeps it). */
void metrics_serving_event(Metrics *m, const char *model, ServingState old, ServingState new,
                           ServingEvent e, ServingWhy why, uint64_t now_usec);

/* A model's process started (a load from there to ready is its load time; after a crash, a
 * restart). */
void metrics_model_started(Metrics *m, const char *model, uint64_t now_usec);

/* The length of the metric name at the start of s (letters, digits, _ and :). */
size_t metrics_name_length(const char *s);
/* Whether line (one line of a child's /metrics, without its end) is valid in Prometheus' text
 * format 0.0.4: a # TYPE or # HELP line, or a sample (name, labels, a value, an optional
 * timestamp, nothing else; UTF-8). *ret_model: the sample has a label named model. Comments
 * other than TYPE and HELP are not valid here (they are not passed on). */
bool metrics_line_valid(const char *line, bool *ret_model);

/* All of m in the text format. */
void metrics_write(const Metrics *m, FILE *f);

/* For the gauges read at scrape time: "# HELP" and "# TYPE" once per name, then samples. labels
 * is NULL or a NULL-terminated list of name, value pairs (values escaped here). */
void metrics_write_header(FILE *f, const char *name, const char *type, const char *help);
void metrics_write_sample(FILE *f, const char *name, const char *const *labels, double value);
