/*
 * pushlang browser SDK — served by `pushlang serve` at /sdk/subscribe.js. No dependencies.
 *
 *   <script src="/sdk/subscribe.js"></script>
 *   <script>
 *     button.onclick = async () => {            // ask from a click: Firefox and Safari insist
 *       const subscription = await pushlang.subscribe({
 *         user: 'u1',                           // your user id (SPEC §9.1 `user`)
 *         token: 'v1.1767225600.Xq3…',          // that id signed by your site (docs/security.md)
 *         vapidPublicKey: 'BP...',              // base64url, the [webpush] VAPID public key
 *         // endpoint: 'https://push.example.com',  where pushlang serve listens (default: this origin)
 *         // serviceWorker: '/sdk/sw.js',           the worker's path on *this* origin
 *         // scope: '/',                            its scope
 *         // profile: false,                        when your site sets `language` and `timezone` itself
 *       });
 *     };
 *   </script>
 *
 * `token` is the user id signed by your site's backend with [server] user_token_secret (HMAC; see
 * docs/security.md; `pushlang keys user-token USER` prints one for a test). It is sent with every
 * record (header X-Pushlang-User-Token): without a valid one the service takes no record for `user`.
 * A token expires: call pushlang.register (or subscribe) on each visit with a fresh one, which
 * also hands it to the service worker.
 *
 * pushlang.subscribe registers the service worker as `{serviceWorker}?user=…&token=…&api=…&key=…`,
 * asks for notification permission, subscribes with `userVisibleOnly: true` and the VAPID key,
 * detects the platform (chrome, firefox, edge, safari) from the user agent and posts a
 * `subscribe` record (endpoint, keys.p256dh, keys.auth) to POST {endpoint}/v1/browser/records —
 * with a `profile` record of the browser's language (navigator.language) and time zone
 * (Intl.DateTimeFormat().resolvedOptions().timeZone) as the user's `language` and `timezone`, unless
 * the site gives its own (`language`, `timezone` options) or sets them itself (`profile: false`) —
 * no API token ever reaches the page. It resolves to the PushSubscription; it rejects when push is
 * not supported or permission is not granted.
 *
 * pushlang.register({user, token, endpoint, vapidPublicKey, serviceWorker, scope}) only registers the
 * worker (resolves to the ServiceWorkerRegistration). pushlang.unsubscribe({user, token, endpoint})
 * drops the subscription and posts an `unsubscribe` record. pushlang.platform() tells the platform.
 *
 * A service worker must come from the page's own origin and run in a secure context (https, or
 * http://localhost / 127.0.0.1). A scope wider than the worker's folder ('/' for /sdk/sw.js) needs
 * the `Service-Worker-Allowed: /` response header, which pushlang serve sends.
 */
(function (global) {
  'use strict';

  function platform(ua) {
    ua = ua === undefined ? global.navigator.userAgent : (ua || '');
    // Every browser on iOS/iPadOS is WebKit with Apple's push service: Safari's rules apply.
    if (/\b(iPhone|iPad|iPod)\b/.test(ua)) return 'safari';
    if (/\bEdg(e|A)?\//.test(ua)) return 'edge';
    if (/\bFirefox\//.test(ua)) return 'firefox';
    if (/(Chrome|Chromium)\//.test(ua)) return 'chrome';  // also HeadlessChrome/
    if (/\bSafari\//.test(ua)) return 'safari';
    return 'chrome';
  }

  function urlBase64ToUint8Array(text) {
    var padded = (text + '='.repeat((4 - (text.length % 4)) % 4)).replace(/-/g, '+').replace(/_/g, '/');
    var raw = global.atob(padded);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function apiOrigin(endpoint) {
    return String(endpoint || global.location.origin).replace(/\/+$/, '');
  }

  function post(endpoint, token, records) {
    return global.fetch(apiOrigin(endpoint) + '/v1/browser/records', {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'X-Pushlang-User-Token': String(token)},
      body: JSON.stringify(records),
      credentials: 'omit',
      mode: 'cors',
    }).then(function (response) {
      if (!response.ok) throw new Error('pushlang: /v1/browser/records answered ' + response.status);
      return response;
    });
  }

  function supported() {
    return 'serviceWorker' in global.navigator && 'PushManager' in global && 'Notification' in global;
  }

  function register(options) {
    options = options || {};
    if (!options.user) return Promise.reject(new Error('pushlang: `user` is required'));
    if (!options.token) {
      return Promise.reject(new Error('pushlang: `token` is required: the user id signed by your site ' +
                                      '(`pushlang keys user-token USER` prints one for a test)'));
    }
    if (!('serviceWorker' in global.navigator)) {
      return Promise.reject(new Error('pushlang: service workers are not supported here'));
    }
    var query = new URLSearchParams({user: String(options.user), token: String(options.token),
                                     api: apiOrigin(options.endpoint)});
    if (options.vapidPublicKey) query.set('key', options.vapidPublicKey);
    var script = (options.serviceWorker || '/sdk/sw.js') + '?' + query.toString();
    return global.navigator.serviceWorker.register(script, {scope: options.scope || '/'});
  }

  function permission() {
    if (global.Notification.permission === 'granted') return Promise.resolve('granted');
    return new Promise(function (resolve) {
      // Old Safari takes a callback, the others return a promise.
      var maybe = global.Notification.requestPermission(resolve);
      if (maybe && typeof maybe.then === 'function') maybe.then(resolve);
    });
  }

  // The user's language and time zone as this browser has them (SPEC §12.5: campaigns' `lang` blocks
  // and the user's local time), unless the site gives its own or sets them itself (profile: false).
  function browserProfile(options) {
    if (options.profile === false) return null;
    var props = {};
    var language = options.language || (global.navigator && global.navigator.language);
    if (language) props.language = String(language);
    var zone = options.timezone;
    if (!zone) {
      try { zone = global.Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { zone = null; }
    }
    if (zone) props.timezone = String(zone);
    if (!props.language && !props.timezone) return null;
    return {type: 'profile', user: String(options.user), ts: new Date().toISOString(), props: props};
  }

  function subscribe(options) {
    options = options || {};
    if (!supported()) return Promise.reject(new Error('pushlang: web push is not supported here'));
    if (!options.vapidPublicKey) return Promise.reject(new Error('pushlang: `vapidPublicKey` is required'));
    return register(options).then(function () {
      return permission();
    }).then(function (answer) {
      if (answer !== 'granted') throw new Error('pushlang: notification permission ' + answer);
      return global.navigator.serviceWorker.ready;
    }).then(function (registration) {
      return registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: urlBase64ToUint8Array(options.vapidPublicKey),
      });
    }).then(function (subscription) {
      var json = subscription.toJSON();
      var record = {
        type: 'subscribe', user: String(options.user), ts: new Date().toISOString(),
        platform: platform(), endpoint: json.endpoint,
        keys: {p256dh: json.keys.p256dh, auth: json.keys.auth},
      };
      var records = [record];
      var profile = browserProfile(options);
      if (profile) records.push(profile);
      return post(options.endpoint, options.token, records).then(function () { return subscription; });
    });
  }

  function unsubscribe(options) {
    options = options || {};
    if (!('serviceWorker' in global.navigator)) return Promise.resolve(false);
    return global.navigator.serviceWorker.getRegistration(options.scope || '/').then(function (registration) {
      return registration ? registration.pushManager.getSubscription() : null;
    }).then(function (subscription) {
      if (!subscription) return false;
      var endpoint = subscription.endpoint;
      return subscription.unsubscribe().then(function () {
        if (!options.user || !options.token) return true;
        return post(options.endpoint, options.token, [{type: 'unsubscribe', user: String(options.user),
                                                       ts: new Date().toISOString(), endpoint: endpoint}])
          .then(function () { return true; });
      });
    });
  }

  global.pushlang = {
    subscribe: subscribe,
    register: register,
    unsubscribe: unsubscribe,
    platform: platform,
    supported: supported,
    urlBase64ToUint8Array: urlBase64ToUint8Array,
  };
})(typeof window !== 'undefined' ? window : self);
