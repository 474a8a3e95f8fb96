// SPDX-License-Identifier: MIT
// What every client script of tests/js shares: where llmd is, which model to ask for, checks of
// what comes back, and the one-case-per-run main. Only Node's built-ins.
//
//     LLMD_BASE_URL=http://127.0.0.1:PORT/v1 node tests/js/SCRIPT.mjs CASE [MODEL]
//
// Optional environment:
//     LLMD_EXPECT_MODEL   the "model" every response must name (default: MODEL)
//     LLMD_TIMEOUT_MS     each client's request timeout (default 30000)
// A case prints one line "ok CASE ..." and exits 0, or throws (exit status 1, the error on stderr).

import assert from 'node:assert/strict';
import process from 'node:process';

export const [caseName, modelArg] = process.argv.slice(2);
export const baseURL = process.env.LLMD_BASE_URL;
if (!baseURL) {
  throw new Error('LLMD_BASE_URL is not set (e.g. http://127.0.0.1:8080/v1)');
}
// Anthropic's SDK appends /v1/messages itself: it wants the server's root.
export const rootURL = baseURL.replace(/\/v1\/?$/, '');
export const apiKey = process.env.OPENAI_API_KEY || 'sk-no-key';
export const timeout = Number(process.env.LLMD_TIMEOUT_MS || 30000);

// The model a case asks for: MODEL, else the case's default, else qwen.
export function modelFor(defaults) {
  return modelArg || defaults[caseName] || 'qwen';
}

export function expectModel(model) {
  return process.env.LLMD_EXPECT_MODEL || model;
}

export const prompt = 'Say hello in a few words.';

export function nonEmptyString(v, what) {
  assert.equal(typeof v, 'string', `${what} is not a string: ${JSON.stringify(v)}`);
  assert.ok(v.length > 0, `${what} is empty`);
}

export function positiveInt(v, what) {
  assert.ok(Number.isInteger(v) && v > 0,
    `${what} is not a positive integer: ${JSON.stringify(v)}`);
}

// n embedding vectors of one dimension, each all finite numbers; returns the dimension.
export function checkVectors(vs, n, what) {
  assert.ok(Array.isArray(vs), `${what}: not an array`);
  assert.equal(vs.length, n, `${what}: ${vs.length} vectors for ${n} inputs`);
  const len = vs[0]?.length;
  vs.forEach((v, i) => {
    assert.ok(Array.isArray(v) || ArrayBuffer.isView(v), `${what}: [${i}] is not an array`);
    assert.ok(v.length > 0, `${what}: [${i}] is empty`);
    assert.equal(v.length, len, `${what}: [${i}] has ${v.length} numbers, [0] ${len}`);
    assert.ok(Array.prototype.every.call(v, (x) => typeof x === 'number' && Number.isFinite(x)),
      `${what}: [${i}] holds something other than finite numbers`);
  });
  return len;
}

// The text deltas of a stream: at least two (it streamed), and not empty put together.
export function checkDeltas(deltas, what) {
  assert.ok(deltas.length >= 2, `${what}: ${deltas.length} text delta(s)`);
  nonEmptyString(deltas.join(''), `${what}: the text`);
  return deltas;
}

// Runs the case named on the command line from cases ({name: async () => "details"}).
export async function main(cases) {
  const run = cases[caseName];
  if (!run) {
    throw new Error(
      `unknown case ${JSON.stringify(caseName)}; known: ${Object.keys(cases).join(' ')}`);
  }
  console.log(`ok ${caseName} ${await run()}`);
}
