// The pushlang stats dashboard: a table per campaign and charts over time, drawn with uPlot
// (shipped in ./vendor). Data: GET /v1/stats?label=L and GET /v1/stats/series?label=L&bucket=B.
// The table shows each campaign's throttled delays, and under its figures a line of its suppressed
// and delayed decisions by reason.
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
