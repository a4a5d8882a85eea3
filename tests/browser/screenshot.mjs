#!/usr/bin/env node
// Open a page in headless Chromium, wait until it says its charts drew, and take a screenshot.
//
//   node screenshot.mjs --url http://127.0.0.1:PORT/dashboard --out /tmp/dashboard.png
//        [--timeout-ms 30000] [--width 1280] [--height 800] [--viewport-only] [--text SELECTOR]...
//
// Waits for `document.body.dataset.chartsReady` (the attribute data-charts-ready on <body>; the
// dashboard puts the number of data points drawn there, so "0" counts as ready) to be set and
// non-empty, then writes a PNG (the full page unless --viewport-only). Prints one JSON line:
// {"ok":true,"chartsReady":"<the attribute's value>","width":W,"height":H,"path":...} (exit 0).
// With --text SELECTOR (repeatable), "texts" maps each selector to what the page shows in the
// elements it matches, in document order: [{"text": innerText, "title": the title attribute or null}].
// When the page sets data-error instead, or on a timeout, it still writes the screenshot, for a
// look, and prints {"ok":false,"error":...,"pageError":...,"chartsReady":null,...} (exit 1). Debian's /usr/bin/chromium (or $CHROMIUM), no browser download.
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function parseArgs(argv) {
  const out = {timeoutMs: 30000, width: 1280, height: 800, fullPage: true, texts: []};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--viewport-only') { out.fullPage = false; continue; }
    const value = argv[++i];
    if (flag === '--url') out.url = value;
    else if (flag === '--out') out.out = value;
    else if (flag === '--timeout-ms') out.timeoutMs = Number(value);
    else if (flag === '--width') out.width = Number(value);
    else if (flag === '--height') out.height = Number(value);
    else if (flag === '--text') out.texts.push(value);
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!out.url || !out.out) throw new Error('usage: screenshot.mjs --url URL --out FILE.png [--timeout-ms N]');
  return out;
}

// Width and height from the PNG's IHDR chunk.
function pngSize(buffer) {
  return {width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20)};
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const userDataDir = mkdtempSync(join(tmpdir(), 'pushlang-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: {width: args.width, height: args.height},
      timeout: args.timeoutMs,
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.on('console', (m) => process.stderr.write(`[page console.${m.type()}] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
    page.on('requestfailed', (r) => process.stderr.write(`[request failed] ${r.url()} ${r.failure()?.errorText}\n`));
    await page.goto(args.url, {waitUntil: 'load', timeout: args.timeoutMs});
    let chartsReady = null;
    let pageError = null;
    let error = null;
    try {
      const handle = await page.waitForFunction(() => {
        const d = document.body ? document.body.dataset : {};
        return d.chartsReady || d.error ? {ready: d.chartsReady || null, error: d.error || null} : null;
      }, null, {timeout: args.timeoutMs, polling: 100});
      ({ready: chartsReady, error: pageError} = await handle.jsonValue());
      if (chartsReady === null) throw new Error(`the page says: ${pageError}`);
      // Let the last frame (chart animations are usually off for a dashboard, but just in case) paint.
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    } catch (err) {
      error = `charts not ready: ${err.message.split('\n')[0]}`;
    }
    const png = await page.screenshot({path: args.out, fullPage: args.fullPage});
    const {width, height} = pngSize(png);
    const texts = {};
    for (const selector of args.texts) {
      texts[selector] = await page.$$eval(selector, (elements) => elements.map(
        (e) => ({text: e.innerText, title: e.getAttribute('title')})));
    }
    process.stdout.write(JSON.stringify({ok: error === null, chartsReady, width, height, path: args.out,
                                         ...(args.texts.length ? {texts} : {}),
                                         ...(error ? {error} : {}), ...(pageError ? {pageError} : {})}) + '\n');
    return error === null ? 0 : 1;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, {recursive: true, force: true});
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stdout.write(JSON.stringify({ok: false, error: String(err && err.stack || err), chartsReady: null}) + '\n');
  process.exit(1);
});
