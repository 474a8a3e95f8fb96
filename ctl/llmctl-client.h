/* SPDX-License-Identifier: MIT */
#pragma once

#include <signal.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "llmctl-args.h"
#include "varlink.h"

/* llmctl's side of the control socket: one connection, calls and their replies, and the exit
 * codes and messages every verb shares. */

#define EXIT_USAGE 1         /* usage or connection error */
#define EXIT_REFUSED 2       /* the daemon said no, or failed */
#define EXIT_INTERRUPTED 130 /* bench: Ctrl-C (128 + SIGINT) */

typedef struct Client Client;
typedef void (*ClientReplyFn)(Client *cl, const cJSON *params, bool continues);

struct Client {
        LlmctlArgs args;
        const char *path;
        int fd;
        VarlinkReader reader;
        bool json;     /* print JSON, not the human form */
        bool terminal; /* stdout is a terminal: progress may be drawn */
        /* When set and non-zero after a signal interrupted a read, the call gives up quietly
         * with EXIT_INTERRUPTED. */
        volatile sig_atomic_t *interrupted;
        void *userdata; /* for on_reply */
        char **argv;    /* llmctl's own, for the programs it execs */
};

/* Parses llmctl's arguments into cl and sets it up: -1 to go on, else the exit status (help
 * printed, or a usage error). */
int client_setup(Client *cl, int argc, char *argv[]);
/* main() of llmctl: the verb's handler from the table does it. Returns the exit status. */
int client_main(int argc, char *argv[]);
/* main() of a program llmctl execs for one verb (llmctl-bench, llmctl-fleet): run does the verb
 * and returns the exit status. */
int client_helper_main(int argc, char *argv[], VerbId verb, int (*run)(Client *cl));

/* $LLMD_SOCKET, else the runtime directory's control.sock. */
const char *client_default_socket(void);

/* "llmctl: <message>" on stderr, escaped for the terminal (utf8_escape_terminal()); returns
 * code. */
int fail(int code, const char *format, ...) _printf_(2, 3);
/* prefix, then s escaped for the terminal, then a newline: for a string llmctl did not write
 * (a box's, a server's, llmd's). */
void print_escaped(FILE *f, const char *prefix, const char *s);

int client_connect(Client *cl);
/* One call, its replies passed to on_reply (continued ones too); returns an exit code. An error
 * reply is explained on stderr, or, with ret_error, handed over there unexplained (the caller
 * owns it then, and EXIT_REFUSED is returned). */
int client_call(Client *cl, int method, cJSON *params, bool more, ClientReplyFn on_reply,
                VarlinkReply *ret_error);
void client_done(Client *cl);

void print_json(const cJSON *j);
/* The last lines of a model's log (a JSON array of strings), each after indent. */
void print_log(const cJSON *log, const char *indent);

static inline const char *jstr(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static inline double jnum(const cJSON *o, const char *key, double dflt)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static inline bool jbool(const cJSON *o, const char *key)
{
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}
