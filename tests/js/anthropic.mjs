// SPDX-License-Identifier: MIT
// llmd's proxy as Anthropic's TypeScript SDK (@anthropic-ai/sdk) sees it: llama-server's
// Messages API (/v1/messages, /v1/messages/count_tokens) behind llmd. One case per run:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/anthropic.mjs CASE [MODEL]
//
// The SDK is given the root of LLMD_BASE_URL (it adds /v1/... itself). Environment: see
// common.mjs.

import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import {
  apiKey, checkDeltas, expectModel, main, modelFor, nonEmptyString, positiveInt, prompt,
  rootURL, timeout,
} from './common.mjs';

// maxRetries 0: a retry would hide a proxy that fails once.
const client = new Anthropic({ baseURL: rootURL, apiKey, maxRetries: 0, timeout });
const model = modelFor({});
const expected = expectModel(model);
const messages = [{ role: 'user', content: prompt }];
const maxTokens = 8;

function checkMessage(m, what) {
  assert.equal(m.type, 'message', `${what}: type ${JSON.stringify(m.type)}`);
  assert.equal(m.role, 'assistant', `${what}: role ${JSON.stringify(m.role)}`);
  assert.equal(m.model, expected, `${what}: model ${JSON.stringify(m.model)}`);
  assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason),
    `${what}: stop_reason ${JSON.stringify(m.stop_reason)}`);
  const texts = m.content.filter((c) => c.type === 'text').map((c) => c.text);
  nonEmptyString(texts.join(''), `${what}: the text of content ${JSON.stringify(m.content)}`);
  // Anthropic counts tokens read from the prompt cache apart from input_tokens.
  const { input_tokens: input, cache_read_input_tokens: cached = 0 } = m.usage ?? {};
  assert.ok(Number.isInteger(input) && input >= 0 && Number.isInteger(cached),
    `${what}: usage ${JSON.stringify(m.usage)}`);
  positiveInt(input + cached, `${what}: usage.input_tokens + cache_read_input_tokens`);
  positiveInt(m.usage?.output_tokens, `${what}: usage.output_tokens`);
  if (m.stop_reason === 'max_tokens') {
    assert.equal(m.usage.output_tokens, maxTokens,
      `${what}: stop_reason max_tokens after ${m.usage.output_tokens} tokens of ${maxTokens}`);
  }
  return texts.join('');
}

const cases = {
  async messages() {
    const m = await client.messages.create({ model, max_tokens: maxTokens, messages });
    const text = checkMessage(m, 'messages.create');
    return `stop=${m.stop_reason} text=${JSON.stringify(text)} ` +
      `usage=${JSON.stringify(m.usage)}`;
  },

  async messages_stream() {
    const stream = client.messages.stream({ model, max_tokens: maxTokens, messages });
    const types = [];
    const deltas = [];
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') {
        deltas.push(e.delta.text);
      }
    }
    const seen = types.join(' ');
    assert.equal(types[0], 'message_start', `events: ${seen}`);
    assert.equal(types.at(-1), 'message_stop', `events: ${seen}`);
    for (const t of ['content_block_start', 'content_block_stop', 'message_delta']) {
      assert.ok(types.includes(t), `no ${t} among the events: ${seen}`);
    }
    checkDeltas(deltas, 'text_delta');
    const m = await stream.finalMessage();
    const text = checkMessage(m, 'messages.stream');
    assert.equal(text, deltas.join(''), 'the final message is not the deltas put together');
    return `events=${types.length} deltas=${deltas.length} stop=${m.stop_reason} ` +
      `text=${JSON.stringify(text)}`;
  },

  async count_tokens() {
    const count = async (content) =>
      (await client.messages.countTokens({ model, messages: [{ role: 'user', content }] }))
        .input_tokens;
    const short = await count(prompt);
    const long = await count(
      `${prompt} ${'The quick brown fox jumps over the lazy dog. '.repeat(20)}`);
    positiveInt(short, 'input_tokens');
    positiveInt(long, 'input_tokens of a longer message');
    assert.ok(long > short, `a longer message counts ${long} tokens, the short one ${short}`);
    return `short=${short} long=${long}`;
  },
};

await main(cases);
