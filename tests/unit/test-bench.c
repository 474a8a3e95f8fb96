/* SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "bench-quality.h"
#include "bench-report.h"
#include "fileio.h"
#include "strv.h"
#include "tests.h"

#define MS USEC_PER_MSEC

static void feed(BenchRun *r, const char *s, uint64_t at)
{
        check_inteq(bench_run_feed(r, s, strlen(s), at), 0);
}

static const char *chunk(char *buf, size_t size, const char *key, const char *text)
{
        snprintf(
                buf, size,
                "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"%s\":\"%s\"}}],"
                "\"object\":\"chat.completion.chunk\"}\n\n",
                key, text);
        return buf;
}

static void final(BenchRun *r, const char *finish, int predicted_n, double predicted_ms,
                  uint64_t at)
{
        char buf[512];

        snprintf(buf, sizeof(buf),
                 "data: {\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"delta\":{}}],"
                 "\"timings\":{\"prompt_n\":12,\"prompt_ms\":40.5,\"prompt_per_second\":296.3,"
                 "\"predicted_n\":%d,\"predicted_ms\":%g,\"predicted_per_second\":%g}}\n\n"
                 "data: [DONE]\n\n",
                 finish, predicted_n, predicted_ms, 1e3 / predicted_ms * (predicted_n - 1));
        feed(r, buf, at);
}

/* A stream as llama-server sends it: the role chunk, n tokens every step_ms after first_ms. */
static void stream(BenchRun *r, unsigned max_tokens, int n, const char *finish, uint64_t first_ms,
                   uint64_t step_ms)
{
        char buf[512];

        bench_run_init(r, max_tokens, 1000 * MS);
        feed(r,
             "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n",
             1001 * MS);
        for (int i = 0; i < n; i++) {
                feed(r, chunk(buf, sizeof(buf), "content", "tok"),
                     (1000 + first_ms + i * step_ms) * MS);
        }
        final(r, finish, n, (double) ((n - 1) * step_ms),
              (1000 + first_ms + (n - 1) * step_ms) * MS);
        check_inteq(bench_run_finish(r, 200, NULL, false), 0);
}

TEST(run_complete)
{
        BenchRun r;

        /* 50 tokens, the first after 40 ms (the role chunk at 1 ms does not count), then one
         * every 10 ms: 49 more in 490 ms, 100 tok/s. */
        stream(&r, 50, 50, "length", 40, 10);
        check_inteq(r.end, BENCH_END_COMPLETE);
        check(fabs(bench_run_ttft_ms(&r) - 40) < 1e-9);
        check(fabs(bench_run_rate(&r) - 100) < 1e-9);
        check(fabs(bench_run_server_rate(&r) - 100) < 1e-9);
        check(fabs(bench_run_tokens(&r) - 50) < 1e-9);
        check(r.timings.present && fabs(r.timings.prompt_ms - 40.5) < 1e-9);
        check(r.done && !r.error);
        check_streq(r.finish_reason, "length");
        check(bench_run_usable(&r));
        bench_run_done(&r);
}

TEST(run_split_and_reasoning)
{
        static const char *const pieces[] = {
                "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"Hm\"}}]}\r\n\r\n",
                "da",
                "ta: {\"choices\":[{\"delta\":{\"reasoning_content\":\"m\"}}]}\n",
                "\n",
                ": a comment\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"\"}}]}\n\n",
                "data:{\"choices\":[{\"delta\":{\"content\":\"Yes\"}}]}\n\n",
        };
        BenchRun r;

        /* Events split anywhere, CRLF, a comment, an empty delta; reasoning counted apart. */
        bench_run_init(&r, 10, 0);
        for (size_t i = 0; i < ELEMENTSOF(pieces); i++) {
                feed(&r, pieces[i], (i + 1) * 10 * MS);
        }
        check_inteq(r.reasoning_events, 2);
        check_inteq(r.content_events, 1);
        check(fabs(bench_run_ttft_ms(&r) - 10) < 1e-9);
        check_inteq(r.last_usec, 60 * MS);
        /* No timings: the events are the tokens. Cut off without a finish: an error. */
        check(fabs(bench_run_tokens(&r) - 3) < 1e-9);
        check(fabs(bench_run_rate(&r) - 2 / 0.05) < 1e-9);
        check(isnan(bench_run_server_rate(&r)));
        check_inteq(bench_run_finish(&r, 200, NULL, false), 0);
        check_inteq(r.end, BENCH_END_ERROR);
        check_streq(r.error, "the stream ended without a finish_reason");
        check(!bench_run_usable(&r));
        bench_run_done(&r);
}

TEST(run_early_and_errors)
{
        BenchRun r;

        /* EOS after 20 of 128. */
        stream(&r, 128, 20, "stop", 5, 5);
        check_inteq(r.end, BENCH_END_EARLY);
        check(bench_run_usable(&r));
        bench_run_done(&r);

        /* An error event mid-stream, no [DONE]. */
        bench_run_init(&r, 10, 0);
        feed(&r, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", 5 * MS);
        feed(&r,
             "data: {\"error\":{\"code\":500,\"message\":\"simulated failure\",\"type\":\"server_error\"}}\n\n",
             6 * MS);
        check_inteq(bench_run_finish(&r, 200, NULL, false), 0);
        check_inteq(r.end, BENCH_END_ERROR);
        check_streq(r.error, "simulated failure");
        check(!bench_run_usable(&r));
        bench_run_done(&r);

        /* An HTTP error: its JSON body (no newline at the end) says why. */
        bench_run_init(&r, 10, 0);
        feed(&r,
             "{\"error\":{\"code\":404,\"message\":\"model 'x' not found\",\"type\":\"not_found_error\"}}",
             1);
        check_inteq(bench_run_finish(&r, 404, NULL, false), 0);
        check_inteq(r.end, BENCH_END_ERROR);
        check_streq(r.error, "HTTP 404: model 'x' not found");
        bench_run_done(&r);

        bench_run_init(&r, 10, 0);
        feed(&r, "Bad Gateway", 1);
        check_inteq(bench_run_finish(&r, 502, NULL, false), 0);
        check_streq(r.error, "HTTP 502: Bad Gateway");
        bench_run_done(&r);

        /* The connection: refused, or silent for too long. */
        bench_run_init(&r, 10, 0);
        check_inteq(bench_run_finish(&r, 0, "Failed to connect to 127.0.0.1 port 1", false), 0);
        check_inteq(r.end, BENCH_END_ERROR);
        check_streq(r.error, "Failed to connect to 127.0.0.1 port 1");
        bench_run_done(&r);

        bench_run_init(&r, 10, 0);
        feed(&r, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"cho", 5 * MS);
        check_inteq(bench_run_finish(&r, 200, "nothing arrived for 60 s", true), 0);
        check_inteq(r.end, BENCH_END_TIMEOUT);
        check_streq(r.error, "nothing arrived for 60 s");
        bench_run_done(&r);

        /* A line too long to be an event. */
        bench_run_init(&r, 10, 0);
        char *big = malloc(BENCH_LINE_MAX + 1);
        memset(big, 'x', BENCH_LINE_MAX);
        check_inteq(bench_run_feed(&r, big, BENCH_LINE_MAX, 0), -EMSGSIZE);
        free(big);
        bench_run_done(&r);
}

TEST(median)
{
        double a[] = { 3, 1, 2 }, b[] = { 4, NAN, 1, 2, 3 }, c[] = { NAN };

        check(bench_median(a, 3) == 2);
        check(bench_median(b, 5) == 2.5);
        check(isnan(bench_median(c, 1)));
        check(isnan(bench_median(c, 0)));
        check(!bench_rates_disagree(105, 100));
        check(bench_rates_disagree(105.1, 100));
        check(bench_rates_disagree(94.9, 100));
        check(!bench_rates_disagree(NAN, 100));
        check(!bench_rates_disagree(90, NAN));
}

/* A report of two models over two tasks, 3 runs each, made of streams with known timing. */
typedef struct Fixture {
        BenchTask tasks[2];
        BenchReport report;
} Fixture;

static void fixture_init(Fixture *f)
{
        static const char *const names[] = { "short", "long" };
        static const unsigned max[] = { 20, 40 };

        *f = (Fixture) {};
        for (size_t t = 0; t < 2; t++) {
                f->tasks[t] = (BenchTask) { .name = (char *) names[t],
                                            .path = (char *) "/x.json",
                                            .max_tokens = max[t] };
        }
        f->report = (BenchReport) { .tasks = f->tasks,
                                    .n_tasks = 2,
                                    .n_runs = 3,
                                    .n_models = 3,
                                    .url = strdup("http://127.0.0.1:8080/v1/chat/completions"),
                                    .started = "2026-11-29T12:00:00Z" };
        f->report.models = calloc(3, sizeof(BenchModel));
        /* slow: 50 tok/s, one short run ends early; fast, m|d: 100 tok/s, a failed long run. */
        f->report.models[0] = (BenchModel) { .name = strdup("slow"), .swap_sec = 1.5 };
        f->report.models[1] = (BenchModel) { .name = strdup("fast, m|d"), .swap_sec = NAN };
        f->report.models[2] = (BenchModel) { .name = strdup("broken"),
                                             .swap_sec = NAN,
                                             .failed = strdup("failed to load: exit status 1") };
        for (size_t i = 0; i < 2; i++) {
                BenchModel *m = &f->report.models[i];
                uint64_t step = i == 0 ? 20 : 10;

                m->runs = calloc(6, sizeof(BenchRun));
                for (size_t t = 0; t < 2; t++) {
                        for (size_t k = 0; k < 3; k++) {
                                BenchRun *r = &m->runs[t * 3 + k];
                                bool early = i == 0 && t == 0 && k == 1;

                                if (i == 1 && t == 1 && k == 2) {
                                        bench_run_init(r, max[t], 0);
                                        feed(r, "data: {\"error\":{\"message\":\"boom\"}}\n\n", 1);
                                        check_inteq(bench_run_finish(r, 200, NULL, false), 0);
                                        continue;
                                }
                                stream(r, max[t], early ? 10 : (int) max[t],
                                       early ? "stop" : "length", 30 + k, step);
                        }
                }
        }
}

TEST(summary_and_order)
{
        Fixture f;
        BenchSummary s;

        fixture_init(&f);
        bench_summarize(bench_model_runs(&f.report, &f.report.models[0], 0), 3, &s);
        check(s.n_complete == 2 && s.n_early == 1 && s.n_failed == 0);
        check(fabs(s.rate - 50) < 1e-9 && fabs(s.server_rate - 50) < 1e-9 && !s.mismatch);
        check(fabs(s.ttft_ms - 31) < 1e-9 && fabs(s.tokens - 20) < 1e-9);
        bench_summarize(bench_model_runs(&f.report, &f.report.models[1], 1), 3, &s);
        check(s.n_complete == 2 && s.n_failed == 1);
        /* The failed run is not in the median: of 30 and 31 ms. */
        check(fabs(s.ttft_ms - 30.5) < 1e-9);

        bench_report_sort(&f.report);
        check_streq(f.report.models[0].name, "fast, m|d");
        check_streq(f.report.models[1].name, "slow");
        check_streq(f.report.models[2].name, "broken");
        bench_report_done(&f.report);
}

static char *print(const BenchReport *r, BenchFormat format)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        check_inteq(bench_report_print(r, format, f), 0);
        fclose(f);
        return buf;
}

TEST(formats)
{
        Fixture f;
        char *s;

        fixture_init(&f);
        bench_report_sort(&f.report);

        s = print(&f.report, BENCH_FORMAT_TABLE);
        check_streq(
                s,
                "| Model     | short tok/s   | long tok/s     | short TTFT | long TTFT | Swap   |\n"
                "|-----------|---------------|----------------|------------|-----------|--------|\n"
                "| fast, m|d | 100.0 (100.0) | 100.0 (100.0)! |      31 ms |     30 ms | active |\n"
                "| slow      |  50.0 (50.0)~ |    50.0 (50.0) |      31 ms |     31 ms | 1.50 s |\n"
                "| broken    |             - |              - |          - |         - | failed |\n"
                "\n"
                "tok/s: llmctl's own rate over the generation phase, llama-server's predicted_per_second "
                "in brackets; TTFT: time to the first token; medians of 3 runs.\n"
                "~ a run ended before max_tokens; its figures are in the median\n"
                "! a run failed; it is left out of the median\n"
                "fast, m|d long run 3: failed: boom\n"
                "slow short run 2: ended after 10 of 20 tokens (finish_reason stop)\n"
                "broken: not measured: failed to load: exit status 1\n");
        free(s);

        /* Markdown: a '|' in a name is escaped, figures are aligned right, notes are a list. */
        s = print(&f.report, BENCH_FORMAT_MARKDOWN);
        check(strstr(s, "| fast, m\\|d | 100.0 (100.0) | 100.0 (100.0)! |      31 ms |"));
        check(strstr(s, "| slow       | 50.0 (50.0)\\~ |    50.0 (50.0) |"));
        check(strstr(s, "|------------|--------------:|---------------:|-----------:|"));
        check(strstr(s,
                     "\n- `~` a run ended before max_tokens; its figures are in the median\n"
                     "- `!` a run failed; it is left out of the median\n"
                     "- fast, m|d long run 3: failed: boom\n"));
        free(s);

        s = print(&f.report, BENCH_FORMAT_CSV);
        check(startswith(s,
                         "model,task,max_tokens,runs,complete,early,failed,tok_per_sec,"
                         "server_tok_per_sec,rate_mismatch,ttft_ms,prompt_ms,tokens,"
                         "reasoning_tokens,answer_tokens,swap_sec,error\n"));
        check(strstr(
                s,
                "\n\"fast, m|d\",short,20,3,3,0,0,100.000,100.000,false,31.000,40.500,20.000,0.000,20.000,,\n"));
        check(strstr(
                s,
                "\nslow,short,20,3,2,1,0,50.000,50.000,false,31.000,40.500,20.000,0.000,20.000,1.500,\n"));
        check(strstr(s, "\nbroken,long,40,3,0,0,3,,,false,,,,,,,failed to load: exit status 1\n"));
        free(s);

        s = print(&f.report, BENCH_FORMAT_JSON);
        cJSON *j = cJSON_Parse(s), *m, *t;
        check(j);
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "models")), 3);
        m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "models"), 0);
        check_streq(cJSON_GetObjectItem(m, "name")->valuestring, "fast, m|d");
        check(cJSON_IsNull(cJSON_GetObjectItem(m, "swap_sec")));
        t = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "tasks"), 1);
        check_streq(cJSON_GetObjectItem(t, "task")->valuestring, "long");
        check_inteq(cJSON_GetObjectItem(t, "failed")->valueint, 1);
        check(cJSON_GetObjectItem(cJSON_GetObjectItem(t, "median"), "tok_per_sec")->valuedouble ==
              100);
        cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "runs"), 2);
        check_streq(cJSON_GetObjectItem(run, "end")->valuestring, "error");
        check_streq(cJSON_GetObjectItem(run, "error")->valuestring, "boom");
        run = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "runs"), 0);
        check(cJSON_GetObjectItem(cJSON_GetObjectItem(run, "timings"), "predicted_n")
                      ->valuedouble == 40);
        m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "models"), 2);
        check_streq(cJSON_GetObjectItem(m, "error")->valuestring, "failed to load: exit status 1");
        check_inteq(cJSON_GetArraySize(cJSON_GetObjectItem(m, "tasks")), 0);
        cJSON_Delete(j);
        free(s);
        bench_report_done(&f.report);
}

TEST(mismatch_and_thinking)
{
        BenchTask task = { .name = (char *) "t", .path = (char *) "/t.json", .max_tokens = 4 };
        BenchReport report = { .tasks = &task, .n_tasks = 1, .n_runs = 1, .n_models = 1 };
        BenchRun *r;
        char *s;

        report.models = calloc(1, sizeof(BenchModel));
        report.models[0] = (BenchModel) { .name = strdup("r1"), .swap_sec = 0.25 };
        r = report.models[0].runs = calloc(1, sizeof(BenchRun));
        /* Two thinking tokens and two answer tokens, 10 ms apart: 100 tok/s here, while the
         * server says 120. */
        bench_run_init(r, 4, 0);
        feed(r, "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"a\"}}]}\n\n", 10 * MS);
        feed(r, "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"b\"}}]}\n\n", 20 * MS);
        feed(r, "data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\n\n", 30 * MS);
        feed(r, "data: {\"choices\":[{\"delta\":{\"content\":\"d\"}}]}\n\n", 40 * MS);
        feed(r,
             "data: {\"choices\":[{\"finish_reason\":\"length\",\"delta\":{}}],\"timings\":{\"predicted_n\":4,"
             "\"predicted_per_second\":120}}\n\ndata: [DONE]\n\n",
             40 * MS);
        check_inteq(bench_run_finish(r, 200, NULL, false), 0);
        s = print(&report, BENCH_FORMAT_TABLE);
        check(strstr(s, "| r1    | 100.0 (120.0)* |  10 ms | 0.25 s |\n"));
        check(strstr(s, "* llmctl's rate and llama-server's differ by more than 5%\n"));
        check(strstr(s, "r1 thinks: median thinking + answer tokens: t 2 + 2\n"));
        free(s);
        report.url = NULL;
        bench_report_done(&report);
}

TEST(order_without_client_rate)
{
        BenchTask task = { .name = (char *) "t", .path = (char *) "/t.json", .max_tokens = 8 };
        BenchReport report = { .tasks = &task, .n_tasks = 1, .n_runs = 1, .n_models = 3 };
        static const char *const names[] = { "failed", "slow", "burst" };

        report.models = calloc(3, sizeof(BenchModel));
        for (size_t i = 0; i < 3; i++) {
                report.models[i] = (BenchModel) { .name = strdup(names[i]), .swap_sec = 1 };
        }
        report.models[0].failed = strdup("failed to load: exit status 1");
        report.models[1].runs = calloc(1, sizeof(BenchRun));
        stream(report.models[1].runs, 8, 8, "length", 10, 10); /* 100 tok/s */
        /* All 8 tokens in one read: llmctl has no rate, llama-server says 500. */
        BenchRun *r = report.models[2].runs = calloc(1, sizeof(BenchRun));
        bench_run_init(r, 8, 0);
        char buf[4096] = "";
        for (int i = 0; i < 8; i++) {
                strcat(buf, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        }
        strcat(buf,
               "data: {\"choices\":[{\"finish_reason\":\"length\",\"delta\":{}}],"
               "\"timings\":{\"predicted_n\":8,\"predicted_per_second\":500}}\n\n");
        feed(r, buf, 5 * MS);
        check_inteq(bench_run_finish(r, 200, NULL, false), 0);
        check(isnan(bench_run_rate(r)) && r->end == BENCH_END_COMPLETE);

        bench_report_sort(&report);
        check_streq(report.models[0].name, "burst");
        check_streq(report.models[1].name, "slow");
        check_streq(report.models[2].name, "failed");
        char *s = print(&report, BENCH_FORMAT_TABLE);
        check(strstr(s, "| burst  |     - (500.0) |"));
        free(s);
        bench_report_done(&report);
}

static void write_task(const char *dir, const char *name, const char *text)
{
        char path[512];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        check_inteq(write_file_atomic(path, text, 0644), 0);
}

TEST(tasks)
{
        char base[] = "/tmp/test-bench-XXXXXX", user[600], pkg[600], error[512];
        char *dirs[] = { user, pkg, NULL };
        BenchTask *t;
        size_t n;

        check(mkdtemp(base));
        snprintf(user, sizeof(user), "%s/user", base);
        snprintf(pkg, sizeof(pkg), "%s/pkg", base);
        check(mkdir(user, 0755) == 0 && mkdir(pkg, 0755) == 0);
        write_task(pkg, "10-short.json",
                   "{\"name\":\"short\",\"prompt\":\"Hi\",\"max_tokens\":128,"
                   "\"sampling\":{\"temperature\":0}}");
        write_task(pkg, "20-medium.json",
                   "{\"name\":\"medium\",\"prompt\":\"Hello\",\"max_tokens\":512}");
        write_task(pkg, "30-long.json",
                   "{\"name\":\"long\",\"prompt\":\"Hello there\",\"max_tokens\":2048}");
        write_task(pkg, "README", "not a task");
        /* The user replaces medium, hides long, adds one of their own between. */
        write_task(user, "20-medium.json",
                   "{\"name\":\"medium\",\"description\":\"mine\",\"prompt\":\"Mine\","
                   "\"max_tokens\":300,\"sampling\":{\"top_k\":1,\"temperature\":0.5}}");
        write_task(user, "30-long.json", "");
        write_task(user, "25-code.json",
                   "{\"name\":\"code\",\"prompt\":\"Code\",\"max_tokens\":64}");

        check_inteq(bench_tasks_load(dirs, &t, &n, error, sizeof(error)), 0);
        check_inteq(n, 3);
        check_streq(t[0].name, "short");
        check_streq(t[1].name, "medium");
        check_streq(t[1].prompt, "Mine");
        check_inteq(t[1].max_tokens, 300);
        check(strstr(t[1].path, "/user/20-medium.json"));
        check_streq(t[2].name, "code");

        /* The request: the defaults, then the task's sampling over them. */
        char *body = bench_task_request(&t[1], "qwen", 300);
        check_streq(body,
                    "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"Mine\"}],"
                    "\"max_tokens\":300,\"stream\":true,\"cache_prompt\":false,\"top_k\":1,"
                    "\"temperature\":0.5}");
        free(body);
        body = bench_task_request(&t[0], "gemma", 16);
        check_streq(body,
                    "{\"model\":\"gemma\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                    "\"max_tokens\":16,\"stream\":true,\"cache_prompt\":false,\"temperature\":0}");
        free(body);
        bench_tasks_free(t, n);

        /* Mistakes name the file and what is wrong. */
        /* clang-format off */
        static const struct {
                const char *text, *error;
        } bad[] = {
                { "[1]", "not a JSON object" },
                { "{\"name\":\"x y\",\"prompt\":\"p\",\"max_tokens\":1}", "\"name\" must be 1 to 32 letters" },
                { "{\"name\":\"x\",\"prompt\":\"\",\"max_tokens\":1}", "\"prompt\" must be a non-empty string" },
                { "{\"name\":\"x\",\"prompt\":\"p\",\"max_tokens\":0}", "\"max_tokens\" must be a whole number" },
                { "{\"name\":\"x\",\"prompt\":\"p\",\"max_tokens\":1.5}", "\"max_tokens\" must be a whole number" },
                { "{\"name\":\"x\",\"prompt\":\"p\",\"max_tokens\":1,\"temp\":0}", "unknown key \"temp\"" },
                { "{\"name\":\"x\",\"prompt\":\"p\",\"max_tokens\":1,\"sampling\":{\"stream\":false}}",
                  "\"sampling\" may not set \"stream\"" },
                { "{\"name\":\"short\",\"prompt\":\"p\",\"max_tokens\":1}", "the task name \"short\" is taken by" },
        };
        /* clang-format on */
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_task(user, "40-bad.json", bad[i].text);
                error[0] = '\0';
                check_inteq(bench_tasks_load(dirs, &t, &n, error, sizeof(error)), -EINVAL);
                if (!strstr(error, "/user/40-bad.json: ") || !strstr(error, bad[i].error)) {
                        fprintf(stderr, "case %zu: %s\n", i, error);
                        abort();
                }
        }

        /* No folder has a task: none, and no error (bench says where it looked). */
        char *none[] = { base, NULL };
        check_inteq(bench_tasks_load(none, &t, &n, error, sizeof(error)), 0);
        check_inteq(n, 0);
        bench_tasks_free(t, n);

        char cmd[700];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
        check(system(cmd) == 0);
}

TEST(shipped_tasks)
{
        char *dirs[] = { (char *) BENCH_TASKS_DIR, NULL }, error[512];
        BenchTask *t;
        size_t n;

        /* The three the package installs: short, medium, long, at temperature 0. */
        check_inteq(bench_tasks_load(dirs, &t, &n, error, sizeof(error)), 0);
        check_inteq(n, 3);
        check_streq(t[0].name, "short");
        check_inteq(t[0].max_tokens, 128);
        check(strstr(t[0].prompt, "validates an IPv4 address"));
        check_streq(t[1].name, "medium");
        check_inteq(t[1].max_tokens, 512);
        check(strstr(t[1].prompt, "binary search tree"));
        check_streq(t[2].name, "long");
        check_inteq(t[2].max_tokens, 2048);
        check(strstr(t[2].prompt, "Markdown-to-HTML"));
        for (size_t i = 0; i < n; i++) {
                check(cJSON_GetObjectItem(t[i].sampling, "temperature")->valuedouble == 0);
        }
        bench_tasks_free(t, n);
}

TEST_MAIN()

/* ---- --suite quality ---- */

static void extract(const char *content, const char *reasoning, const char *text, QualityFrom from,
                    bool cut)
{
        QualityAnswer a;

        check_inteq(quality_extract(content, reasoning, &a), 0);
        check_streq(a.text, text);
        check_inteq(a.from, from);
        check_inteq(a.thinking_cut, cut);
        quality_answer_done(&a);
}

TEST(quality_extract_thinking)
{
        /* closed blocks go, the answer stays */
        extract("<think>draft ```python\nx(\n```</think>\nThe answer.", NULL, "\nThe answer.",
                QUALITY_FROM_CONTENT, false);
        extract("A<think>1</think>B<think>2</think>C", "", "ABC", QUALITY_FROM_CONTENT, false);
        /* cut off by the token limit: nothing of the block reaches the answer */
        extract("Intro. <think>I will write ```python\nprint(1)\n```", NULL, "Intro. ",
                QUALITY_FROM_CONTENT, true);
        extract("<think>only thinking, never closed", NULL, "", QUALITY_FROM_NOTHING, true);
        /* the template opened the block in the prompt: a lone </think> ends it */
        extract("reasoning here</think>\nanswer", NULL, "\nanswer", QUALITY_FROM_CONTENT, false);
}

TEST(quality_extract_reasoning_fallback)
{
        /* everything in reasoning_content: that is the answer, and it is said */
        extract("", "```python\nprint(1)\n```", "```python\nprint(1)\n```", QUALITY_FROM_REASONING,
                false);
        extract(NULL, "the answer", "the answer", QUALITY_FROM_REASONING, false);
        extract(" \n", "the answer", "the answer", QUALITY_FROM_REASONING, false);
        /* content that says something wins over reasoning_content */
        extract("the answer", "thinking", "the answer", QUALITY_FROM_CONTENT, false);
        /* an unclosed block in content, the answer in reasoning_content */
        extract("<think>cut", "the answer", "the answer", QUALITY_FROM_REASONING, true);
        extract("", "", "", QUALITY_FROM_NOTHING, false);
}

TEST(quality_check_parse)
{
        QualityResult r = { .score = NAN };

        check_inteq(quality_check_parse("noise\n{\"score\": 94, \"items\": [{\"name\": \"a\", "
                                        "\"points\": 0, \"max\": 1}]}\n\n",
                                        &r),
                    0);
        check(r.score == 94 && r.check && !r.error);
        quality_result_done(&r);
        r = (QualityResult) { .score = NAN };
        check_inteq(quality_check_parse("", &r), -EINVAL);
        check_streq(r.error, "the check printed nothing");
        quality_result_done(&r);
        r = (QualityResult) { .score = NAN };
        check_inteq(quality_check_parse("{\"score\": 101, \"items\": []}", &r), -EINVAL);
        check(isnan(r.score) && r.error);
        quality_result_done(&r);
        r = (QualityResult) { .score = NAN };
        check_inteq(quality_check_parse("{\"score\": 5, \"items\": [{\"name\": \"a\", "
                                        "\"points\": 2, \"max\": 1}]}",
                                        &r),
                    -EINVAL);
        quality_result_done(&r);
        r = (QualityResult) { .score = NAN };
        check_inteq(quality_check_parse("{\"score\": 5}\nTraceback: boom", &r), -EINVAL);
        check_streq(r.error, "the check's last line is not a JSON object");
        quality_result_done(&r);
}

static bool argv_has(char **argv, const char *a, const char *b)
{
        for (size_t i = 0; argv[i]; i++) {
                if (streq(argv[i], a) && (!b || (argv[i + 1] && streq(argv[i + 1], b)))) {
                        return true;
                }
        }
        return false;
}

TEST(quality_sandbox_argv)
{
        char **argv = quality_sandbox_argv("/usr/bin/bwrap", "/lib/q", "/t", "/w/work");
        size_t n = strv_length(argv);

        check(argv && streq(argv[0], "/usr/bin/bwrap"));
        /* no network (--unshare-all takes it), and nothing outlives llmctl */
        check(argv_has(argv, "--unshare-all", NULL) && argv_has(argv, "--die-with-parent", NULL));
        check(!argv_has(argv, "--share-net", NULL));
        check(argv_has(argv, "--ro-bind", "/usr") && argv_has(argv, "--bind", "/w/work"));
        check(argv_has(argv, "--ro-bind", "/t") && argv_has(argv, "--ro-bind", "/lib/q"));
        /* the one writable bind is the work folder; nothing of /home, /run or / itself */
        for (size_t i = 0; argv[i]; i++) {
                check(!streq(argv[i], "/home") && !streq(argv[i], "/run") &&
                      !streq(argv[i], "/var"));
                if (streq(argv[i], "--bind") || streq(argv[i], "--ro-bind")) {
                        check(!streq(argv[i + 1], "/"));
                }
                check(!streq(argv[i], "--bind") || streq(argv[i + 1], "/w/work"));
        }
        /* read-only after the last mount, then the check */
        check(n >= 3 && streq(argv[n - 3], "--remount-ro") && streq(argv[n - 2], "/") &&
              streq(argv[n - 1], "/task/check"));
        strv_free(argv);
}

TEST(quality_scores_median_and_weights)
{
        /* two models, one coding and one tools task, three runs each, no speed tasks */
        QualityTask tasks[2] = {
                { .base.name = (char *) "code", .category = QUALITY_CODING },
                { .base.name = (char *) "tool", .category = QUALITY_TOOLS },
        };
        BenchModel models[2] = { { .name = (char *) "a" }, { .name = (char *) "b" } };
        BenchReport speed = { .n_runs = 3, .models = models, .n_models = 2 };
        QualityResult ra[6] = {
                /* code: 10, a check that failed (counts 0), 90: the median is 10 */
                { .ran = true, .score = 10 },
                { .ran = true, .score = NAN },
                { .ran = true, .score = 90 },
                /* tool: 50 three times */
                { .ran = true, .score = 50 },
                { .ran = true, .score = 50 },
                { .ran = true, .score = 50 },
        };
        QualityResult rb[6] = {
                { .ran = true, .score = 100 }, { .ran = true, .score = 100 },
                { .ran = true, .score = 100 }, { .ran = true, .score = 0 },
                { .ran = true, .score = 0 },   { .ran = true, .score = 0 },
        };
        QualityResult *results[2] = { ra, rb };
        QualityReport r = { .speed = &speed, .tasks = tasks, .n_tasks = 2, .results = results };
        QualityScores s;

        quality_scores(&r, 0, &s);
        check(s.task[0] == 10 && s.task[1] == 50);
        check(s.category[QUALITY_CODING] == 10 && s.category[QUALITY_TOOLS] == 50);
        /* no reasoning task and no speed task: those leave the total, the rest keep their
         * weights (40 and 20) */
        check(isnan(s.category[QUALITY_REASONING]));
        check(fabs(s.total - (0.4 * 10 + 0.2 * 50) / 0.6) < 1e-9);
        check(s.rank == 2);
        quality_scores(&r, 1, &s);
        check(fabs(s.total - 0.4 * 100 / 0.6) < 1e-9 && s.rank == 1);
}

TEST(quality_shipped_tasks)
{
        char *dirs[] = { (char *) BENCH_TASKS_DIR, NULL }, error[512];
        QualityTask *t;
        size_t n;
        bool oom;
        _cleanup_free_ char *body = NULL, *missing = NULL;

        /* The ten the package installs, by name; _lib is no task. */
        check_inteq(quality_tasks_load(dirs, &t, &n, error, sizeof(error)), 0);
        check_inteq(n, 10);
        check_streq(t[0].base.name, "1.1-todo");
        check_inteq(t[0].category, QUALITY_CODING);
        check_streq(t[3].base.name, "2.1-bug-fix");
        /* the given files follow the prompt, each under its name */
        check(strstr(t[3].base.prompt, "`auth.js`:\n\n```\n") &&
              strstr(t[3].base.prompt, "X-Auth-Token"));
        check_inteq(t[5].category, QUALITY_REASONING);
        check_streq(t[9].base.name, "4.2-tool-sequencing");
        check_inteq(t[9].category, QUALITY_TOOLS);
        /* no temperature 0: the model samples as its profile says */
        body = bench_task_request(&t[0].base, "m", t[0].base.max_tokens);
        check(body && !strstr(body, "temperature"));
        /* what is missing is named by package */
        missing = quality_missing_packages(t, n, "/nonexistent/bwrap", &oom);
        check(!oom && missing && startswith(missing, "bubblewrap"));
        quality_tasks_free(t, n);
}
