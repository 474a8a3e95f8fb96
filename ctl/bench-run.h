/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);
#define _cleanup_json_ _cleanup_(cJSON_Deletep)

/*
 * One measured request of llmctl bench: the server-sent events of a streamed chat completion
 * are fed in as they arrive, each piece with the time it arrived, and the run's figures come
 * out: time to first token, tokens, the client-side rate over the generation phase, and
 * llama-server's own `timings` from the final chunk. No I/O here: bench.c reads the socket.
 */

typedef enum BenchEnd {
        BENCH_END_COMPLETE, /* max_tokens generated */
        BENCH_END_EARLY,    /* the model stopped before max_tokens: EOS, or the server's limit */
        BENCH_END_ERROR,    /* an HTTP error, an error event, a stream cut short */
        BENCH_END_TIMEOUT,  /* nothing arrived for the timeout */
        _BENCH_END_MAX,
} BenchEnd;

const char *bench_end_to_string(BenchEnd e);

/* llama-server's figures, from the `timings` object of the final chunk. */
typedef struct BenchTimings {
        bool present;
        double prompt_n, prompt_ms, prompt_per_second;
        double predicted_n, predicted_ms, predicted_per_second;
} BenchTimings;

#define BENCH_LINE_MAX (1024 * 1024) /* one event line; llama-server's are a few hundred bytes */
#define BENCH_TEXT_MAX (4 * 1024 * 1024) /* of the content, and of the reasoning, collected */
#define BENCH_ERROR_BODY_MAX 4096 /* of a body that is not an event stream, for the message */

typedef struct BenchRun {
        unsigned max_tokens;
        uint64_t start_usec;            /* the request was sent */
        uint64_t first_usec, last_usec; /* the first and the last token event; 0: none */
        unsigned content_events, reasoning_events;
        char *finish_reason; /* of the final chunk */
        BenchTimings timings;
        bool done;    /* data: [DONE] */
        char *error;  /* why it failed (set by an error event, or finish) */
        BenchEnd end; /* set by bench_run_finish() */

        /* the text of the deltas, kept when collect is set (llmctl bench --suite quality) */
        bool collect;
        char *content, *reasoning;
        size_t content_len, reasoning_len;

        /* the parser */
        char *line;
        size_t line_len, line_size;
        char *other; /* what came that is not an event: an error body */
        size_t other_len;
} BenchRun;

void bench_run_init(BenchRun *r, unsigned max_tokens, uint64_t start_usec);
void bench_run_done(BenchRun *r);
/* Keeps the text of content and reasoning_content deltas from now on. */
void bench_run_collect(BenchRun *r);

/* Bytes of the response body, arrived at now_usec. -EMSGSIZE for a line beyond BENCH_LINE_MAX,
 * -ENOMEM. */
int bench_run_feed(BenchRun *r, const char *data, size_t len, uint64_t now_usec);

/* The response is over: http_status is its status (0: none came), transport_error what went
 * wrong on the connection (NULL: nothing), timed_out whether that was the timeout. Sets end
 * (and error). -ENOMEM. */
int bench_run_finish(BenchRun *r, long http_status, const char *transport_error, bool timed_out);

/* The figures of a finished run; NAN where there is none. */
double bench_run_tokens(const BenchRun *r);      /* llama-server's predicted_n, else the events */
double bench_run_ttft_ms(const BenchRun *r);     /* to the first content or reasoning delta */
double bench_run_rate(const BenchRun *r);        /* (tokens - 1) / (last - first) */
double bench_run_server_rate(const BenchRun *r); /* predicted_per_second */
/* Whether its figures count: it generated tokens and was not cut off by an error. */
bool bench_run_usable(const BenchRun *r);
