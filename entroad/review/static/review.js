// Review page: a paged queue, one image at a time, keyboard verdicts saved at once.
// Every text from the server is set with textContent (never innerHTML).
"use strict";
const $ = (id) => document.getElementById(id);
const B = document.body.dataset;
const S = {sort: "score", threshold: +B.threshold, page: 0, pages: 1, items: [], cur: 0,
           layer: "overlay", tool: null, marks: [], drawing: null};

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
async function api(path, body) {
  const r = await fetch(path, body ? {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)} : {});
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.status + " " + r.statusText);
  return r.json();
}
const reviewer = () => $("reviewer").value.trim() || B.reviewer;
const status = (t, bad) => { $("status").textContent = t; $("status").className = bad ? "bad" : ""; };
const fmt = (x) => x.toFixed(4);
const MAP_NOTES = {  // what each patch-level map shows (blue low, red high, per image)
  entropy: "Structural-entropy density: red patches have unusual structure relative to the rest of the image.",
  routing: "Routing: red patches go to the diffuse (context) path, blue ones to the localised path.",
  confidence: "Confidence of the adapted branch: red where the fusion trusts it most.",
};

async function load(opts = {}) {
  const q = new URLSearchParams({sort: S.sort, threshold: S.threshold, per_page: B.perPage});
  if (opts.around !== undefined) q.set("around", opts.around); else q.set("page", S.page);
  const d = await api("/api/queue?" + q);
  Object.assign(S, {items: d.items, page: d.page, pages: d.pages});
  $("page-info").textContent = `page ${d.page + 1} of ${d.pages}`;
  $("flagged").textContent = `${d.flagged} of ${d.total} flagged at ${fmt(d.threshold)}`;
  $("progress").textContent = `${d.reviewed} of ${d.total} reviewed`;
  $("show-conflicts").hidden = !d.conflicts;
  $("show-conflicts").textContent = `${d.conflicts} conflict${d.conflicts === 1 ? "" : "s"}`;
  if (opts.around !== undefined) S.cur = Math.max(0, S.items.findIndex((it) => it.id === opts.around));
  else if (opts.last) S.cur = S.items.length - 1;
  S.cur = Math.min(S.cur, S.items.length - 1);
  renderList();
  show();
  performance.mark("queue-ready");
}

function badge(it) {
  const labelled = it.verdicts.filter((v) => v.verdict !== "skip");
  if (it.conflict) return ["conflict", "b-conflict"];
  if (labelled.length) return [labelled[labelled.length - 1].verdict, "b-" + labelled[labelled.length - 1].verdict];
  if (it.verdicts.length) return ["skipped", "b-skip"];
  return ["", ""];
}

function renderList() {
  const ol = $("items");
  ol.replaceChildren();
  S.items.forEach((it, i) => {
    const li = el("li", undefined, i === S.cur ? "cur" : "");
    if (it.flagged) li.classList.add("flagged");
    const img = el("img");
    img.loading = "lazy"; img.alt = ""; img.width = 56; img.height = 56;
    if (it.has_image) img.src = `/img/${it.index}/thumb`;
    const txt = el("div", undefined, "meta");
    txt.append(el("span", it.id, "name"), el("span", fmt(it.score) + (it.flagged ? " ▲" : ""), "score"));
    const [b, bc] = badge(it);
    txt.append(el("span", b, "badge " + bc));
    li.append(img, txt);
    li.addEventListener("click", () => { S.cur = i; renderList(); show(); });
    ol.append(li);
  });
  const cur = ol.children[S.cur];
  if (cur) cur.scrollIntoView({block: "nearest"});
}

function layerSrc(it) {
  return S.layer === "overlay" ? `/img/${it.index}/overlay` : `/map/${it.index}/${S.layer}`;
}

function show() {
  const it = S.items[S.cur];
  if (!it) return;
  $("item-id").textContent = it.id;
  $("item-score").textContent = `score ${fmt(it.score)} · threshold ${fmt(S.threshold)} · ` +
    (it.flagged ? "FLAGGED (score above the threshold)" : "below the threshold");
  $("item-score").className = it.flagged ? "flagged" : "";
  $("base").src = `/img/${it.index}/image`;
  $("layer").src = layerSrc(it);
  S.marks = []; drawMarks();
  const ul = $("verdicts");
  ul.replaceChildren();
  if (!it.verdicts.length) ul.append(el("li", "none yet", "muted"));
  for (const v of it.verdicts) {
    const li = el("li");
    li.append(el("strong", v.verdict, "v-" + v.verdict), el("span", ` by ${v.reviewer} at ${v.time.slice(0, 19).replace("T", " ")} UTC`));
    if (v.marks.length) li.append(el("span", ` · ${v.marks.length} mark(s)`, "muted"));
    ul.append(li);
  }
  if (it.conflict) ul.append(el("li", "Reviewers disagree on this image.", "bad"));
}

async function move(step) {
  const next = S.cur + step;
  if (next >= 0 && next < S.items.length) { S.cur = next; renderList(); show(); return; }
  if (step > 0 && S.page + 1 < S.pages) { S.page++; S.cur = 0; await load(); }
  else if (step < 0 && S.page > 0) { S.page--; await load({last: true}); }
}

async function verdict(v) {
  const it = S.items[S.cur];
  if (!it) return;
  try {
    const d = await api("/api/verdict", {id: it.id, verdict: v, reviewer: reviewer(), marks: S.marks});
    it.verdicts = it.verdicts.filter((x) => x.reviewer !== d.saved.reviewer).concat([d.saved]);
    it.conflict = new Set(it.verdicts.filter((x) => x.verdict !== "skip").map((x) => x.verdict)).size > 1;
    status(`saved: ${it.id} → ${v}`);
    $("progress").textContent = `${d.reviewed} of ${B.total} reviewed`;
    $("show-conflicts").hidden = !d.conflicts;
    $("show-conflicts").textContent = `${d.conflicts} conflict${d.conflicts === 1 ? "" : "s"}`;
    await move(1);
    if (S.cur === S.items.length - 1 && S.page + 1 >= S.pages) { renderList(); }
  } catch (e) { status("NOT saved: " + e.message, true); }
}

async function undo() {
  try {
    const d = await api("/api/undo", {reviewer: reviewer()});
    if (!d.undone) { status("nothing to undo"); return; }
    status(`undone: ${d.undone.id} (${d.undone.verdict})`);
    await load({around: d.undone.id});
  } catch (e) { status("undo failed: " + e.message, true); }
}

// ---- marks: boxes and brush strokes in image fractions ----
function canvasPos(e) {
  const r = $("marks").getBoundingClientRect();
  return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
}
function drawMarks() {
  const c = $("marks"), img = $("base");
  c.width = img.clientWidth || 1; c.height = img.clientHeight || 1;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = g.fillStyle = "rgba(255, 0, 200, 0.9)"; g.lineWidth = 2;
  for (const m of S.drawing ? S.marks.concat([S.drawing]) : S.marks) {
    if (m.type === "box") g.strokeRect(m.x0 * c.width, m.y0 * c.height, (m.x1 - m.x0) * c.width, (m.y1 - m.y0) * c.height);
    else for (const [x, y] of m.points) { g.beginPath(); g.arc(x * c.width, y * c.height, m.r * Math.max(c.width, c.height), 0, 7); g.fill(); }
  }
}
function setupMarks() {
  const c = $("marks");
  c.addEventListener("pointerdown", (e) => {
    if (!S.tool) return;
    const [x, y] = canvasPos(e);
    S.drawing = S.tool === "box" ? {type: "box", x0: x, y0: y, x1: x, y1: y} : {type: "brush", r: 0.02, points: [[x, y]]};
    c.setPointerCapture(e.pointerId);
  });
  c.addEventListener("pointermove", (e) => {
    if (!S.drawing) return;
    const [x, y] = canvasPos(e);
    if (S.drawing.type === "box") Object.assign(S.drawing, {x1: x, y1: y}); else S.drawing.points.push([x, y]);
    drawMarks();
  });
  c.addEventListener("pointerup", () => {
    if (!S.drawing) return;
    const m = S.drawing; S.drawing = null;
    if (m.type === "box") Object.assign(m, {x0: Math.min(m.x0, m.x1), x1: Math.max(m.x0, m.x1), y0: Math.min(m.y0, m.y1), y1: Math.max(m.y0, m.y1)});
    S.marks.push(m); drawMarks();
    status(`${S.marks.length} mark(s): they are saved with the next verdict (a)`);
  });
}

function setup() {
  $("reviewer").value = localStorage.getItem("entroad-reviewer") || B.reviewer;
  $("reviewer").addEventListener("change", () => localStorage.setItem("entroad-reviewer", reviewer()));
  const thr = $("threshold");
  thr.value = S.threshold; $("thr-value").textContent = fmt(S.threshold);
  let timer;
  thr.addEventListener("input", () => {
    S.threshold = +thr.value; $("thr-value").textContent = fmt(S.threshold);
    clearTimeout(timer); timer = setTimeout(() => load(), 150);
  });
  $("sort").addEventListener("change", (e) => { S.sort = e.target.value; S.page = 0; S.cur = 0; load(); });
  $("prev-page").addEventListener("click", () => { if (S.page > 0) { S.page--; S.cur = 0; load(); } });
  $("next-page").addEventListener("click", () => { if (S.page + 1 < S.pages) { S.page++; S.cur = 0; load(); } });
  $("opacity").addEventListener("input", (e) => { $("layer").style.opacity = e.target.value; });
  for (const b of document.querySelectorAll("#layers button")) b.addEventListener("click", () => {
    if (b.dataset.layer !== "overlay" && B.maps !== "1") {
      $("map-note").hidden = false;
      $("map-note").textContent = "Entropy, routing and confidence maps need the model: start the review with --model.";
      return;
    }
    S.layer = b.dataset.layer;
    document.querySelectorAll("#layers button").forEach((x) => x.classList.toggle("on", x === b));
    $("map-note").hidden = S.layer === "overlay";
    $("map-note").textContent = MAP_NOTES[S.layer] || "";
    if (S.layer !== "overlay" && +$("opacity").value === 1) { $("opacity").value = 0.6; $("layer").style.opacity = 0.6; }
    if (S.layer !== "overlay") status(`computing the ${S.layer} map…`);
    show();
  });
  for (const b of document.querySelectorAll("#tools button[data-tool]")) b.addEventListener("click", () => {
    S.tool = S.tool === b.dataset.tool ? null : b.dataset.tool;
    document.querySelectorAll("#tools button[data-tool]").forEach((x) => x.classList.toggle("on", x.dataset.tool === S.tool));
    $("marks").classList.toggle("active", !!S.tool);
  });
  $("clear-marks").addEventListener("click", () => { S.marks = []; drawMarks(); });
  for (const b of document.querySelectorAll("[data-verdict]")) b.addEventListener("click", () => verdict(b.dataset.verdict));
  $("undo").addEventListener("click", undo);
  $("base").addEventListener("load", drawMarks);
  $("layer").addEventListener("load", () => { if (S.layer !== "overlay") status(`${S.layer} map shown`); });
  $("layer").addEventListener("error", () => status(`the ${S.layer} map could not be made`, true));
  $("show-conflicts").addEventListener("click", showConflicts);
  setupMarks();
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range" || e.ctrlKey || e.metaKey || e.altKey) return;
    const k = {a: "anomalous", n: "normal", s: "skip"}[e.key];
    if (k) { e.preventDefault(); verdict(k); }
    else if (e.key === "u") { e.preventDefault(); undo(); }
    else if (e.key === "ArrowRight") { e.preventDefault(); move(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); }
  });
  load().catch((e) => status("could not load the queue: " + e.message, true));
}

async function showConflicts() {
  const d = await api("/api/conflicts");
  const ul = $("conflict-list");
  ul.replaceChildren();
  for (const c of d.conflicts) {
    const li = el("li");
    const a = el("a", c.id); a.href = "#";
    a.addEventListener("click", (e) => { e.preventDefault(); load({around: c.id}); });
    li.append(a, el("span", ": " + c.verdicts.map((v) => `${v.reviewer} ${v.verdict}`).join(", ")));
    ul.append(li);
  }
  $("conflicts").hidden = false;
}

document.addEventListener("DOMContentLoaded", setup);
