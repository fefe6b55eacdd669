/* twin-cds clinician app.
 *
 * Plain DOM + SVG, no framework and nothing fetched from elsewhere: the page runs under
 * a strict CSP (script/style 'self'), so there are no inline styles or handlers and all
 * SVG geometry is set with attributes. The browser holds no tokens; the backend keeps
 * the SMART session behind a same-origin cookie, so every call is a plain fetch.
 *
 * Sections load independently: one failing API shows an error in its own section only.
 */
"use strict";

/* ---------------------------------------------------------------- utilities */

const SESSION_ENDED = "Your session has ended; launch the app again from the EHR.";
const SVGNS = "http://www.w3.org/2000/svg";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const QUALITY = {
  stale: "stale: an old value",
  implausible: "implausible value",
  unit_unknown: "unit not recognised",
  missing: "missing",
};

const $ = (id) => document.getElementById(id);

/** Build an HTML element; attributes with null/false are skipped, "text" sets textContent. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) if (c != null && c !== false) e.append(c);
  return e;
}

/** Build an SVG element and append it to parent (if given). */
function S(tag, attrs = {}, parent = null) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v));
  if (parent) parent.append(e);
  return e;
}

/** A <title> child: the browser shows it as a tooltip on hover. */
function titled(el, text) {
  S("title", {}, el).textContent = text;
  return el;
}

function stext(parent, x, y, text, attrs = {}) {
  const t = S("text", { x: r1(x), y: r1(y), ...attrs }, parent);
  t.textContent = text;
  return t;
}

const r1 = (v) => Math.round(v * 10) / 10;
const pad2 = (n) => String(n).padStart(2, "0");
/** Data dates are shown as recorded (the card shows the same calendar date). */
const isoDate = (s) => (s ? String(s).slice(0, 10) : "");
/** Date and time in the browser's zone, matching the time axes. */
function localDateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}
/** Up to three decimals, no trailing zeros: 142.0 → "142", 1.13 → "1.13". */
const fmtNum = (v) => String(Math.round(v * 1000) / 1000);
const fmtPct = (p) => `${+(p * 100).toFixed(3)}%`;
/** UCUM codes are precise but unfriendly on an axis. */
const prettyUnit = (u) => (u || "").replace("mm[Hg]", "mm Hg").replace("{1.73_m2}", "1.73 m²");

let uidCounter = 0;
const uid = (p) => `${p}-${++uidCounter}`;

function announce(text) {
  $("status").textContent = text;
}

/* ---------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** FastAPI's detail is a string, or a list of validation errors. */
function detailText(data) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => (e && e.msg) || JSON.stringify(e)).join("; ");
  return "";
}

let sessionHasEnded = false;
function sessionEnded() {
  if (sessionHasEnded) return;
  sessionHasEnded = true;
  const alert = $("session-alert");
  alert.textContent = SESSION_ENDED;
  alert.hidden = false;
  // Nothing more can be asked of the server; disabled controls make that visible.
  document.querySelectorAll("main select, main input, main button").forEach((c) => { c.disabled = true; });
}

async function api(path, body) {
  const opts = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, "the server could not be reached");
  }
  if (res.status === 401) {
    sessionEnded();
    throw new ApiError(401, SESSION_ENDED);
  }
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, detailText(data) || `the server answered ${res.status}`);
  if (data === null) throw new ApiError(res.status, "the server's answer was not readable");
  return data;
}

/* ---------------------------------------------------------------- section loading */

function setStatus(el, text, kind, retry) {
  el.replaceChildren();
  el.className = `section-status ${kind || ""}`;
  if (!text) return;
  el.append(h("p", { text }));
  if (retry) el.append(h("button", { type: "button", class: "secondary", text: "Try again", onclick: retry }));
}

/** Run one section's loader with its own loading and error states. A loader may return
 * a message to leave in the section (e.g. "not available for this patient"). */
async function loadSection(statusId, what, loader) {
  const el = $(statusId);
  setStatus(el, `Loading ${what}…`, "loading");
  try {
    const message = await loader();
    setStatus(el, message || "", "empty");
  } catch (e) {
    const msg = e.status === 401 ? SESSION_ENDED : `Could not load ${what}: ${e.message}.`;
    setStatus(el, msg, "error", e.status === 401 ? null : () => loadSection(statusId, what, loader));
    announce(msg);
    if (!(e instanceof ApiError)) console.warn(e); // a rendering bug: keep the rest of the page
  }
}

/* ---------------------------------------------------------------- charts: scales and axes */

const lin = (d0, d1, r0, r1_) => (v) => (d1 === d0 ? (r0 + r1_) / 2 : r0 + ((v - d0) * (r1_ - r0)) / (d1 - d0));

/** "Nice" ticks (1, 2, 2.5, 5 × 10^k) covering lo..hi. */
function niceTicks(lo, hi, count) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= Math.ceil(hi / step) * step + step / 2; v += step) {
    ticks.push(+v.toFixed(10));
  }
  return ticks;
}

const HOUR = 36e5;
const DAY = 24 * HOUR;
const APPROX = { hour: HOUR, day: DAY, month: 30.44 * DAY, year: 365.25 * DAY };
const TIME_STEPS = [["hour", 1], ["hour", 2], ["hour", 3], ["hour", 6], ["hour", 12], ["day", 1],
  ["day", 2], ["day", 7], ["month", 1], ["month", 2], ["month", 3], ["month", 6], ["year", 1],
  ["year", 2], ["year", 5], ["year", 10]];

/** Calendar-aligned time ticks (local time) with a second line when the day/year changes. */
function timeTicks(t0, t1, maxCount) {
  const [unit, n] = TIME_STEPS.find(([u, k]) => (t1 - t0) / (APPROX[u] * k) <= maxCount) || TIME_STEPS[TIME_STEPS.length - 1];
  const d = new Date(t0);
  d.setMinutes(0, 0, 0);
  if (unit === "hour") d.setHours(d.getHours() - (d.getHours() % n));
  else d.setHours(0);
  if (unit === "month" || unit === "year") d.setDate(1);
  if (unit === "month") d.setMonth(d.getMonth() - (d.getMonth() % n));
  if (unit === "year") { d.setMonth(0); d.setFullYear(d.getFullYear() - (d.getFullYear() % n)); }
  const ticks = [];
  let prev = null;
  for (let guard = 0; guard < 400 && d.getTime() <= t1; guard++) {
    if (d.getTime() >= t0) {
      const day = `${MONTHS[d.getMonth()]} ${d.getDate()}`;
      const year = String(d.getFullYear());
      let label, sub = null;
      if (unit === "hour") { label = `${pad2(d.getHours())}:00`; if (!prev || prev.getDate() !== d.getDate()) sub = day; }
      else if (unit === "day") { label = day; if (!prev || prev.getFullYear() !== d.getFullYear()) sub = year; }
      else if (unit === "month") { label = MONTHS[d.getMonth()]; if (!prev || prev.getFullYear() !== d.getFullYear()) sub = year; }
      else label = year;
      ticks.push({ t: d.getTime(), label, sub });
      prev = new Date(d.getTime());
    }
    if (unit === "hour") d.setHours(d.getHours() + n);
    else if (unit === "day") d.setDate(d.getDate() + n);
    else if (unit === "month") d.setMonth(d.getMonth() + n);
    else d.setFullYear(d.getFullYear() + n);
  }
  return ticks;
}

/** An empty chart: the svg, its margins and scales. All charts use CSS pixels 1:1. */
function frame(W, H, m, xDomain, yTicks, label, testid) {
  const svg = S("svg", {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img",
    "aria-label": label, "data-testid": testid || null,
  });
  const x = lin(xDomain[0], xDomain[1], m.left, W - m.right);
  const y = lin(yTicks[0], yTicks[yTicks.length - 1], H - m.bottom, m.top);
  return { svg, W, H, m, x, y };
}

/** Grid lines, tick labels and the unit above the y axis. */
function axes(f, xTicks, yTicks, yFmt, unit) {
  const { m, W, H } = f;
  const g = S("g", { class: "axes", "aria-hidden": "true" }, f.svg);
  for (const v of yTicks) {
    const yy = r1(f.y(v));
    S("line", { x1: m.left, x2: W - m.right, y1: yy, y2: yy, class: "grid" }, g);
    stext(g, m.left - 6, yy + 4, yFmt(v), { "text-anchor": "end", class: "tick" });
  }
  for (const tk of xTicks || []) {
    const xx = r1(f.x(tk.t));
    S("line", { x1: xx, x2: xx, y1: H - m.bottom, y2: H - m.bottom + 5, class: "axis" }, g);
    const t = stext(g, xx, H - m.bottom + 17, tk.label, { "text-anchor": "middle", class: "tick" });
    if (tk.sub) S("tspan", { x: xx, dy: 13, class: "tick-sub" }, t).textContent = tk.sub;
  }
  S("line", { x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom, class: "axis" }, g);
  S("line", { x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom, class: "axis" }, g);
  if (unit) stext(g, 4, 12, unit, { class: "unit" });
}

const pathD = (pts) => (pts.length ? "M" + pts.map(([a, b]) => `${r1(a)},${r1(b)}`).join("L") : "");
const polyPoints = (pts) => pts.map(([a, b]) => `${r1(a)},${r1(b)}`).join(" ");

/** A diagonal hatch, so "lowers risk" / "with therapy" differ by more than colour. */
function hatch(svg, cls) {
  const id = uid("hatch");
  const defs = S("defs", {}, svg);
  const p = S("pattern", { id, patternUnits: "userSpaceOnUse", width: 6, height: 6, patternTransform: "rotate(45)" }, defs);
  S("rect", { width: 6, height: 6, class: `${cls}-bg` }, p);
  S("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: `${cls}-line` }, p);
  return `url(#${id})`;
}

const SHAPES = ["circle", "square", "triangle", "diamond"];
/** A data marker; shape varies by series so colour is never the only cue. */
function marker(parent, shape, cx, cy, r, cls) {
  const x = r1(cx), y = r1(cy);
  // Polygon corners as [dx, dy] multiples of r around the centre.
  const corners = {
    triangle: [[0, -1.2], [1.1, 0.9], [-1.1, 0.9]],
    diamond: [[0, -1.3], [1.2, 0], [0, 1.3], [-1.2, 0]],
  }[shape];
  if (corners) return S("polygon", { points: polyPoints(corners.map(([dx, dy]) => [x + dx * r, y + dy * r])), class: cls }, parent);
  if (shape === "square") {
    return S("rect", { x: r1(x - r * 0.9), y: r1(y - r * 0.9), width: r1(r * 1.8), height: r1(r * 1.8), class: cls }, parent);
  }
  return S("circle", { cx: x, cy: y, r, class: cls }, parent);
}

/** A small swatch (line + marker) for an HTML legend. */
function swatch(cls, shape, dashed, withLine = true) {
  const svg = S("svg", { width: 30, height: 14, viewBox: "0 0 30 14", "aria-hidden": "true", class: "swatch" });
  if (withLine) S("line", { x1: 1, x2: 29, y1: 7, y2: 7, class: `line ${cls}${dashed ? " dashed" : ""}` }, svg);
  if (shape) marker(svg, shape, 15, 7, 4, `dot ${cls}`);
  return svg;
}

/**
 * Keyboard and hover reading of a chart's points: the chart takes focus once, arrow keys
 * step through the points, and the readout (a live region) says what the <title> says.
 * Native <title> tooltips only appear on mouse hover, hence this.
 */
function inspectable(svg, items, readout, hint) {
  if (!items.length) return;
  items.sort((a, b) => a.t - b.t);
  svg.setAttribute("tabindex", "0");
  readout.textContent = hint;
  let cur = -1;
  const show = (k) => {
    if (cur >= 0) items[cur].el.classList.remove("active");
    cur = Math.max(0, Math.min(items.length - 1, k));
    items[cur].el.classList.add("active");
    readout.textContent = items[cur].text;
  };
  svg.addEventListener("focus", () => { if (cur < 0) show(items.length - 1); });
  svg.addEventListener("keydown", (e) => {
    const k = { ArrowRight: cur + 1, ArrowDown: cur + 1, ArrowLeft: cur - 1, ArrowUp: cur - 1, Home: 0, End: items.length - 1 }[e.key];
    if (k === undefined) return;
    e.preventDefault();
    show(k);
  });
  items.forEach((it, k) => it.el.addEventListener("mouseenter", () => show(k)));
}

/* Charts are drawn at their container's pixel width (crisp text at any size) and redrawn
 * when that width changes (window resize, a scrollbar appearing, a grid reflow). */
const drawers = new WeakMap();
const boxWidth = (box) => Math.max(280, Math.floor(box.clientWidth || 600));
const resizer = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const draw = drawers.get(target);
    if (draw && Math.abs(boxWidth(target) - Number(target.dataset.width)) > 1) mount(target, draw);
  }
});
function mount(box, draw) {
  drawers.set(box, draw);
  const w = boxWidth(box);
  box.dataset.width = String(w);
  box.replaceChildren(draw(w));
  resizer.observe(box);
}

/* ---------------------------------------------------------------- session and banner */

const state = { session: null, twin: null, whatif: null, vanco: null, sim: null };

async function loadSession() {
  try {
    state.session = await api("/app/api/session");
  } catch (e) {
    state.session = null; // the page still works without launch context
    return;
  }
  const s = state.session;
  if (s.need_patient_banner === false) $("patient-banner").hidden = true;
  // The EHR's SMART style, already checked on the server (readable contrast, plain
  // font list). CSSOM property writes are not inline styles, so the CSP still holds.
  const style = s.style || {};
  const root = document.documentElement.style;
  if (style.highlight) {
    root.setProperty("--accent", style.highlight);
    root.setProperty("--focus", style.highlight);
  }
  if (style.font_family) root.setProperty("--font-body", style.font_family);
  if (s.expires_at) {
    const t = Date.parse(s.expires_at);
    if (!Number.isNaN(t)) $("session-expiry").textContent = `Session valid until ${localDateTime(t)}.`;
  }
}

function renderPatient(p, twin) {
  $("patient-name").textContent = p.name || "Unnamed patient";
  const bits = [];
  if (p.gender) bits.push(p.gender);
  if (p.birth_date) bits.push(`born ${p.birth_date}` + (p.age_years != null ? ` (${p.age_years} y)` : ""));
  if (p.identifier) bits.push(p.identifier);
  $("patient-details").textContent = bits.join(" · ");
  $("twin-version").textContent = `twin version ${twin.version}`;
  $("twin-asof").textContent = twin.as_of ? `data as of ${twin.as_of}` : "";
  if (twin.content_hash) $("twin-version").setAttribute("title", `content hash ${twin.content_hash}`);
  const note = $("twin-note");
  note.textContent = twin.note || "";
  note.hidden = !twin.note;
}

/* ---------------------------------------------------------------- risk models */

const STATUS_TEXT = {
  computed: "Computed",
  "missing-inputs": "Missing inputs",
  "out-of-range": "Inputs out of the model's range",
  "not-applicable": "Not applicable to this patient",
};

async function loadRisk(sessionReady) {
  const data = await api("/app/api/risk");
  await sessionReady; // the launch context decides which models to highlight
  const ctx = (state.session && state.session.app_context) || {};
  const box = $("risk-models");
  box.replaceChildren();
  if (!data.models || !data.models.length) box.append(h("p", { class: "empty", text: "No risk models apply to this patient." }));
  for (const model of data.models || []) box.append(modelPanel(model, ctx.service && model.service === ctx.service));
}

function modelPanel(model, fromCard) {
  const hid = uid("model-h");
  const panel = h("section", { class: `card model${fromCard ? " from-card" : ""}`, "aria-labelledby": hid, "data-model": model.id });
  panel.append(h("h3", { id: hid }, model.name, " ", h("span", { class: "version", text: `v${model.version}` }),
    fromCard ? h("span", { class: "badge badge-card", text: "from the card" }) : null));

  if (model.outputs && model.outputs.length) {
    panel.append(h("div", { class: "outputs" }, model.outputs.map((o) => h("div", { class: "output" },
      h("span", { class: "output-value", "data-testid": `risk-${model.id}-${o.name}`, text: o.display }),
      h("span", { class: "output-label", text: o.label })))));
  }
  if (model.status !== "computed") {
    panel.append(h("p", { class: `model-status status-${model.status}` },
      h("span", { class: "badge badge-status", text: "!" }), " ", STATUS_TEXT[model.status] || model.status));
  }
  if (model.problems && model.problems.length) panel.append(h("ul", { class: "problems" }, model.problems.map((p) => h("li", { text: p }))));
  if (model.missing && model.missing.length) {
    panel.append(h("p", { class: "subhead", text: "Missing or unusable" }),
      h("ul", { class: "missing" }, model.missing.map((m) => h("li", {}, h("strong", { text: m.label }), ` (${m.quality}): ${m.reason}`))));
  }
  if (model.waterfall) {
    const w = model.waterfall;
    panel.append(h("p", { class: "subhead", text: `What moved the ${w.label} (exact Shapley values)` }));
    const chartBox = h("div", { class: "chart-box" });
    panel.append(chartBox,
      h("p", { class: "caption" }, `Starts at ${w.baseline_display} for ${w.baseline_description}. `,
        h("span", { class: "key key-up", text: "+" }), " raises risk, ",
        h("span", { class: "key key-down", text: "−" }), " (hatched) lowers it."));
    // The panel must be in the DOM before its width is known, hence the microtask.
    queueMicrotask(() => mount(chartBox, (W) => waterfall(model.id, w, W)));
  }
  if (model.inputs && model.inputs.length) {
    panel.append(h("details", { class: "inputs", open: true },
      h("summary", { text: `Inputs used (${model.inputs.length})` }),
      h("dl", { class: "kv" }, model.inputs.map((i) => [
        h("dt", { text: i.label }),
        h("dd", {}, i.value_display, i.date ? h("span", { class: "date", text: ` ${i.date}` }) : null,
          i.quality && i.quality !== "ok" ? h("span", { class: "badge badge-quality", text: i.quality }) : null,
          i.source ? h("span", { class: "visually-hidden", text: ` source ${i.source}` }) : null),
      ]))));
  }
  if (model.evidence) panel.append(h("p", { class: "evidence", text: `Evidence: ${model.evidence}` }));
  return panel;
}

/** Horizontal Shapley waterfall: baseline bar, one step per factor, final bar. */
function waterfall(modelId, w, W) {
  const factors = w.factors || [];
  const rowH = 34, top = 6, bottom = 30;
  const labelW = Math.min(250, Math.round(W * 0.4)), rightW = 96;
  const H = top + (factors.length + 2) * rowH + bottom;
  let cum = w.baseline;
  const steps = factors.map((f) => { const s = { f, from: cum, to: cum + f.contribution }; cum = s.to; return s; });
  const values = [0, w.baseline, w.final, ...steps.map((s) => s.to)];
  const xt = niceTicks(Math.min(...values), Math.max(...values) * 1.05, Math.max(2, Math.floor((W - labelW - rightW) / 70)));
  const m = { left: labelW, right: rightW, top, bottom };
  const f = frame(W, H, m, [xt[0], xt[xt.length - 1]], [0, 1], "", `waterfall-${modelId}`);
  // For the horizontal layout x carries the risk; the y scale is by row.
  const rowY = (k) => top + k * rowH;
  const g = S("g", { class: "axes", "aria-hidden": "true" }, f.svg);
  for (const v of xt) {
    const xx = r1(f.x(v));
    S("line", { x1: xx, x2: xx, y1: top, y2: H - bottom, class: "grid" }, g);
    stext(g, xx, H - bottom + 16, fmtPct(v), { "text-anchor": "middle", class: "tick" });
  }
  const fill = hatch(f.svg, "hatch-down");
  const bar = (k, a, b, cls, fillAttr, left1, left2, right, tip) => {
    const y = rowY(k);
    const x0 = Math.min(f.x(a), f.x(b));
    const rect = S("rect", { x: r1(x0), y: y + 7, width: r1(Math.max(2, Math.abs(f.x(b) - f.x(a)))), height: rowH - 14, class: cls, fill: fillAttr }, f.svg);
    titled(rect, tip);
    stext(f.svg, 6, y + 15, left1, { class: "wf-label" });
    if (left2) stext(f.svg, 6, y + 29, left2, { class: "wf-sub" });
    stext(f.svg, W - 6, y + rowH / 2 + 4, right, { "text-anchor": "end", class: "wf-value" });
    return rect;
  };
  bar(0, 0, w.baseline, "bar-base", null, "Reference profile", "baseline", w.baseline_display,
    `Reference profile (${w.baseline_description}): ${w.baseline_display}`);
  steps.forEach((s, i) => {
    const up = s.f.contribution >= 0;
    const k = i + 1;
    const when = s.f.date ? ` on ${s.f.date}` : "";
    bar(k, s.from, s.to, up ? "bar-up" : "bar-down", up ? null : fill, s.f.label,
      `${s.f.value_display}${when}`, s.f.contribution_display,
      `${s.f.label} ${s.f.value_display}${when} (reference ${s.f.baseline_display}): ${s.f.contribution_display}, ${up ? "raises" : "lowers"} risk`);
    // The sign next to the bar end, so the direction does not rest on colour.
    const xe = f.x(s.to) + (up ? 4 : -4);
    if (Math.abs(s.f.contribution) >= 5e-4) {
      stext(f.svg, xe, rowY(k) + rowH / 2 + 5, up ? "+" : "−", { "text-anchor": up ? "start" : "end", class: `wf-sign ${up ? "up" : "down"}` });
    }
    // Connector from the previous step's end.
    S("line", { x1: r1(f.x(s.from)), x2: r1(f.x(s.from)), y1: rowY(k) - 7, y2: rowY(k) + 7, class: "connector" }, f.svg);
  });
  const kLast = factors.length + 1;
  bar(kLast, 0, w.final, "bar-final", null, "This patient", w.label, w.final_display, `${w.label} for this patient: ${w.final_display}`);
  S("line", { x1: r1(f.x(0)), x2: r1(f.x(0)), y1: top, y2: H - bottom, class: "axis" }, f.svg);

  const parts = factors.map((x) => `${x.label} ${x.value_display} ${x.contribution_display}`);
  f.svg.setAttribute("aria-label", `${w.label}: from ${w.baseline_display} for the reference profile to ${w.final_display} for this patient. ${parts.join("; ")}.`);
  return f.svg;
}

/* ---------------------------------------------------------------- what-if */

const STATIN_TEXT = { none: "None", moderate: "Moderate intensity", high: "High intensity" };
let whatifSeq = 0;

async function loadWhatif() {
  const d = await api("/app/api/whatif");
  state.whatif = d;
  const statin = $("statin"), sbp = $("sbp-target");
  statin.replaceChildren(...(d.statin_options || ["none"]).map((o) => h("option", { value: o, text: STATIN_TEXT[o] || o })));
  sbp.replaceChildren(...(d.sbp_targets || [null]).map((t) => h("option", { value: t == null ? "" : t, text: t == null ? "No change" : `${t} mm Hg` })));
  statin.disabled = sbp.disabled = !d.available;
  if (!d.available) {
    $("whatif-base").textContent = d.reason || "The what-if simulation is not available for this patient.";
    $("whatif-result").hidden = true;
    $("whatif-chart-box").replaceChildren();
    return;
  }
  const bits = [`${d.base_label}: ${d.base_display} now.`];
  if (d.ldl_display) bits.push(`LDL ${d.ldl_display}.`);
  if (d.sbp_display) bits.push(`Systolic BP ${d.sbp_display}.`);
  if (d.on_statin) bits.push("Already on a statin.");
  $("whatif-base").textContent = bits.join(" ");
  // The initial state (no therapy change) comes from the GET, without a round trip.
  drawWhatif({ display_before: d.base_display, display_after: d.base_display, risk_before: d.base_risk, risk_after: d.base_risk,
    arr_display: "—", description: null, evidence: "" });
}

async function runWhatif() {
  const body = { statin: $("statin").value, sbp_target_mm_hg: $("sbp-target").value === "" ? null : Number($("sbp-target").value) };
  const seq = ++whatifSeq;
  $("whatif-result").setAttribute("aria-busy", "true");
  try {
    const r = await api("/app/api/whatif", body);
    if (seq !== whatifSeq) return; // a newer choice is on its way
    $("whatif-error").hidden = true;
    drawWhatif(r);
  } catch (e) {
    if (seq !== whatifSeq) return;
    // The previous result no longer matches the controls: do not leave it on screen.
    for (const id of ["whatif-risk", "whatif-arr"]) $(id).textContent = "—";
    $("whatif-desc").textContent = "";
    $("whatif-chart-box").replaceChildren();
    $("whatif-error").textContent = `Could not compute: ${e.message}`;
    $("whatif-error").hidden = false;
  } finally {
    if (seq === whatifSeq) $("whatif-result").removeAttribute("aria-busy");
  }
}

function drawWhatif(r) {
  $("whatif-risk").textContent = r.display_after;
  $("whatif-arr").textContent = r.arr_display;
  $("whatif-desc").textContent = r.description ? `With ${r.description.replace(/\.$/, "")}.` : "No change in therapy selected.";
  $("whatif-evidence").textContent = r.evidence ? `Evidence: ${r.evidence}` : "";
  $("whatif-label").textContent = `${state.whatif.base_label} with therapy`;
  mount($("whatif-chart-box"), (W) => whatifChart(r, W));
}

function whatifChart(r, W) {
  const H = 230, m = { top: 28, right: 16, bottom: 40, left: 52 };
  const yt = niceTicks(0, Math.max(r.risk_before, r.risk_after, 0.01) * 1.2, 4);
  const f = frame(W, H, m, [0, 2], yt,
    `${state.whatif.base_label}: now ${r.display_before}; ${r.description ? "with " + r.description : "no change in therapy"}, ${r.display_after}`, "whatif-chart");
  axes(f, null, yt, fmtPct, "10-year risk");
  const bw = Math.min(110, (W - m.left - m.right) / 4);
  const fill = hatch(f.svg, "hatch-after");
  [[0.5, r.risk_before, r.display_before, "Now", "bar-now", null],
    [1.5, r.risk_after, r.display_after, "With therapy", "bar-after", fill]].forEach(([c, v, disp, name, cls, fillAttr]) => {
    const x = f.x(c) - bw / 2, y = f.y(v);
    titled(S("rect", { x: r1(x), y: r1(y), width: r1(bw), height: r1(f.y(0) - y), class: cls, fill: fillAttr }, f.svg), `${name}: ${disp}`);
    stext(f.svg, f.x(c), y - 8, disp, { "text-anchor": "middle", class: "bar-value" });
    stext(f.svg, f.x(c), H - m.bottom + 18, name, { "text-anchor": "middle", class: "tick" });
  });
  return f.svg;
}

/* ---------------------------------------------------------------- timelines */

async function loadTwin() {
  const d = await api("/app/api/twin");
  state.twin = d;
  renderPatient(d.patient || {}, d.twin || {});
  const grid = $("timeline-grid");
  grid.replaceChildren();
  const all = (d.timelines || []).flatMap((tl) => tl.series.flatMap((s) => s.points.map((p) => Date.parse(p.t))));
  // One shared time axis, so that e.g. eGFR and creatinine line up by eye.
  let t0 = Math.min(...all), t1 = Math.max(...all);
  if (all.length && t1 - t0 < 60 * DAY) { t0 -= 30 * DAY; t1 += 30 * DAY; }
  const padT = (t1 - t0) * 0.04;
  for (const tl of d.timelines || []) grid.append(timelineCard(tl, [t0 - padT, t1 + padT]));
  $("clinical-state").replaceChildren(...(d.clinical_state || []).flatMap((row) =>
    [h("dt", { text: row.label }), h("dd", { text: row.value })]));
  if (!(d.timelines || []).length) grid.append(h("p", { class: "empty", text: "No timelines for this patient." }));
  const issues = d.issues || [];
  $("twin-issues").hidden = !issues.length;
  $("twin-issues-summary").textContent = `Data issues (${issues.length}): values that were not used`;
  $("twin-issues-list").replaceChildren(...issues.map((i) => h("li", { text: i })));
}

function timelineCard(tl, domain) {
  const hid = uid("tl-h");
  const card = h("section", { class: "card timeline", "aria-labelledby": hid, "data-timeline": tl.id },
    h("h3", { id: hid }, tl.title, " ", h("span", { class: "unit-label", text: prettyUnit(tl.unit) })));
  const points = tl.series.flatMap((s) => s.points);
  if (!points.length) {
    card.append(h("p", { class: "empty", text: "No values on record" }));
    return card;
  }
  const box = h("div", { class: "chart-box" });
  const readout = h("p", { class: "readout", "aria-live": "polite" });
  const legend = h("ul", { class: "legend" }, tl.series.map((s, i) =>
    h("li", {}, swatch(`s${i}`, SHAPES[i % 4], i % 2 === 1), s.name)));
  if (tl.reference) legend.append(h("li", {}, swatch("ref", null, true), tl.reference.label));
  for (const b of tl.bands || []) legend.append(h("li", { "data-band": b.kind }, `▮ ${b.label}: ${isoDate(b.start)} to ${b.end ? isoDate(b.end) : "now"}`));
  for (const e of tl.events || []) legend.append(h("li", { "data-event": e.kind }, `│ ${e.text} (${isoDate(e.t)})`));
  if (points.some((p) => p.quality && p.quality !== "ok")) {
    legend.append(h("li", {}, swatch("s-hollow", "circle", false, false), "hollow: stale, implausible or unit unknown"));
  }
  card.append(box, legend, readout);
  queueMicrotask(() => mount(box, (W) => timelineChart(tl, domain, W, readout)));
  return card;
}

/** Values the twin did not use (implausible, unknown unit) are drawn but do not set the
 * scale or carry the line: one LDL of 900 must not flatten a five-year trend. */
const usable = (p) => !["implausible", "unit_unknown", "missing"].includes(p.quality);

function timelineChart(tl, domain, W, readout) {
  const H = 230, m = { top: 22, right: 16, bottom: 40, left: 48 };
  const all = tl.series.flatMap((s) => s.points);
  const vals = (all.some(usable) ? all.filter(usable) : all).map((p) => p.v);
  const ref = tl.reference;
  if (ref && ref.low != null) vals.push(ref.low);
  if (ref && ref.high != null) vals.push(ref.high);
  const lo = Math.min(...vals), hi = Math.max(...vals), padV = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  const yt = niceTicks(lo >= 0 ? Math.max(0, lo - padV) : lo - padV, hi + padV, 5);
  const yMin = yt[0], yMax = yt[yt.length - 1];
  const f = frame(W, H, m, domain, yt, timelineLabel(tl), `timeline-${tl.id}`);
  axes(f, timeTicks(domain[0], domain[1], Math.max(2, Math.floor((W - m.left - m.right) / 80))), yt, fmtNum, prettyUnit(tl.unit));
  if (ref) {
    for (const v of [ref.low, ref.high]) {
      if (v == null) continue;
      const yy = r1(f.y(v));
      S("line", { x1: m.left, x2: W - m.right, y1: yy, y2: yy, class: "ref-line" }, f.svg);
      stext(f.svg, W - m.right - 4, yy - 5, ref.label || String(v), { "text-anchor": "end", class: "ref-label" });
    }
  }
  // Derived state under the values: treatment periods and CKD as bands, AKI as events.
  for (const b of tl.bands || []) {
    const x0 = f.x(Math.max(domain[0], Date.parse(b.start)));
    const x1 = f.x(b.end ? Math.min(domain[1], Date.parse(b.end)) : domain[1]);
    const band = S("rect", { x: r1(x0), y: m.top, width: r1(Math.max(2, x1 - x0)), height: H - m.top - m.bottom, class: `band band-${b.kind}` }, f.svg);
    titled(band, `${b.label}: ${isoDate(b.start)} to ${b.end ? isoDate(b.end) : "now"}`);
    stext(f.svg, r1(x0) + 3, m.top + 11, b.label, { class: "band-label" });
  }
  for (const e of tl.events || []) {
    const xx = r1(f.x(Date.parse(e.t)));
    const line = S("line", { x1: xx, x2: xx, y1: m.top, y2: H - m.bottom, class: "event-line" }, f.svg);
    titled(line, `${e.text} (${isoDate(e.t)})`);
    stext(f.svg, xx - 3, m.top + 11, e.label, { "text-anchor": "end", class: "event-label" });
  }
  const items = [];
  tl.series.forEach((s, i) => {
    const pts = s.points.slice().sort((a, b) => Date.parse(a.t) - Date.parse(b.t));
    const dashed = i % 2 === 1;
    const linePts = pts.filter(usable).map((p) => [f.x(Date.parse(p.t)), f.y(p.v)]);
    S("path", { d: pathD(linePts), class: `line s${i}${dashed ? " dashed" : ""}` }, f.svg);
    for (const p of pts) {
      const ok = !p.quality || p.quality === "ok";
      const off = p.v < yMin || p.v > yMax; // drawn at the edge, and said so
      const el = marker(f.svg, SHAPES[i % 4], f.x(Date.parse(p.t)), f.y(Math.min(yMax, Math.max(yMin, p.v))), 4.5,
        `dot s${i}${ok ? "" : " hollow"}`);
      const text = `${s.name} ${fmtNum(p.v)} ${tl.unit} on ${isoDate(p.t)}${ok ? "" : ` (${QUALITY[p.quality] || p.quality})`}` +
        `${off ? ", off the scale" : ""}${p.source ? `, ${p.source}` : ""}`;
      titled(el, text);
      if (off) stext(f.svg, f.x(Date.parse(p.t)) + 7, f.y(p.v > yMax ? yMax : yMin) + 4, p.v > yMax ? "↑ off scale" : "↓ off scale", { class: "off-label" });
      items.push({ el, t: Date.parse(p.t), text });
    }
  });
  inspectable(f.svg, items, readout, "Hover over a point, or focus the chart and use the arrow keys, to read values.");
  return f.svg;
}

/** E.g. "Blood pressure. Systolic, 6 values from 2023-01-02 to 2026-01-01, latest 142 mm[Hg]. …" */
function timelineLabel(tl) {
  const parts = tl.series.map((s) => {
    const pts = s.points.slice().sort((a, b) => Date.parse(a.t) - Date.parse(b.t));
    if (!pts.length) return `${s.name}, no values`;
    const last = pts[pts.length - 1];
    return `${s.name}, ${pts.length} value${pts.length === 1 ? "" : "s"} from ${isoDate(pts[0].t)} to ${isoDate(last.t)}, latest ${fmtNum(last.v)} ${tl.unit}`;
  });
  const ref = tl.reference ? ` Reference: ${tl.reference.label}.` : "";
  const bands = (tl.bands || []).map((b) => ` ${b.label} from ${isoDate(b.start)} to ${b.end ? isoDate(b.end) : "now"}.`).join("");
  const events = (tl.events || []).map((e) => ` ${e.text} on ${isoDate(e.t)}.`).join("");
  return `${tl.title}. ${parts.join(". ")}.${ref}${bands}${events}`;
}

/* ---------------------------------------------------------------- vancomycin */

let simSeq = 0;
let simPending = null;

async function loadVanco() {
  const v = await api("/app/api/vancomycin");
  state.vanco = v;
  const body = $("vanco-body");
  if (!v.available) {
    body.hidden = true;
    return v.reason || "The dose simulator is not available for this patient.";
  }
  body.hidden = false;
  $("vanco-model").textContent = `${v.model.name} (v${v.model.version}), fitted to this patient's levels; as of ${localDateTime(Date.parse(v.as_of))}.`;
  $("sim-target").textContent = `Target AUC24 ${v.target[0]}–${v.target[1]} mg·h/L.`;
  renderCovariates(v);
  renderRecommended(v.recommended || []);
  const start = v.current_regimen || (v.recommended || [])[0];
  if (start) {
    setRegimen(start);
    showRegimen(start); // the GET's own numbers until the curve arrives
  }
  drawConc();
  if (start) await simulate();
  return null;
}

function renderCovariates(v) {
  const c = v.covariates || {}, p = v.parameters || {};
  const rows = [
    ["Weight", c.weight_kg != null ? `${c.weight_kg} kg` : null],
    ["Creatinine clearance", c.crcl_ml_min != null ? `${c.crcl_ml_min} mL/min` : null],
    ["Serum creatinine", c.creatinine_mg_dl != null ? `${c.creatinine_mg_dl} mg/dL` : null],
    ["Age, sex", [c.age != null ? `${c.age} y` : null, c.sex].filter(Boolean).join(", ") || null],
    ["Dialysis", c.dialysis == null ? null : c.dialysis ? "yes" : "no"],
    ["Clearance (CL)", p.cl_l_h != null ? `${p.cl_l_h} L/h` : null],
    ["Central volume (Vc)", p.vc_l != null ? `${p.vc_l} L` : null],
    ["Intercompartmental clearance (Q)", p.q_l_h != null ? `${p.q_l_h} L/h` : null],
    ["Peripheral volume (Vp)", p.vp_l != null ? `${p.vp_l} L` : null],
  ].filter(([, val]) => val);
  $("vanco-covariates").replaceChildren(...rows.flatMap(([k, val]) => [h("dt", { text: k }), h("dd", { text: val })]));
  $("vanco-notes").replaceChildren(...(v.notes || []).map((n) => h("li", { text: n })));
}

function renderRecommended(recs) {
  const list = $("recommended-list");
  if (!recs.length) {
    list.replaceChildren(h("li", { class: "empty", text: "No recommendation: see the notes below." }));
    return;
  }
  list.replaceChildren(...recs.map((r) => h("li", {},
    h("div", {},
      h("strong", { text: r.describe }),
      r.loading_dose_mg ? h("span", { class: "muted", text: ` after a loading dose of ${r.loading_dose_mg} mg` }) : null,
      h("br"),
      h("span", { class: "muted", text: `AUC24 ${r.auc24_display} (90% ${r.interval_display}); probability in target ${r.pta_display}, above ${r.p_above_display}; peak / trough ${r.peak_trough_display} mg/L` })),
    h("button", {
      type: "button", class: "secondary", text: "Try", "aria-label": `Try ${r.describe}`,
      onclick: () => { setRegimen(r); simulate(); },
    }))));
}

function setRegimen(r) {
  $("dose-mg").value = r.dose_mg;
  const sel = $("interval-h");
  // A regimen from the record may use an interval the list does not offer.
  if (![...sel.options].some((o) => Number(o.value) === Number(r.interval_h))) {
    sel.append(h("option", { value: r.interval_h, text: `every ${r.interval_h} h` }));
  }
  sel.value = String(r.interval_h);
  $("infusion-h").value = r.infusion_h;
  $("loading-mg").value = r.loading_dose_mg || "";
}

function showRegimen(r) {
  $("sim-regimen").textContent = r.describe ? `Simulated: ${r.describe}` : "";
  $("sim-auc24").textContent = r.auc24_display;
  $("sim-interval").textContent = r.interval_display;
  $("sim-pta").textContent = r.pta_display;
  $("sim-above").textContent = r.p_above_display;
  $("sim-peak-trough").textContent = r.peak_trough_display;
}

async function simulate() {
  const dose = $("dose-mg"), inf = $("infusion-h");
  const err = $("sim-error");
  // Only the obviously unusable is caught here; ranges are the server's to check (422).
  for (const [input, what] of [[dose, "a dose in mg"], [inf, "an infusion time in hours"]]) {
    if (input.value === "" || Number.isNaN(Number(input.value))) {
      err.textContent = `Enter ${what}.`;
      err.hidden = false;
      return;
    }
  }
  const body = { dose_mg: Number(dose.value), interval_h: Number($("interval-h").value), infusion_h: Number(inf.value) };
  const loading = $("loading-mg").value;
  if (loading !== "" && !Number.isNaN(Number(loading))) body.loading_dose_mg = Number(loading);
  const key = JSON.stringify(body);
  if (key === simPending) return; // Enter fires both change and submit
  simPending = key;
  const seq = ++simSeq;
  $("sim-result").setAttribute("aria-busy", "true");
  try {
    const r = await api("/app/api/vancomycin/simulate", body);
    if (seq !== simSeq) return;
    err.hidden = true;
    state.sim = r;
    showRegimen(r.regimen);
    drawConc();
  } catch (e) {
    if (seq !== simSeq) return;
    // Keep the history on the plot but drop the simulation that no longer matches the controls.
    state.sim = null;
    showRegimen({
      describe: "", auc24_display: "—", interval_display: "—", pta_display: "—",
      p_above_display: "—", peak_trough_display: "—",
    });
    drawConc();
    err.textContent = `Could not simulate: ${e.message}`;
    err.hidden = false;
  } finally {
    if (seq === simSeq) {
      simPending = null;
      $("sim-result").removeAttribute("aria-busy");
    }
  }
}

function drawConc() {
  mount($("conc-chart-box"), (W) => concChart(state.vanco, state.sim, W));
  const legend = $("conc-legend");
  legend.replaceChildren(
    h("li", {}, swatch("s0", "circle", false, false), "measured level"),
    h("li", {}, swatch("fit", null, false), "model fit (shaded: 90% band)"),
    h("li", {}, swatch("sim", null, true), "simulated regimen (shaded: 90% band)"),
    h("li", {}, swatch("dose", "triangle", false, false), "dose given"),
    h("li", {}, swatch("now", null, true), "now"));
}

function concChart(v, sim, W) {
  const H = 300, m = { top: 24, right: 20, bottom: 42, left: 52 };
  const fit = v.fitted_curve || { t: [], median: [], low: [], high: [] };
  const curve = (sim && sim.curve) || { t: [], median: [], low: [], high: [] };
  const now = Date.parse(v.as_of);
  const times = [now, ...fit.t.map(Date.parse), ...curve.t.map(Date.parse),
    ...(v.doses || []).map((d) => Date.parse(d.t)), ...(v.levels || []).map((l) => Date.parse(l.t))];
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const ys = [...fit.high, ...fit.median, ...curve.high, ...curve.median, ...(v.levels || []).flatMap((l) => [l.observed, l.fitted])].filter((x) => x != null);
  const yt = niceTicks(0, Math.max(10, ...ys) * 1.08, 5);
  const levels = v.levels || [];
  const latest = levels.length ? levels[levels.length - 1] : null;
  const label = `Vancomycin concentration, mg/L: ${levels.length} measured level${levels.length === 1 ? "" : "s"}` +
    (latest ? `, latest ${latest.observed} mg/L (${latest.kind}) on ${localDateTime(Date.parse(latest.t))}` : "") +
    (sim ? `; after now, simulated ${sim.regimen.describe}: AUC24 ${sim.regimen.auc24_display} mg·h/L (90% ${sim.regimen.interval_display})` : "") + ".";
  const f = frame(W, H, m, [t0, t1], yt, label, "conc-chart");
  axes(f, timeTicks(t0, t1, Math.max(2, Math.floor((W - m.left - m.right) / 70))), yt, fmtNum, "mg/L");

  const band = (c) => polyPoints([...c.t.map((t, i) => [f.x(Date.parse(t)), f.y(c.high[i])]),
    ...c.t.map((t, i) => [f.x(Date.parse(t)), f.y(c.low[i])]).reverse()]);
  const line = (c) => pathD(c.t.map((t, i) => [f.x(Date.parse(t)), f.y(c.median[i])]));
  if (fit.t.length) {
    if (fit.low.length && fit.high.length) S("polygon", { points: band(fit), class: "band-fit" }, f.svg);
    titled(S("path", { d: line(fit), class: "line fit" }, f.svg), "Model fit to this patient's levels");
  }
  const xNow = r1(f.x(now));
  S("line", { x1: xNow, x2: xNow, y1: m.top - 6, y2: H - m.bottom, class: "line now dashed" }, f.svg);
  stext(f.svg, xNow + 4, m.top - 10, "now", { class: "now-label" });
  // The simulated regimen: band and median always exist (empty before the first answer),
  // so tests and assistive tech find stable elements.
  S("polygon", { points: curve.t.length ? band(curve) : "", class: "band-sim", "data-testid": "conc-band" }, f.svg);
  titled(S("path", { d: line(curve), class: "line sim dashed", "data-testid": "conc-median" }, f.svg),
    sim ? `Simulated ${sim.regimen.describe}, median` : "No simulation yet");

  const items = [];
  for (const d of v.doses || []) {
    const t = Date.parse(d.t), x = f.x(t), y = H - m.bottom - 6;
    const text = `Dose ${d.amount_mg} mg over ${d.duration_h} h, ${localDateTime(t)}`;
    const el = titled(S("polygon", { points: `${r1(x)},${y + 5} ${r1(x + 5)},${y - 4} ${r1(x - 5)},${y - 4}`, class: "dot dose" }, f.svg), text);
    items.push({ el, t, text });
  }
  for (const l of levels) {
    const t = Date.parse(l.t), x = f.x(t);
    if (l.fitted != null) {
      S("line", { x1: r1(x), x2: r1(x), y1: r1(f.y(l.observed)), y2: r1(f.y(l.fitted)), class: "residual" }, f.svg);
    }
    const text = `${l.kind ? l.kind[0].toUpperCase() + l.kind.slice(1) : "Level"} ${localDateTime(t)}: measured ${l.observed} mg/L` +
      (l.fitted != null ? `, model ${l.fitted} mg/L` : "") + (l.source ? ` (${l.source})` : "");
    const el = titled(marker(f.svg, "circle", x, f.y(l.observed), 5, "dot s0"), text);
    items.push({ el, t, text });
  }
  inspectable(f.svg, items, $("conc-readout"), "Hover over a marker, or focus the chart and use the arrow keys, to read doses and levels.");
  return f.svg;
}

function wireVancoControls() {
  $("vanco-form").addEventListener("submit", (e) => { e.preventDefault(); simulate(); });
  for (const id of ["dose-mg", "interval-h", "infusion-h", "loading-mg"]) $(id).addEventListener("change", () => simulate());
}

/* ---------------------------------------------------------------- history */

const INDICATOR = { info: "i", warning: "!", critical: "!!" };

function responseText(fb) {
  if (fb.outcome === "accepted") return "accepted";
  if (fb.outcome === "overridden") return `overridden: ${(fb.override_reason && (fb.override_reason.display || fb.override_reason.code)) || "no reason given"}`;
  return fb.outcome || "response recorded";
}

async function loadHistory() {
  const d = await api("/app/api/history");
  const list = $("history-list");
  const records = d.records || [];
  list.replaceChildren(...records.map(historyItem));
  return records.length ? null : "No recommendations recorded for this patient yet.";
}

function historyItem(r) {
  const meta = [
    h("time", { datetime: r.time, text: localDateTime(Date.parse(r.time)) }),
    h("span", { class: "hist-service", text: r.service }),
    r.hook ? h("span", { text: r.hook }) : null,
    r.model ? h("span", { text: `${r.model.id}@${r.model.version}` }) : null,
    r.twin_version != null ? h("span", { text: `twin version ${r.twin_version}` }) : null,
    r.status && r.status !== "ok" ? h("span", { class: "badge badge-quality", text: r.status }) : null,
  ].filter(Boolean);
  const cards = (r.cards || []).map((c) => {
    const fbs = c.feedback || [];
    const ind = c.indicator || "info";
    return h("li", { class: "hist-card" },
      h("span", { class: `badge indicator-${ind}` }, h("span", { "aria-hidden": "true", text: INDICATOR[ind] || "" }), ` ${ind}`),
      " ", h("span", { class: "hist-summary", text: c.summary }),
      h("span", { class: "hist-responses" }, fbs.length
        ? fbs.map((fb) => h("span", {
          class: `response response-${fb.outcome}`,
          title: fb.time ? `at ${localDateTime(Date.parse(fb.time))}` : null,
          text: responseText(fb),
        }))
        : h("span", { class: "response response-none", text: "no response recorded" })));
  });
  return h("li", { class: "hist-record" },
    h("p", { class: "hist-meta" }, meta.flatMap((x, i) => (i ? [" · ", x] : [x]))),
    cards.length ? h("ul", { class: "hist-cards" }, cards) : h("p", { class: "muted", text: "No cards were returned." }));
}

/* ---------------------------------------------------------------- start */

function applyContext() {
  const ctx = state.session && state.session.app_context;
  if (!ctx || ctx.view !== "dose-simulator") return;
  const heading = $("vanco-h");
  heading.focus({ preventScroll: true });
  heading.scrollIntoView({ block: "start" });
}

function start() {
  $("statin").disabled = $("sbp-target").disabled = true; // until the what-if GET says otherwise
  $("whatif-form").addEventListener("submit", (e) => e.preventDefault());
  $("statin").addEventListener("change", runWhatif);
  $("sbp-target").addEventListener("change", runWhatif);
  wireVancoControls();

  const sessionReady = loadSession();
  const loads = [
    loadSection("timelines-status", "the patient's timelines", loadTwin).then(() => {
      if (!state.twin) $("patient-name").textContent = "Patient details unavailable";
    }),
    loadSection("risk-status", "risk models", () => loadRisk(sessionReady)),
    loadSection("whatif-status", "the what-if simulation", loadWhatif),
    loadSection("vanco-status", "the vancomycin model", loadVanco),
    loadSection("history-status", "recommendation history", loadHistory),
  ];
  // Scroll only once everything above has its final height.
  Promise.allSettled([sessionReady, ...loads]).then(() => {
    applyContext();
    if (!sessionHasEnded) announce("All sections loaded.");
  });
}

document.addEventListener("DOMContentLoaded", start);
