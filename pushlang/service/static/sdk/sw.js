/*
 * pushlang service worker — served by `pushlang serve` at /sdk/sw.js.
 *
 * Register it through /sdk/subscribe.js (pushlang.subscribe or pushlang.register), which adds
 * the query parameters this worker reads from its own URL:
 *
 *   user  the user id that the page subscribed (SPEC §9.1 `user`)         required
 *   token the user id signed by the site (docs/security.md)               required
 *   api   the origin of the pushlang service that receives the records    default: this origin
 *   key   the VAPID public key (base64url), to re-subscribe on change     optional
 *
 * What it does:
 *   push                     shows the notification described by the JSON payload (see
 *                            pushlang/runtime/render.py `web_push_payload`) and reports a
 *                            `Push Viewed` event with props {send_id, campaign};
 *   notificationclick        closes it, opens the deep link (or the clicked button's URL) and
 *                            reports `Push Clicked` with props {send_id, campaign, action, url};
 *   pushsubscriptionchange   subscribes again with the same application server key and posts
 *                            the new subscription (`subscribe` record) and the old endpoint's
 *                            `unsubscribe` record.
 *
 * Records go to POST {api}/v1/browser/records as a JSON array with the user token (header
 * X-Pushlang-User-Token), never an API token: that endpoint only takes `Push Viewed`/`Push Clicked`
 * events and subscribe/unsubscribe records of the token's user. A 429 is retried once after its
 * Retry-After (up to 30 s).
 * Every piece of work is kept alive with event.waitUntil. No dependencies.
 */
/* eslint-env serviceworker */
'use strict';

var PUSHLANG_PARAMS = new URL(self.location.href).searchParams;
var PUSHLANG_USER = PUSHLANG_PARAMS.get('user') || '';
var PUSHLANG_TOKEN = PUSHLANG_PARAMS.get('token') || '';
var PUSHLANG_API = (PUSHLANG_PARAMS.get('api') || self.location.origin).replace(/\/+$/, '');
var PUSHLANG_KEY = PUSHLANG_PARAMS.get('key') || '';

// A new version of this file takes over at once; it keeps no caches.
self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (event) { event.waitUntil(self.clients.claim()); });

function pushlangPlatform(ua) {
  ua = ua || '';
  // Every browser on iOS/iPadOS is WebKit with Apple's push service: Safari's rules apply.
  if (/\b(iPhone|iPad|iPod)\b/.test(ua)) return 'safari';
  if (/\bEdg(e|A)?\//.test(ua)) return 'edge';
  if (/\bFirefox\//.test(ua)) return 'firefox';
  if (/(Chrome|Chromium)\//.test(ua)) return 'chrome';  // also HeadlessChrome/
  if (/\bSafari\//.test(ua)) return 'safari';
  return 'chrome';
}

function pushlangUrlBase64ToUint8Array(text) {
  var padded = (text + '='.repeat((4 - (text.length % 4)) % 4)).replace(/-/g, '+').replace(/_/g, '/');
  var raw = atob(padded);
  var out = new Uint8Array(raw.length);
  for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function pushlangSleep(ms) {
  return new Promise(function (resolve) { setTimeout(resolve, ms); });
}

// POST records to the service; one retry on a network error, and one after the Retry-After of a
// 429 (rate limited: many pushes reached browsers behind one address at once). Never rejects: a
// lost report must not turn into an unhandled rejection inside waitUntil.
function pushlangReport(records) {
  var body = JSON.stringify(records);
  var send = function () {
    return fetch(PUSHLANG_API + '/v1/browser/records', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-Pushlang-User-Token': PUSHLANG_TOKEN},
      body: body,
      credentials: 'omit',
      mode: 'cors',
    });
  };
  return send()
    .catch(function () { return pushlangSleep(1000).then(send); })
    .then(function (response) {
      if (response.status !== 429) return response;
      var wait = Math.min(Number(response.headers.get('Retry-After')) || 1, 30);
      return pushlangSleep(wait * 1000 + Math.random() * 1000).then(send);
    })
    .then(function (response) {
      if (!response.ok) console.warn('pushlang: /v1/browser/records answered', response.status);
      return response;
    })
    .catch(function (err) { console.warn('pushlang: could not report', err); });
}

function pushlangEvent(name, props) {
  return {type: 'event', user: PUSHLANG_USER, ts: new Date().toISOString(), name: name, props: props};
}

function pushlangPayload(event) {
  if (!event.data) return null;
  try {
    return event.data.json();
  } catch (err) {
    // Not JSON: show the text as it is, there is no send to report against.
    return {title: event.data.text()};
  }
}

self.addEventListener('push', function (event) {
  var payload = pushlangPayload(event);
  if (!payload || !payload.title) return;
  var actions = Array.isArray(payload.actions) ? payload.actions.slice(0, 2) : [];
  var options = {
    body: payload.body || '',
    data: {
      url: payload.url || null,
      send_id: payload.send_id || null,
      campaign: payload.campaign || null,
      actions: actions,
    },
    actions: actions.map(function (a, i) { return {action: 'a' + i, title: String(a.title)}; }),
    requireInteraction: payload.requireInteraction === true,
  };
  if (payload.icon) options.icon = payload.icon;
  if (payload.image) options.image = payload.image;
  // One notification per send: a duplicate that does arrive replaces the first instead of adding one.
  var tag = payload.tag || payload.send_id;
  if (tag) options.tag = String(tag);
  var shown = self.registration.showNotification(String(payload.title), options);
  event.waitUntil(shown.then(function () {
    if (!payload.send_id) return undefined;
    return pushlangReport([pushlangEvent('Push Viewed', {send_id: payload.send_id,
                                                         campaign: payload.campaign || null})]);
  }));
});

function pushlangOpen(url) {
  if (!url) return Promise.resolve();
  var target = new URL(url, self.location.origin).href;
  return self.clients.matchAll({type: 'window', includeUncontrolled: true}).then(function (list) {
    for (var i = 0; i < list.length; i++) {
      if (list[i].url === target && 'focus' in list[i]) return list[i].focus();
    }
    return self.clients.openWindow(target);
  }).catch(function (err) { console.warn('pushlang: could not open', target, err); });
}

self.addEventListener('notificationclick', function (event) {
  var notification = event.notification;
  var data = notification.data || {};
  notification.close();
  var url = data.url;
  var action = event.action || 'default';
  var match = /^a(\d)$/.exec(event.action || '');
  if (match && data.actions && data.actions[Number(match[1])]) {
    url = data.actions[Number(match[1])].url || url;
  }
  var work = [pushlangOpen(url)];  // openWindow first: it needs the click's user activation
  if (data.send_id) {
    work.push(pushlangReport([pushlangEvent('Push Clicked', {send_id: data.send_id,
                                                             campaign: data.campaign || null,
                                                             action: action, url: url || null})]));
  }
  event.waitUntil(Promise.all(work));
});

self.addEventListener('pushsubscriptionchange', function (event) {
  var old = event.oldSubscription || null;
  var key = (old && old.options && old.options.applicationServerKey) ||
            (PUSHLANG_KEY ? pushlangUrlBase64ToUint8Array(PUSHLANG_KEY) : null);
  var fresh = event.newSubscription
    ? Promise.resolve(event.newSubscription)
    : self.registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
  event.waitUntil(fresh.then(function (subscription) {
    var json = subscription.toJSON();
    var now = new Date().toISOString();
    var records = [{type: 'subscribe', user: PUSHLANG_USER, ts: now,
                    platform: pushlangPlatform(self.navigator.userAgent),
                    endpoint: json.endpoint, keys: {p256dh: json.keys.p256dh, auth: json.keys.auth}}];
    if (old && old.endpoint && old.endpoint !== json.endpoint) {
      records.push({type: 'unsubscribe', user: PUSHLANG_USER, ts: now, endpoint: old.endpoint});
    }
    return pushlangReport(records);
  }).catch(function (err) { console.warn('pushlang: could not re-subscribe', err); }));
});
