#!/usr/bin/env node
// Deliver a web push payload to a page's service worker in headless Chromium and read back the
// notification it showed.
//
//   node sw_push.mjs --url http://127.0.0.1:PORT/page --payload '{"title":"Hi","send_id":"s-1"}'
//        [--payload-file FILE] [--timeout-ms 30000] [--wait-for JS_EXPR] [--settle-ms N] [--click ACTION]
//
// Debian's /usr/bin/chromium (or $CHROMIUM), driven by playwright-core: no browser download.
// Steps: fresh --user-data-dir; DevTools `ServiceWorker.enable`; `Browser.grantPermissions`
// (notifications) for the page's origin; open the page; wait for an activated service worker
// registration on that origin (`ServiceWorker.workerRegistrationUpdated`/`workerVersionUpdated`);
// optionally wait until --wait-for JS_EXPR is truthy in the page (its value is printed as
// "waited", e.g. 'document.body.dataset.subscribed'); `ServiceWorker.deliverPushMessage`; wait
// for the push to settle; then read `registration.getNotifications()` in the page (through
// `navigator.serviceWorker.ready`) until the notification is there.
//
// Settling: pushlang's worker posts `Push Viewed` to /v1/browser/records once showNotification has
// resolved, so the harness waits (up to --settle-ms, default 10000; 1000 for a payload without a
// send_id) for that request from the worker to finish, and prints it as "viewed" (a 429 is retried
// by the worker after its Retry-After: then the retry is waited for). Only then does
// it read the notifications: a getNotifications() that runs while Chromium is still displaying a
// notification can drop that notification from the list for good (seen here: 1 run in 2 when
// polling straight after the push).
//
// --click ACTION ("" for the body, "a0"/"a1" for a button): then click the notification. DevTools
// cannot click a notification, so the harness dispatches a `notificationclick` NotificationEvent
// for it in the service worker (through playwright's worker handle): the worker's own handler runs,
// on an untrusted event, so its waitUntil throws and openWindow has no user activation — what is
// checked is what the handler does: close the notification, pick the URL and report `Push Clicked`,
// which the harness waits for and prints as "clicked".
//
// Prints one JSON line on stdout: {"ok":true,"notification":{title,body,data,...},"viewed":
// {status,records},"clicked":...} (exit 0), or {"ok":false,"error":...} (exit 1). Browser console
// lines, worker errors and failed requests go to stderr.
import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function parseArgs(argv) {
  const out = {timeoutMs: 30000, waitFor: null, settleMs: null, click: null};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--url') out.url = value;
    else if (flag === '--settle-ms') out.settleMs = Number(value);
    else if (flag === '--wait-for') out.waitFor = value;
    else if (flag === '--click') out.click = value;
    else if (flag === '--payload') out.payload = value;
    else if (flag === '--payload-file') out.payload = readFileSync(value, 'utf8');
    else if (flag === '--timeout-ms') out.timeoutMs = Number(value);
    else throw new Error(`unknown argument ${flag}`);
    i++;
  }
  if (!out.url || out.payload === undefined) {
    throw new Error('usage: sw_push.mjs --url URL (--payload JSON | --payload-file FILE) [--timeout-ms N] ' +
                    '[--wait-for JS_EXPR] [--settle-ms N]');
  }
  const payload = JSON.parse(out.payload);  // fail early on a malformed payload
  if (out.settleMs === null) out.settleMs = payload && payload.send_id ? 10000 : 1000;
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, deadline, probe) {
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + args.timeoutMs;
  const origin = new URL(args.url).origin;
  const userDataDir = mkdtempSync(join(tmpdir(), 'pushlang-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_FLAGS,
      timeout: args.timeoutMs,
    });
    const page = context.pages()[0] ?? await context.newPage();
    page.on('console', (m) => process.stderr.write(`[page console.${m.type()}] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
    context.on('requestfailed', (r) => process.stderr.write(
      `[request failed${r.serviceWorker() ? ' in worker' : ''}] ${r.method()} ${r.url()} ${r.failure()?.errorText}\n`));

    // The worker's `Push Viewed` report for this send: it comes once the notification is shown.
    const sendId = JSON.parse(args.payload).send_id;
    let viewed = null;
    let clicked = null;
    context.on('requestfinished', async (r) => {
      if (!r.serviceWorker() || r.method() !== 'POST' || !r.url().includes('/v1/browser/records')) return;
      let records;
      try { records = JSON.parse(r.postData() || ''); } catch { return; }
      const about = (name) => Array.isArray(records) &&
        records.some((x) => x && x.name === name && x.props && x.props.send_id === sendId);
      if (!about('Push Viewed') && !about('Push Clicked')) return;
      const response = await r.response().catch(() => null);
      const seen = {url: r.url(), status: response ? response.status() : null, records};
      if (about('Push Viewed')) viewed = seen;
      else clicked = seen;
    });
    const cdp = await context.newCDPSession(page);

    const registrations = new Map();  // registrationId -> scopeURL
    const activated = new Set();      // registrationIds with an activated version
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({registrations: list}) => {
      for (const r of list) {
        if (r.isDeleted) registrations.delete(r.registrationId);
        else registrations.set(r.registrationId, r.scopeURL);
      }
    });
    cdp.on('ServiceWorker.workerVersionUpdated', ({versions}) => {
      for (const v of versions) if (v.status === 'activated') activated.add(v.registrationId);
    });
    cdp.on('ServiceWorker.workerErrorReported', ({errorMessage}) => {
      process.stderr.write(`[worker error] ${errorMessage.errorMessage} ` +
                           `(${errorMessage.sourceURL}:${errorMessage.lineNumber})\n`);
    });
    await cdp.send('ServiceWorker.enable');
    await cdp.send('Browser.grantPermissions', {origin, permissions: ['notifications']});

    await page.goto(args.url, {waitUntil: 'load', timeout: args.timeoutMs});
    const registrationId = await waitFor('an activated service worker registration', deadline, () => {
      for (const [id, scope] of registrations) {
        if (activated.has(id) && scope.startsWith(origin + '/')) return id;
      }
      return null;
    });
    const scope = registrations.get(registrationId);
    let waited = null;
    if (args.waitFor !== null) {
      const handle = await page.waitForFunction(args.waitFor, null,
                                                {timeout: Math.max(1, deadline - Date.now()), polling: 100});
      waited = await handle.jsonValue();
    }

    await cdp.send('ServiceWorker.deliverPushMessage', {origin, registrationId, data: args.payload});

    const settleBy = Math.min(deadline, Date.now() + args.settleMs);
    await waitFor('the push to settle', settleBy, () => viewed && viewed.status !== 429).catch(() => null);

    const title = JSON.parse(args.payload).title;
    const notifications = await waitFor('the notification', deadline, async () => {
      const shown = await page.evaluate(async () => {
        const registration = await navigator.serviceWorker.ready;
        const list = await registration.getNotifications();
        return list.map((n) => ({
          title: n.title, body: n.body, tag: n.tag, icon: n.icon, image: n.image,
          requireInteraction: n.requireInteraction, data: n.data,
          actions: (n.actions || []).map((a) => ({action: a.action, title: a.title})),
        }));
      });
      return shown.some((n) => title === undefined || n.title === title) ? shown : null;
    });
    const notification = notifications.find((n) => title === undefined || n.title === title);
    let left = null;
    if (args.click !== null) {
      const worker = await waitFor('the service worker handle', deadline,
                                   () => context.serviceWorkers().find((w) => w.url().startsWith(origin + '/')));
      await worker.evaluate(async ({title, action}) => {
        const shown = await self.registration.getNotifications();
        const target = shown.find((n) => n.title === title);
        if (!target) throw new Error(`no notification titled ${title}`);
        self.dispatchEvent(new NotificationEvent('notificationclick', {notification: target, action}));
      }, {title: notification.title, action: args.click});
      await waitFor('the Push Clicked report', deadline, () => clicked);
      left = await page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length);
    }
    process.stdout.write(JSON.stringify({ok: true, origin, registrationId, scope, waited, notification,
                                         notifications, viewed, clicked, left}) + '\n');
    return 0;
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, {recursive: true, force: true});
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stdout.write(JSON.stringify({ok: false, error: String(err && err.stack || err)}) + '\n');
  process.exit(1);
});
