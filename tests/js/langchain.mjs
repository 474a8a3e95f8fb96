// SPDX-License-Identifier: MIT
// llmd's proxy as LangChain's OpenAI integration (@langchain/openai) sees it. One case per run:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/langchain.mjs CASE [MODEL]
//
// MODEL: default qwen; nomic for embeddings. Environment: see common.mjs.

import assert from 'node:assert/strict';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import {
  apiKey, baseURL, checkDeltas, checkVectors, expectModel, main, modelFor, nonEmptyString,
  positiveInt, prompt, timeout,
} from './common.mjs';

const model = modelFor({ embeddings: 'nomic' });
const expected = expectModel(model);
// maxRetries 0: a retry would hide a proxy that fails once.
const options = { model, apiKey, configuration: { baseURL }, maxRetries: 0, timeout };
const maxTokens = 8;
const chat = new ChatOpenAI({ ...options, maxTokens });

function checkUsage(u, what) {
  positiveInt(u?.input_tokens, `${what}: usage_metadata.input_tokens`);
  positiveInt(u?.output_tokens, `${what}: usage_metadata.output_tokens`);
  assert.equal(u.total_tokens, u.input_tokens + u.output_tokens,
    `${what}: usage_metadata ${JSON.stringify(u)}`);
}

const cases = {
  async invoke() {
    const m = await chat.invoke([['human', prompt]]);
    nonEmptyString(m.content, 'content');
    assert.equal(m.response_metadata?.model_name, expected,
      `response_metadata.model_name ${JSON.stringify(m.response_metadata?.model_name)}`);
    nonEmptyString(m.response_metadata?.finish_reason, 'response_metadata.finish_reason');
    checkUsage(m.usage_metadata, 'invoke');
    return `finish=${m.response_metadata.finish_reason} content=${JSON.stringify(m.content)} ` +
      `usage=${m.usage_metadata.input_tokens}+${m.usage_metadata.output_tokens}`;
  },

  async stream() {
    const deltas = [];
    let all = null;
    for await (const chunk of await chat.stream([['human', prompt]])) {
      if (typeof chunk.content === 'string' && chunk.content.length > 0) {
        deltas.push(chunk.content);
      }
      all = all ? all.concat(chunk) : chunk;
    }
    checkDeltas(deltas, 'stream');
    assert.equal(all.content, deltas.join(''), 'the chunks put together are not the deltas');
    // LangChain asks for stream_options.include_usage and reads the last chunk's usage.
    checkUsage(all.usage_metadata, 'stream');
    return `deltas=${deltas.length} content=${JSON.stringify(all.content)} ` +
      `usage=${all.usage_metadata.input_tokens}+${all.usage_metadata.output_tokens}`;
  },

  async embeddings() {
    const embed = new OpenAIEmbeddings(options);
    const docs = await embed.embedDocuments(['hello world', 'the quick brown fox', 'llmd']);
    const dim = checkVectors(docs, 3, 'embedDocuments');
    const query = await embed.embedQuery('hello world');
    assert.equal(checkVectors([query], 1, 'embedQuery'), dim,
      `embedQuery: dimension ${query.length}, embedDocuments ${dim}`);
    return `dim=${dim} documents=${docs.length}`;
  },
};

await main(cases);
