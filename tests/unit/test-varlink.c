/* SPDX-License-Identifier: MIT */
#include "varlink.h"
#include "tests.h"

static void feed(VarlinkReader *r, const char *s, size_t len)
{
        check_inteq(varlink_reader_feed(r, s, len), 0);
}

TEST(split_frames)
{
        static const char msg[] = "{\"method\":\"io.llmd.Manager.Status\"}";
        VarlinkReader r;
        const char *f;
        size_t len;

        varlink_reader_init(&r);
        /* One byte at a time: nothing until the NUL. */
        for (size_t i = 0; i < sizeof(msg) - 1; i++) {
                feed(&r, msg + i, 1);
                check_inteq(varlink_reader_next(&r, &f, &len), 0);
        }
        feed(&r, "", 1);
        check_inteq(varlink_reader_next(&r, &f, &len), 1);
        check_inteq(len, sizeof(msg) - 1);
        check(memcmp(f, msg, len) == 0);
        check_inteq(varlink_reader_next(&r, &f, &len), 0);
        check_inteq(varlink_reader_pending(&r), 0);
        varlink_reader_done(&r);
}

TEST(several_frames_in_one_read)
{
        static const char data[] =
                "{\"method\":\"a.B\"}\0{\"method\":\"a.C\",\"more\":true}\0{\"meth";
        VarlinkReader r;
        VarlinkCall c;
        const char *f;
        size_t len;

        varlink_reader_init(&r);
        feed(&r, data, sizeof(data) - 1);
        check_inteq(varlink_reader_next(&r, &f, &len), 1);
        check_inteq(varlink_call_parse(f, len, &c), 0);
        check_streq(c.method, "a.B");
        check(!c.more && cJSON_IsObject(c.parameters));
        varlink_call_done(&c);
        check_inteq(varlink_reader_next(&r, &f, &len), 1);
        check_inteq(varlink_call_parse(f, len, &c), 0);
        check_streq(c.method, "a.C");
        check(c.more);
        varlink_call_done(&c);
        check_inteq(varlink_reader_next(&r, &f, &len), 0);
        /* The start of a third one waits. */
        check_inteq(varlink_reader_pending(&r), 6);
        feed(&r, "od\":\"a.D\"}", 10);
        feed(&r, "", 1);
        check_inteq(varlink_reader_next(&r, &f, &len), 1);
        check_inteq(varlink_call_parse(f, len, &c), 0);
        check_streq(c.method, "a.D");
        varlink_call_done(&c);
        varlink_reader_done(&r);
}

TEST(oversized)
{
        VarlinkReader r;
        char *big = malloc(VARLINK_FRAME_MAX + 2);

        check(big);
        memset(big, 'x', VARLINK_FRAME_MAX + 1);
        varlink_reader_init(&r);
        /* Unterminated and over the limit: refused before it can grow further. */
        check_inteq(varlink_reader_feed(&r, big, VARLINK_FRAME_MAX + 1), -EMSGSIZE);
        varlink_reader_done(&r);

        /* Exactly at the limit and terminated: fine. */
        varlink_reader_init(&r);
        big[VARLINK_FRAME_MAX] = '\0';
        check_inteq(varlink_reader_feed(&r, big, VARLINK_FRAME_MAX + 1), 0);
        const char *f;
        size_t len;
        check_inteq(varlink_reader_next(&r, &f, &len), 1);
        check_inteq(len, VARLINK_FRAME_MAX);
        varlink_reader_done(&r);
        free(big);
}

TEST(bad_calls)
{
        static const struct {
                const char *frame;
                int error;
        } cases[] = {
                { "", -EBADMSG },
                { "garbage", -EBADMSG },
                { "{\"method\":\"a.B\"} trailing", -EBADMSG },
                { "{\"method\":\"a.B\"", -EBADMSG },
                { "[1,2]", -EPROTO },
                { "\"string\"", -EPROTO },
                { "{}", -EPROTO },
                { "{\"method\":42}", -EPROTO },
                { "{\"method\":\"\"}", -EPROTO },
                { "{\"method\":\"a.B\",\"parameters\":[]}", -EPROTO },
                { "{\"method\":\"a.B\",\"parameters\":\"x\"}", -EPROTO },
                { "{\"method\":\"a.B\",\"more\":\"yes\"}", -EPROTO },
                { "{\"method\":\"a.B\",\"oneway\":1}", -EPROTO },
                /* Not UTF-8: a lone continuation byte, an overlong '/', a surrogate, past
                 * U+10FFFF, a cut character, a byte no UTF-8 has. */
                { "{\"method\":\"a.B\x80\"}", -EILSEQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"model\":\"\xc0\xaf\"}}", -EILSEQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"model\":\"\xed\xa0\x80\"}}", -EILSEQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"model\":\"\xf4\x90\x80\x80\"}}", -EILSEQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"model\":\"\xe2\x82\"}}", -EILSEQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"\xff\":1}}", -EILSEQ },
                /* A member named twice, at any depth. */
                { "{\"method\":\"a.B\",\"method\":\"c.D\"}", -ENOTUNIQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"model\":\"x\",\"model\":\"y\"}}",
                  -ENOTUNIQ },
                { "{\"method\":\"a.B\",\"parameters\":{\"l\":[{\"a\":1,\"b\":2,\"a\":3}]}}",
                  -ENOTUNIQ },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                VarlinkCall c;
                int r = varlink_call_parse(cases[i].frame, strlen(cases[i].frame), &c);

                if (r != cases[i].error) {
                        fprintf(stderr, "%s: %d, expected %d\n", cases[i].frame, r, cases[i].error);
                        abort();
                }
        }
        /* Trailing white space is fine. */
        VarlinkCall c;
        check_inteq(varlink_call_parse("{\"method\":\"a.B\",\"parameters\":{\"x\":1}} \n", 38, &c),
                    0);
        check_inteq(cJSON_GetObjectItem(c.parameters, "x")->valueint, 1);
        varlink_call_done(&c);
        /* UTF-8 is fine, and so are equal names in different objects. */
        static const char ok[] =
                "{\"method\":\"a.B\",\"parameters\":{\"model\":\"qw\xc3\xa9n "
                "\xf0\x9f\xa6\x99\",\"o\":{\"model\":1},\"l\":[{\"a\":1},{\"a\":2}]}}";
        check_inteq(varlink_call_parse(ok, strlen(ok), &c), 0);
        check_streq(cJSON_GetObjectItem(c.parameters, "model")->valuestring,
                    "qw\xc3\xa9n \xf0\x9f\xa6\x99");
        varlink_call_done(&c);
}

TEST(format)
{
        cJSON *p = cJSON_CreateObject();
        char *s;
        size_t len;
        VarlinkReply r;

        cJSON_AddStringToObject(p, "model", "qwen");
        check_inteq(varlink_format_call("io.llmd.Manager.Switch", p, true, &s, &len), 0);
        check_inteq(len, strlen(s) + 1);
        check_streq(
                s,
                "{\"parameters\":{\"model\":\"qwen\"},\"method\":\"io.llmd.Manager.Switch\",\"more\":true}");
        free(s);

        check_inteq(varlink_format_reply(p, true, &s, &len), 0);
        check_streq(s, "{\"parameters\":{\"model\":\"qwen\"},\"continues\":true}");
        check_inteq(varlink_reply_parse(s, len - 1, &r), 0);
        check(r.continues && !r.error);
        check_streq(cJSON_GetObjectItem(r.parameters, "model")->valuestring, "qwen");
        varlink_reply_done(&r);
        free(s);

        check_inteq(varlink_format_error("io.llmd.Manager.UnknownModel", NULL, &s, &len), 0);
        check_streq(s, "{\"parameters\":{},\"error\":\"io.llmd.Manager.UnknownModel\"}");
        check_inteq(varlink_reply_parse(s, len - 1, &r), 0);
        check_streq(r.error, "io.llmd.Manager.UnknownModel");
        check(!r.continues);
        varlink_reply_done(&r);
        free(s);

        check_inteq(varlink_reply_parse("{\"error\":5}", 11, &r), -EPROTO);
        check_inteq(varlink_reply_parse("{\"continues\":\"x\"}", 17, &r), -EPROTO);
        cJSON_Delete(p);
}

TEST_MAIN()
