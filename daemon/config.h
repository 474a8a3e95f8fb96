/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdio.h>

#include "macro.h"

/*
 * llama-generate.conf: [llmd] holds the daemon's settings, [*] flags shared by every model, and
 * each other section is one model profile. Keys in a profile that are not llmd's own become
 * llama-server flags by their long name. See llama-generate.conf(5).
 */

typedef enum Routing {
        ROUTING_ACTIVE,
        ROUTING_SWITCH,
        ROUTING_REJECT,
        _ROUTING_MAX,
} Routing;

typedef struct ModelConfig {
        char *name;
        unsigned line; /* of the section header */
        char **aliases;
        char *model_path;
        bool pin;
        bool embeddings;
        bool load_on_startup;
        uint16_t port; /* 0: none; llmd itself listens there and forwards to this model */
        char **env;    /* "KEY=VALUE", added to the child's environment */
        char **args;   /* the llama-server flags, in order, after --model and --host */
        uint64_t load_timeout_usec;
        uint64_t stop_timeout_usec;
        uint64_t health_interval_usec;
        uint64_t restart_usec;
        unsigned start_limit_burst;
        uint64_t start_limit_interval_usec;
        /* No byte from the child for this long mid-request: the client gets an error and the
         * request is cancelled. The proxy reads it from the running configuration, so a
         * reload changes it without restarting the child. */
        uint64_t upstream_timeout_usec;
        /* The GPU memory the model needs: bytes, or 0 for auto (estimated from the file's
         * header, then what it was seen to use). */
        uint64_t gpu_memory;
        /* gpus = N,M: the GPUs it goes on, a mask of NVML's numbers; 0: auto, the planner's
         * choice (residency.h) */
        uint64_t gpus;
        /* Resident but not active and unused for this long: stopped. 0: never. */
        uint64_t unload_after_usec;
        /* Its slots' prompt caches are saved before a planned stop and restored when it is
         * ready again (config_model_prompt_cache() says whether they are): slots holding at
         * least this many tokens, a save taking at most this long. */
        bool prompt_cache;
        unsigned prompt_cache_min_tokens;
        /* llmctl bench --suite quality's sampling for it (NAN: llama-server's own) and the
         * factor on each task's token budget (a reasoning model thinks first). */
        double bench_temperature, bench_top_p, bench_max_tokens_factor;
        uint64_t prompt_cache_save_timeout_usec;
        /* Requests failed by the child in a row (5xx answers, stalls) before it is restarted
         * as after a crash; 0: never. [llmd]'s max-child-errors unless the profile says. */
        unsigned max_child_errors;
        /* health-check = generate: the periodic check while ready is a one-token completion,
         * not GET /health. */
        bool health_generate;
} ModelConfig;

typedef struct ListenAddress {
        char *host; /* "" for every address */
        uint16_t port;
} ListenAddress;

typedef struct Config {
        char *path;
        ListenAddress *listen;
        size_t n_listen;
        char *default_model; /* resolved to a profile name */
        Routing routing;
        char *llama_server; /* the binary; NULL: $LLAMA_SERVER, then "llama-server" from $PATH */
        /* The proxy's limits. */
        char *api_key_file;     /* NULL: no keys, inference is open */
        uint64_t max_body_size; /* bytes */
        unsigned max_connections;
        unsigned max_connections_per_client; /* from one address */
        uint64_t header_timeout_usec;        /* a new connection must send a whole request header */
        char **cors_origins;                 /* "*", "none" or origins; NULL: "*" */
        unsigned hold_queue;                 /* requests waiting for a model, at most */
        uint64_t hold_timeout_usec;
        uint64_t idle_timeout_usec;
        uint64_t drain_timeout_usec; /* requests on a model being switched away may finish */
        bool log_requests;
        unsigned max_child_errors; /* the profiles' default */
        unsigned activity_size;    /* requests kept for the activity log */
        bool metrics_public;       /* /llmd/metrics needs no key */
        /* Residency: how many generation models may be loaded at once (0: as many as the GPU
         * memory allows where it is known, else 1), and the GPU memory budget (bytes; 0: auto,
         * what the GPUs report less a margin). */
        unsigned max_resident;
        uint64_t gpu_memory;
        uint64_t gpus;              /* the GPUs llmd may use, a mask of NVML's numbers; 0: all */
        uint64_t prompt_cache_size; /* all models' saved prompt caches; 0: auto */
        bool prefetch;              /* read recently used models into the page cache */
        uint64_t prefetch_limit;    /* at most this much (0: as free memory allows) */
        ModelConfig **models;
        size_t n_models;
        char **errors; /* "FILE:LINE: message", one per problem found */
} Config;

/* How a key of a model section (or of [*]) is taken. A key no row names is a llama-server flag
 * (CONFIG_KEY_FLAG): "key = value" becomes --key value. */
typedef enum ConfigKeyKind {
        CONFIG_KEY_FLAG,    /* passed to llama-server */
        CONFIG_KEY_OWN,     /* llmd's own, may be shared through [*] */
        CONFIG_KEY_PROFILE, /* llmd's own, only in a model's section */
        CONFIG_KEY_REFUSED,
} ConfigKeyKind;

typedef struct ConfigModelKey {
        const char *key;
        ConfigKeyKind kind;
        const char *reason; /* why it is refused */
} ConfigModelKey;

extern const ConfigModelKey config_model_keys[]; /* sorted by key */
extern const size_t config_n_model_keys;

/* llama-server's short flag names, refused with the long name to write instead. */
typedef struct ConfigShortFlag {
        const char *short_name;
        const char *long_name;
} ConfigShortFlag;

extern const ConfigShortFlag config_short_flags[];
extern const size_t config_n_short_flags;

/* One key of [llmd], as config.c parses it: a row of config_llmd_keys[], the one list of these
 * keys that the parser, the unit test and the man page test (through tests/docs/doc-tables)
 * read. */
typedef struct RawEntry RawEntry;
typedef struct ConfigLlmdKey ConfigLlmdKey;
struct ConfigLlmdKey {
        const char *key;
        /* Checks e->value and sets the field; reports what is wrong itself. Returns 0, -EINVAL
         * (reported) or -ENOMEM. */
        int (*parse)(Config *c, const ConfigLlmdKey *k, const RawEntry *e);
        size_t offset;     /* of its field in Config */
        uint64_t min, max; /* the bounds, for the parsers that have any */
        /* Written as in the file and parsed like it before the file is read; NULL: the field
         * stays zero, which means what doc says. */
        const char *default_value;
        const char *doc;
};

extern const ConfigLlmdKey config_llmd_keys[]; /* sorted by key */
extern const size_t config_n_llmd_keys;

#define FOREACH_MODEL(m, c)                       \
        for (ModelConfig **_i_ = (c)->models, *m; \
             _i_ && _i_ < (c)->models + (c)->n_models && ((m) = *_i_, true); _i_++)

/* Parses the file. On -EINVAL (*ret) holds the errors found (config->errors, at least one);
 * on success it holds a valid configuration. Other negative values: the file could not be read
 * (open_regular()'s errors, -EFBIG above 4 MiB; a NUL byte is an error of the file), and *ret
 * is NULL. */
int config_load(const char *path, Config **ret);
/* The same from a string, with path used in messages only. */
int config_load_string(const char *path, const char *text, Config **ret);
Config *config_free(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_free);

ModelConfig *config_find_model(const Config *c, const char *name_or_alias);
/* A deep copy, or NULL without memory. */
ModelConfig *config_model_copy(const ModelConfig *m);
ModelConfig *config_model_free(ModelConfig *m);
/* Two profiles that would start the same child (same flags, path, env, timeouts). */
bool config_model_equal(const ModelConfig *a, const ModelConfig *b);

/* Whether llmd keeps the model's prompt caches: prompt-cache is on, it is a generation model
 * (not pinned, not an embedder), and its profile does not set slot-save-path itself. */
bool config_model_prompt_cache(const ModelConfig *m);

/* What llama-server logs unless the profile says: warnings and errors (2), not the ten info
 * lines of every request (3, its own default). */
#define CONFIG_CHILD_LOG_VERBOSITY "2"

/* The full argv of a child: binary, --model, --host SOCKET, --alias NAME (unless the profile
 * sets alias), --slot-save-path DIR (where slot_dir is not NULL), --log-verbosity 2 (unless
 * the profile sets verbosity, verbose or log-disable, or LLAMA_ARG_LOG_VERBOSITY in env), then
 * the profile's flags. */
int config_model_argv(const ModelConfig *m, const char *binary, const char *socket_path,
                      const char *slot_dir, char ***ret);

const char *routing_to_string(Routing r);
Routing routing_from_string(const char *s);
