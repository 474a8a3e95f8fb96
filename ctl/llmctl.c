/* SPDX-License-Identifier: MIT */
/*
 * llmctl, llmd's command line client: the verbs are in llmctl-verbs.c, each a row of one table
 * with its handler; the connection and the calls in llmctl-client.c.
 */
#include "llmctl-client.h"

int main(int argc, char *argv[])
{
        return client_main(argc, argv);
}
