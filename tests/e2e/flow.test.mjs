// The whole job in the browser app, driven as a user drives it (headless Chromium, SwiftShader
// WebGPU): on the built-in demo model and on a model folder picked through the file input —
// self-generate (or load a JSONL), train with live charts, see the results, download — and checked
// against the native `bitnet` CLI: the packed file the page hands out unpacks to the codes the page
// reports and to those of a native `bitnet train` with the same data, settings and seed. Plus: a
// reload mid-run resumes to the same file, pause answers at once, the workshop's exported chart
// has one labelled curve per schedule, and no byte of the user's files or data leaves the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  BASE_ARGS, CHROMIUM, assertNoUpload, assertSameTernary, bitnet, download, drawn, fill, fixtures,
  labels, openApp, shot, sparsity, ternaryOf, tmpdir, unzip, unzipTo,
} from './support.mjs';

const LONG = 900_000;
let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...BASE_ARGS, '--enable-unsafe-webgpu'] });
});
after(async () => { await browser?.close(); });

async function waitText(page, selector, re, timeout = LONG) {
  try {
    await page.waitForFunction(
      ([s, src]) => new RegExp(src).test(document.querySelector(s)?.innerText ?? ''),
      [selector, re.source], { timeout, polling: 250 });
  } catch (e) {
    await shot(page, `failed-${selector.replace(/\W/g, '')}`);
    const text = await page.locator('main').innerText();
    throw new Error(`${selector} never matched ${re}: ${e.message}\n--- the page ---\n${text.slice(0, 4000)}`);
  }
  return page.locator(selector).innerText();
}

/// Trains with the current form and waits for the end; returns the page's SVG of the main chart.
async function trainToEnd(page) {
  await page.click('#tr-start');
  // A new run over a stored one is confirmed first.
  if (await page.locator('#tr-replace').count()) await page.click('#tr-replace-yes');
  await waitText(page, '#tr-state', /^finished/);
  return page.locator('#chart-main').innerHTML();
}

/// The λ the chart drew at every step equals the schedule (`bitnet schedule`), one point per step
/// in the λ and the loss panels.
function assertCharts(svg, steps, frac, shape) {
  const trace = JSON.parse(bitnet(['schedule', '--steps', String(steps), '--lambda-warmup-frac', String(frac), '--shape', shape, '--json'])).lambda;
  const lambda = drawn(svg, 'plot-lambda', 'λ');
  assert.equal(lambda.length, steps, 'one λ point per optimizer step');
  lambda.forEach(([x, y], i) => {
    assert.ok(Math.abs(x - i) < 1e-3, `point ${i} is at step ${x}`);
    assert.ok(Math.abs(y - trace[i]) < 1e-4, `λ drawn at step ${i}: ${y}, schedule ${trace[i]}`);
  });
  assert.equal(drawn(svg, 'plot-loss', 'loss').length, steps, 'one loss point per optimizer step');
}

/// Whether the results page shows the last perplexity it computes, the trained ternary model's.
const trainedRowShown = () => [...document.querySelectorAll('#ppl-table tr td:first-child')]
  .some((td) => td.innerText.startsWith('trained ternary model'));

/// The results page after training: the perplexities (base, with the run's extra norms at their
/// start when it has them, ternarized without training, trained), sparsity and checksum, downloads; the
/// packed file checked by the native CLI against the page's own numbers.
async function resultsAndDownloads(page, dir, tag) {
  await page.click('#nav-results');
  await page.waitForFunction(trainedRowShown, null, { timeout: LONG });
  const ppl = await page.$$eval('#ppl-table .ppl', (tds) => tds.map((td) => Number(td.dataset.value)));
  ppl.forEach((p) => assert.ok(Number.isFinite(p) && p > 1, `perplexity ${p}`));
  const packed = await download(page, '#dl-packed', dir);
  const manifest = JSON.parse(fs.readFileSync(await download(page, '#dl-manifest', dir), 'utf8'));
  const norms = manifest.settings.setup.post_attn_norm || manifest.settings.setup.subln;
  assert.equal(ppl.length, norms ? 4 : 3, 'a perplexity per model compared');
  const metrics = fs.readFileSync(await download(page, '#dl-metrics', dir), 'utf8').trim().split('\n');
  assert.equal(metrics.length, manifest.settings.steps, 'metrics.jsonl: a line per step (log every 1)');
  const hf = unzip(fs.readFileSync(await download(page, '#dl-hf', dir)));
  // A model with extra norms ships the modeling file that adds them (trust_remote_code).
  const modeling = norms ? ['hf/modeling_bitnet_studio.py'] : [];
  assert.deepEqual([...hf.keys()].sort(), ['hf/config.json', 'hf/model.safetensors', ...modeling, 'hf/tokenizer.json']);
  // The exports for other tools, by the library `bitnet export` runs.
  const hfb = unzip(fs.readFileSync(await download(page, '#dl-hf-bitnet', dir)));
  assert.equal(JSON.parse(hfb.get('hf-bitnet/config.json')).quantization_config.quant_method, 'bitnet');
  if (manifest.settings.setup.post_attn_norm) {
    // No llama.cpp architecture has the post-attention norm: refused, saying how to get one.
    await page.click('#dl-gguf');
    await page.waitForFunction(
      () => document.querySelector('#download-error')?.innerText.includes('--rmsnorm-post-attn 0'), null, { timeout: LONG });
  } else {
    const gguf = await download(page, '#dl-gguf', dir);
    assert.equal(fs.readFileSync(gguf).subarray(0, 4).toString(), 'GGUF');
    bitnet(['inspect', gguf]); // the native importer reads it
  }
  const trit5 = await download(page, '#dl-trit5', dir);
  // The page's numbers are those of the file it hands out.
  const t = ternaryOf(packed, tag);
  assert.equal(await page.locator('#res-checksum').innerText(), t.checksum);
  assert.equal(manifest.checksum, t.checksum);
  const pageSparsity = Number(await page.locator('#res-sparsity').getAttribute('data-value'));
  assert.ok(Math.abs(pageSparsity - sparsity(t)) < 1e-12, `sparsity: page ${pageSparsity}, file ${sparsity(t)}`);
  assertSameTernary(ternaryOf(trit5, `${tag}-trit5`), t, 'trit5 and 2-bit');
  return { packed, t, manifest };
}

/// `bitnet train` on the same model, data and settings; its packed file read back.
function nativeTrain(modelDir, dataset, manifest, tag) {
  const s = manifest.settings;
  const out = tmpdir(`native-${tag}`);
  bitnet(['train', '--base-model', modelDir, '--dataset', dataset, '--out-dir', out,
    '--steps', String(s.steps), '--bsz', String(s.bsz), '--grad-accum', String(s.grad_accum),
    '--lr', String(s.lr), '--warmup-ratio', String(s.warmup_ratio),
    '--lambda-warmup-frac', String(s.lambda_warmup_frac), '--lambda-schedule', s.schedule,
    '--rmsnorm-post-attn', s.setup.post_attn_norm ? '1' : '0', '--norm-init', s.norm_init,
    '--loss', s.loss, '--kd-temperature', String(s.kd_temperature), '--kd-weight', String(s.kd_weight),
    '--kd-topk', s.kd_topk == null ? 'all' : String(s.kd_topk),
    '--seq-len', String(s.seq_len),
    '--seed', String(s.seed), '--log-every', '1', ...(s.setup.subln ? ['--subln'] : [])]);
  return ternaryOf(path.join(out, 'model.bitnet.safetensors'), `native-${tag}`);
}

test('the whole flow on the demo model, a reload mid-run, and the workshop', { timeout: 3 * LONG }, async (t) => {
  const dir = tmpdir('demo');
  const { page, requests, errors } = await openApp(browser);
  await page.click('#use-demo');
  await waitText(page, '#model-summary', /LlamaForCausalLM/);
  await waitText(page, '#limit-notes', /fits this adapter's limits/);
  await shot(page, 'model');
  const modelDir = path.join(dir, 'model', 'demo-model');
  unzipTo(await download(page, '#dl-demo-model', dir), path.dirname(modelDir));

  // Data: the demo's settings, fewer samples.
  await page.click('#nav-data');
  await fill(page, '#sg-num', 10);
  await page.click('#sg-start');
  const done = await waitText(page, '#sg-message', /^(Done|Stopped)/);
  assert.match(done, /^Done: 10 kept/);
  assert.match(await page.locator('#sg-counts').innerText(), /kept\s+10/);
  assert.ok(await page.locator('#sg-samples li').count() >= 10);
  assert.match(await page.locator('#data-summary').innerText(), /^10 samples .*: 9 for training, 1 held out/);
  await shot(page, 'data');
  const trainData = await download(page, '#dl-train-data', dir);
  const data = fs.readFileSync(await download(page, '#dl-data', dir), 'utf8');
  assert.equal(data.trim().split('\n').length, 10);

  // Train: 20 steps, a checkpoint every 5, a metrics line every step.
  await page.click('#nav-train');
  await fill(page, '#tr-steps', 20);
  await fill(page, '#tr-save-steps', 5);
  await fill(page, '#tr-log-every', 1);
  const preview = await page.locator('#lambda-preview').innerHTML();
  const previewLines = labels(preview, 'plot-preview');
  assert.deepEqual(previewLines.filter((l) => !l.faint).map((l) => l.label), ['linear']);
  assert.equal(previewLines.filter((l) => l.faint).length, 4, 'the other shapes, faint');
  await page.click('#tr-start');
  await waitText(page, '#tr-step', /^([3-9]|1\d) of 20/);
  // Pause answers at once: the UI acknowledges before the step in flight ends.
  const t0 = Date.now();
  await page.click('#tr-pause');
  await page.locator('#tr-paused').waitFor({ timeout: 5000 });
  const ack = Date.now() - t0;
  t.diagnostic(`pause acknowledged after ${ack} ms`);
  assert.ok(ack < 500, `pause acknowledged after ${ack} ms`);
  await page.click('#tr-resume');
  await waitText(page, '#tr-state', /^finished/);
  const svg = await page.locator('#chart-main').innerHTML();
  assertCharts(svg, 20, 0.4, 'linear');
  await shot(page, 'train');

  const first = await resultsAndDownloads(page, dir, 'demo');
  // The demo model's own held-out tasks: base, ternarized without training, trained.
  assert.match(await page.locator('#eval-task-name').innerText(), /demo tasks/);
  await page.waitForFunction(() => document.querySelectorAll('#acc-table .acc').length === 3, null, { timeout: LONG });
  const acc = await page.$$eval('#acc-table .acc', (tds) => tds.map((td) => Number(td.dataset.value)));
  assert.ok(acc[0] >= 0.9, `the demo model answers ${acc[0]} of its tasks`);
  assert.ok(acc[1] < acc[0], `ternarized without training: ${acc[1]}`);
  // The quality report: base and trained ternary side by side, held-out perplexity, KL, accuracy.
  await page.locator('#quality-table').waitFor({ timeout: LONG });
  const quality = await page.locator('#quality-table').innerText();
  for (const row of [/held-out perplexity/, /held-out KL to the original/, /task accuracy/]) assert.match(quality, row);
  await fill(page, '#gen-prompt', 'Add 4 and 5.');
  await page.click('#gen-start');
  await waitText(page, '#gen-ternary', /tokens\/s/);
  assert.match(await page.locator('#gen-fp').innerText(), /tokens\/s/);
  await shot(page, 'results');
  t.diagnostic(assertSameTernary(first.t, nativeTrain(modelDir, trainData, first.manifest, 'demo'), 'page vs native bitnet train (demo)'));

  // Reload during training: the page offers to resume and ends with the same packed file.
  await page.click('#nav-train');
  await page.click('#tr-start');
  // Replacing the finished run is asked first; "Keep it" keeps it.
  assert.match(await page.locator('#tr-replace').innerText(), /finished run/);
  await page.click('#tr-replace-no');
  assert.equal(await page.locator('#tr-replace').count(), 0);
  assert.match(await page.locator('#tr-state').innerText(), /^finished/);
  await page.click('#tr-start');
  await page.click('#tr-replace-yes');
  await waitText(page, '#tr-checkpoint', /step (10|15)/);
  await page.reload();
  await page.locator('#resume-banner').waitFor({ timeout: 120_000 });
  assert.match(await page.locator('#resume-banner').innerText(), /stopped at step (10|15) of 20/);
  await page.click('#resume-accept');
  await waitText(page, '#tr-state', /^finished/);
  await page.click('#nav-results');
  await page.waitForFunction(trainedRowShown, null, { timeout: LONG });
  const resumed = await download(page, '#dl-packed', tmpdir('resumed'));
  assert.ok(fs.readFileSync(resumed).equals(fs.readFileSync(first.packed)), 'the resumed run ends with the same packed file');

  // Workshop: two schedules, one chart, exported.
  await page.click('#nav-workshop');
  for (const id of ['#ws-sigmoid', '#ws-step', '#ws-exp']) await page.uncheck(id);
  for (const id of ['#ws-linear', '#ws-immediate']) await page.check(id);
  await fill(page, '#ws-steps', 8);
  await page.click('#ws-start');
  await waitText(page, '#ws-status', /^2 of 2 runs done/);
  await shot(page, 'workshop');
  const exported = fs.readFileSync(await download(page, '#ws-svg', dir), 'utf8');
  for (const plot of ['plot-ws-lambda', 'plot-ws-loss']) {
    const lines = labels(exported, plot);
    assert.equal(lines.length, 2, `${plot}: ${JSON.stringify(lines)}`);
    assert.notEqual(lines[0].label, lines[1].label);
    for (const l of lines) {
      assert.equal(drawn(exported, plot, l.label).length, 8);
      assert.ok(exported.includes(`<g class="legend" data-label="${l.label}"`), `legend for ${l.label}`);
    }
  }
  const [a, b] = labels(exported, 'plot-ws-lambda').map((l) => drawn(exported, 'plot-ws-lambda', l.label).map((p) => p[1]));
  assert.notDeepEqual(a, b, 'the two schedules draw different λ traces');
  const csv = fs.readFileSync(await download(page, '#ws-csv', dir), 'utf8').trim().split('\n');
  assert.equal(csv.length, 1 + 2 * 8);
  await download(page, '#ws-png', dir);

  const secrets = data.trim().split('\n').map((l) => JSON.parse(l).output.slice(0, 24));
  assertNoUpload(requests, secrets);
  assert.deepEqual(errors, []);
});

test('the flow on a model folder picked through the file input, with the user\'s own JSONL', { timeout: 2 * LONG }, async (t) => {
  const dir = tmpdir('folder');
  const { page, requests, errors } = await openApp(browser);
  await page.setInputFiles('#pick-folder', path.join(fixtures, 'llama'));
  await waitText(page, '#model-summary', /LlamaForCausalLM/);
  assert.match(await page.locator('#model-summary').innerText(), /^model\s+llama$/m);

  const lines = [];
  for (let i = 0; i < 12; i++) {
    lines.push(JSON.stringify({ instruction: `Describe item number ${i} in a sentence.`, output: `Item ${i} is a small ${i % 2 ? 'red' : 'blue'} thing that sits on the table near the window.` }));
  }
  const jsonl = path.join(dir, 'mine.jsonl');
  fs.writeFileSync(jsonl, lines.join('\n') + '\n');
  await page.click('#nav-data');
  // A line that does not parse is named.
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(bad, `${lines[0]}\n{"instruction": oops}\n`);
  await page.setInputFiles('#pick-data', bad);
  await waitText(page, '#data-error', /bad\.jsonl.*line 2/, 60_000);
  await page.setInputFiles('#pick-data', jsonl);
  await waitText(page, '#data-summary', /^12 samples \(mine\.jsonl\): 11 for training, 1 held out/, 60_000);
  const trainData = await download(page, '#dl-train-data', dir);

  // The CLI's defaults (distillation, no extra norm), except what keeps the run short, and the
  // seed's post-attention norm switched on so that the app's norm path runs too.
  await page.click('#nav-train');
  assert.equal(await page.inputValue('#tr-steps'), '1000');
  assert.equal(await page.inputValue('#tr-lr'), '0.00005');
  assert.equal(await page.inputValue('#tr-loss'), 'kd');
  assert.equal(await page.isChecked('#tr-post-attn'), false);
  await page.check('#tr-post-attn');
  await fill(page, '#tr-steps', 20);
  await fill(page, '#tr-grad-accum', 1);
  await fill(page, '#tr-seq-len', 64);
  await fill(page, '#tr-lr', 0.002);
  await fill(page, '#tr-log-every', 1);
  const svg = await trainToEnd(page);
  assertCharts(svg, 20, 0.4, 'linear');

  const r = await resultsAndDownloads(page, dir, 'folder');
  assert.equal(r.manifest.rmsnorm_post_attn, true);
  t.diagnostic(assertSameTernary(r.t, nativeTrain(path.join(fixtures, 'llama'), trainData, r.manifest, 'folder'), 'page vs native bitnet train (folder)'));
  assertNoUpload(requests, lines.map((l) => JSON.parse(l).output.slice(0, 24)));
  assert.deepEqual(errors, []);
});
