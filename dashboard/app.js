// ridectl dashboard: renders the Grafana dashboard served by `ridectl dashboard`.
// Plain JS, no build step. The server sends the layout and panel options
// (/api/dashboard), each panel's rows (/api/panel/<id>), and a server-sent event
// whenever ClickHouse has new data (/api/events); nothing here ever sends SQL.
"use strict";

(function () {
  const PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2",
    "#B877D9", "#705DA0", "#37872D", "#FADE2A", "#447EBC", "#C15C17"];
  const NAMED = { green: "#73BF69", red: "#F2495C", orange: "#FF9830", yellow: "#FADE2A",
    blue: "#5794F2", purple: "#B877D9", "dark-green": "#37872D", "dark-red": "#C4162A" };
  const BG = { green: "#1f6b2a", red: "#a3162a", orange: "#b35a00", yellow: "#8a7300",
    blue: "#1f4fa8", purple: "#6b3a91" };
  const color = (c) => NAMED[c] || c;

  const S = {
    dash: null, range: null, vars: {}, values: {}, panels: new Map(),
    refreshing: false, pending: false, version: null,
    metrics: { shown: [], events: 0, lastEvent: null, refreshes: 0, lastRefreshDone: 0, errors: [] },
  };
  window.__ridectl = S;

  const $ = (sel, el) => (el || document).querySelector(sel);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  // ---------------------------------------------------------------- units
  function trim(n, d) {
    return Number(n).toFixed(d).replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
  }
  function fmt(v, unit, decimals) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v !== "number") { const n = Number(v); if (!isFinite(n)) return String(v); v = n; }
    const d = (def) => (decimals === undefined || decimals === null ? def : decimals);
    switch (unit) {
      case "percentunit": return trim(v * 100, d(1)) + "%";
      case "percent": return trim(v, d(1)) + "%";
      case "currencyEUR": return "€" + v.toFixed(d(2));
      case "currencyUSD": return "$" + v.toFixed(d(2));
      case "ms": return Math.abs(v) >= 1000 ? fmt(v / 1000, "s", decimals) : trim(v, d(0)) + " ms";
      case "s":
        if (Math.abs(v) < 60) return trim(v, d(1)) + " s";
        if (Math.abs(v) < 3600) return trim(v / 60, d(1)) + " min";
        if (Math.abs(v) < 86400) return trim(v / 3600, d(1)) + " h";
        return trim(v / 86400, d(1)) + " day";
      default: {
        const a = Math.abs(v);
        if (a >= 1e9) return trim(v / 1e9, d(2)) + " B";
        if (a >= 1e6) return trim(v / 1e6, d(2)) + " Mil";
        if (a >= 1e4) return trim(v / 1e3, d(1)) + " K";
        return trim(v, d(a < 10 && a % 1 ? 2 : 0));
      }
    }
  }
  function thresholdColor(th, v) {
    if (!th || !th.steps) return null;
    let c = null;
    for (const s of th.steps) if (s.value === null || v >= s.value) c = s.color;
    return c;
  }
  function timeLabel(ts, u, incr) {
    const iso = new Date(ts * 1000).toISOString();
    const span = u.scales.x.max - u.scales.x.min;
    if (span > 86400 * 1.5) return iso.slice(5, 10) + " " + iso.slice(11, 16);
    return incr < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
  }
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
  const isNum = (t) => /^(Nullable\()?(LowCardinality\()?(U?Int|Float|Decimal)/.test(t);
  const isTime = (t) => /^(Nullable\()?DateTime/.test(t);
  const parseTime = (s) => Date.parse(String(s).replace(" ", "T") + (/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? "" : "Z"));

  // ---------------------------------------------------------------- layout
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
    return body;
  }

  function params() {
    const p = new URLSearchParams();
    p.set("range", S.range);
    for (const [name, vals] of Object.entries(S.vars)) for (const v of vals) p.append("var-" + name, v);
    return p;
  }

  function syncLocation() {
    history.replaceState(null, "", "?" + params().toString());
  }

  function buildBar() {
    const d = S.dash;
    document.title = d.title + " · ridectl";
    $("#title").textContent = d.title;
    $("#uid").textContent = d.uid;
    const ranges = $("#ranges");
    ranges.textContent = "";
    for (const r of d.ranges) {
      const b = el("button", "range" + (r === S.range ? " active" : ""), "Last " + r);
      b.dataset.range = r;
      b.addEventListener("click", () => {
        S.range = r;
        for (const x of ranges.children) x.classList.toggle("active", x.dataset.range === r);
        syncLocation();
        refreshAll(true);
      });
      ranges.appendChild(b);
    }
    const vars = $("#vars");
    vars.textContent = "";
    for (const v of d.variables) {
      const box = el("div", "var");
      box.dataset.var = v.name;
      const label = el("span", "var-label", v.label);
      const button = el("button", "var-button");
      button.setAttribute("aria-haspopup", "listbox");
      const menu = el("div", "var-menu");
      menu.hidden = true;
      button.addEventListener("click", (e) => { e.stopPropagation(); menu.hidden = !menu.hidden; });
      document.addEventListener("click", (e) => { if (!box.contains(e.target)) menu.hidden = true; });
      box.append(label, button, menu);
      vars.appendChild(box);
      renderVar(v.name);
    }
  }

  function renderVar(name) {
    const box = $(`.var[data-var="${name}"]`);
    if (!box) return;
    const v = S.dash.variables.find((x) => x.name === name);
    const sel = S.vars[name];
    const all = sel.includes("$__all");
    $(".var-button", box).textContent = (all ? "All" : sel.join(", ")) + " ▾";
    const menu = $(".var-menu", box);
    menu.textContent = "";
    const opts = (v.include_all ? ["$__all"] : []).concat(S.values[name] || []);
    for (const o of opts) {
      const row = el("label", "var-option");
      const cb = el("input");
      cb.type = v.multi ? "checkbox" : "radio";
      cb.value = o;
      cb.checked = o === "$__all" ? all : !all && sel.includes(o);
      cb.addEventListener("change", () => choose(name, o, cb.checked));
      row.append(cb, el("span", "", o === "$__all" ? "All" : o));
      menu.appendChild(row);
    }
  }

  function choose(name, value, on) {
    const v = S.dash.variables.find((x) => x.name === name);
    let sel = S.vars[name].filter((x) => x !== "$__all");
    if (value === "$__all" || !v.multi) sel = on ? [value] : [];
    else if (on) sel.push(value);
    else sel = sel.filter((x) => x !== value);
    S.vars[name] = sel.length ? sel : ["$__all"];
    renderVar(name);
    syncLocation();
    refreshAll(true);
  }

  function buildGrid() {
    const grid = $("#grid");
    grid.textContent = "";
    for (const p of S.dash.panels) {
      const g = p.gridPos;
      const box = el("section", "panel panel-" + p.type);
      box.dataset.panelId = p.id;
      box.dataset.type = p.type;
      box.dataset.state = "loading";
      box.style.setProperty("--x", g.x + 1);
      box.style.setProperty("--w", g.w);
      box.style.setProperty("--y", g.y + 1);
      box.style.setProperty("--h", g.h);
      const head = el("header", "panel-head");
      const title = el("h2", "panel-title", p.title);
      if (p.description) title.title = p.description;
      const read = el("span", "panel-read", "");
      read.title = "When this panel's data was read from ClickHouse";
      head.append(title, read);
      const body = el("div", "panel-body");
      box.append(head, body);
      grid.appendChild(box);
      const entry = { p, box, body, read, plot: null, data: null, size: "" };
      S.panels.set(p.id, entry);
      // Redraw on every change of the panel's size (window, grid row height).
      new ResizeObserver(() => {
        const now = body.clientWidth + "x" + body.clientHeight;
        if (now === entry.size) return;
        entry.size = now;
        if (entry.plot) fitPlot(entry);
        else if (entry.data && p.type === "barchart") draw(entry);
      }).observe(body);
      if (!p.supported) {
        box.dataset.state = "unsupported";
        body.appendChild(el("div", "placeholder", `Panel type “${p.type}” is not supported here — open it in Grafana.`));
      }
    }
    layout();
  }

  function layout() {
    const grid = $("#grid");
    const rows = Math.max(...S.dash.panels.map((p) => p.gridPos.y + p.gridPos.h));
    const top = $("#bar").offsetHeight + $("#foot").offsetHeight + 36;
    const gap = 8;
    const rowH = Math.max(26, Math.floor((window.innerHeight - top - gap * (rows - 1)) / rows));
    grid.style.setProperty("--row", rowH + "px");
  }

  // ---------------------------------------------------------------- data
  async function loadVariables() {
    await Promise.all(S.dash.variables.map(async (v) => {
      const r = await getJSON(`/api/variable/${encodeURIComponent(v.name)}?range=${S.range}`);
      S.values[v.name] = r.values;
      renderVar(v.name);
    }));
  }

  async function loadPanel(e, q) {
    try {
      const data = await getJSON(`/api/panel/${e.p.id}?${q}`);
      e.data = data;
      e.box.dataset.state = "ok";
      e.box.classList.remove("error");
      e.read.textContent = "read " + clock(data.read_at);
      e.box.dataset.readAt = data.read_at;
      e.box.dataset.query = q;
      draw(e);
      e.box.classList.remove("flash");
      void e.box.offsetWidth;
      e.box.classList.add("flash");
    } catch (err) {
      e.box.dataset.state = "error";
      e.box.classList.add("error");
      e.body.textContent = "";
      e.plot = null;
      e.body.appendChild(el("div", "placeholder err", String(err.message || err)));
    }
  }

  async function refreshAll(force) {
    if (S.refreshing) { S.pending = true; return; }
    S.refreshing = true;
    const started = performance.now();
    try {
      try { await loadVariables(); } catch (err) { console.warn("variables:", err.message); }
      const q = params().toString();
      await Promise.all([...S.panels.values()].filter((e) => e.p.supported).map((e) => loadPanel(e, q)));
      S.metrics.refreshes += 1;
      S.metrics.lastRefreshDone = Date.now();
      S.metrics.lastRefreshMs = performance.now() - started;
      document.body.dataset.refreshes = S.metrics.refreshes;
    } finally {
      S.refreshing = false;
      if (S.pending) { S.pending = false; refreshAll(force); }
    }
  }

  function connect() {
    const es = new EventSource("/api/events");
    const dot = $("#live-dot"), text = $("#live-text");
    es.addEventListener("watermark", (m) => {
      let w;
      try { w = JSON.parse(m.data); } catch (err) { return; }
      S.metrics.events += 1;
      S.metrics.lastEvent = w;
      document.body.dataset.events = S.metrics.events;
      if (w.version === 0) {
        dot.className = "live";
        text.textContent = "live";
      } else {
        dot.className = w.ok ? "live" : "down";
        text.textContent = w.ok ? "live · new data " + clock(w.changed_at) : "ClickHouse unavailable";
      }
      if (S.version && w.version !== S.version && w.ok) refreshAll(false);
      S.version = w.version;
    });
    es.onerror = () => { dot.className = "down"; text.textContent = "reconnecting…"; };
  }

  // ---------------------------------------------------------------- panels
  function fieldUnit(p, col) {
    const fc = p.fieldConfig || {};
    let unit = (fc.defaults || {}).unit, decimals = (fc.defaults || {}).decimals;
    let thresholds = (fc.defaults || {}).thresholds, cell = (((fc.defaults || {}).custom || {}).cellOptions || {}).type;
    for (const o of fc.overrides || []) {
      if (o.matcher.id !== "byName" || o.matcher.options !== col) continue;
      for (const pr of o.properties) {
        if (pr.id === "unit") unit = pr.value;
        if (pr.id === "decimals") decimals = pr.value;
        if (pr.id === "thresholds") thresholds = pr.value;
        if (pr.id === "custom.cellOptions") cell = pr.value.type;
      }
    }
    return { unit, decimals, thresholds, cell };
  }

  function draw(e) {
    const t = e.p.type;
    if (t === "timeseries") drawTimeseries(e);
    else if (t === "table") drawTable(e);
    else if (t === "stat") drawStat(e);
    else if (t === "barchart") drawBars(e);
  }

  function noData(e, note) {
    if (e.plot) { e.plot.destroy(); e.plot = null; }
    e.body.textContent = "";
    e.body.appendChild(el("div", "placeholder", note || "No data"));
    e.box.dataset.series = 0;
    e.box.dataset.rows = 0;
  }

  // Long frames (time, labels..., values...) → one series per label set and value.
  function toSeries(d) {
    const ti = d.types.findIndex(isTime);
    const labels = d.types.map((ty, i) => i !== ti && !isNum(ty) ? i : -1).filter((i) => i >= 0);
    const values = d.types.map((ty, i) => i !== ti && isNum(ty) ? i : -1).filter((i) => i >= 0);
    const times = [...new Set(d.rows.map((r) => parseTime(r[ti]) / 1000))].sort((a, b) => a - b);
    const at = new Map(times.map((x, i) => [x, i]));
    const series = new Map();
    for (const r of d.rows) {
      const lab = labels.map((i) => r[i]).join(" ");
      for (const vi of values) {
        const name = lab ? (values.length > 1 ? lab + " " + d.columns[vi] : lab) : d.columns[vi];
        if (!series.has(name)) series.set(name, new Array(times.length).fill(null));
        const v = r[vi];
        series.get(name)[at.get(parseTime(r[ti]) / 1000)] = v === null ? null : Number(v);
      }
    }
    return { times, series };
  }

  function size(e) {
    return { width: Math.max(120, e.body.clientWidth), height: Math.max(60, e.body.clientHeight) };
  }

  function thresholdsPlugin(th, mode) {
    return {
      hooks: {
        drawClear: [(u) => {
          if (!th || !mode || mode === "off") return;
          const ctx = u.ctx, { left, top, width, height } = u.bbox;
          const steps = th.steps.filter((s) => s.value !== null);
          ctx.save();
          steps.forEach((s, i) => {
            const y = u.valToPos(s.value, "y", true);
            const next = steps[i + 1] ? u.valToPos(steps[i + 1].value, "y", true) : top;
            if (y < top || y > top + height) return;
            if (mode.includes("area")) {
              ctx.fillStyle = color(s.color) + "22";
              ctx.fillRect(left, Math.max(top, next), width, y - Math.max(top, next));
            }
            if (mode.includes("line")) {
              ctx.strokeStyle = color(s.color);
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
              ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
            }
          });
          ctx.restore();
        }],
      },
    };
  }

  function drawTimeseries(e) {
    const d = e.data;
    if (!d.rows.length) return noData(e, d.note);
    const { times, series } = toSeries(d);
    const def = (e.p.fieldConfig || {}).defaults || {};
    const custom = def.custom || {};
    const unit = def.unit, dec = def.decimals;
    const names = [...series.keys()];
    const key = names.join("|");
    const data = [times, ...names.map((n) => series.get(n))];
    let points = 0;
    for (const s of series.values()) for (const v of s) if (v !== null) points++;
    e.box.dataset.series = names.length;
    e.box.dataset.points = points;
    e.box.dataset.rows = d.rows.length;
    if (e.plot && e.plotKey === key) { e.plot.setData(data); fitPlot(e); return; }
    if (e.plot) e.plot.destroy();
    e.body.textContent = "";
    const yRange = (u, min, max) => {
      const lo = def.min !== undefined && def.min !== null ? def.min : min;
      let hi = def.max !== undefined && def.max !== null ? def.max : max;
      const th = (def.thresholds && custom.thresholdsStyle && custom.thresholdsStyle.mode !== "off")
        ? Math.max(...def.thresholds.steps.filter((s) => s.value !== null).map((s) => s.value)) : -Infinity;
      hi = Math.max(hi, th * 1.1);
      if (!(hi > lo)) hi = lo + 1;
      return [lo, hi + (hi - lo) * 0.05];
    };
    const axis = { stroke: "#9fa7b3", grid: { stroke: "rgba(255,255,255,0.07)", width: 1 },
      ticks: { stroke: "rgba(255,255,255,0.12)", width: 1 }, font: "12px Inter, system-ui, sans-serif" };
    const opts = {
      ...size(e),
      padding: [10, 22, 0, 4],
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      legend: { show: ((e.p.options || {}).legend || {}).showLegend !== false, live: true },
      cursor: { points: { size: 6 }, focus: { prox: 16 } },
      scales: { x: { time: true }, y: { range: yRange } },
      axes: [{ ...axis, space: 70, values: (u, splits, ax, space, incr) => splits.map((ts) => timeLabel(ts, u, incr)) }, { ...axis, size: 64, values: (u, vals) => vals.map((v) => fmt(v, unit, dec)) }],
      series: [{ label: "time (UTC)", value: (u, v) => v == null ? "–" : new Date(v * 1000).toISOString().slice(11, 16) }]
        .concat(names.map((n, i) => ({
          label: n, stroke: PALETTE[i % PALETTE.length], width: custom.lineWidth || 1,
          fill: custom.fillOpacity ? PALETTE[i % PALETTE.length] + Math.round(custom.fillOpacity * 2.55).toString(16).padStart(2, "0") : undefined,
          spanGaps: !!custom.spanNulls, points: { show: custom.showPoints === "always" },
          value: (u, v) => fmt(v, unit, dec),
        }))),
      plugins: [thresholdsPlugin(def.thresholds, custom.thresholdsStyle && custom.thresholdsStyle.mode)],
    };
    e.plot = new uPlot(opts, data, e.body);
    e.plotKey = key;
    fitPlot(e);
    // uPlot lays its legend out on the next frame: fit again then.
    requestAnimationFrame(() => fitPlot(e));
    setTimeout(() => fitPlot(e), 100);
  }

  // The plot takes the panel body's height minus its legend.
  function fitPlot(e) {
    if (!e.plot) return;
    // The legend's height depends on the width: measure again until it settles.
    for (let i = 0; i < 3; i++) {
      const legend = e.plot.root.querySelector(".u-legend");
      const lh = legend ? legend.offsetHeight : 0;
      const w = Math.max(120, e.body.clientWidth), h = Math.max(60, e.body.clientHeight - lh - 4);
      if (Math.abs(e.plot.width - w) <= 1 && Math.abs(e.plot.height - h) <= 1) return;
      e.plot.setSize({ width: w, height: h });
    }
  }

  function drawTable(e) {
    const d = e.data;
    if (e.plot) { e.plot.destroy(); e.plot = null; }
    e.body.textContent = "";
    if (!d.rows.length) return noData(e, d.note);
    const wrap = el("div", "table-wrap");
    const table = el("table", "grid-table");
    const cols = d.columns.map((c, i) => ({ c, i, num: isNum(d.types[i]), ...fieldUnit(e.p, c) }));
    if ((e.p.options || {}).showHeader !== false) {
      const tr = el("tr");
      for (const c of cols) tr.appendChild(el("th", c.num ? "num" : "", c.c.replace(/_/g, " ")));
      table.appendChild(el("thead")).appendChild(tr);
    }
    const tb = el("tbody");
    for (const r of d.rows) {
      const tr = el("tr");
      for (const c of cols) {
        const v = r[c.i];
        const td = el("td", c.num ? "num" : "", c.num ? fmt(v, c.unit, c.decimals) : String(v));
        if (c.num && (c.cell === "color-text" || c.cell === "color-background")) {
          const col = color(thresholdColor(c.thresholds, Number(v)) || "");
          if (c.cell === "color-text") td.style.color = col; else td.style.background = col;
          td.classList.add("colored");
        }
        tr.appendChild(td);
      }
      tb.appendChild(tr);
    }
    table.appendChild(tb);
    wrap.appendChild(table);
    e.body.appendChild(wrap);
    e.box.dataset.rows = d.rows.length;
  }

  function drawStat(e) {
    const d = e.data;
    if (e.plot) { e.plot.destroy(); e.plot = null; }
    e.body.textContent = "";
    if (!d.rows.length) return noData(e, d.note);
    const o = e.p.options || {};
    const last = d.rows[d.rows.length - 1];
    const wrap = el("div", "stats");
    const shown = [];
    d.columns.forEach((c, i) => {
      if (!isNum(d.types[i])) return;
      let v = null;
      for (let r = d.rows.length - 1; r >= 0 && v === null; r--) v = d.rows[r][i];
      if (v === undefined) v = last[i];
      const f = fieldUnit(e.p, c);
      const th = thresholdColor(f.thresholds, Number(v));
      const box = el("div", "stat");
      if (o.colorMode === "background" && th && v !== null) box.style.background = BG[th] || color(th);
      else if (o.colorMode === "value" && th) box.style.color = color(th);
      if (o.textMode !== "value") box.appendChild(el("div", "stat-name", c.replace(/_/g, " ")));
      const val = el("div", "stat-value", fmt(v, f.unit, f.decimals));
      box.appendChild(val);
      wrap.appendChild(box);
      shown.push(v);
    });
    e.body.appendChild(wrap);
    e.box.dataset.values = JSON.stringify(shown);
    // For `ridectl bench e2e --browser`: when the page showed which newest event.
    const ri = d.columns.indexOf("ride_events");
    if (ri >= 0 && typeof last[ri] === "number") {
      S.metrics.shown.push([Date.now(), Math.round(d.read_at - last[ri] * 1000)]);
      if (S.metrics.shown.length > 100000) S.metrics.shown.shift();
    }
    e.box.dataset.rows = d.rows.length;
  }

  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, text) => {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  };

  function drawBars(e) {
    const d = e.data;
    if (e.plot) { e.plot.destroy(); e.plot = null; }
    e.body.textContent = "";
    if (!d.rows.length) return noData(e, d.note);
    const o = e.p.options || {};
    const def = (e.p.fieldConfig || {}).defaults || {};
    const xi = Math.max(0, d.columns.indexOf(o.xField));
    const series = d.columns.map((c, i) => i !== xi && isNum(d.types[i]) ? i : -1).filter((i) => i >= 0);
    const legendH = 24, { width, height } = size(e);
    const H = Math.max(60, height - legendH), W = width;
    const padL = 48, padB = 22, padT = 10, padR = 8;
    const max = Math.max(1, ...d.rows.flatMap((r) => series.map((i) => Number(r[i]) || 0)));
    const ticks = niceTicks(def.min || 0, max);
    const top = ticks[ticks.length - 1];
    const s = svg("svg", { width: W, height: H, class: "bars", role: "img" });
    const y = (v) => padT + (H - padT - padB) * (1 - v / top);
    for (const t of ticks) {
      s.appendChild(svg("line", { x1: padL, x2: W - padR, y1: y(t), y2: y(t), class: "gridline" }));
      s.appendChild(svg("text", { x: padL - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, fmt(t, def.unit)));
    }
    const groupW = (W - padL - padR) / d.rows.length;
    const inner = groupW * (o.groupWidth || 0.7);
    const barW = inner / series.length;
    let bars = 0;
    d.rows.forEach((r, gi) => {
      const gx = padL + gi * groupW + (groupW - inner) / 2;
      series.forEach((ci, si) => {
        const v = Number(r[ci]) || 0;
        const bw = barW * (o.barWidth || 0.9);
        const x = gx + si * barW + (barW - bw) / 2;
        const c = PALETTE[si % PALETTE.length];
        const rect = svg("rect", { x, y: y(v), width: Math.max(1, bw), height: Math.max(0, y(0) - y(v)),
          fill: c + "cc", stroke: c, "stroke-width": def.custom && def.custom.lineWidth || 1, rx: 2 });
        rect.appendChild(svg("title", {}, `${r[xi]} · ${d.columns[ci]}: ${fmt(v, def.unit)}`));
        s.appendChild(rect);
        bars++;
        if (o.showValue !== "never" && bw >= 18) {
          s.appendChild(svg("text", { x: x + bw / 2, y: y(v) - 4, class: "barval", "text-anchor": "middle" }, fmt(v, def.unit)));
        }
      });
      s.appendChild(svg("text", { x: padL + gi * groupW + groupW / 2, y: H - 6, class: "tick xtick", "text-anchor": "middle" }, String(r[xi])));
    });
    e.body.appendChild(s);
    const legend = el("div", "bar-legend");
    series.forEach((ci, si) => {
      const item = el("span", "bar-legend-item");
      const sw = el("i"); sw.style.background = PALETTE[si % PALETTE.length];
      item.append(sw, document.createTextNode(d.columns[ci].replace(/_/g, " ")));
      legend.appendChild(item);
    });
    e.body.appendChild(legend);
    e.box.dataset.series = series.length;
    e.box.dataset.bars = bars;
    e.box.dataset.rows = d.rows.length;
  }

  function niceTicks(min, max) {
    const span = max - min, raw = span / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= 5) || 10 * mag;
    const out = [];
    for (let v = min; v < max + step; v += step) out.push(+v.toFixed(10));
    return out;
  }

  // ---------------------------------------------------------------- start
  async function start() {
    try {
      S.dash = await getJSON("/api/dashboard");
    } catch (err) {
      $("#grid").textContent = "Cannot load the dashboard: " + err.message;
      return;
    }
    const q = new URLSearchParams(location.search);
    S.range = S.dash.ranges.includes(q.get("range")) ? q.get("range") : S.dash.default_range;
    for (const v of S.dash.variables) {
      const given = q.getAll("var-" + v.name);
      S.vars[v.name] = given.length ? given : ["$__all"];
    }
    buildBar();
    buildGrid();
    let resize = null;
    window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(layout, 100); });
    await refreshAll(true);
    document.body.dataset.ready = "1";
    connect();
    setInterval(() => refreshAll(false), S.dash.refresh_ms);
  }
  start();
})();
