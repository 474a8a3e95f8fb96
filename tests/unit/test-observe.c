/* SPDX-License-Identifier: MIT */
/* What an answer cost (json_answer_*), the activity ring and the metrics' text. */
#include <math.h>
#include <stdio.h>

#include "activity.h"
#include "json-scan.h"
#include "metrics.h"
#include "tests.h"

/* llama-server's answers, as recorded (llama-server-samples/). */
static const char chat[] =
        "{\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\" USL \\\"usage\\\":{\\\"prompt_tokens\\\":99}\"}}],"
        "\"created\":1795716355,\"model\":\"m\",\"object\":\"chat.completion\",\"usage\":{"
        "\"completion_tokens\":8,\"prompt_tokens\":21,\"total_tokens\":29,"
        "\"prompt_tokens_details\":{\"cached_tokens\":3}},\"id\":\"chatcmpl-p3\",\"timings\":{"
        "\"cache_n\":3,\"prompt_n\":18,\"prompt_ms\":2.442,\"predicted_n\":8,\"predicted_ms\":"
        "7.029,\"predicted_per_second\":995.8742353108549}}";

static const char stream[] =
        "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":"
        "\"assistant\",\"content\":null}}],\"created\":1,\"id\":\"c\",\"object\":\"x\"}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" a\"}}]}\n\n"
        "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}],"
        "\"timings\":{\"cache_n\":10,\"prompt_n\":1,\"predicted_n\":2,"
        "\"predicted_per_second\":688.5}}\n\n"
        "data: {\"choices\":[],\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":11,"
        "\"prompt_tokens_details\":{\"cached_tokens\":10}}}\n\n"
        "data: [DONE]\n\n";

static JsonAnswerTokens feed_in_pieces(const char *s, bool sse, size_t piece)
{
        JsonAnswer a;
        size_t n = strlen(s);

        json_answer_init(&a, sse);
        for (size_t i = 0; i < n; i += piece) {
                json_answer_feed(&a, s + i, MIN(piece, n - i));
        }
        return json_answer_tokens(&a);
}

/* s read in pieces of every size from 1 by step: the same tokens each time. */
static void check_in_pieces(const char *s, bool sse, size_t step, JsonAnswerTokens want)
{
        for (size_t piece = 1; piece <= strlen(s) + 1; piece += step) {
                JsonAnswerTokens t = feed_in_pieces(s, sse, piece);

                check_inteq(t.prompt, want.prompt);
                check_inteq(t.cached, want.cached);
                check_inteq(t.completion, want.completion);
                check(fabs(t.per_second - want.per_second) < 1e-9);
        }
}

TEST(json_answer_chat)
{
        /* Any split of the bytes reads the same; the "usage" inside a string is not one. */
        check_in_pieces(chat, false, 1,
                        (JsonAnswerTokens) { .prompt = 21,
                                             .cached = 3,
                                             .completion = 8,
                                             .per_second = 995.8742353108549 });
}

TEST(json_answer_stream)
{
        check_in_pieces(stream, true, 7,
                        (JsonAnswerTokens) {
                                .prompt = 11, .cached = 10, .completion = 2, .per_second = 688.5 });
}

/* A Responses stream (the usage inside "response") and a Messages one (input tokens inside
 * "message" first, output tokens at the top at the end), as the simulator records them from
 * llama-server's; a "usage" deeper in is not the answer's. */
static const char responses[] =
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":"
        "\"r\",\"status\":\"in_progress\",\"output\":[]}}\n\n"
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{"
        "\"id\":\"r\",\"output\":[{\"type\":\"message\",\"usage\":{\"input_tokens\":99}}],"
        "\"usage\":{\"input_tokens\":40,\"output_tokens\":6,\"total_tokens\":46,"
        "\"input_tokens_details\":{\"cached_tokens\":32}}},\"timings\":{\"prompt_n\":8,"
        "\"cache_n\":32,\"predicted_n\":6,\"predicted_per_second\":50.5}}\n\n";

static const char messages[] =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
        "\"usage\":{\"input_tokens\":17,\"output_tokens\":0}}}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n";

TEST(json_answer_responses_and_messages)
{
        check_in_pieces(responses, true, 5,
                        (JsonAnswerTokens) {
                                .prompt = 40, .cached = 32, .completion = 6, .per_second = 50.5 });
        check_in_pieces(messages, true, 3,
                        (JsonAnswerTokens) {
                                .prompt = 17, .cached = -1, .completion = 5, .per_second = -1 });
}

TEST(json_answer_timings_only)
{
        /* /completion: timings without usage. */
        JsonAnswerTokens t = feed_in_pieces(
                "{\"content\":\"x\",\"tokens_cached\":7,\"timings\":{\"cache_n\":3,\"prompt_n\":1,"
                "\"predicted_n\":4,\"predicted_per_second\":933.1}}",
                false, 5);

        check_inteq(t.prompt, 4);
        check_inteq(t.cached, 3);
        check_inteq(t.completion, 4);
}

TEST(json_answer_nothing_or_garbage)
{
        static const char *const bodies[] = {
                "",
                "[1,2,3]",
                "{\"usage\":null,\"timings\":\"x\"}",
                "{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":-3}}",
                "{\"x\":{\"usage\":{\"prompt_tokens\":5}}}", /* not top-level */
                "{\"usage\":{\"prompt_tokens\":1e999999}}",
                "}}}]]]\"\"\\",
                "{\"usage\":{\"prompt_tokens\":123456789012345678901234567890123456789}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                JsonAnswerTokens t = feed_in_pieces(bodies[i], i % 2, 3);

                check(t.prompt == -1 && t.completion == -1 && t.cached == -1 && t.per_second == -1);
        }
}

TEST(json_answer_stream_cut_mid_event)
{
        /* An event cut short by a line end does not swallow the next one. */
        JsonAnswerTokens t = feed_in_pieces(
                "data: {\"choices\":[{\"delta\":{\"content\":\"abc\n\n"
                "data: {\"usage\":{\"completion_tokens\":5,\"prompt_tokens\":2}}\n\n",
                true, 4);

        check_inteq(t.completion, 5);
        check_inteq(t.prompt, 2);
}

TEST(activity_ring)
{
        _cleanup_(activity_freep) Activity *a = NULL;
        cJSON *j, *recs;

        check_inteq(activity_new(3, &a), 0);
        for (int i = 0; i < 5; i++) {
                ActivityRecord *r = activity_add(a);
                check(r && r->seq == (uint64_t) i + 1 && r->prompt_tokens == -1);
                snprintf(r->model, sizeof(r->model), "m%d", i % 2);
        }
        check_inteq(activity_next_seq(a), 6);
        j = activity_json(a, 0, NULL);
        recs = cJSON_GetObjectItem(j, "records");
        check_inteq(cJSON_GetArraySize(recs), 3); /* the newest 3, oldest first */
        check_inteq(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 0), "seq")->valueint, 3);
        check(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 0), "key")));
        cJSON_Delete(j);
        j = activity_json(a, 5, NULL);
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "records")), 1);
        cJSON_Delete(j);
        j = activity_json(a, 0, "m0");
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "records")), 2); /* 3 and 5 */
        cJSON_Delete(j);
        /* Smaller: the newest stay. Larger: they all stay, and more fit. */
        check_inteq(activity_resize(a, 2), 0);
        j = activity_json(a, 0, NULL);
        recs = cJSON_GetObjectItem(j, "records");
        check_inteq(cJSON_GetArraySize(recs), 2);
        check_inteq(cJSON_GetObjectItem(cJSON_GetArrayItem(recs, 0), "seq")->valueint, 4);
        cJSON_Delete(j);
        check_inteq(activity_resize(a, 10), 0);
        check(activity_add(a)->seq == 6);
        j = activity_json(a, 0, NULL);
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "records")), 3);
        cJSON_Delete(j);
        check_inteq(activity_resize(a, 0), 0);
        check(activity_add(a) == NULL);
        j = activity_json(a, 0, NULL);
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "records")), 0);
        cJSON_Delete(j);
}

TEST(activity_copy_cuts_whole_characters)
{
        char b[8];

        activity_copy(b, sizeof(b), "abcdé"); /* 6 bytes: fits */
        check_streq(b, "abcdé");
        activity_copy(b, sizeof(b), "abcdef名"); /* the 3 bytes of 名 do not fit: none */
        check_streq(b, "abcdef");
        activity_copy(b, sizeof(b),
                      "a\xff\xfe"
                      "b");
        check_streq(b, "a??b");
        activity_copy(b, sizeof(b), NULL);
        check_streq(b, "");
}

TEST(metrics_text)
{
        _cleanup_(metrics_freep) Metrics *m = NULL;
        _cleanup_free_ char *text = NULL;
        size_t len;
        FILE *f;

        check_inteq(metrics_new(&m), 0);
        metrics_request_end(m, &(MetricsRequest) { .model = "q\"\\\n",
                                                   .endpoint = "/x",
                                                   .status = 200,
                                                   .duration_s = 0.3,
                                                   .ttfb_s = 0.01,
                                                   .held_s = -1,
                                                   .prompt_tokens = 5,
                                                   .completion_tokens = 2,
                                                   .cached_tokens = -1,
                                                   .tokens_per_s = 30 });
        metrics_request_end(m, &(MetricsRequest) { .endpoint = "/x",
                                                   .status = 401,
                                                   .refused = "authentication_error",
                                                   .ttfb_s = -1,
                                                   .held_s = -1,
                                                   .prompt_tokens = -1,
                                                   .cached_tokens = -1,
                                                   .completion_tokens = -1,
                                                   .tokens_per_s = -1 });
        metrics_switch_end(m, "beside", 1.5);
        metrics_serving_event(m, "q", SERVING_READY, SERVING_DRAINING, SERVING_EVENT_UNLOAD,
                              SERVING_WHY_IDLE, 0);
        /* A crash while loading: a restart when the new process starts, and the load time
         * from there (1500 to 2000), not from the crash. A crash that no start follows (the
         * load gave up) is none. */
        metrics_serving_event(m, "q", SERVING_LOADING, SERVING_LOADING, SERVING_EVENT_CRASHED,
                              SERVING_WHY_NONE, 1000);
        metrics_model_started(m, "q", 1500);
        metrics_serving_event(m, "q", SERVING_LOADING, SERVING_READY, SERVING_EVENT_READY,
                              SERVING_WHY_NONE, 2000);
        metrics_model_started(m, "r", 0);
        metrics_serving_event(m, "r", SERVING_LOADING, SERVING_LOADING, SERVING_EVENT_CRASHED,
                              SERVING_WHY_NONE, 1000);
        metrics_serving_event(m, "r", SERVING_LOADING, SERVING_FAILED, SERVING_EVENT_FAILED,
                              SERVING_WHY_NONE, 1000);
        metrics_request_end(m, &(MetricsRequest) { .endpoint = "o"
                                                               "ther",
                                                   .status = 400,
                                                   .ttfb_s = -1,
                                                   .held_s = -1,
                                                   .prompt_tokens = -1,
                                                   .cached_tokens = -1,
                                                   .completion_tokens = -1,
                                                   .tokens_per_s = -1 });
        metrics_request_end(m, &(MetricsRequest) { .status = 400,
                                                   .ttfb_s = -1,
                                                   .held_s = -1,
                                                   .prompt_tokens = -1,
                                                   .cached_tokens = -1,
                                                   .completion_tokens = -1,
                                                   .tokens_per_s = -1 });
        check(f = open_memstream(&text, &len));
        metrics_write(m, f);
        fclose(f);
        /* Label values escaped as the format says. */
        check(strstr(
                text,
                "llmd_requests_total{model=\"q\\\"\\\\\\n\",endpoint=\"/x\",code=\"200\"} 1\n"));
        check(strstr(
                text,
                "llmd_request_duration_seconds_bucket{model=\"q\\\"\\\\\\n\",endpoint=\"/x\",le=\"0.25\"} 0\n"));
        check(strstr(
                text,
                "llmd_request_duration_seconds_bucket{model=\"q\\\"\\\\\\n\",endpoint=\"/x\",le=\"0.5\"} 1\n"));
        check(strstr(text, "llmd_requests_total{model=\"\",endpoint=\"/x\",code=\"401\"} 1\n"));
        check(strstr(text, "llmd_refused_total{reason=\"authentication_error\"} 1\n"));
        check(strstr(text, "llmd_switch_duration_seconds_sum{kind=\"beside\"} 1.5\n"));
        check(strstr(text, "llmd_evictions_total{reason=\"unload-after\"} 1\n"));
        check(strstr(text, "llmd_prompt_tokens_total{model=\"q\\\"\\\\\\n\"} 5\n"));
        check(strstr(text,
                     "llmd_model_restarts_total{model=\"q\",reason=\"crashed-loading\"} 1\n"));
        check(strstr(text, "llmd_model_load_seconds_count{model=\"q\"} 1\n"));
        check(strstr(text, "llmd_model_load_seconds_sum{model=\"q\"} 0.00050000000000000001\n"));
        check(!strstr(text, "llmd_model_restarts_total{model=\"r\",reason=\"crashed-loading\"} 1"));
        /* "other" from anywhere is one series. */
        check(strstr(text, "llmd_requests_total{model=\"\",endpoint=\"other\",code=\"400\"} 2\n"));
}

/* A child's /metrics lines: what passes on, and what would make the whole scrape invalid. */
TEST(metrics_line_valid)
{
        static const struct {
                const char *line;
                bool valid, model;
        } t[] = {
                { "llamacpp:prompt_tokens_total 39", true, false },
                { "llamacpp:requests_processing 0 1796450259000", true, false },
                { "llamacpp:x{a=\"b\",c=\"d\"} 1.5e3", true, false },
                { "llamacpp:x{a=\"b\",} +Inf", true, false },
                { "llamacpp:x{a=\"q\\\"uote\\\\ \\n\"} NaN", true, false },
                { "llamacpp:x{} -1", true, false },
                { "# TYPE llamacpp:x counter", true, false },
                { "# HELP llamacpp:x Total \\\\ and \\n", true, false },
                { "# HELP llamacpp:x", true, false },
                { "llamacpp:x{model=\"evil\"} 1", true, true },
                { "llamacpp:x{ model=\"evil\"} 1", true, true },
                { "llamacpp:x{a=\"x\", model=\"evil\"} 1", true, true },
                { "llamacpp:x{a=\"}\",model=\"evil\"} 1", true, true },
                { "llamacpp:x{models=\"a\"} 1", true, false },
                /* Each of these would fail the scrape. */
                { "llamacpp:foo", false, false },
                { "llamacpp:foo ", false, false },
                { "llamacpp:foo 1 2 3", false, false },
                { "llamacpp:foo 1 # {model=\"x\"}", false, false },
                { "llamacpp:foo one", false, false },
                { "llamacpp:foo{a=\"b\" 1", false, false },
                { "llamacpp:foo{a=b} 1", false, false },
                { "llamacpp:foo{a=\"\\x\"} 1", false, false },
                { "llamacpp:foo{1a=\"b\"} 1", false, false },
                { "llamacpp:foo{a=\"\xff\xfe\"} 1", false, false },
                { "# TYPE llamacpp:foo bogus", false, false },
                { "# TYPE llamacpp:foo counter extra", false, false },
                { "# HELP llamacpp:foo bad \\escape", false, false },
                { "# a comment", false, false },
                { "1llamacpp 1", false, false },
                { "", false, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                bool model = false, valid = metrics_line_valid(t[i].line, &model);

                if (valid != t[i].valid || model != t[i].model) {
                        fprintf(stderr, "line %zu: %s: valid %d model %d\n", i, t[i].line, valid,
                                model);
                }
                check(valid == t[i].valid && model == t[i].model);
        }
}

TEST_MAIN()
