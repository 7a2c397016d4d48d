// The search page: lists collections, sends the query to the API, shows ranked hits or the API's error.
"use strict";
const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const message = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

async function loadCollections() {
  try {
    const data = await api("/collections");
    const select = $("collection");
    select.innerHTML = "";
    for (const c of data.collections) {
      const option = document.createElement("option");
      option.value = c.name;
      option.textContent = `${c.name} (${c.doc_count} docs)`;
      select.appendChild(option);
    }
    if (!data.collections.length) setStatus("No collections yet: create one with `embedsearch index create`.", true);
  } catch (err) {
    setStatus(`Could not list collections: ${err.message}`, true);
  }
}

const SHOWN = 400; // characters of a hit's text (or passage) shown

// The hit's passage (collections split into passages) or the start of its text, with the
// query's words (the API's highlights, offsets in the whole text) wrapped in <mark>. Built from
// text nodes, never from HTML strings.
function excerpt(hit) {
  const text = hit.text || "";
  let start = 0, end = Math.min(text.length, SHOWN);
  if (typeof hit.start === "number" && typeof hit.end === "number") {
    start = hit.start;
    end = Math.min(hit.end, hit.start + SHOWN);
  } else if (hit.highlights && hit.highlights.length && hit.highlights[0].start > SHOWN - 80) {
    start = Math.max(0, hit.highlights[0].start - 80);
    end = Math.min(text.length, start + SHOWN);
  }
  const div = document.createElement("div");
  div.className = "text";
  if (start > 0) div.append("…");
  let at = start;
  for (const h of hit.highlights || []) {
    if (h.start < at || h.end > end) continue;
    div.append(text.slice(at, h.start));
    const m = document.createElement("mark");
    m.textContent = text.slice(h.start, h.end);
    div.append(m);
    at = h.end;
  }
  div.append(text.slice(at, end));
  if (end < text.length) div.append("…");
  return div;
}

function renderHits(hits) {
  const list = $("results");
  list.innerHTML = "";
  for (const hit of hits) {
    const li = document.createElement("li");
    li.className = "hit";
    const head = document.createElement("div");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(4);
    head.append(score, ` · ${hit.id}`);
    const how = document.createElement("span");
    how.className = "how";
    const parts = [hit.mode || ""];
    if (hit.ranks) parts.push(`dense #${hit.ranks.dense ?? "–"}, lexical #${hit.ranks.lexical ?? "–"}`);
    if (typeof hit.start === "number") parts.push(`passage ${hit.start}–${hit.end}`);
    how.textContent = parts.filter(Boolean).length ? ` · ${parts.filter(Boolean).join(" · ")}` : "";
    head.append(how);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = Object.keys(hit.metadata || {}).length ? JSON.stringify(hit.metadata) : "";
    li.append(head, excerpt(hit), meta);
    list.appendChild(li);
  }
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("collection").value;
  if (!name) { setStatus("Pick a collection first.", true); return; }
  const body = { query: $("query").value, k: Number($("k").value) || 10 };
  if ($("mode").value) body.mode = $("mode").value;
  const filter = $("filter").value.trim();
  if (filter) {
    try { body.where = JSON.parse(filter); } catch (e) { setStatus(`The filter is not valid JSON: ${e.message}`, true); return; }
  }
  setStatus("Searching…", false);
  try {
    const data = await api(`/collections/${encodeURIComponent(name)}/search`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    renderHits(data.hits);
    setStatus(`${data.hits.length} hits in ${data.took_ms} ms`, false);
  } catch (err) {
    $("results").innerHTML = "";
    setStatus(err.message, true);
  }
});

loadCollections();
