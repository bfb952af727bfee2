// pyama-flow viewer: plain JavaScript, no libraries. State lives in `S`; the URL
// hash (#ds=demo&fov=0&cell=3&t=12&ch=1) mirrors it so a view can be linked.
"use strict";

const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const S = {
  datasets: [], samples: {}, ds: null, fov: null, info: null, ch: null, t: 0,
  layer: "raw", outlines: true, ids: true, low: 1, high: 99,
  traces: null, cell: null, cellData: null, column: null, playing: null, frameToken: 0,
  maxSide: 1024, scale: 1,
};

// -- small helpers ------------------------------------------------------------------

// the access token of the printed URL (?token=...): sent as a header with every
// request; the first page load also set it as a cookie (for images, reloads)
const TOKEN = new URLSearchParams(location.search).get("token");
function authed(options) {
  const o = Object.assign({}, options || {});
  if (TOKEN) o.headers = Object.assign({"X-Pyama-Token": TOKEN}, o.headers || {});
  return o;
}

async function api(path, options) {
  const r = await fetch(path, authed(options));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${path}`);
  return body;
}
function status(text) { $("status").textContent = text || ""; }
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function fmt(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(2);
  return Number(v.toPrecision(digits)).toString();
}
function timeUnit(times) {
  const span = times && times.length ? Math.max(...times) : 0;
  return span > 180 ? { div: 60, name: "h" } : { div: 1, name: "min" };
}
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// -- URL hash -------------------------------------------------------------------------

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  const num = (k) => (p.has(k) && p.get(k) !== "" ? Number(p.get(k)) : null);
  return { ds: p.get("ds"), fov: num("fov"), cell: num("cell"), t: num("t"), ch: num("ch"),
           layer: p.get("layer"), outlines: p.get("outlines"), ids: p.get("ids") };
}
function writeHash() {
  const p = new URLSearchParams();
  if (S.ds !== null) p.set("ds", S.ds);
  if (S.fov !== null) p.set("fov", S.fov);
  if (S.cell !== null) p.set("cell", S.cell);
  p.set("t", S.t);
  if (S.ch !== null) p.set("ch", S.ch);
  if (S.layer !== "raw") p.set("layer", S.layer);
  if (!S.outlines) p.set("outlines", "0");
  if (!S.ids) p.set("ids", "0");
  history.replaceState(null, "", "#" + p.toString());
}

// -- datasets, FOVs, samples ---------------------------------------------------------------

async function loadDatasets() {
  const d = await api("/api/datasets");
  S.datasets = d.datasets; S.samples = d.samples;
  $("root").textContent = d.root;
  const sel = $("dataset");
  sel.innerHTML = "";
  for (const ds of d.datasets) sel.append(el("option", { value: ds.name }, ds.name));
  const list = $("sample-list");
  list.innerHTML = "";
  for (const [name, members] of Object.entries(d.samples)) {
    const li = el("li", {}, `${name}: ` + members.map((m) => `${m.dataset ?? "?"}/${m.fov}`).join(", "));
    li.onclick = () => { const m = members[0]; if (m && m.dataset) selectFov(m.dataset, m.fov); };
    list.append(li);
  }
  if (!d.datasets.length) list.append(el("li", {}, "no samples"));
}

function renderFovList() {
  const ds = S.datasets.find((d) => d.name === S.ds);
  $("dataset").value = S.ds;
  const m = ds ? [`${ds.format} · ${ds.channel_names.join(", ")}`,
                  `${ds.n_frames} frames · ${ds.width}×${ds.height} px`, ds.path].join("\n") : "";
  $("dataset-meta").textContent = m;
  const list = $("fov-list");
  list.innerHTML = "";
  const sampleOf = {};
  for (const [name, members] of Object.entries(S.samples))
    for (const mm of members) if (mm.dataset === S.ds) sampleOf[mm.fov] = sampleOf[mm.fov] || name;
  for (const f of ds ? ds.fovs : []) {
    const li = el("li", { "data-fov": f }, `FOV ${f}` + (sampleOf[f] ? ` · ${sampleOf[f]}` : ""));
    if (f === S.fov) li.className = "active";
    li.onclick = () => selectFov(S.ds, f);
    list.append(li);
  }
}

async function selectFov(ds, fov, keep) {
  keep = keep || {};
  S.ds = ds; S.fov = fov;
  renderFovList();
  status(`loading FOV ${fov}…`);
  S.info = await api(`/api/fov/${encodeURIComponent(ds)}/${fov}`);
  const info = S.info;
  const chSel = $("channel");
  chSel.innerHTML = "";
  for (const c of info.channels) chSel.append(el("option", { value: c.index }, `${c.name} (ch ${c.index})`));
  const chans = info.channels.map((c) => c.index);
  S.ch = chans.includes(keep.ch) ? keep.ch : (chans.includes(S.ch) ? S.ch : (info.phase_channel ?? chans[0] ?? null));
  chSel.value = S.ch;
  $("frame").max = Math.max(info.n_frames - 1, 0);
  S.t = Math.min(Math.max(keep.t ?? S.t ?? 0, 0), Math.max(info.n_frames - 1, 0));
  $("frame").value = S.t;
  const colSel = $("column");
  colSel.innerHTML = "";
  for (const c of info.value_columns) colSel.append(el("option", { value: c }, c));
  S.column = info.value_column;
  if (S.column) colSel.value = S.column;
  const qc = $("qc-list");
  qc.innerHTML = "";
  for (const rel of info.qc) {
    const li = el("li");
    li.append(el("a", { href: "/files/" + rel, target: "_blank" }, rel.split("/").pop()));
    qc.append(li);
  }
  if (!info.qc.length) qc.append(el("li", { class: "muted" }, "none"));
  updateLayerOptions();
  S.maxSide = displaySide();
  await loadTraces();
  S.cell = null; S.cellData = null;
  const cell = keep.cell ?? null;
  if (cell !== null && S.traces && S.traces.cells.some((c) => c.cell === cell)) await selectCell(cell);
  else renderCell();
  loadFrame();
  status("");
}

function updateLayerOptions() {
  const c = S.info.channels.find((x) => x.index === S.ch);
  const hasBg = c && c.background;
  for (const o of $("layer").options) o.disabled = o.value !== "raw" && !hasBg;
  if (!hasBg) S.layer = "raw";
  $("layer").value = S.layer;
}

// -- frames ---------------------------------------------------------------------------------

function displaySide() {
  // request frames at the size they are shown (in device pixels), in steps of
  // 128 px so that resizing the window a little still hits the server's cache
  const px = $("view").clientWidth * (window.devicePixelRatio || 1);
  return Math.min(Math.max(Math.ceil(px / 128) * 128, 256), 2048);
}

function frameUrl(t) {
  const q = new URLSearchParams({ channel: S.ch, t: t, layer: S.layer, outlines: S.outlines ? 1 : 0,
                                  ids: S.ids ? 1 : 0, low: S.low, high: S.high, max_side: S.maxSide, upscale: 1 });
  return `/api/frame/${encodeURIComponent(S.ds)}/${S.fov}.png?${q}`;
}

async function loadFrame() {
  if (!S.info || S.ch === null) return;
  const token = ++S.frameToken;
  const t = S.t;
  loadStats(t);
  drawTracePlots();
  writeHash();
  const started = performance.now();
  let r;
  try { r = await fetch(frameUrl(t), authed()); } catch (e) { status(`frame ${t}: ${e.message}`); return; }
  if (!r.ok) { status(`frame ${t}: not available`); return; }
  const blob = await r.blob();
  if (token !== S.frameToken) return; // a newer frame was asked for meanwhile
  const img = $("image");
  const old = img.src;
  img.onload = () => {
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    const ms = Math.round(performance.now() - started);
    const times = S.info.times;
    const when = times ? ` · t = ${fmt(times[t] / timeUnit(times).div, 4)} ${timeUnit(times).name}` : "";
    $("frame-label").textContent = `frame ${t} / ${S.info.n_frames - 1}${when}`;
    const f = Number(r.headers.get("X-Scale-Factor")), m = Number(r.headers.get("X-Magnification"));
    $("image-info").textContent =
      `${S.info.width}×${S.info.height} px ${S.info.dtype || ""}, shown ${img.naturalWidth}×${img.naturalHeight} ` +
      `(${m > 1 ? "×" + m : "÷" + f}), display ${(r.headers.get("X-Display-Range") || "").replace(",", "–")} a.u. = ${S.low}–${S.high} ` +
      `percentile · ${ms} ms · ${S.info.z_note}`;
    drawOverlay();
    document.body.dataset.frameLoaded = String(t);
    if (S.playing && t + 1 < S.info.n_frames) fetch(frameUrl(t + 1), authed()); // warm the server's cache
  };
  S.scale = Number(r.headers.get("X-Scale")) || 1;
  img.src = URL.createObjectURL(blob);
}

async function loadStats(t) {
  const d = await api(`/api/stats/${encodeURIComponent(S.ds)}/${S.fov}?t=${t}`).catch(() => null);
  const tab = $("stats");
  tab.innerHTML = "";
  if (!d) return;
  const cols = ["mean", "std", "min", "max", "p1", "p50", "p99", "n_saturated"];
  const head = el("tr");
  head.append(el("th", {}, "channel"));
  for (const c of cols) head.append(el("th", {}, c === "n_saturated" ? "saturated" : c));
  tab.append(head);
  for (const ch of d.channels) {
    const tr = el("tr", ch.saturated ? { class: "sat" } : {});
    tr.append(el("td", {}, ch.name));
    for (const c of cols) tr.append(el("td", {}, fmt(ch[c], 5)));
    tab.append(tr);
  }
}

function cellRowAt(t) {
  if (!S.cellData) return null;
  const r = S.cellData.rows;
  const i = r.frame.indexOf(t);
  return i < 0 ? null : i;
}

function drawOverlay() {
  const img = $("image"), cv = $("overlay");
  cv.width = img.clientWidth; cv.height = img.clientHeight;
  const g = cv.getContext("2d");
  g.clearRect(0, 0, cv.width, cv.height);
  const i = cellRowAt(S.t);
  if (i === null || !img.naturalWidth) return;
  const r = S.cellData.rows;
  const sx = cv.width / (img.naturalWidth * S.scale), sy = cv.height / (img.naturalHeight * S.scale);
  const pad = 3;
  g.strokeStyle = "#ffb020"; g.lineWidth = 2; g.setLineDash([5, 3]);
  g.strokeRect(r.bbox_x0[i] * sx - pad, r.bbox_y0[i] * sy - pad,
               (r.bbox_x1[i] - r.bbox_x0[i] + 1) * sx + 2 * pad, (r.bbox_y1[i] - r.bbox_y0[i] + 1) * sy + 2 * pad);
}

async function onImageClick(ev) {
  const img = $("image");
  if (!img.naturalWidth || !S.info) return;
  // screen -> PNG pixel -> frame pixel: a PNG pixel spans S.scale frame pixels
  // (the down-sampling drops the ragged edge, so use the PNG's size, not the frame's)
  const x = (ev.offsetX / img.clientWidth) * img.naturalWidth * S.scale;
  const y = (ev.offsetY / img.clientHeight) * img.naturalHeight * S.scale;
  const radius = 6 * (img.naturalWidth * S.scale) / img.clientWidth; // about 6 screen px
  const d = await api(`/api/cell_at/${encodeURIComponent(S.ds)}/${S.fov}?t=${S.t}&x=${x.toFixed(2)}&y=${y.toFixed(2)}&radius=${radius.toFixed(1)}`);
  if (d.cell === null) { status("no cell there"); return; }
  if (!d.in_traces) { status(`track ${d.cell} is not in the traces (removed by the filters)`); return; }
  status("");
  selectCell(d.cell);
}

// -- traces and the selected cell -------------------------------------------------------------

async function loadTraces() {
  S.traces = null;
  if (!S.info.traces) { renderCellTable(); return; }
  S.traces = await api(`/api/traces/${encodeURIComponent(S.ds)}/${S.fov}`);
  renderCellTable();
}

async function selectCell(cell) {
  S.cell = cell;
  const q = S.column ? `?column=${encodeURIComponent(S.column)}` : "";
  S.cellData = await api(`/api/cell/${encodeURIComponent(S.ds)}/${S.fov}/${cell}${q}`);
  renderCell();
  drawOverlay();
  writeHash();
}

function renderCell() {
  const d = S.cellData;
  $("cell-title").textContent = d ? `cell ${d.cell} · FOV ${d.fov}` : "no cell selected";
  const st = $("cell-state");
  st.textContent = d ? (d.good ? "good" : "bad") : "";
  st.className = "badge " + (d ? (d.good ? "good" : "bad") : "");
  const notes = [];
  if (S.info && S.info.decisions) notes.push("decisions in curation.csv");
  if (S.info && S.info.stale_decisions && S.info.stale_decisions.length) notes.push("STALE decisions ignored (labels changed) on cells " + S.info.stale_decisions.join(", "));
  if (S.info && S.info.frames_missing) notes.push(S.info.frames_missing);
  if (d && d.stale_decision) notes.push("this cell's decision was made on other labels: ignored");
  if (d) for (const f of d.fits) if (f.stale) notes.push(`fits_${f.model}.csv older than the edits: rerun snakemake`);
  $("fit-note").textContent = notes.join(" · ");
  renderParams();
  drawTracePlots();
  for (const tr of $("cell-table").querySelectorAll("tr[data-cell]"))
    tr.classList.toggle("active", Number(tr.dataset.cell) === S.cell);
  document.body.dataset.cell = d ? String(d.cell) : "";
}

function renderParams() {
  const tab = $("params");
  tab.innerHTML = "";
  const d = S.cellData;
  if (!d) return;
  for (const f of d.fits) {
    const h = el("tr");
    h.append(el("th", {}, f.model));
    h.append(el("th", {}, f.fitted ? (f.success ? "value" : "value (failed)") : "not fitted"));
    h.append(el("th", {}, "± se"));
    tab.append(h);
    if (!f.fitted) continue;
    for (const [p, v] of Object.entries(f.params)) {
      const tr = el("tr");
      tr.append(el("td", {}, p)); tr.append(el("td", {}, fmt(v))); tr.append(el("td", {}, fmt(f.se[p])));
      tab.append(tr);
    }
    for (const k of ["r_squared", "residual_std", "aic", "bic", "n_points"]) {
      const tr = el("tr");
      tr.append(el("td", {}, k)); tr.append(el("td", {}, fmt(f[k]))); tr.append(el("td"));
      tab.append(tr);
    }
  }
}

//: status order for sorting: the fits to look at first come first
const STATUS_ORDER = ["failed", "not_identifiable", "at_bound", "poor_fit", "ok"];

function sortedCells() {
  const cells = S.traces ? S.traces.cells.slice() : [];
  const by = $("sort").value;
  const r2 = (c) => (c.r_squared === null || c.r_squared === undefined ? -1 : c.r_squared);
  const st = (c) => { const i = STATUS_ORDER.indexOf(c.status); return i < 0 ? STATUS_ORDER.length : i; };
  if (by === "r2") cells.sort((a, b) => r2(a) - r2(b) || a.cell - b.cell);
  else if (by === "status") cells.sort((a, b) => st(a) - st(b) || r2(a) - r2(b) || a.cell - b.cell);
  else if (by === "unreviewed") cells.sort((a, b) => Number(a.reviewed) - Number(b.reviewed) || a.cell - b.cell);
  return cells;
}

function renderCellTable() {
  const tab = $("cell-table");
  tab.innerHTML = "";
  const cells = sortedCells();
  const reviewed = cells.filter((c) => c.reviewed).length;
  $("cell-count").textContent = S.traces
    ? `${cells.filter((c) => c.good).length} good of ${cells.length} · ${reviewed} reviewed · ${S.traces.file}`
      + (S.traces.review_model ? ` · R², status: ${S.traces.review_model}` : "")
    : "no traces";
  const head = el("tr");
  for (const h of ["cell", "state", "R²", "status", "reviewed", "frames", "first", "last"]) head.append(el("th", {}, h));
  tab.append(head);
  for (const c of cells) {
    const tr = el("tr", { "data-cell": c.cell, class: c.good ? "" : "bad" });
    tr.append(el("td", {}, c.cell)); tr.append(el("td", {}, c.good ? "good" : "bad"));
    tr.append(el("td", {}, c.r_squared === null || c.r_squared === undefined ? "–" : fmt(c.r_squared, 3)));
    tr.append(el("td", {}, c.status || "–")); tr.append(el("td", {}, c.reviewed ? "✓" : ""));
    tr.append(el("td", {}, c.frame.length)); tr.append(el("td", {}, c.frame[0]));
    tr.append(el("td", {}, c.frame[c.frame.length - 1]));
    if (c.cell === S.cell) tr.classList.add("active");
    tr.onclick = () => selectCell(c.cell);
    tab.append(tr);
  }
}

// -- plots (inline SVG) -------------------------------------------------------------------------

function plotFrame(svg, xs, ys, opts) {
  svg.innerHTML = "";
  const W = Number(svg.getAttribute("width")), H = Number(svg.getAttribute("height"));
  const m = { l: 62, r: 10, t: 10, b: 30 };
  const finite = (a) => a.filter((v) => v !== null && Number.isFinite(v));
  let x0 = Math.min(...finite(xs)), x1 = Math.max(...finite(xs));
  let y0 = Math.min(...finite(ys)), y1 = Math.max(...finite(ys));
  if (!Number.isFinite(x0)) { x0 = 0; x1 = 1; }
  if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const ypad = (y1 - y0) * 0.05; y0 -= ypad; y1 += ypad;
  const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  for (const v of niceTicks(y0, y1, 5)) {
    svg.append(svgEl("line", { class: "gridline", x1: m.l, x2: W - m.r, y1: Y(v), y2: Y(v) }));
    const t = svgEl("text", { x: m.l - 4, y: Y(v) + 3, "text-anchor": "end" }); t.textContent = fmt(v, 3); svg.append(t);
  }
  for (const v of niceTicks(x0, x1, 6)) {
    svg.append(svgEl("line", { class: "axis", x1: X(v), x2: X(v), y1: H - m.b, y2: H - m.b + 4 }));
    const t = svgEl("text", { x: X(v), y: H - m.b + 15, "text-anchor": "middle" }); t.textContent = fmt(v, 4); svg.append(t);
  }
  svg.append(svgEl("line", { class: "axis", x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
  svg.append(svgEl("line", { class: "axis", x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }));
  const xl = svgEl("text", { x: W - m.r, y: H - 3, "text-anchor": "end" }); xl.textContent = opts.xlabel; svg.append(xl);
  const yl = svgEl("text", { x: 4, y: m.t + 2, "text-anchor": "start", transform: `rotate(90 4 ${m.t + 2})` });
  yl.textContent = opts.ylabel || ""; svg.append(yl);
  return { X, Y, x0, x1, m, W, H };
}

function path(X, Y, xs, ys) {
  let d = "", pen = false;
  for (let i = 0; i < xs.length; i++) {
    if (ys[i] === null || xs[i] === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + X(xs[i]).toFixed(1) + "," + Y(ys[i]).toFixed(1);
    pen = true;
  }
  return d;
}

function drawTracePlots() { drawCellPlot(); drawAllPlot(); }

function drawCellPlot() {
  const svg = $("trace-plot");
  const d = S.cellData, col = S.column;
  if (!d || !col || !d.rows[col]) { svg.innerHTML = ""; return; }
  const unit = timeUnit(S.info.times || d.rows.time);
  const xs = d.rows.time.map((v) => v / unit.div), ys = d.rows[col];
  let allY = ys.slice(), allX = xs.slice();
  const fits = d.fits.filter((f) => f.fitted && f.curve);
  const colFitted = col === d.value_column;
  for (const f of fits) { allX = allX.concat(f.curve.time.map((v) => v / unit.div)); if (colFitted) allY = allY.concat(f.curve.value); }
  const P = plotFrame(svg, allX, allY, { xlabel: `time (${unit.name})`, ylabel: col });
  if (S.info.times) {
    const tn = S.info.times[S.t] / unit.div;
    svg.append(svgEl("line", { class: "now", x1: P.X(tn), x2: P.X(tn), y1: P.m.t, y2: P.H - P.m.b }));
  }
  svg.append(svgEl("path", { class: "trace", d: path(P.X, P.Y, xs, ys) }));
  for (let i = 0; i < xs.length; i++) {
    if (ys[i] === null) continue;
    svg.append(svgEl("circle", { class: d.rows.good[i] ? "data" : "data bad", cx: P.X(xs[i]), cy: P.Y(ys[i]), r: 2.4 }));
  }
  if (colFitted) for (const f of fits) {
    svg.append(svgEl("path", { class: "fit", d: path(P.X, P.Y, f.curve.time.map((v) => v / unit.div), f.curve.value) }));
    const lab = svgEl("text", { x: P.W - P.m.r - 4, y: P.m.t + 12, "text-anchor": "end" });
    lab.textContent = `${f.model} fit · R² ${fmt(f.r_squared, 4)}`; lab.style.fill = "#ffb020"; svg.append(lab);
  }
  svg.onclick = (ev) => {
    if (!S.info.times) return;
    const tv = P.x0 + ((ev.offsetX - P.m.l) / (P.W - P.m.l - P.m.r)) * (P.x1 - P.x0);
    let best = 0;
    S.info.times.forEach((v, i) => { if (Math.abs(v / unit.div - tv) < Math.abs(S.info.times[best] / unit.div - tv)) best = i; });
    setFrame(best);
  };
}

function drawAllPlot() {
  const svg = $("all-plot");
  const col = S.column;
  if (!S.traces || !col || !S.traces.cells.length || !(col in S.traces.cells[0])) { svg.innerHTML = ""; return; }
  const unit = timeUnit(S.info.times || []);
  let xs = [], ys = [];
  for (const c of S.traces.cells) { xs = xs.concat(c.time.map((v) => v / unit.div)); ys = ys.concat(c[col]); }
  const P = plotFrame(svg, xs, ys, { xlabel: `time (${unit.name})`, ylabel: col });
  let selected = null;
  for (const c of S.traces.cells) {
    const p = svgEl("path", { class: c.good ? "other" : "other bad", d: path(P.X, P.Y, c.time.map((v) => v / unit.div), c[col]) });
    p.style.cursor = "pointer";
    p.onclick = () => selectCell(c.cell);
    if (c.cell === S.cell) selected = c; else svg.append(p);
  }
  if (selected) svg.append(svgEl("path", { class: "selected", d: path(P.X, P.Y, selected.time.map((v) => v / unit.div), selected[col]) }));
}

// -- actions --------------------------------------------------------------------------------

function setFrame(t) {
  if (!S.info) return;
  S.t = Math.min(Math.max(t, 0), S.info.n_frames - 1);
  $("frame").value = S.t;
  loadFrame();
}

async function mark(good) {
  if (S.cell === null) { status("select a cell first"); return; }
  const cell = S.cell;
  try {
    const r = await api(`/api/mark/${encodeURIComponent(S.ds)}/${S.fov}/${cell}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ good }) });
    status(`cell ${cell} marked ${good ? "good" : "bad"} (${r.rows} rows, ${r.file})`);
  } catch (e) { status(`could not mark cell ${cell}: ${e.message}`); return; }
  S.info = await api(`/api/fov/${encodeURIComponent(S.ds)}/${S.fov}`);
  await loadTraces();
  await selectCell(cell);
}

function goToCell(c) {
  // jump to a frame where the cell is present, so its box shows
  if (!c.frame.includes(S.t)) setFrame(c.frame[Math.floor(c.frame.length / 2)]);
  selectCell(c.cell);
  const row = $("cell-table").querySelector(`tr[data-cell="${c.cell}"]`);
  if (row) row.scrollIntoView({ block: "nearest" });
}

function stepCell(delta) {
  const cells = sortedCells();  // in the list's order
  if (!cells.length) return;
  const ids = cells.map((c) => c.cell);
  let i = ids.indexOf(S.cell);
  i = i < 0 ? (delta > 0 ? 0 : ids.length - 1) : Math.min(Math.max(i + delta, 0), ids.length - 1);
  goToCell(cells[i]);
}

function nextUnreviewed() {
  const cells = sortedCells();
  const i = cells.findIndex((c) => c.cell === S.cell);
  const after = cells.slice(i + 1).concat(cells.slice(0, i + 1));
  const c = after.find((x) => !x.reviewed);
  if (c) goToCell(c); else status("every cell of this FOV is reviewed");
}

function togglePlay() {
  if (S.playing) { clearInterval(S.playing); S.playing = null; $("play").textContent = "▶"; return; }
  $("play").textContent = "❚❚";
  S.playing = setInterval(() => setFrame(S.t + 1 < S.info.n_frames ? S.t + 1 : 0), 350);
}

function bind() {
  $("dataset").onchange = (e) => { const ds = S.datasets.find((d) => d.name === e.target.value); if (ds) selectFov(ds.name, ds.fovs[0]); };
  $("channel").onchange = (e) => { S.ch = Number(e.target.value); updateLayerOptions(); loadFrame(); };
  $("layer").onchange = (e) => { S.layer = e.target.value; loadFrame(); };
  $("outlines").onchange = (e) => { S.outlines = e.target.checked; loadFrame(); };
  $("ids").onchange = (e) => { S.ids = e.target.checked; loadFrame(); };
  $("low").onchange = (e) => { S.low = Number(e.target.value); loadFrame(); };
  $("high").onchange = (e) => { S.high = Number(e.target.value); loadFrame(); };
  $("frame").oninput = (e) => setFrame(Number(e.target.value));
  $("column").onchange = (e) => { S.column = e.target.value; if (S.cell !== null) selectCell(S.cell); else drawTracePlots(); };
  $("overlay").onclick = onImageClick;
  $("mark-good").onclick = () => mark(true);
  $("mark-bad").onclick = () => mark(false);
  $("play").onclick = togglePlay;
  $("sort").onchange = renderCellTable;
  window.addEventListener("resize", drawOverlay);
  document.addEventListener("keydown", (ev) => {
    const tag = (ev.target.tagName || "").toLowerCase();
    if (ev.ctrlKey || ev.metaKey || ev.altKey || tag === "select" || (tag === "input" && ev.target.type !== "checkbox")) return;
    const k = ev.key;
    if (k === "g") mark(true);
    else if (k === "b") mark(false);
    else if (k === "n") stepCell(1);
    else if (k === "p") stepCell(-1);
    else if (k === "u") nextUnreviewed();
    else if (k === "ArrowRight") setFrame(S.t + 1);
    else if (k === "ArrowLeft") setFrame(S.t - 1);
    else if (k === "o") { $("outlines").click(); }
    else if (k === "i") { $("ids").click(); }
    else return;
    ev.preventDefault();
  });
}

async function main() {
  bind();
  try {
    await loadDatasets();
    const h = readHash();
    if (h.layer) S.layer = h.layer;
    if (h.outlines === "0") { S.outlines = false; $("outlines").checked = false; }
    if (h.ids === "0") { S.ids = false; $("ids").checked = false; }
    const ds = S.datasets.find((d) => d.name === h.ds) || S.datasets[0];
    if (!ds) { status("no datasets in this results folder"); return; }
    const fov = ds.fovs.includes(h.fov) ? h.fov : ds.fovs[0];
    await selectFov(ds.name, fov, { cell: h.cell, t: h.t, ch: h.ch });
    document.body.dataset.ready = "1";
  } catch (e) {
    status("error: " + e.message);
  }
}
main();
