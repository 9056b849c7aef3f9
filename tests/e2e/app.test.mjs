// End-to-end test of the browser app (built by trunk into dist/ and served by `cargo xtask test`):
// headless Debian Chromium driven by playwright-core. It checks that the page finds the WebGPU
// adapter, parses picked model files into the same summary as `bitnet inspect`, reports bad files
// by name, makes no network request for the user's files, and explains a browser without WebGPU.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures');
const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'expected.json'), 'utf8'));
const APP_URL = process.env.APP_URL ?? 'http://127.0.0.1:8080/';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Flags that keep Chromium off the network (this machine has none) and quiet.
const BASE_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
const TIMEOUT = 120_000;

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, '--enable-unsafe-webgpu'] });
});
after(async () => { await browser?.close(); });

function filesOf(name) {
  const dir = path.join(fixtures, name);
  return fs.readdirSync(dir).map((f) => path.join(dir, f));
}

async function openApp(b) {
  const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(APP_URL);
  return { page, requests, errors };
}

test('finds the WebGPU adapter and summarizes picked model files', { timeout: TIMEOUT }, async () => {
  const { page, requests, errors } = await openApp(browser);
  await page.click('#nav-gpu');
  const adapter = page.locator('#adapter-info');
  await adapter.waitFor({ timeout: 60_000 });
  const adapterText = await adapter.innerText();
  assert.match(adapterText, /BrowserWebGpu/);
  assert.match(adapterText, /^name\s+\S/m, 'the adapter has a name');
  assert.match(await page.locator('#adapter').innerText(), /max_storage_buffer_binding_size/);
  await page.click('#nav-model');

  for (const name of ['llama', 'qwen2-sharded', 'llama-bf16']) {
    await page.setInputFiles('#pick-files', filesOf(name));
    const summary = page.locator('#model-summary');
    await page.waitForFunction(
      (n) => document.querySelector('#model-summary')?.innerText.includes(String(n)),
      expected.models[name].num_parameters, { timeout: 60_000 });
    const text = await summary.innerText();
    assert.match(text, new RegExp(expected.models[name].architecture));
    assert.match(text, /4 \/ 2 \(head dim 16\)/);
    assert.match(text, /297 \(tokenizer\.json: 297\)/);
    assert.match(await page.locator('#limit-notes').innerText(), /fits this adapter's limits/);
  }
  // A GGUF file (quantized Q8_0 by gguf-py) is converted in the page: the same model, its
  // tokenizer rebuilt from the GGUF vocabulary.
  await page.setInputFiles('#pick-files', path.join(fixtures, 'gguf', 'llama-q8_0.gguf'));
  await page.waitForFunction(
    () => document.querySelector('#model-summary')?.innerText.includes('llama-q8_0.gguf'), null, { timeout: 60_000 });
  const ggufText = await page.locator('#model-summary').innerText();
  assert.match(ggufText, new RegExp(String(expected.models.llama.num_parameters)));
  assert.match(ggufText, /297 \(tokenizer\.json: 297\)/);
  await page.setInputFiles('#pick-files', filesOf('llama'));
  await page.waitForFunction(() => document.querySelector('#model-summary')?.innerText.includes('LlamaForCausalLM'));
  const shots = path.join(here, 'screenshots');
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, 'app.png'), fullPage: true });

  const origin = new URL(APP_URL).origin;
  const foreign = requests.filter((u) => !u.startsWith(origin));
  assert.deepEqual(foreign, [], 'requests left the app origin');
  const fileRequests = requests.filter((u) => /safetensors|config\.json|tokenizer\.json/.test(u));
  assert.deepEqual(fileRequests, [], "the user's files were requested over the network");
  assert.deepEqual(errors, []);
  await page.close();
});

test('the self-test button runs every kernel on the adapter and reports them all passing', { timeout: 300_000 }, async () => {
  const { page, errors } = await openApp(browser);
  await page.click('#nav-gpu');
  await page.locator('#adapter-info').waitFor({ timeout: 60_000 });
  await page.click('#run-selftest');
  const summary = page.locator('#selftest-summary');
  await summary.waitFor({ timeout: 280_000 });
  const text = await summary.innerText();
  assert.match(text, /^\d+ passed, 0 failed$/);
  assert.ok(Number(text.split(' ')[0]) > 50, text);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a truncated weights file is reported by name', { timeout: TIMEOUT }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitnet-e2e-'));
  fs.copyFileSync(path.join(fixtures, 'llama', 'config.json'), path.join(tmp, 'config.json'));
  const w = fs.readFileSync(path.join(fixtures, 'llama', 'model.safetensors'));
  fs.writeFileSync(path.join(tmp, 'model.safetensors'), w.subarray(0, 1000));
  const { page } = await openApp(browser);
  await page.setInputFiles('#pick-files', [path.join(tmp, 'config.json'), path.join(tmp, 'model.safetensors')]);
  const err = page.locator('#model-error');
  await err.waitFor({ timeout: 60_000 });
  const text = await err.innerText();
  assert.match(text, /model\.safetensors/);
  assert.match(text, /out of range|beyond the end/);
  await page.close();
});

test('a browser without a WebGPU adapter gets a clear message', { timeout: TIMEOUT }, async () => {
  const plain = await chromium.launch({ executablePath: CHROMIUM, args: BASE_ARGS });
  try {
    const { page } = await openApp(plain);
    const err = page.locator('#no-webgpu');
    await err.waitFor({ timeout: 60_000 });
    assert.match(await err.innerText(), /WebGPU/);
    await page.click('#nav-gpu');
    assert.match(await page.locator('#adapter-error').innerText(), /WebGPU/);
  } finally {
    await plain.close();
  }
});
