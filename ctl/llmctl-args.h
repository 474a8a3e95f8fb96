/* SPDX-License-Identifier: MIT */
#pragma once

#include <getopt.h>
#include <stdio.h>

#include "control-protocol.h"
#include "macro.h"

/* llmctl's verbs and its command line. The verb table (llmctl-verbs.c) is the one source of
 * its help text and of the dispatch. */

struct Client;

typedef enum VerbId {
        VERB_ACTIVITY,
        VERB_BENCH,
        VERB_FLEET,
        VERB_LIST,
        VERB_LOAD,
        VERB_LOGS,
        VERB_PLAN,
        VERB_PROMPT_CACHE,
        VERB_RELOAD,
        VERB_START,
        VERB_STATUS,
        VERB_STOP,
        VERB_SWITCH,
        VERB_UNLOAD,
        VERB_VERSION,
        _VERB_MAX,
} VerbId;

typedef struct Verb {
        VerbId id;
        const char *name;
        const char *args; /* for the usage line */
        unsigned min_args, max_args;
        int method;                    /* the ControlMethodId it calls, or -1 */
        int (*run)(struct Client *cl); /* does the verb; returns the exit status */
        const char *help;
} Verb;

extern const Verb verbs[_VERB_MAX]; /* sorted by name */
/* getopt_long()'s, ending in a zero row; a short option's val is its letter. */
extern const struct option llmctl_options[];

typedef struct LlmctlArgs {
        const Verb *verb;
        char **args; /* the verb's arguments, pointing into argv */
        unsigned n_args;
        bool json;
        bool now;
        bool follow;
        bool help;
        bool version;
        const char *socket;
        /* bench */
        unsigned runs;      /* 0: the default */
        const char *format; /* table, markdown, json, csv; NULL: by the terminal */
        const char *output; /* also write the JSON report here */
        const char *tasks;  /* a folder of tasks instead of the bench.d folders */
        const char *url;    /* llmd's HTTP endpoint instead of its [llmd] listen */
        unsigned timeout;   /* seconds without a byte before a run is given up; 0: default */
        const char *suite;  /* "speed" (NULL) or "quality" */
        const char *keep;   /* quality: keep every request, response, answer and check here */
        /* fleet */
        const char *listen; /* HAProxy's bind address; NULL: ":8080" */
} LlmctlArgs;

/* Parses argv. Returns 0 with *ret filled, or -EINVAL with *ret_error saying what is wrong
 * (static or allocated into ret_error_buf). Options may come before or after the verb. */
int llmctl_parse_args(int argc, char *argv[], LlmctlArgs *ret, char *ret_error, size_t size);
void llmctl_help(FILE *f);
const Verb *llmctl_verb_find(const char *name);
