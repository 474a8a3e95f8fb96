/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>

#include "array.h"
#include "fleet-haproxy.h"
#include "parse-util.h"
#include "strv.h"

/*
 * The names of what we write, chosen so that none can collide with another: a model's name is
 * letters, digits, '.', '_' and '-' (llmd refuses others), and ':' is not one of them.
 *
 *   frontend llmd            reads the model, picks the backend
 *   backend model:NAME       the boxes serving NAME: where it is loaded, then backups
 *   backend loadable:NAME    no traffic: checks whether a backup box could load NAME
 *   backend boxes            requests that name no model: the first box up, then the next
 */

#define LETTERS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGITS "0123456789"
#define ONE_NAME "one name must mean one model"

typedef enum Residence {
        ON_NONE,   /* not configured on that box */
        ON_BACKUP, /* configured, not loaded: a request there loads it (routing = switch) */
        ON_LOADED, /* loaded or loading */
} Residence;

typedef struct Model {
        char *name;
        char **aliases;
        Residence *on; /* one per box */
} Model;

/* Every name a request may use, and the model it means, with the box that said so first. */
typedef struct Name {
        const char *id; /* a Model's own copy */
        size_t model;
        size_t box;
} Name;

typedef struct Fleet {
        const FleetBox *boxes;
        size_t n_boxes;
        Model *models;
        size_t n_models;
        Name *names;
        size_t n_names;
        char *error;
} Fleet;

static int fleet_error(Fleet *f, const char *format, ...) _printf_(2, 3);
static int fleet_error(Fleet *f, const char *format, ...)
{
        va_list ap;

        va_start(ap, format);
        if (!f->error && vasprintf(&f->error, format, ap) < 0) {
                f->error = NULL;
        }
        va_end(ap);
        return -EINVAL;
}

static void fleet_done(Fleet *f)
{
        for (size_t i = 0; i < f->n_models; i++) {
                free(f->models[i].name);
                strv_free(f->models[i].aliases);
                free(f->models[i].on);
        }
        free(f->models);
        free(f->names);
        free(f->error);
}

/* Longer than any valid address (a name is at most 253 bytes). */
#define SERVER_NAME_MAX 300

int fleet_box_address_valid(const char *address)
{
        const char *port;
        uint16_t p;
        size_t n;

        if (strlen(address) >= SERVER_NAME_MAX) {
                return -EINVAL;
        }
        if (address[0] == '[') {
                n = strspn(address + 1, "0123456789abcdefABCDEF:.");
                if (n == 0 || address[1 + n] != ']' || address[2 + n] != ':') {
                        return -EINVAL;
                }
                port = address + 3 + n;
        } else {
                n = strspn(address, LETTERS DIGITS ".-");
                if (n == 0 || n > 253 || address[n] != ':') {
                        return -EINVAL;
                }
                port = address + n + 1;
        }
        return parse_port(port, &p);
}

/* The server's name in haproxy.cfg: the address, without the brackets HAProxy does not allow
 * in a name. It is also the Host header the box gets (http-send-name-header). */
static const char *server_name(const char *address, char name[static SERVER_NAME_MAX])
{
        size_t n = 0;

        for (const char *s = address; *s && n < SERVER_NAME_MAX - 1; s++) {
                if (*s != '[' && *s != ']') {
                        name[n++] = *s;
                }
        }
        name[n] = '\0';
        return name;
}

/* A name a request may carry, as one word of haproxy.cfg. Single quotes keep everything literal
 * (no escapes, no $VARIABLES), so only a name with a quote or a control character cannot be
 * written; llmd allows neither quotes nor blanks in its names. */
static bool model_name_valid(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= 64 && strspn(s, LETTERS DIGITS "._-") == n;
}

static void request_name_write(FILE *out, const char *s)
{
        size_t n = strlen(s);

        if (strspn(s, LETTERS DIGITS "._:/@+=-") == n) {
                fputs(s, out);
        } else {
                fprintf(out, "'%s'", s);
        }
}

static Name *fleet_find(Fleet *f, const char *id)
{
        for (size_t i = 0; i < f->n_names; i++) {
                if (streq(f->names[i].id, id)) {
                        return &f->names[i];
                }
        }
        return NULL;
}

static int fleet_add_name(Fleet *f, const char *id, size_t model, size_t box)
{
        Name *n = ARRAY_GROW(f->names, f->n_names);

        if (!n) {
                return -ENOMEM;
        }
        *n = (Name) { .id = id, .model = model, .box = box };
        f->n_names++;
        return 0;
}

/* A model entry of box b's list (no alias_of): the model, new or seen on an earlier box. */
static int fleet_add_model(Fleet *f, size_t b, const char *name, const char *state)
{
        const Name *seen = fleet_find(f, name);
        bool loaded;
        size_t m;

        if (!model_name_valid(name)) {
                return fleet_error(f,
                                   "%s: the model name '%s' is not letters, digits, "
                                   "'.', '_' and '-'",
                                   f->boxes[b].address, name);
        }
        if (seen && !streq(f->models[seen->model].name, name)) {
                return fleet_error(f, "'%s' is a model on %s but an alias of %s on %s: " ONE_NAME,
                                   name, f->boxes[b].address, f->models[seen->model].name,
                                   f->boxes[seen->box].address);
        }
        if (seen) {
                m = seen->model;
        } else {
                Model *l = ARRAY_GROW(f->models, f->n_models);

                if (!l) {
                        return -ENOMEM;
                }
                *l = (Model) {
                        .name = strdup(name),
                        .on = calloc(f->n_boxes, sizeof(Residence)),
                };
                m = f->n_models++;
                if (!l->name || !l->on || fleet_add_name(f, l->name, m, b) < 0) {
                        return -ENOMEM;
                }
        }
        if (f->models[m].on[b] != ON_NONE) {
                return fleet_error(f, "%s: the model %s is listed twice", f->boxes[b].address,
                                   name);
        }
        /* Loading counts as loaded: it is becoming resident there, and its check says when. */
        loaded = state && (streq(state, "loaded") || streq(state, "loading"));
        f->models[m].on[b] = loaded ? ON_LOADED : ON_BACKUP;
        return 0;
}

static int fleet_add_alias(Fleet *f, size_t b, const char *alias, const char *of)
{
        const Name *target = fleet_find(f, of), *seen = fleet_find(f, alias);
        size_t m;

        if (!alias_valid(alias)) {
                return fleet_error(
                        f,
                        "%s: an alias holds a character that could change what "
                        "haproxy.cfg means (aliases are letters, digits and . _ - : / + @ =)",
                        f->boxes[b].address);
        }
        if (!target || f->models[target->model].on[b] == ON_NONE) {
                return fleet_error(f, "%s: '%s' is an alias of %s, which its list does not have",
                                   f->boxes[b].address, alias, of);
        }
        m = target->model;
        if (seen && seen->model != m) {
                return fleet_error(f, "'%s' means %s on %s but %s on %s: " ONE_NAME, alias, of,
                                   f->boxes[b].address, f->models[seen->model].name,
                                   f->boxes[seen->box].address);
        }
        if (seen) {
                return 0;
        }
        if (strv_extend(&f->models[m].aliases, alias) < 0) {
                return -ENOMEM;
        }
        /* The copy: it lives as long as the model, the box's JSON may not. */
        return fleet_add_name(f, f->models[m].aliases[strv_length(f->models[m].aliases) - 1], m, b);
}

static int fleet_read_box(Fleet *f, size_t b)
{
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(f->boxes[b].models, "data"), *e;
        int r;

        if (!cJSON_IsArray(data)) {
                return fleet_error(f, "%s: its /v1/models answer has no \"data\" list",
                                   f->boxes[b].address);
        }
        /* Models first, so an alias listed before its model is still known. */
        for (int pass = 0; pass < 2; pass++) {
                cJSON_ArrayForEach(e, data) {
                        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
                        const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "alias_of");
                        const cJSON *state = cJSON_GetObjectItemCaseSensitive(e, "state");

                        if (!cJSON_IsString(id)) {
                                return fleet_error(f, "%s: a /v1/models entry without an id",
                                                   f->boxes[b].address);
                        }
                        if (pass == 0 && !of) {
                                r = fleet_add_model(f, b, id->valuestring,
                                                    cJSON_IsString(state) ? state->valuestring
                                                                          : NULL);
                        } else if (pass == 1 && cJSON_IsString(of)) {
                                r = fleet_add_alias(f, b, id->valuestring, of->valuestring);
                        } else if (pass == 1 && of) {
                                r = fleet_error(f, "%s: '%s' has an alias_of that is not a name",
                                                f->boxes[b].address, id->valuestring);
                        } else {
                                r = 0;
                        }
                        if (r < 0) {
                                return r;
                        }
                }
        }
        return 0;
}

/* ---- writing ---- */

/* HAProxy's own errors in OpenAI's shape, as llmd writes them. */
/* clang-format off */
#define ERROR_JSON(message, type, code) \
        "'{\"error\":{\"message\":\"" message "\",\"type\":\"" type "\",\"code\":" code "}}'"

static const char header[] =
        "# haproxy.cfg for HAProxy 2.6, written by llmctl fleet haproxy: one endpoint that sends\n"
        "# each request to an llmd box where its model is loaded and ready. docs/fleet.md\n"
        "# (/usr/share/doc/llmd/) explains each setting. Write it again when a box's models\n"
        "# change, or which box keeps which model loaded: the backup servers follow that.\n"
        "\n";

/* Debian's global section, and what every proxy shares. */
static const char global_defaults[] =
        "global\n"
        "\tlog /dev/log local0\n"
        "\tchroot /var/lib/haproxy\n"
        "\tstats socket /run/haproxy/admin.sock mode 660 level admin\n"
        "\tstats timeout 30s\n"
        "\tuser haproxy\n"
        "\tgroup haproxy\n"
        "\tdaemon\n"
        "\t# The model is read from the request body, as far as it fits in one buffer: 1 MiB\n"
        "\t# (agents send long prompts, and many clients write \"model\" after them).\n"
        "\ttune.bufsize 1048576\n"
        "\n"
        "defaults\n"
        "\tmode http\n"
        "\tlog global\n"
        "\toption httplog\n"
        "\toption dontlognull\n"
        "\t# Wait for the whole body before choosing a backend: the model is in it.\n"
        "\toption http-buffer-request\n"
        "\t# Send each streamed token at once; responses are never buffered or compressed.\n"
        "\toption http-no-delay\n"
        "\t# A client that gives up while its request waits (a model loading) cancels it.\n"
        "\toption abortonclose\n"
        "\toption forwardfor\n"
        "\t# A box that refuses the connection or closes it without an answer: try another.\n"
        "\tretries 2\n"
        "\toption redispatch 1\n"
        "\tretry-on conn-failure empty-response\n"
        "\ttimeout connect 2s\n"
        "\ttimeout http-request 30s\n"
        "\ttimeout http-keep-alive 60s\n"
        "\ttimeout queue 30s\n"
        "\t# Longer than llmd's own limits (hold-timeout 300s, then upstream-timeout 600s of\n"
        "\t# silence), so that llmd's error, in the client's API format, is what arrives.\n"
        "\ttimeout client 30m\n"
        "\ttimeout server 30m\n"
        "\t# llmd answers /health from its own state at once.\n"
        "\ttimeout check 1s\n"
        "\t# A check each second, 200 ms apart once one fails; two failures take a box out of\n"
        "\t# a model's backend (a switch draining it, a box gone), one success brings it back\n"
        "\t# (llmd answers 200 only when that model is ready). A connection a box refuses\n"
        "\t# takes it out at once, without waiting for its checks.\n"
        "\tdefault-server inter 1s fastinter 200ms downinter 500ms fall 2 rise 1\n"
        "\tdefault-server observe layer4 error-limit 1 on-error mark-down\n"
        "\thttp-error status 502 content-type application/json string "
        ERROR_JSON("the llmd box serving this request failed before it answered",
                   "server_error", "502") "\n"
        "\thttp-error status 503 content-type application/json hdr Retry-After 5 string "
        ERROR_JSON("no llmd box can take this request now: those with its model are down or "
                   "busy loading another", "unavailable_error", "503") "\n"
        "\thttp-error status 504 content-type application/json string "
        ERROR_JSON("the llmd box serving this request did not answer in time",
                   "server_error", "504") "\n"
        "\n";

/* The frontend up to its bind line, which comes from --listen. */
static const char frontend_head[] =
        "frontend llmd\n";

/* Then the model of the request, and what is answered here. */
static const char frontend_model[] =
        "\t# The model a request is for: \"model\" of its JSON body (OpenAI, Anthropic and\n"
        "\t# llama-server's own endpoints), or the ID of GET /v1/models/ID.\n"
        "\thttp-request set-var(txn.model) req.body,json_query('$.model') "
        "if { req.body_size gt 0 }\n"
        "\thttp-request set-var(txn.model) \"path,regsub('^/(v1/)?models/',''),url_dec\" "
        "if { path_reg ^/(v1/)?models/. }\n"
        "\tacl model_named var(txn.model) -m found\n";

static const char frontend_answers[] =
        "\t# Past the buffer, \"model\" may be in the part not read: say so, rather than guess.\n"
        "\thttp-request set-var(txn.body_size) req.body_size\n"
        "\tacl body_cut req.body_len,sub(txn.body_size) lt 0\n"
        "\thttp-request return status 413 content-type application/json string "
        ERROR_JSON("the request body is larger than the front reads to find \\\"model\\\" "
                   "(tune.bufsize): send \\\"model\\\" first", "invalid_request_error", "413")
        " if !model_named body_cut\n"
        "\t# A name no box has: 404 here, as llmd says it (the name JSON-escaped by HAProxy).\n"
        "\thttp-request return status 404 content-type application/json lf-string "
        ERROR_JSON("The model `%[var(txn.model),json(utf8s)]` does not exist on any box",
                   "model_not_found", "404")
        " if model_named !model_known\n"
        "\t# Which box answered, for the client and its logs.\n"
        "\thttp-response set-header X-Llmd-Box %[srv_name] if { srv_name -m found }\n";

static const char boxes_head[] =
        "backend boxes\n"
        "\t# Requests that name no model (GET /v1/models, /props, a body without \"model\"):\n"
        "\t# the first box whose active model is ready, the next one when it is not.\n"
        "\toption httpchk\n"
        "\thttp-check send meth GET uri /health\n"
        "\thttp-check expect status 200\n"
        "\thttp-send-name-header Host\n";
/* clang-format on */

/* HAProxy reads at most 64 words a line (MAX_LINE_ARGS): a model's names go on as many lines of
 * one acl as they need, the lines of an acl adding up. */
#define NAMES_PER_LINE 32
#define ALIASES_IN_COMMENT 8
#define CONFIG_WORDS_MAX 64

/* "\tacl ACL var(txn.model) -m str -- NAME..." lines, every name of m on one of them. */
static void write_names_acl(FILE *out, const char *acl, const Model *m)
{
        size_t n_aliases = strv_length(m->aliases);

        for (size_t i = 0; i < 1 + n_aliases; i += NAMES_PER_LINE) {
                fprintf(out, "\tacl %s var(txn.model) -m str --", acl);
                for (size_t k = i; k < MIN(i + NAMES_PER_LINE, 1 + n_aliases); k++) {
                        fputc(' ', out);
                        request_name_write(out, k == 0 ? m->name : m->aliases[k - 1]);
                }
                fputc('\n', out);
        }
}

static void write_frontend(FILE *out, const Fleet *f, const char *listen)
{
        fprintf(out, "%s\tbind %s\n%s", frontend_head, listen, frontend_model);
        /* The known names: the lines of one acl add up. */
        for (size_t i = 0; i < f->n_models; i++) {
                write_names_acl(out, "model_known", &f->models[i]);
        }
        fputs(frontend_answers, out);
        /* One acl a model, "is:NAME" (':' is no model name's), for its backend. */
        for (size_t i = 0; i < f->n_models; i++) {
                char acl[sizeof("is:") + 64]; /* a model's name is at most 64 bytes */

                snprintf(acl, sizeof(acl), "is:%s", f->models[i].name);
                write_names_acl(out, acl, &f->models[i]);
                fprintf(out, "\tuse_backend model:%s if %s\n", f->models[i].name, acl);
        }
        fputs("\tdefault_backend boxes\n\n", out);
}

/* "\tserver NAME ADDRESS OPTIONS..." */
static void write_server(FILE *out, const char *address, const char *format, ...) _printf_(3, 4);
static void write_server(FILE *out, const char *address, const char *format, ...)
{
        char name[SERVER_NAME_MAX];
        va_list ap;

        fprintf(out, "\tserver %s %s ", server_name(address, name), address);
        va_start(ap, format);
        vfprintf(out, format, ap);
        va_end(ap);
        fputc('\n', out);
}

/* " LABEL BOX BOX..." for the boxes where m is on; returns how many. */
static size_t write_where(FILE *out, const Fleet *f, const Model *m, Residence on,
                          const char *label)
{
        size_t n = 0;

        for (size_t b = 0; b < f->n_boxes; b++) {
                if (m->on[b] == on) {
                        fprintf(out, "%s %s", n++ == 0 ? label : "", f->boxes[b].address);
                }
        }
        return n;
}

static void write_model(FILE *out, const Fleet *f, const Model *m)
{
        char name[SERVER_NAME_MAX];
        size_t loaded, backups;

        fprintf(out, "backend model:%s\n\t# %s", m->name, m->name);
        /* The first aliases, so that a comment stays a line one can read. */
        STRV_FOREACH(a, m->aliases) {
                size_t k = (size_t) (a - m->aliases);

                if (k == ALIASES_IN_COMMENT) {
                        fprintf(out, " and %zu more", strv_length(m->aliases) - k);
                        break;
                }
                fprintf(out, "%s%s", k == 0 ? " (also " : ", ", *a);
        }
        if (m->aliases) {
                fputc(')', out);
        }
        fputc(':', out);
        loaded = write_where(out, f, m, ON_LOADED, " loaded on");
        backups = write_where(out, f, m, ON_BACKUP,
                              loaded > 0 ? "; loaded on demand on" : " loaded on demand on");
        fprintf(out,
                "\n"
                "\t# Streams are long: the box with the fewest open requests gets the next.\n"
                "\tbalance leastconn\n"
                "\toption httpchk\n"
                "\thttp-check send meth GET uri /health?model=%s\n"
                "\thttp-check expect status 200\n"
                "\t# Host: the box's own address, which llmd accepts also without API keys.\n"
                "\thttp-send-name-header Host\n",
                m->name);
        for (size_t b = 0; b < f->n_boxes; b++) {
                if (m->on[b] == ON_LOADED) {
                        write_server(out, f->boxes[b].address, "check");
                }
        }
        /* Used when no box has the model ready: a request makes one load it. A backup follows
         * its own check (loadable:NAME), which stays up while the model loads there. */
        for (size_t b = 0; b < f->n_boxes; b++) {
                if (m->on[b] == ON_BACKUP) {
                        write_server(out, f->boxes[b].address, "backup track loadable:%s/%s",
                                     m->name, server_name(f->boxes[b].address, name));
                }
        }
        fputc('\n', out);
        if (backups == 0) {
                return;
        }
        fprintf(out,
                "backend loadable:%s\n"
                "\t# No traffic. Up while the box answers and %s has not failed there: it is\n"
                "\t# loaded, loading, unloaded, unloading or draining.\n"
                "\toption httpchk\n"
                "\thttp-check send meth GET uri /health?model=%s\n"
                "\thttp-check expect rstring "
                "\"\\\"status\\\" *: *\\\"(ok|loading|unloaded|unloading|draining)\\\"\"\n",
                m->name, m->name, m->name);
        for (size_t b = 0; b < f->n_boxes; b++) {
                if (m->on[b] == ON_BACKUP) {
                        write_server(out, f->boxes[b].address, "check");
                }
        }
        fputc('\n', out);
}

static void write_boxes(FILE *out, const Fleet *f)
{
        fputs(boxes_head, out);
        for (size_t b = 0; b < f->n_boxes; b++) {
                write_server(out, f->boxes[b].address, "check%s", b > 0 ? " backup" : "");
        }
}

/* Whether HAProxy can read every line of text as we meant it: at most CONFIG_WORDS_MAX words
 * (quotes hold blanks, a backslash the next byte, '#' starts a comment). What we write never
 * fails this; it is the last guard against printing a configuration HAProxy refuses. */
static bool config_words_valid(const char *text)
{
        for (const char *p = text; *p;) {
                size_t words = 0;
                char quote = 0;
                bool in_word = false;

                for (; *p && *p != '\n'; p++) {
                        if (quote == '"' && *p == '\\' && p[1] && p[1] != '\n') {
                                p++;
                        } else if (quote) {
                                quote = *p == quote ? 0 : quote;
                        } else if (*p == ' ' || *p == '\t') {
                                in_word = false;
                        } else if (*p == '#' && !in_word) {
                                p += strcspn(p, "\n");
                                break;
                        } else {
                                if (!in_word) {
                                        in_word = true;
                                        words++;
                                }
                                if (*p == '\'' || *p == '"') {
                                        quote = *p;
                                } else if (*p == '\\' && p[1] && p[1] != '\n') {
                                        p++;
                                }
                        }
                }
                if (words > CONFIG_WORDS_MAX || quote) {
                        return false;
                }
                if (*p == '\n') {
                        p++;
                }
        }
        return true;
}

int fleet_haproxy_config(const FleetBox *boxes, size_t n_boxes, const char *listen, char **ret,
                         char **ret_error)
{
        Fleet f = { .boxes = boxes, .n_boxes = n_boxes };
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *out;
        int r = 0;

        *ret_error = NULL;
        if (n_boxes == 0) {
                r = fleet_error(&f, "no boxes");
        }
        if (r == 0 && (isempty(listen) || strpbrk(listen, " \t\r\n#'\"\\"))) {
                r = fleet_error(&f, "'%s' is not an address HAProxy can bind",
                                listen ? listen : "");
        }
        for (size_t b = 0; r == 0 && b < n_boxes; b++) {
                for (size_t o = 0; o < b; o++) {
                        if (streq(boxes[o].address, boxes[b].address)) {
                                r = fleet_error(&f, "%s is named twice", boxes[b].address);
                        }
                }
                if (r == 0 && fleet_box_address_valid(boxes[b].address) < 0) {
                        r = fleet_error(&f, "'%s' is not host:port", boxes[b].address);
                }
                if (r == 0) {
                        r = fleet_read_box(&f, b);
                }
        }
        if (r == 0 && f.n_models == 0) {
                r = fleet_error(&f, "no box has a model");
        }
        if (r < 0) {
                *ret_error = TAKE_PTR(f.error);
                fleet_done(&f);
                return r;
        }
        out = open_memstream(&text, &size);
        if (!out) {
                fleet_done(&f);
                return -ENOMEM;
        }
        fputs(header, out);
        fputs(global_defaults, out);
        write_frontend(out, &f, listen);
        for (size_t i = 0; i < f.n_models; i++) {
                write_model(out, &f, &f.models[i]);
        }
        write_boxes(out, &f);
        r = ferror(out) ? -ENOMEM : 0;
        if (fclose(out) != 0) {
                r = -ENOMEM;
        }
        fleet_done(&f);
        if (r < 0) {
                return r;
        }
        if (!config_words_valid(text)) {
                *ret_error =
                        strdup("llmctl would write a line HAProxy cannot read (more than 64 "
                               "words, or an open quote): please report this");
                return *ret_error ? -EINVAL : -ENOMEM;
        }
        *ret = TAKE_PTR(text);
        return 0;
}
