// SPDX-License-Identifier: MIT
// llmd's proxy as the Vercel AI SDK (ai, with @ai-sdk/openai-compatible) sees it. One case per
// run:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/aisdk.mjs CASE [MODEL]
//
// MODEL: default qwen; nomic for embed_many. Environment: see common.mjs.

import assert from 'node:assert/strict';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { embedMany, generateText, streamText } from 'ai';
import {
  apiKey, baseURL, checkDeltas, checkVectors, expectModel, main, modelFor, nonEmptyString,
  positiveInt, prompt, timeout,
} from './common.mjs';

const model = modelFor({ embed_many: 'nomic' });
const expected = expectModel(model);
// includeUsage: stream_options.include_usage, so a stream reports its usage too.
const llmd = createOpenAICompatible({ name: 'llmd', baseURL, apiKey, includeUsage: true });
// maxRetries 0: a retry would hide a proxy that fails once.
const common = { maxRetries: 0, abortSignal: AbortSignal.timeout(timeout) };
const maxOutputTokens = 8;

function checkResult({ finishReason, usage, response }, what) {
  assert.ok(['stop', 'length'].includes(finishReason),
    `${what}: finishReason ${JSON.stringify(finishReason)}`);
  positiveInt(usage?.inputTokens, `${what}: usage.inputTokens`);
  positiveInt(usage?.outputTokens, `${what}: usage.outputTokens`);
  assert.ok(usage.outputTokens <= maxOutputTokens,
    `${what}: ${usage.outputTokens} output tokens, maxOutputTokens ${maxOutputTokens}`);
  assert.equal(response?.modelId, expected,
    `${what}: modelId ${JSON.stringify(response?.modelId)}`);
}

const cases = {
  async generate_text() {
    const r = await generateText(
      { model: llmd.chatModel(model), prompt, maxOutputTokens, ...common });
    nonEmptyString(r.text, 'text');
    checkResult(r, 'generateText');
    return `finish=${r.finishReason} text=${JSON.stringify(r.text)} ` +
      `usage=${r.usage.inputTokens}+${r.usage.outputTokens}`;
  },

  async stream_text() {
    const errors = [];
    const r = streamText({
      model: llmd.chatModel(model), prompt, maxOutputTokens, ...common,
      // streamText reports a failed request here, not by throwing.
      onError: ({ error }) => errors.push(error),
    });
    const deltas = [];
    for await (const d of r.textStream) {
      if (d.length > 0) {
        deltas.push(d);
      }
    }
    assert.deepEqual(errors, [], `streamText failed: ${errors.join('; ')}`);
    checkDeltas(deltas, 'textStream');
    assert.equal(await r.text, deltas.join(''), 'text is not the deltas put together');
    const [finishReason, usage, response] =
      await Promise.all([r.finishReason, r.usage, r.response]);
    checkResult({ finishReason, usage, response }, 'streamText');
    return `deltas=${deltas.length} finish=${finishReason} text=${JSON.stringify(await r.text)} ` +
      `usage=${usage.inputTokens}+${usage.outputTokens}`;
  },

  async embed_many() {
    const values = ['hello world', 'the quick brown fox', 'llmd'];
    const r = await embedMany({ model: llmd.embeddingModel(model), values, ...common });
    const dim = checkVectors(r.embeddings, values.length, 'embedMany');
    assert.deepEqual(r.values, values, 'values are not the inputs, in order');
    return `dim=${dim} batch=${r.embeddings.length}`;
  },
};

await main(cases);
