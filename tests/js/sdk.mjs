// SPDX-License-Identifier: MIT
// llmd's proxy as the official OpenAI JavaScript SDK sees it. One case per run:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/sdk.mjs CASE [MODEL]
//
// MODEL is the model asked for (default: qwen; nomic for embeddings; gemma for
// stream_during_swap). Optional environment:
//     LLMD_EXPECT_MODEL   the "model" every response must name (default: MODEL)
//     LLMD_EXPECT_MODELS  comma-separated ids models.list must return, no more, no fewer
//     LLMD_TIMEOUT_MS     the SDK's request timeout (default 30000)
// Prints one line "ok CASE ..." and exits 0, or throws (exit status 1, the error on stderr).
// Only the SDK and Node's built-ins.

import assert from 'node:assert/strict';
import process from 'node:process';
import OpenAI from 'openai';

const [caseName, modelArg] = process.argv.slice(2);
const baseURL = process.env.LLMD_BASE_URL;
if (!baseURL) {
  throw new Error('LLMD_BASE_URL is not set (e.g. http://127.0.0.1:8080/v1)');
}

const client = new OpenAI({
  baseURL,
  apiKey: process.env.OPENAI_API_KEY || 'sk-no-key',
  // The SDK retries 408/409/429/5xx and connection errors twice by default: that would hide a
  // proxy that answers 503 while a model loads. Every failure must show.
  maxRetries: 0,
  timeout: Number(process.env.LLMD_TIMEOUT_MS || 30000),
});

const defaultModel = { embeddings: 'nomic', stream_during_swap: 'gemma' };
const model = modelArg || defaultModel[caseName] || 'qwen';
const expectModel = process.env.LLMD_EXPECT_MODEL || model;
const messages = [{ role: 'user', content: 'Say hello in a few words.' }];

function nonEmptyString(v, what) {
  assert.equal(typeof v, 'string', `${what} is not a string: ${JSON.stringify(v)}`);
  assert.ok(v.length > 0, `${what} is empty`);
}

function vectors(res, n, what) {
  assert.equal(res.object, 'list', `${what}: object ${JSON.stringify(res.object)}`);
  assert.ok(Array.isArray(res.data), `${what}: data is not an array`);
  assert.equal(res.data.length, n, `${what}: ${res.data.length} vectors for ${n} inputs`);
  const len = res.data[0].embedding?.length;
  res.data.forEach((d, i) => {
    assert.equal(d.index, i, `${what}: data[${i}].index is ${d.index}`);
    assert.ok(Array.isArray(d.embedding), `${what}: data[${i}].embedding is not an array`);
    assert.ok(d.embedding.length > 0, `${what}: data[${i}].embedding is empty`);
    assert.equal(d.embedding.length, len,
      `${what}: data[${i}] has ${d.embedding.length} numbers, data[0] ${len}`);
    assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)),
      `${what}: data[${i}].embedding holds something other than finite numbers`);
  });
  return res.data.map((d) => d.embedding);
}

// The SDK's stream, collected.
async function collectStream(stream) {
  const out = { chunks: 0, content: [], finish: null, models: new Set(), ids: new Set() };
  for await (const chunk of stream) {
    out.chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk',
      `chunk object ${JSON.stringify(chunk.object)}`);
    out.models.add(chunk.model);
    out.ids.add(chunk.id);
    for (const c of chunk.choices ?? []) {
      if (typeof c.delta?.content === 'string' && c.delta.content.length > 0) {
        out.content.push(c.delta.content);
      }
      if (c.finish_reason) {
        out.finish = c.finish_reason;
      }
    }
  }
  return out;
}

function checkStream(s, what) {
  assert.ok(s.content.length >= 2,
    `${what}: ${s.content.length} content delta(s) in ${s.chunks} chunk(s)`);
  nonEmptyString(s.finish, `${what}: finish_reason`);
  assert.equal(s.ids.size, 1, `${what}: chunks carry ${s.ids.size} ids: ${[...s.ids].join(', ')}`);
  assert.deepEqual([...s.models], [expectModel],
    `${what}: chunks name models ${[...s.models].join(', ')}`);
}

const cases = {
  async models() {
    const ids = [];
    for await (const m of client.models.list()) {
      nonEmptyString(m.id, 'model id');
      assert.equal(m.object, 'model', `${m.id}: object ${JSON.stringify(m.object)}`);
      ids.push(m.id);
    }
    assert.equal(new Set(ids).size, ids.length, `duplicate ids: ${ids.join(',')}`);
    const want = (process.env.LLMD_EXPECT_MODELS || model).split(',').filter(Boolean);
    assert.deepEqual([...ids].sort(), [...want].sort(),
      `ids ${ids.join(',')}, expected ${want.join(',')}`);
    return `ids=${ids.join(',')}`;
  },

  async chat() {
    const r = await client.chat.completions.create({ model, messages, max_tokens: 8 });
    assert.equal(r.object, 'chat.completion', `object ${JSON.stringify(r.object)}`);
    assert.ok(r.choices?.length >= 1, 'no choices');
    assert.equal(r.choices[0].message.role, 'assistant');
    nonEmptyString(r.choices[0].message.content, 'choices[0].message.content');
    nonEmptyString(r.choices[0].finish_reason, 'choices[0].finish_reason');
    assert.equal(r.model, expectModel, `model ${JSON.stringify(r.model)}`);
    const { finish_reason: finish, message } = r.choices[0];
    return `model=${r.model} finish=${finish} content=${JSON.stringify(message.content)}`;
  },

  async chat_stream() {
    const stream = await client.chat.completions.create(
      { model, messages, max_tokens: 8, stream: true });
    const s = await collectStream(stream);
    checkStream(s, 'stream');
    // The SDK ends quietly when the stream stops without "data: [DONE]"; look at the bytes too.
    const raw = await client.chat.completions
      .create({ model, messages, max_tokens: 4, stream: true })
      .asResponse();
    assert.match(raw.headers.get('content-type') ?? '', /^text\/event-stream/,
      `content-type ${raw.headers.get('content-type')}`);
    const text = await raw.text();
    assert.match(text, /\ndata: \[DONE\]\s*$/,
      `the raw stream does not end with [DONE]: ...${JSON.stringify(text.slice(-200))}`);
    return `model=${[...s.models][0]} chunks=${s.chunks} deltas=${s.content.length} ` +
      `finish=${s.finish} done=yes`;
  },

  async completions() {
    const r = await client.completions.create(
      { model, prompt: 'Once upon a time', max_tokens: 8 });
    assert.equal(r.object, 'text_completion', `object ${JSON.stringify(r.object)}`);
    assert.ok(r.choices?.length >= 1, 'no choices');
    nonEmptyString(r.choices[0].text, 'choices[0].text');
    assert.equal(r.model, expectModel, `model ${JSON.stringify(r.model)}`);
    return `model=${r.model} text=${JSON.stringify(r.choices[0].text)}`;
  },

  async embeddings() {
    // The SDK asks for encoding_format "base64" unless told otherwise and decodes the answer
    // itself: a server that ignores it and sends floats gives garbage (or a RangeError) here.
    const embed = (input, extra) => client.embeddings.create({ model, input, ...extra });
    const one = vectors(await embed('hello world'), 1, 'string');
    const many = vectors(await embed(['hello world', 'the quick brown fox', 'llmd']), 3, 'array');
    assert.equal(many[0].length, one[0].length,
      `dimension ${one[0].length} for a string, ${many[0].length} in an array`);
    const float = vectors(await embed('hello world', { encoding_format: 'float' }), 1, 'float');
    assert.equal(float[0].length, one[0].length,
      `dimension ${one[0].length} (base64), ${float[0].length} (float)`);
    const far = one[0].findIndex(
      (x, i) => Math.abs(x - float[0][i]) > 1e-5 * Math.max(1, Math.abs(x)));
    assert.equal(far, -1,
      `base64 and float disagree at [${far}]: ${one[0][far]} vs ${float[0][far]}`);
    return `dim=${one[0].length} batch=${many.length} base64=float`;
  },

  async stream_during_swap() {
    const t0 = performance.now();
    const stream = await client.chat.completions.create(
      { model, messages, max_tokens: 8, stream: true });
    const tHeaders = performance.now() - t0;
    const s = await collectStream(stream);
    checkStream(s, 'stream during swap');
    const tTotal = performance.now() - t0;
    return `model=${[...s.models].join(',')} chunks=${s.chunks} deltas=${s.content.length} ` +
      `finish=${s.finish} headers_after_ms=${Math.round(tHeaders)} total_ms=${Math.round(tTotal)}`;
  },
};

const run = cases[caseName];
if (!run) {
  throw new Error(
    `unknown case ${JSON.stringify(caseName)}; known: ${Object.keys(cases).join(' ')}`);
}
console.log(`ok ${caseName} ${await run()}`);
