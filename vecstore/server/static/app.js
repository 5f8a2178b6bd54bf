// The search page of `vecstore serve`: plain JavaScript over the JSON API, no dependencies.
// Every value from the store is put on the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const CONTEXT_CHARS = 240; // document text shown before and after a chunk
const SHOWN_ATTRIBUTES = 8;

function key() {
  return $("key").value.trim();
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (key()) headers.Authorization = "Bearer " + key();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try {
    data = await resp.json();
  } catch (e) {
    throw new Error(`HTTP ${resp.status} (not JSON)`);
  }
  if (!resp.ok) {
    const err = (data && data.error) || { type: "Error", message: `HTTP ${resp.status}` };
    const e = new Error(err.message);
    e.type = err.type;
    e.status = resp.status;
    throw e;
  }
  return data;
}

function showError(e) {
  const box = $("error");
  box.hidden = false;
  box.textContent = "";
  const b = document.createElement("strong");
  b.textContent = (e.type || "Error") + (e.status ? ` (${e.status})` : "") + ": ";
  box.append(b, document.createTextNode(e.message));
  if (e.status === 401) box.append(document.createTextNode(" Enter the server's API key above."));
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// JSON values as the wire sends them ({"$datetime": ...} and friends) shown as plain text.
function valueText(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "object" && !Array.isArray(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0].startsWith("$")) return String(v[keys[0]]);
  }
  if (Array.isArray(v)) return "[" + v.map(valueText).join(", ") + "]";
  return typeof v === "number" ? String(Math.round(v * 1e6) / 1e6) : String(v);
}

async function loadTables() {
  clearError();
  const sel = $("table");
  const keep = sel.value || sessionStorage.getItem("vecstore.table");
  try {
    const health = await api("GET", "/healthz");
    $("server-info").textContent = `server ${health.version}, models: ${health.models}`;
    const modes = $("mode");
    modes.textContent = "";
    for (const m of health.search_modes) modes.append(new Option(m, m));
    const { tables } = await api("GET", "/tables");
    sel.textContent = "";
    for (const t of tables) sel.append(new Option(t, t));
    if (keep && tables.includes(keep)) sel.value = keep;
    await showTableInfo();
  } catch (e) {
    showError(e);
  }
}

async function showTableInfo() {
  const name = $("table").value;
  $("table-info").textContent = "";
  if (!name) return;
  sessionStorage.setItem("vecstore.table", name);
  const info = await api("GET", `/tables/${encodeURIComponent(name)}`);
  $("table-info").textContent = `${info.rows.toLocaleString()} rows, ${info.dim}-d ${info.metric}` +
    (info.embedder ? `, embedder ${info.embedder.split("/").pop()}` : ", vectors only");
  $("table-info").dataset.embedder = info.embedder || "";
}

const STOPWORDS = new Set(("the and for are was were what did does how who when which about that this " +
  "with from have has had not but you your they their there into over than then them its").split(" "));

function queryTerms(text) {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [];
  return [...new Set(words.filter((w) => !STOPWORDS.has(w)))];
}

// Append `text` to `parent`, wrapping the query's words in <strong>.
function appendWithTerms(parent, text, terms) {
  if (!terms.length) {
    parent.append(document.createTextNode(text));
    return;
  }
  const escaped = terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join("|")})(?![\\p{L}\\p{N}])`, "giu");
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    const s = document.createElement("strong");
    s.textContent = m[0];
    parent.append(s);
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function isChunk(h) {
  return typeof h.text === "string" && Number.isInteger(h.char_start) && Number.isInteger(h.char_end) &&
    typeof h.doc_id === "string" && Number.isInteger(h.chunk_index);
}

// The neighbouring chunks of every chunk hit, in one request, to show the document around it.
async function neighbours(table, hits) {
  const ids = [];
  for (const h of hits.filter(isChunk)) {
    ids.push(`${h.doc_id}#${h.chunk_index - 1}`, `${h.doc_id}#${h.chunk_index + 1}`);
  }
  if (!ids.length) return new Map();
  const { rows } = await api("POST", `/tables/${encodeURIComponent(table)}/rows`, { ids });
  return new Map(rows.map((r) => [r.id, r]));
}

function renderSource(h, around, terms) {
  const p = document.createElement("p");
  p.className = "source";
  const prev = around.get(`${h.doc_id}#${h.chunk_index - 1}`);
  const next = around.get(`${h.doc_id}#${h.chunk_index + 1}`);
  if (prev && isChunk(prev) && prev.char_start < h.char_start) {
    // the document text between the previous chunk's start and this chunk's start
    const before = prev.text.slice(0, h.char_start - prev.char_start);
    const shown = before.length > CONTEXT_CHARS ? "…" + before.slice(-CONTEXT_CHARS) : before;
    const span = document.createElement("span");
    span.className = "context";
    span.textContent = shown;
    p.append(span);
  }
  const mark = document.createElement("mark");
  mark.title = `characters ${h.char_start}–${h.char_end} of ${h.doc_id}`;
  appendWithTerms(mark, h.text, terms);
  p.append(mark);
  if (next && isChunk(next) && next.char_end > h.char_end) {
    const after = next.text.slice(Math.max(0, h.char_end - next.char_start));
    const span = document.createElement("span");
    span.className = "context";
    span.textContent = after.length > CONTEXT_CHARS ? after.slice(0, CONTEXT_CHARS) + "…" : after;
    p.append(span);
  }
  return p;
}

function renderHit(h, around, terms) {
  const li = document.createElement("li");
  li.className = "hit";
  const head = document.createElement("div");
  head.className = "hit-head";
  const id = document.createElement("code");
  id.textContent = h.id;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `score ${valueText(h.score)}`;
  head.append(id, score);
  if (isChunk(h)) {
    const where = document.createElement("span");
    where.className = "muted";
    where.textContent = `${h.doc_id} [${h.char_start}:${h.char_end}]`;
    head.append(where);
  }
  li.append(head);
  if (isChunk(h)) li.append(renderSource(h, around, terms));
  else if (typeof h.text === "string") {
    const p = document.createElement("p");
    p.className = "source";
    appendWithTerms(p, h.text, terms);
    li.append(p);
  }
  const skip = new Set(["id", "score", "text", "vector", "char_start", "char_end", "doc_id", "chunk_index"]);
  const attrs = Object.entries(h).filter(([k, v]) => !skip.has(k) && v !== null).slice(0, SHOWN_ATTRIBUTES);
  if (attrs.length) {
    const dl = document.createElement("dl");
    dl.className = "attrs";
    for (const [k, v] of attrs) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = valueText(v);
      dl.append(dt, dd);
    }
    li.append(dl);
  }
  return li;
}

async function search(ev) {
  ev.preventDefault();
  clearError();
  const table = $("table").value;
  const q = $("query").value.trim();
  if (!table || !q) return;
  const body = { k: Math.max(1, Math.min(100, parseInt($("k").value, 10) || 5)) };
  if (q.startsWith("[")) {
    try {
      body.vector = JSON.parse(q);
    } catch (e) {
      showError({ type: "InvalidArgumentError", message: "the vector is not a JSON list of numbers" });
      return;
    }
  } else body.text = q;
  const where = $("where").value.trim();
  if (where) body.where = where;
  const mode = $("mode").value;
  if (mode && mode !== "vector") body.mode = mode;
  $("go").disabled = true;
  $("summary").textContent = "searching…";
  try {
    const res = await api("POST", `/tables/${encodeURIComponent(table)}/search`, body);
    const around = await neighbours(table, res.hits);
    const terms = body.text ? queryTerms(body.text) : [];
    $("hits").textContent = "";
    for (const h of res.hits) $("hits").append(renderHit(h, around, terms));
    $("summary").textContent = `${res.hits.length} hits in ${(res.plan.seconds * 1e3).toFixed(1)} ms ` +
      `(${res.plan.strategy}${res.plan.filter ? `, ${res.plan.matches} rows match the filter` : ""})`;
    $("plan-strategy").textContent = res.plan.strategy;
    $("plan").textContent = res.plan.text;
    $("plan-box").hidden = false;
  } catch (e) {
    $("summary").textContent = "";
    showError(e);
  } finally {
    $("go").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("key").value = sessionStorage.getItem("vecstore.key") || "";
  $("key").addEventListener("change", () => {
    sessionStorage.setItem("vecstore.key", key());
    loadTables();
  });
  $("table").addEventListener("change", () => showTableInfo().catch(showError));
  $("search-form").addEventListener("submit", search);
  loadTables();
});
