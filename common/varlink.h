/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "macro.h"

/*
 * Varlink framing, for both ends of the control socket: each message is one JSON object followed
 * by a NUL byte. A call is {"method": "iface.Method", "parameters": {...}, "more": true?};
 * a reply is {"parameters": {...}, "continues": true?} or {"error": "iface.Name",
 * "parameters": {...}}. Nothing here logs; callers decide what a bad frame means.
 */

#define VARLINK_FRAME_MAX (64 * 1024) /* a call or reply larger than this is refused */

typedef struct VarlinkReader {
        char *buf;
        size_t len, size;
        size_t consumed; /* bytes of buf already returned as frames */
} VarlinkReader;

void varlink_reader_init(VarlinkReader *r);
void varlink_reader_done(VarlinkReader *r);
/* Appends bytes; -EMSGSIZE when an unterminated frame would exceed VARLINK_FRAME_MAX. */
int varlink_reader_feed(VarlinkReader *r, const void *data, size_t len);
/* The next complete frame (NUL excluded, valid until the next feed): 1, or 0 when none yet. */
int varlink_reader_next(VarlinkReader *r, const char **ret_frame, size_t *ret_len);
/* Bytes held that do not yet form a frame (an unterminated frame at end of stream). */
size_t varlink_reader_pending(const VarlinkReader *r);

typedef struct VarlinkCall {
        char *method;
        cJSON *parameters; /* an object, never NULL */
        bool more;
        bool oneway;
} VarlinkCall;

/* Parses and checks a call frame: -EILSEQ not UTF-8, -EBADMSG not JSON (or trailing bytes),
 * -ENOTUNIQ an object that names a member twice, -EPROTO not a call (wrong types, missing
 * method). */
int varlink_call_parse(const char *frame, size_t len, VarlinkCall *ret);
void varlink_call_done(VarlinkCall *c);

typedef struct VarlinkReply {
        char *error;       /* NULL for a successful reply */
        cJSON *parameters; /* an object, never NULL */
        bool continues;
} VarlinkReply;

int varlink_reply_parse(const char *frame, size_t len, VarlinkReply *ret);
void varlink_reply_done(VarlinkReply *r);

/* Serializes a message with its NUL terminator (*ret_len includes it). parameters may be NULL
 * (an empty object is sent) and is not consumed. */
int varlink_format_call(const char *method, const cJSON *parameters, bool more, char **ret,
                        size_t *ret_len);
int varlink_format_reply(const cJSON *parameters, bool continues, char **ret, size_t *ret_len);
int varlink_format_error(const char *error, const cJSON *parameters, char **ret, size_t *ret_len);
