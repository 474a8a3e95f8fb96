// SPDX-License-Identifier: MIT
// llmd's proxy as the official OpenAI JavaScript SDK sees it. One case per run:
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/sdk.mjs CASE [MODEL]
//
// MODEL is the model asked for (default: qwen; nomic for embeddings; gemma for
// stream_during_swap). Besides common.mjs's environment:
//     LLMD_EXPECT_MODELS  comma-separated ids models.list must return, no more, no fewer
// Only the SDK and Node's built-ins.

import assert from 'node:assert/strict';
import process from 'node:process';
import OpenAI from 'openai';
import {
  apiKey, baseURL, checkDeltas, checkVectors, expectModel, main, modelFor, nonEmptyString,
  positiveInt, prompt, timeout,
} from './common.mjs';

const client = new OpenAI({
  baseURL,
  apiKey,
  // The SDK retries 408/409/429/5xx and connection errors twice by default: that would hide a
  // proxy that answers 503 while a model loads. Every failure must show.
  maxRetries: 0,
  timeout,
});

const model = modelFor({ embeddings: 'nomic', stream_during_swap: 'gemma' });
const expected = expectModel(model);
const messages = [{ role: 'user', content: prompt }];

function vectors(res, n, what) {
  assert.equal(res.object, 'list', `${what}: object ${JSON.stringify(res.object)}`);
  assert.ok(Array.isArray(res.data), `${what}: data is not an array`);
  res.data.forEach((d, i) => assert.equal(d.index, i, `${what}: data[${i}].index is ${d.index}`));
  checkVectors(res.data.map((d) => d.embedding), n, what);
  return res.data.map((d) => d.embedding);
}

// The SDK's stream, collected.
async function collectStream(stream) {
  const out = {
    chunks: 0, content: [], finish: null, models: new Set(), ids: new Set(), usage: [],
  };
  for await (const chunk of stream) {
    out.chunks++;
    if (chunk.usage) {
      out.usage.push({ usage: chunk.usage, choices: chunk.choices?.length, at: out.chunks });
    }
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
  checkDeltas(s.content, `${what} (${s.chunks} chunks)`);
  nonEmptyString(s.finish, `${what}: finish_reason`);
  assert.equal(s.ids.size, 1, `${what}: chunks carry ${s.ids.size} ids: ${[...s.ids].join(', ')}`);
  assert.deepEqual([...s.models], [expected],
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
    assert.equal(r.model, expected, `model ${JSON.stringify(r.model)}`);
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
    assert.equal(r.model, expected, `model ${JSON.stringify(r.model)}`);
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

  async stream_usage() {
    // stream_options.include_usage: one more chunk before [DONE], with the usage and no choices
    // (https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options).
    const maxTokens = 6;
    const s = await collectStream(await client.chat.completions.create({
      model, messages, max_tokens: maxTokens, stream: true,
      stream_options: { include_usage: true },
    }));
    checkStream(s, 'stream with usage');
    assert.equal(s.usage.length, 1, `${s.usage.length} chunks carry a usage`);
    const { usage: u, choices, at } = s.usage[0];
    assert.equal(at, s.chunks, `the usage is in chunk ${at} of ${s.chunks}`);
    assert.equal(choices, 0, `the usage chunk carries ${choices} choice(s)`);
    positiveInt(u.prompt_tokens, 'usage.prompt_tokens');
    positiveInt(u.completion_tokens, 'usage.completion_tokens');
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens,
      `usage ${JSON.stringify(u)}: total is not prompt + completion`);
    if (s.finish === 'length') {
      assert.equal(u.completion_tokens, maxTokens,
        `finish "length" after ${u.completion_tokens} tokens, max_tokens ${maxTokens}`);
    }
    return `deltas=${s.content.length} finish=${s.finish} prompt_tokens=${u.prompt_tokens} ` +
      `completion_tokens=${u.completion_tokens}`;
  },

  async tools() {
    // A tiny model answers anything: what counts is that a request with tools, and the turn
    // after a tool call, come back as well-formed completions.
    const tools = [{
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'The current weather in a city.',
        parameters: {
          type: 'object',
          properties: { city: { type: 'string', description: 'The city, e.g. Paris' } },
          required: ['city'],
        },
      },
    }];
    const ask = { role: 'user', content: 'What is the weather in Paris?' };
    const call = { id: 'call_1', type: 'function',
      function: { name: 'get_weather', arguments: '{"city":"Paris"}' } };
    const turns = {
      ask: [ask],
      answer: [ask, { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: 'call_1', content: 'Sunny, 21 degrees Celsius.' }],
    };
    const out = [];
    for (const [turn, msgs] of Object.entries(turns)) {
      const r = await client.chat.completions.create(
        { model, messages: msgs, tools, tool_choice: 'auto', max_tokens: 16 });
      assert.equal(r.object, 'chat.completion', `${turn}: object ${JSON.stringify(r.object)}`);
      assert.equal(r.model, expected, `${turn}: model ${JSON.stringify(r.model)}`);
      const { message, finish_reason: finish } = r.choices?.[0] ?? {};
      assert.equal(message?.role, 'assistant', `${turn}: message ${JSON.stringify(message)}`);
      assert.ok(['stop', 'length', 'tool_calls'].includes(finish),
        `${turn}: finish_reason ${JSON.stringify(finish)}`);
      if (message.tool_calls?.length) {
        for (const c of message.tool_calls) {
          nonEmptyString(c.id, `${turn}: tool_calls[].id`);
          assert.equal(c.type, 'function', `${turn}: tool call ${JSON.stringify(c)}`);
          assert.equal(c.function?.name, 'get_weather', `${turn}: tool call ${JSON.stringify(c)}`);
          assert.equal(typeof c.function.arguments, 'string',
            `${turn}: tool call ${JSON.stringify(c)}`);
        }
      } else {
        nonEmptyString(message.content, `${turn}: message.content`);
      }
      positiveInt(r.usage?.prompt_tokens, `${turn}: usage.prompt_tokens`);
      out.push(`${turn}=${finish}/${message.tool_calls?.length ? 'tool_calls' : 'content'}` +
        `/${r.usage.prompt_tokens}`);
    }
    return out.join(' ');
  },

  async responses() {
    const r = await client.responses.create({ model, input: prompt, max_output_tokens: 8 });
    assert.equal(r.object, 'response', `object ${JSON.stringify(r.object)}`);
    assert.ok(['completed', 'incomplete'].includes(r.status), `status ${JSON.stringify(r.status)}`);
    assert.equal(r.model, expected, `model ${JSON.stringify(r.model)}`);
    const msg = r.output?.find((o) => o.type === 'message');
    assert.equal(msg?.role, 'assistant', `output ${JSON.stringify(r.output)}`);
    nonEmptyString(r.output_text, 'output_text');
    positiveInt(r.usage?.input_tokens, 'usage.input_tokens');
    positiveInt(r.usage?.output_tokens, 'usage.output_tokens');
    return `status=${r.status} text=${JSON.stringify(r.output_text)} ` +
      `input_tokens=${r.usage.input_tokens} output_tokens=${r.usage.output_tokens}`;
  },

  async responses_stream() {
    const stream = await client.responses.create(
      { model, input: prompt, max_output_tokens: 8, stream: true });
    const types = [];
    const deltas = [];
    let final = null;
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') {
        deltas.push(e.delta);
      } else if (e.type === 'response.completed' || e.type === 'response.incomplete') {
        final = e.response;
      }
    }
    assert.equal(types[0], 'response.created', `events: ${types.join(' ')}`);
    assert.ok(final, `no response.completed: ${types.join(' ')}`);
    assert.equal(types.at(-1), `response.${final.status}`, `events: ${types.join(' ')}`);
    checkDeltas(deltas, 'response.output_text.delta');
    const text = final.output?.find((o) => o.type === 'message')?.content
      ?.filter((c) => c.type === 'output_text').map((c) => c.text).join('');
    assert.equal(text, deltas.join(''), 'the final response is not the deltas put together');
    assert.equal(final.model, expected, `model ${JSON.stringify(final.model)}`);
    return `events=${types.length} deltas=${deltas.length} status=${final.status} ` +
      `text=${JSON.stringify(text)}`;
  },

  async models_retrieve() {
    const ids = [];
    for await (const m of client.models.list()) {
      ids.push(m.id);
    }
    assert.ok(ids.length > 0, 'models.list is empty');
    for (const id of ids) {
      const m = await client.models.retrieve(id);
      assert.equal(m.id, id, `retrieve(${id}) answers ${JSON.stringify(m.id)}`);
      assert.equal(m.object, 'model', `retrieve(${id}): object ${JSON.stringify(m.object)}`);
    }
    await assert.rejects(client.models.retrieve('no-such-model'),
      (e) => e instanceof OpenAI.NotFoundError,
      'retrieve(no-such-model) is not a 404');
    return `retrieved=${ids.join(',')} unknown=404`;
  },

  async abort() {
    // The client goes away after two deltas of a long stream: the SDK stops, and llmd (whose
    // upstream must be cancelled, not left generating) answers the next request.
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model, messages, max_tokens: 2000, stream: true }, { signal: controller.signal });
    let deltas = 0;
    let finish = null;
    try {
      for await (const chunk of stream) {
        if (chunk.choices?.[0]?.delta?.content) {
          deltas++;
        }
        finish = chunk.choices?.[0]?.finish_reason ?? finish;
        if (deltas === 2) {
          controller.abort();
        }
      }
    } catch (e) {
      // The SDK ends the iteration quietly on its own abort; anything else is a failure.
      if (!(e instanceof OpenAI.APIUserAbortError)) {
        throw e;
      }
    }
    assert.ok(controller.signal.aborted, `the stream ended by itself after ${deltas} deltas`);
    assert.equal(finish, null, `the stream finished (${finish}) although it was aborted`);
    const r = await client.chat.completions.create({ model, messages, max_tokens: 4 });
    nonEmptyString(r.choices?.[0]?.message?.content, 'after the abort: message.content');
    return `deltas_read=${deltas} then=${JSON.stringify(r.choices[0].message.content)}`;
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

await main(cases);
