// SPDX-License-Identifier: MIT
// llmd's errors for a cause that passes (a stream cut by a switch, a child that died, a hold
// timeout), as a client that decides by the error's text sees them. One case per API:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 [LLMD_CUT='["llmctl", ...]'] \
//         node tests/js/retry.mjs chat|messages|responses [MODEL]
//
// Each case streams through the real SDK (openai for chat completions and Responses,
// @anthropic-ai/sdk for Messages), with the SDK's own retries off, and runs LLMD_CUT (a command,
// as a JSON array) once the first token has come. The error is turned into the text an agent
// sees the way pi does it (@mariozechner/pi-ai: an SDK error's message; for a Responses
// "response.failed" event, "CODE: MESSAGE"), and the case fails unless pi's retry rule, and
// for Messages Claude Code's, would retry it. Prints "ok CASE tokens=N message=...".

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import process from 'node:process';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { apiKey, baseURL, main, modelFor, prompt, rootURL, timeout } from './common.mjs';

const openai = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout });
const anthropic = new Anthropic({ baseURL: rootURL, apiKey, maxRetries: 0, timeout });
const model = modelFor({});
const maxTokens = 200;
const cut = process.env.LLMD_CUT ? JSON.parse(process.env.LLMD_CUT) : null;

// What pi's agent retries: an error whose text holds one of these (case ignored; a "." stands
// for any one character or none). The list of pi's AgentSession._isRetryableError
// (packages/coding-agent/src/core/agent-session.ts, pi 0.58); context-overflow errors, which
// it leaves to compaction, are never llmd's.
const PI_RETRY_WORDS = [
  'overloaded', 'rate.limit', 'too many requests', '429', '500', '502', '503', '504',
  'service.unavailable', 'server.error', 'internal.error', 'connection.error',
  'connection.refused', 'other side closed', 'fetch failed', 'upstream.connect',
  'reset before headers', 'terminated', 'retry delay',
];
const piRetries = (text) => PI_RETRY_WORDS.some(
  (w) => new RegExp(w.replaceAll('.', '.?'), 'i').test(text));

// Claude Code retries a Messages stream's error when its text names an overloaded_error.
const claudeCodeRetries = (text) => text.includes('"type":"overloaded_error"');

function cutOnce(state) {
  state.tokens++;
  if (state.tokens === 1 && cut) {
    execFileSync(cut[0], cut.slice(1), { stdio: 'ignore' });
  }
}

function verdict(state, rules) {
  assert.ok(state.message !== null,
    `the stream ended without an error after ${state.tokens} token(s)`);
  for (const [name, retries] of rules) {
    assert.ok(retries(state.message), `${name} would not retry: ${state.message}`);
  }
  return `tokens=${state.tokens} message=${JSON.stringify(state.message)}`;
}

const cases = {
  async chat() {
    const state = { tokens: 0, message: null };
    try {
      const stream = await openai.chat.completions.create({
        model, max_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: prompt }],
      });
      for await (const chunk of stream) {
        if (chunk.choices?.[0]?.delta?.content) {
          cutOnce(state);
        }
      }
    } catch (e) {
      state.message = e.message;
    }
    return verdict(state, [['pi', piRetries]]);
  },

  async messages() {
    const state = { tokens: 0, message: null };
    try {
      const stream = await anthropic.messages.create({
        model, max_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: prompt }],
      });
      for await (const e of stream) {
        if (e.type === 'content_block_delta') {
          cutOnce(state);
        }
      }
    } catch (e) {
      state.message = e.message;
    }
    return verdict(state, [['pi', piRetries], ['Claude Code', claudeCodeRetries]]);
  },

  async responses() {
    const state = { tokens: 0, message: null };
    try {
      const stream = await openai.responses.create({
        model, max_output_tokens: maxTokens, stream: true, input: prompt,
      });
      for await (const e of stream) {
        if (e.type === 'response.output_text.delta') {
          cutOnce(state);
        } else if (e.type === 'response.failed') {
          const err = e.response?.error;
          state.message = err ? `${err.code || 'unknown'}: ${err.message || 'no message'}`
            : 'Unknown error (no error details in response)';
          break;
        }
      }
    } catch (e) {
      state.message = e.message;
    }
    return verdict(state, [['pi', piRetries]]);
  },
};

await main(cases);
