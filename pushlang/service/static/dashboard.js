// The pushlang stats dashboard: a table per campaign and charts over time, drawn with uPlot
// (shipped in ./vendor). Data: GET /v1/stats?label=L and GET /v1/stats/series?label=L&bucket=B.
// The table shows each campaign's throttled delays, and under its figures a line of its suppressed
// and delayed decisions by reason. "Experiments" shows each campaign with variants (a row per
// variant, its winner record) and the global holdout, each difference in conversion rate drawn as a
// point with its 95% confidence interval against a zero line (a forest plot; SVG, no library).
// "Languages" shows each campaign whose decisions carry a `lang` (a row per tag, "default" for the
// message's own texts), each language against the control group of that language.
//
// Once the charts have drawn, <body data-charts-ready="N"> holds the number of data points drawn
// (N = 0 when there is no activity yet); on a failed load, <body data-error="..."> says why.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const controls = { label: $("label"), campaign: $("campaign"), bucket: $("bucket") };

  const count = new Intl.NumberFormat("en-US");
  const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const percent = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
  const signed = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" });

  const DELIVERY = [
    { key: "sends", label: "Sends", stroke: "#2563eb" },
    { key: "delivered", label: "Delivered", stroke: "#0d9488" },
    { key: "viewed", label: "Viewed", stroke: "#a855f7" },
    { key: "clicked", label: "Clicked", stroke: "#f59e0b" },
  ];
  const CONVERSIONS = [
    { key: "conversions", label: "Conversions", stroke: "#16a34a", scale: "count" },
    { key: "revenue", label: "Revenue", stroke: "#dc2626", scale: "revenue", value: (u, v) => v == null ? "-" : money.format(v) },
  ];
  const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2500, 5e3, 1e4, 2e4, 25e3, 5e4, 1e5,
                       2e5, 25e4, 5e5, 1e6, 2e6, 5e6, 1e7]; // whole numbers only on the count axes
  const MAX_FILLED_BUCKETS = 20000; // beyond this, empty buckets are not filled in with zeros

  let charts = [];
  let latest = 0; // the number of the newest load: older answers are dropped
  let lastSeries = null;

  // ---- state <-> URL ---------------------------------------------------------------------------

  function readState() {
    const q = new URLSearchParams(location.search);
    return {
      label: q.get("label") || "",
      campaign: q.get("campaign") || "",
      bucket: q.get("bucket") === "day" ? "day" : "hour",
    };
  }

  function writeState(state) {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value && !(key === "bucket" && value === "hour")) q.set(key, value);
    }
    const search = q.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  function currentState() {
    return { label: controls.label.value, campaign: controls.campaign.value, bucket: controls.bucket.value };
  }

  // ---- loading ---------------------------------------------------------------------------------

  // The stats API wants the service's API token. The page is opened as /dashboard#token=…: the
  // fragment never reaches the server or its logs; the token is kept for this tab only.
  const TOKEN_KEY = "pushlang-token";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function getJSON(url) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(url, { headers, cache: "no-store" });
    if (response.status === 401) {
      throw new Error("the API token is missing or wrong: open this page as /dashboard#token=<PUSHLANG_API_TOKEN>");
    }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function load() {
    const state = currentState();
    writeState(state);
    const mine = ++latest;
    setStatus("Loading…");
    delete document.body.dataset.chartsReady;
    delete document.body.dataset.error;
    const q = state.label ? "label=" + encodeURIComponent(state.label) + "&" : "";
    try {
      const [stats, series] = await Promise.all([
        getJSON("/v1/stats?" + q),
        getJSON("/v1/stats/series?" + q + "bucket=" + encodeURIComponent(state.bucket)),
      ]);
      if (mine !== latest) return;
      fillLabels(stats.labels, state.label);
      fillCampaigns(stats.campaigns, state.campaign);
      renderTable(stats);
      renderExperiments(stats);
      renderLanguages(stats);
      lastSeries = series;
      renderCharts();
      const n = stats.campaigns.length;
      setStatus(`${n} campaign${n === 1 ? "" : "s"}${state.label ? ` labelled “${state.label}”` : ""} · ` +
                `updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (mine !== latest) return;
      setStatus("Could not load the stats: " + err.message, true);
      document.body.dataset.error = String(err.message);
    }
  }

  function setStatus(text, error = false) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", error);
  }

  // ---- filters ---------------------------------------------------------------------------------

  function fillSelect(select, first, options, selected) {
    const wanted = options.some(([value]) => value === selected) ? selected : "";
    select.replaceChildren(new Option(first, ""), ...options.map(([value, text]) => new Option(text, value)));
    select.value = wanted;
  }

  function fillLabels(labels, selected) {
    // A label no loaded campaign carries any more stays selectable, so the filter never jumps.
    const all = labels.includes(selected) || !selected ? labels : [...labels, selected];
    fillSelect(controls.label, "All labels", all.map((l) => [l, l]), selected);
  }

  function fillCampaigns(campaigns, selected) {
    fillSelect(controls.campaign, "All campaigns", campaigns.map((c) => [c.id, c.name]), selected);
  }

  // ---- table -----------------------------------------------------------------------------------

  const rate = (v) => (v == null ? "-" : percent.format(v));

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // "min_gap 7, global_limit 5": reasons and their counts, as the API orders them (largest first).
  const reasonList = (by) => Object.entries(by).map(([reason, n]) => `${reason} ${count.format(n)}`).join(", ");

  // A count whose tooltip gives it by reason ("delayed 6: throttle 5, dnd 1").
  function countCell(key, n, what, total, by) {
    const td = cell(count.format(n));
    td.dataset.key = key;
    if (total) td.title = `${what} ${count.format(total)}: ${reasonList(by)}`;
    return td;
  }

  function numbers(s) {
    const lift = s.lift == null ? cell("-") : cell(signed.format(s.lift), s.lift > 0 ? "up" : s.lift < 0 ? "down" : "");
    return [
      cell(count.format(s.sends)),
      countCell("throttled", s.throttled, "delayed", s.delayed, s.delayed_by),
      countCell("suppressed", s.suppressed, "suppressed", s.suppressed, s.suppressed_by),
      cell(count.format(s.delivered)), cell(count.format(s.failed)),
      cell(count.format(s.viewed)), cell(count.format(s.clicked)), cell(rate(s.click_rate)),
      cell(count.format(s.conversions)), cell(rate(s.conversion_rate)), cell(money.format(s.revenue)),
      cell(count.format(s.control)), cell(rate(s.control_rate)), lift,
    ];
  }

  // Under a campaign's figures, its suppressed and delayed decisions by reason, largest first, as
  // chips: "Suppressed [min_gap 7] [global_limit 5]  Delayed [throttle 38] [dnd 2]"; neither: no line.
  function reasonsRow(s, campaignId) {
    const groups = [["suppress", "Suppressed", s.suppressed_by], ["delay", "Delayed", s.delayed_by]]
      .filter(([, , by]) => Object.keys(by).length);
    if (!groups.length) return null;
    const tr = document.createElement("tr");
    tr.className = "why";
    if (campaignId !== undefined) tr.dataset.campaign = campaignId;
    const td = cell("", "why");
    td.dataset.key = "reasons";
    td.colSpan = document.querySelectorAll("#stats thead th").length - 1;
    for (const [outcome, title, by] of groups) {
      const group = Object.assign(document.createElement("span"), { className: "group" });
      group.dataset.outcome = outcome;
      group.append(Object.assign(document.createElement("span"), { className: "what", textContent: title }));
      for (const [reason, n] of Object.entries(by)) {
        const chip = Object.assign(document.createElement("span"), { className: "reason " + outcome, textContent: reason + " " });
        chip.dataset.reason = reason;
        chip.append(Object.assign(document.createElement("b"), { textContent: count.format(n) }));
        group.append(" ", chip); // the spaces keep the text readable when copied: "min_gap 7 global_limit 5"
      }
      td.append(...(td.childNodes.length ? [" ", group] : [group]));
    }
    tr.append(td);
    return tr;
  }

  // A campaign's row, and the line of its reasons under it (the name cell spans both).
  function campaignRows(name, s, campaignId) {
    const tr = document.createElement("tr");
    const why = reasonsRow(s, campaignId);
    if (campaignId !== undefined) tr.dataset.campaign = campaignId;
    if (why) {
      name.rowSpan = 2;
      tr.classList.add("has-why");
    }
    tr.append(name, ...numbers(s));
    return why ? [tr, why] : [tr];
  }

  function renderTable(stats) {
    const body = document.querySelector("#stats tbody");
    const foot = document.querySelector("#stats tfoot");
    const selected = controls.campaign.value;
    const rows = stats.campaigns.flatMap((c) => {
      const name = cell("", "name");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = c.name;
      button.title = "Show this campaign in the charts";
      button.addEventListener("click", () => {
        controls.campaign.value = controls.campaign.value === c.id ? "" : c.id;
        onCampaignChange();
      });
      name.append(button);
      if (c.name !== c.id) name.append(Object.assign(document.createElement("span"), { className: "id", textContent: c.id }));
      for (const l of c.labels) name.append(Object.assign(document.createElement("span"), { className: "tag", textContent: l }));
      const trs = campaignRows(name, c, c.id);
      for (const tr of trs) tr.classList.toggle("selected", c.id === selected);
      return trs;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell("No campaigns" + (stats.label ? ` labelled “${stats.label}”` : "") + ".", "empty");
      td.colSpan = document.querySelectorAll("#stats thead th").length;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    foot.replaceChildren(...(stats.campaigns.length > 1 ? campaignRows(cell("All", "name"), stats.totals) : []));
  }

  // ---- experiments: variants, the winner, the global holdout ---------------------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const el = (tag, props = {}, ...children) => {
    const e = Object.assign(document.createElement(tag), props);
    e.append(...children);
    return e;
  };
  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // Differences of rates in percentage points: "+40.0 pts", "−20.0" (U+2212, the figures' minus).
  const ppNumber = (v) => (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v * 100).toFixed(1);
  const defined = (c) => c != null && c.diff != null;
  const diffText = (c) => (defined(c) ? `${ppNumber(c.diff)} pts [${ppNumber(c.low)}, ${ppNumber(c.high)}]` : "-");
  const pText = (c) => (!defined(c) ? "-" : c.p == null ? "n/a" : c.p < 0.001 ? "<0.001" : c.p.toFixed(3));
  const liftText = (c) => (c == null || c.lift == null ? "-" : signed.format(c.lift));
  const tone = (c) => (!defined(c) || !c.significant ? "ns" : c.diff > 0 ? "up" : "down");

  // A comparison as three cells: the difference with its interval, p, and a mark when p < 0.05.
  function comparisonCells(c, key) {
    const diff = cell(diffText(c), tone(c) === "ns" ? "" : tone(c));
    diff.dataset.key = key;
    if (defined(c) && c.p == null) diff.title = "both rates are 0 (or both 1): nothing to test";
    const p = cell(pText(c) + (defined(c) && c.significant ? " *" : ""));
    p.dataset.key = key + "-p";
    return [diff, p];
  }

  function head(...names) {
    return el("thead", {}, el("tr", {}, ...names.map(([text, title], i) => {
      const th = el("th", { scope: "col", textContent: text, className: i === 0 ? "name" : "" });
      if (title) th.title = title;
      return th;
    })));
  }

  // A nice step for ~5 ticks over a span of rate differences.
  function tickStep(span) {
    for (const step of [0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5]) if (span / step <= 6) return step;
    return 1;
  }

  // The forest plot: one row per comparison, its difference a point, its 95% interval a line, the
  // zero line dashed; filled (green above zero, red below) when p < 0.05, hollow otherwise. A
  // comparison that is not defined (no sends, nobody held out) is listed and says so.
  function forest(rows, caption) {
    const W = 560, LABEL = 118, RIGHT = 16, ROW = 26, TOP = 6, AXIS = 36;
    const shown = rows.filter((r) => defined(r.c));
    let lo = Math.min(0, ...shown.map((r) => r.c.low)), hi = Math.max(0, ...shown.map((r) => r.c.high));
    if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
    const pad = (hi - lo) * 0.06;
    lo -= pad; hi += pad;
    const step = tickStep(hi - lo);
    const x = (v) => LABEL + ((v - lo) / (hi - lo)) * (W - LABEL - RIGHT);
    const H = TOP + rows.length * ROW + AXIS;
    const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "forest", role: "img",
                             "aria-label": caption });
    plot.append(svg("title", {}, caption));
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) {
      const tx = x(t);
      plot.append(svg("line", { x1: tx, x2: tx, y1: TOP, y2: H - AXIS, class: "grid" }));
      plot.append(svg("text", { x: tx, y: H - AXIS + 16, "text-anchor": "middle", class: "tick" },
                      Math.abs(t) < 1e-12 ? "0" : ppNumber(t)));
    }
    plot.append(svg("text", { x: (LABEL + W - RIGHT) / 2, y: H - 2, "text-anchor": "middle", class: "axis-label" },
                    "difference in conversion rate (percentage points)"));
    plot.append(svg("line", { x1: x(0), x2: x(0), y1: TOP - 2, y2: H - AXIS + 4, class: "zero" }));
    rows.forEach((r, i) => {
      const y = TOP + i * ROW + ROW / 2;
      const g = svg("g", { class: "row " + tone(r.c), "data-label": r.label });
      g.append(svg("text", { x: LABEL - 8, y: y + 4, "text-anchor": "end", class: "label" }, r.label));
      if (defined(r.c)) {
        g.append(svg("title", {}, `${r.label}: ${diffText(r.c)}, p ${pText(r.c)}${r.c.significant ? " (p < 0.05)" : ""}`));
        g.append(svg("line", { x1: x(r.c.low), x2: x(r.c.high), y1: y, y2: y, class: "ci" }));
        for (const end of [r.c.low, r.c.high]) {
          g.append(svg("line", { x1: x(end), x2: x(end), y1: y - 5, y2: y + 5, class: "ci" }));
        }
        g.append(svg("circle", { cx: x(r.c.diff), cy: y, r: 4.5, class: "point" }));
      } else {
        g.append(svg("text", { x: LABEL + 4, y: y + 4, class: "undefined" }, "not defined: no sends or nobody to compare with"));
      }
      plot.append(g);
    });
    return plot;
  }

  function winnerLine(winners) {
    if (!winners.length) return null;
    const w = winners[winners.length - 1];
    const rates = Object.entries(w.rates || {}).map(([v, r]) => `${v} ${rate(r)}`).join(", ");
    const called = w.significant == null ? "significance not given" : w.significant ? "significant (p < 0.05)" : "not significant";
    const p = el("p", { className: "winner" + (w.significant ? " significant" : "") }, "Winner ",
                 el("b", { textContent: w.variant }), ` · ${rates} · ${called} · at ${w.at.replace("T", " ").replace("Z", " UTC")}`);
    if (winners.length > 1) p.append(` · the latest of ${winners.length}`);
    p.dataset.key = "winner";
    return p;
  }

  function experimentCard(c) {
    const variants = Object.entries(c.variants);
    const first = variants.length ? variants[0][0] : "first";
    const card = el("article", { className: "experiment" });
    card.dataset.campaign = c.id;
    const title = el("h3", {}, c.name);
    if (c.name !== c.id) title.append(" ", el("span", { className: "id", textContent: c.id }));
    card.append(title);
    const winner = winnerLine(c.winners);
    if (winner) card.append(winner);
    if (!variants.length) return card;
    const table = el("table", { className: "variants" },
      head(["Variant"], ["Sends"], ["Clicked"], ["Click rate", "sends clicked / sends"], ["Conversions"],
           ["Conv. rate", "conversions / sends"], ["Revenue"],
           [`Δ vs ${first}`, `conversion rate − ${first}'s, 95% confidence interval (Wald)`], ["p", "two-sided, pooled z-test"],
           ["Δ vs control", "conversion rate − the control group's, 95% confidence interval (Wald)"], ["p", "two-sided, pooled z-test"],
           ["Lift", "(conv. rate − control rate) / control rate"]));
    const body = el("tbody");
    for (const [id, v] of variants) {
      const tr = el("tr");
      tr.dataset.variant = id;
      const name = cell(id, "name");
      if (c.winners.length && c.winners[c.winners.length - 1].variant === id) name.append(el("span", { className: "tag win", textContent: "winner" }));
      tr.append(name, cell(count.format(v.sends)), cell(count.format(v.clicked)), cell(rate(v.click_rate)),
                cell(count.format(v.conversions)), cell(rate(v.conversion_rate)), cell(money.format(v.revenue)),
                ...(v.vs_first ? comparisonCells(v.vs_first, "vs-first") : [cell("baseline", "muted"), cell("")]),
                ...comparisonCells(v.vs_control, "vs-control"), cell(liftText(v.vs_control)));
      body.append(tr);
    }
    table.append(body);
    const rows = [
      ...variants.slice(1).map(([id, v]) => ({ label: `${id} − ${first}`, c: v.vs_first })),
      ...(c.control ? variants.map(([id, v]) => ({ label: `${id} − control`, c: v.vs_control })) : []),
    ];
    card.append(el("div", { className: "table-wrap" }, table));
    if (rows.length) card.append(forest(rows, `${c.name}: each variant's difference in conversion rate`));
    return card;
  }

  function holdoutCard(stats) {
    const held = stats.campaigns.filter((c) => c.global_holdout.held_out);
    const card = el("article", { className: "experiment holdout" });
    card.dataset.campaign = "global-holdout";
    card.append(el("h3", { textContent: "Global holdout" }),
                el("p", { className: "note", textContent: "Users held out of every campaign: their conversions against the sends'." }));
    const table = el("table", { className: "variants" },
      head(["Campaign"], ["Held out"], ["Conversions"], ["Rate"], ["Sends"], ["Conversions"], ["Conv. rate"],
           ["Δ sends − holdout", "95% confidence interval (Wald)"], ["p", "two-sided, pooled z-test"],
           ["Lift", "(conv. rate − holdout rate) / holdout rate"]));
    const lines = [...held.map((c) => [c.name, c.id, c]), ...(held.length > 1 ? [["All", "", stats.totals]] : [])];
    const body = el("tbody");
    for (const [name, id, s] of lines) {
      const h = s.global_holdout;
      const tr = el("tr");
      tr.dataset.campaign = id || "all";
      tr.append(cell(name, "name"), cell(count.format(h.held_out)), cell(count.format(h.conversions)), cell(rate(h.conversion_rate)),
                cell(count.format(s.sends)), cell(count.format(s.conversions)), cell(rate(s.conversion_rate)),
                ...comparisonCells(h.sends_vs_holdout, "vs-holdout"), cell(liftText(h.sends_vs_holdout)));
      body.append(tr);
    }
    table.append(body);
    card.append(el("div", { className: "table-wrap" }, table),
                forest(lines.map(([name, , s]) => ({ label: name, c: s.global_holdout.sends_vs_holdout })),
                       "Global holdout: the sends' conversion rate minus the held-out users'"));
    return card;
  }

  function renderExperiments(stats) {
    const cards = stats.campaigns.filter((c) => Object.keys(c.variants).length || c.winners.length).map(experimentCard);
    if (stats.totals.global_holdout.held_out) cards.push(holdoutCard(stats));
    $("experiments-body").replaceChildren(...cards);
    $("experiments").hidden = !cards.length;
  }

  // ---- languages: a campaign's sends by the `lang` tag whose texts they used ---------------------

  function languageCard(c) {
    const languages = Object.entries(c.languages);
    const card = el("article", { className: "lang-card" });
    card.dataset.campaign = c.id;
    const title = el("h3", {}, c.name);
    if (c.name !== c.id) title.append(" ", el("span", { className: "id", textContent: c.id }));
    card.append(title, el("p", { className: "note", textContent:
      "Who reads which language is not chosen at random: each language is compared with the users of its own " +
      "control group (the language they would have got), not with the other languages." }));
    const table = el("table", { className: "variants languages" },
      head(["Language", "the lang tag as the campaign writes it; default: the message's own texts"], ["Sends"],
           ["Viewed"], ["Clicked"], ["Click rate", "sends clicked / sends"], ["Conversions"],
           ["Conv. rate", "conversions / sends"], ["Revenue"], ["Control", "users of the control group who would have got this language"],
           ["Control rate", "control conversions / control"],
           ["Δ vs control", "conversion rate − the control group's of this language, 95% confidence interval (Wald)"],
           ["p", "two-sided, pooled z-test"], ["Lift", "(conv. rate − control rate) / control rate"]));
    const body = el("tbody");
    for (const [tag, x] of languages) {
      const tr = el("tr");
      tr.dataset.lang = tag;
      const name = cell(tag, "name");
      if (tag === "default") name.title = "the message's own texts: no lang block matched the user's language";
      tr.append(name, cell(count.format(x.sends)), cell(count.format(x.viewed)), cell(count.format(x.clicked)),
                cell(rate(x.click_rate)), cell(count.format(x.conversions)), cell(rate(x.conversion_rate)),
                cell(money.format(x.revenue)), cell(count.format(x.control)), cell(rate(x.control_rate)),
                ...comparisonCells(x.vs_control, "vs-control"), cell(liftText(x.vs_control)));
      body.append(tr);
    }
    table.append(body);
    card.append(el("div", { className: "table-wrap" }, table));
    const rows = languages.filter(([, x]) => x.vs_control).map(([tag, x]) => ({ label: `${tag} − control`, c: x.vs_control }));
    if (rows.length) card.append(forest(rows, `${c.name}: each language's difference in conversion rate from its control group`));
    return card;
  }

  function renderLanguages(stats) {
    const cards = stats.campaigns.filter((c) => Object.keys(c.languages || {}).length).map(languageCard);
    $("languages-body").replaceChildren(...cards);
    $("languages").hidden = !cards.length;
  }

  function onCampaignChange() {
    writeState(currentState());
    for (const tr of document.querySelectorAll("#stats tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.campaign === controls.campaign.value);
    }
    renderCharts();
  }

  // ---- charts ----------------------------------------------------------------------------------

  // The points of the chosen campaign(s), summed per bucket, with empty buckets as zeros.
  function aggregate(series, campaignId) {
    const keys = [...DELIVERY, ...CONVERSIONS].map((s) => s.key);
    const byTime = new Map();
    for (const c of series.campaigns) {
      if (campaignId && c.id !== campaignId) continue;
      for (const p of c.points) {
        let sum = byTime.get(p.ts);
        if (!sum) byTime.set(p.ts, (sum = Object.fromEntries(keys.map((k) => [k, 0]))));
        for (const k of keys) sum[k] += p[k] || 0;
      }
    }
    let times = [...byTime.keys()].sort((a, b) => a - b);
    if (times.length === 1) {
      // A lone bucket between its empty neighbours, so the chart has a time span to show it in.
      times = [times[0] - series.step, times[0], times[0] + series.step];
    } else if (times.length > 1 && (times[times.length - 1] - times[0]) / series.step < MAX_FILLED_BUCKETS) {
      const filled = [];
      for (let t = times[0]; t <= times[times.length - 1]; t += series.step) filled.push(t);
      times = filled;
    }
    const zero = Object.fromEntries(keys.map((k) => [k, 0]));
    const columns = Object.fromEntries(keys.map((k) => [k, times.map((t) => (byTime.get(t) || zero)[k])]));
    return { times, columns };
  }

  function chartWidth(el) {
    return Math.max(320, Math.floor(el.getBoundingClientRect().width) || el.parentElement.clientWidth || 800);
  }

  // Counts and revenue start at zero; an all-zero chart still gets an axis up to 1.
  const fromZero = (u, min, max) => uPlot.rangeNum(0, Math.max(max || 0, 1), 0.1, true);

  function makeChart(el, defs, data, extraAxes, onDrawn) {
    const opts = {
      width: chartWidth(el),
      height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true }, count: { range: fromZero }, revenue: { range: fromZero } },
      series: [
        { label: "UTC" },
        ...defs.map((d) => ({
          label: d.label,
          stroke: d.stroke,
          width: 2,
          scale: d.scale || "count",
          value: d.value || ((u, v) => (v == null ? "-" : count.format(v))),
        })),
      ],
      axes: [
        { label: "UTC" },
        { scale: "count", label: "count", incrs: COUNT_STEPS, values: (u, ticks) => ticks.map((v) => count.format(v)) },
        ...extraAxes,
      ],
      hooks: { draw: [onDrawn] },
    };
    el.replaceChildren();
    return new uPlot(opts, data, el);
  }

  function renderCharts() {
    for (const chart of charts) chart.destroy();
    charts = [];
    const series = lastSeries;
    if (!series) return;
    const campaignId = controls.campaign.value;
    const name = campaignId ? controls.campaign.selectedOptions[0].textContent : "all campaigns";
    const scope = !campaignId && series.label ? ` labelled “${series.label}”` : "";
    $("charts-subtitle").textContent = `· ${name}${scope}, per ${series.bucket} (UTC)`;

    const { times, columns } = aggregate(series, campaignId);
    const elements = [$("chart-delivery"), $("chart-conversions")];
    if (!times.length) {
      for (const el of elements) {
        el.replaceChildren(Object.assign(document.createElement("p"), { className: "empty", textContent: "No activity yet." }));
      }
      document.body.dataset.chartsReady = "0";
      return;
    }

    const groups = [DELIVERY, CONVERSIONS];
    const points = groups.map((defs) => defs.length * times.length);
    const drawn = new Set();
    const onDrawn = (index) => () => {
      drawn.add(index);
      if (drawn.size === groups.length) {
        document.body.dataset.chartsReady = String(points.reduce((a, b) => a + b, 0));
      }
    };
    const revenueAxis = {
      scale: "revenue", side: 1, label: "revenue", grid: { show: false },
      values: (u, ticks) => ticks.map((v) => money.format(v)),
    };
    charts = [
      makeChart(elements[0], DELIVERY, [times, ...DELIVERY.map((d) => columns[d.key])], [], onDrawn(0)),
      makeChart(elements[1], CONVERSIONS, [times, ...CONVERSIONS.map((d) => columns[d.key])], [revenueAxis], onDrawn(1)),
    ];
  }

  function resizeCharts() {
    for (const chart of charts) chart.setSize({ width: chartWidth(chart.root.parentElement), height: 260 });
  }

  // ---- start -----------------------------------------------------------------------------------

  function start() {
    if (typeof uPlot === "undefined") {
      setStatus("The charting library did not load.", true);
      document.body.dataset.error = "uPlot not loaded";
      return;
    }
    const state = readState();
    controls.bucket.value = state.bucket;
    // The label and campaign options come with the data; select the wanted ones up front.
    fillLabels(state.label ? [state.label] : [], state.label);
    fillCampaigns(state.campaign ? [{ id: state.campaign, name: state.campaign }] : [], state.campaign);

    $("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
    controls.label.addEventListener("change", load);
    controls.bucket.addEventListener("change", load);
    controls.campaign.addEventListener("change", onCampaignChange);
    let pending = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(resizeCharts);
    });
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
