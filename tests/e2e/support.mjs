// Helpers of the app's end-to-end tests: the browser, the request log, downloads, the native
// `bitnet` binary, and readers for what the app hands out (ZIP archives, safetensors, packed files).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.join(here, '..', '..');
export const fixtures = path.join(root, 'tests', 'fixtures');
export const APP_URL = process.env.APP_URL ?? 'http://127.0.0.1:8080/';
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const BITNET = process.env.BITNET_BIN ?? path.join(root, 'target', 'debug', 'bitnet');
// Flags that keep Chromium off the network (this machine has none) and quiet.
export const BASE_ARGS = ['--no-sandbox', '--disable-dev-shm-usage', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];
export const SHOTS = path.join(here, 'screenshots');

export function tmpdir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bitnet-e2e-${tag}-`));
}

/// A page in a fresh browser context (its own OPFS), with every request and page error recorded.
export async function openApp(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const requests = [];
  page.on('request', (r) => requests.push({ url: r.url(), method: r.method(), body: r.postDataBuffer() }));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(APP_URL);
  return { context, page, requests, errors };
}

/// Only the app's own static assets were requested, by GET, with no body and nothing of the
/// user's data in any URL.
export function assertNoUpload(requests, secrets) {
  const origin = new URL(APP_URL).origin;
  assert.ok(requests.length > 0);
  for (const r of requests) {
    const u = new URL(r.url);
    if (u.protocol === 'blob:' || u.protocol === 'data:') continue; // the page's own downloads
    assert.equal(u.origin, origin, `a request left the app's origin: ${r.url}`);
    assert.equal(r.method, 'GET', `${r.method} ${r.url}`);
    assert.ok(!r.body || r.body.length === 0, `a request carried a body: ${r.url}`);
    assert.match(u.pathname, /^\/(index\.html)?$|^\/[\w.-]+\.(js|wasm|css|svg|ico)$/, `not a static asset: ${r.url}`);
    for (const s of secrets) {
      assert.ok(!r.url.includes(s) && !r.url.includes(encodeURIComponent(s)), `a URL carries the user's data: ${r.url}`);
    }
  }
}

/// Clicks `selector` and saves the download it starts into `dir`; returns the path.
export async function download(page, selector, dir) {
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.click(selector)]);
  const file = path.join(dir, dl.suggestedFilename());
  await dl.saveAs(file);
  return file;
}

export function bitnet(args, opts = {}) {
  return execFileSync(BITNET, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

/// The files of a stored (uncompressed) ZIP archive, read through its central directory.
export function unzip(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.length - 22;
  assert.equal(dv.getUint32(end, true), 0x06054b50, 'end of central directory');
  const count = dv.getUint16(end + 10, true);
  let at = dv.getUint32(end + 16, true);
  const files = new Map();
  for (let i = 0; i < count; i++) {
    assert.equal(dv.getUint32(at, true), 0x02014b50);
    assert.equal(dv.getUint16(at + 10, true), 0, 'stored');
    const size = dv.getUint32(at + 24, true);
    const nameLen = dv.getUint16(at + 28, true);
    const local = dv.getUint32(at + 42, true);
    const name = bytes.subarray(at + 46, at + 46 + nameLen).toString('utf8');
    const data = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    files.set(name, bytes.subarray(data, data + size));
    at += 46 + nameLen;
  }
  return files;
}

export function unzipTo(zipFile, dir) {
  for (const [name, data] of unzip(fs.readFileSync(zipFile))) {
    const out = path.join(dir, name);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, data);
  }
}

/// A safetensors file: its metadata and every tensor's dtype, shape and bytes.
export function safetensors(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const data = bytes.subarray(8 + n);
  const tensors = new Map();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = info.data_offsets;
    tensors.set(name, { dtype: info.dtype, shape: info.shape, bytes: data.subarray(b, e) });
  }
  return { metadata: header.__metadata__ ?? {}, tensors };
}

function f32(t) {
  assert.equal(t.dtype, 'F32');
  const copy = Buffer.from(t.bytes);
  return new Float32Array(copy.buffer, copy.byteOffset, copy.length / 4);
}

/// Codes and scale of every ternary tensor of a packed file, read back through the native
/// `bitnet unpack` (dequantized γ·q): γ is the largest |w|, the codes are w/γ.
export function ternaryOf(packedFile, tag) {
  const out = tmpdir(`unpack-${tag}`);
  bitnet(['unpack', packedFile, '--out', out]);
  const packed = safetensors(fs.readFileSync(packedFile));
  const shapes = JSON.parse(packed.metadata.ternary_shapes);
  const hf = safetensors(fs.readFileSync(path.join(out, 'model.safetensors')));
  const result = new Map();
  for (const name of Object.keys(shapes)) {
    const w = f32(hf.tensors.get(name));
    let gamma = 0;
    for (const x of w) gamma = Math.max(gamma, Math.abs(x));
    const codes = Int8Array.from(w, (x) => (gamma === 0 ? 0 : Math.round(x / gamma)));
    result.set(name, { gamma, codes });
  }
  return { tensors: result, checksum: packed.metadata.checksum };
}

/// Compares two packed models' codes (≥ 99.9 % equal) and scales (within 1e-4 relative: twenty steps of two adapters' f32 sums drift a little).
export function assertSameTernary(a, b, what) {
  let equal = 0;
  let total = 0;
  let worst = 0;
  assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort(), what);
  for (const [name, ta] of a.tensors) {
    const tb = b.tensors.get(name);
    assert.equal(ta.codes.length, tb.codes.length, name);
    for (let i = 0; i < ta.codes.length; i++) if (ta.codes[i] === tb.codes[i]) equal++;
    total += ta.codes.length;
    const rel = Math.abs(ta.gamma - tb.gamma) / Math.max(Math.abs(tb.gamma), 1e-30);
    worst = Math.max(worst, rel);
    assert.ok(rel <= 1e-4, `${what}: ${name} γ ${ta.gamma} vs ${tb.gamma} (relative ${rel})`);
  }
  const share = equal / total;
  const summary = `${what}: ${(share * 100).toFixed(3)} % of ${total} codes equal, γ within ${worst.toExponential(1)} relative`;
  assert.ok(share >= 0.999, summary);
  return summary;
}

/// Fraction of zero codes over every ternary weight.
export function sparsity(t) {
  let zeros = 0;
  let total = 0;
  for (const { codes } of t.tensors.values()) {
    for (const c of codes) if (c === 0) zeros++;
    total += codes.length;
  }
  return zeros / total;
}

/// The values drawn by the polyline `label` of the plot `plotId` in an SVG (in the page or a
/// file), mapped back from pixels through the plot's data attributes: [x, y] pairs.
export function drawn(svgText, plotId, label) {
  const plot = svgText.match(new RegExp(`<g class="plot" id="${plotId}"([^>]*)>([\\s\\S]*?)</g>`));
  assert.ok(plot, `no plot ${plotId}`);
  const attr = (k) => Number(plot[1].match(new RegExp(`data-${k}="([^"]+)"`))[1]);
  const [x0, x1, y0, y1] = ['x0', 'x1', 'y0', 'y1'].map(attr);
  const [px0, px1, py0, py1] = ['px0', 'px1', 'py0', 'py1'].map(attr);
  const lines = [...plot[2].matchAll(/<polyline class="series[^"]*" data-label="([^"]*)"[^>]* points="([^"]*)"/g)];
  const line = lines.find((m) => m[1] === label);
  assert.ok(line, `no line "${label}" in ${plotId}: ${lines.map((m) => m[1])}`);
  return line[2].trim().split(/\s+/).filter(Boolean).map((p) => {
    const [px, py] = p.split(',').map(Number);
    return [x0 + ((px - px0) / (px1 - px0)) * (x1 - x0), y0 + ((py - py0) / (py1 - py0)) * (y1 - y0)];
  });
}

export function labels(svgText, plotId) {
  const plot = svgText.match(new RegExp(`<g class="plot" id="${plotId}"[^>]*>([\\s\\S]*?)</g>`));
  return [...plot[1].matchAll(/<polyline class="series( faint)?" data-label="([^"]*)"/g)].map((m) => ({ label: m[2], faint: !!m[1] }));
}

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/// Sets a text field's value as a user types it.
export async function fill(page, selector, value) {
  await page.fill(selector, String(value));
}
