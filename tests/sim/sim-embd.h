/* SPDX-License-Identifier: MIT */
#pragma once

#include "sim-http.h"

/*
 * Embeddings and reranking, on a server started with --embedding (or --reranking, which is
 * --embedding with --pooling rank). A text's vector is drawn from a generator seeded with a hash
 * of the text, so the same input always gets the same vector; --pooling none gives one vector per
 * token. Vectors are normalized as embd_normalize asks (default 2, Euclidean). A text counts as
 * its words plus two tokens ([CLS] and [SEP], as the recorded BERT model adds them).
 */

enum MHD_Result embd_native(struct http_request *req); /* POST /embedding(s) */
enum MHD_Result embd_oai(struct http_request *req);    /* POST /v1/embeddings */
enum MHD_Result embd_rerank(struct http_request *req); /* POST /rerank, /v1/rerank, ... */
