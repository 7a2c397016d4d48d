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
    const text = document.createElement("div");
    text.textContent = hit.text.length > 400 ? hit.text.slice(0, 399) + "…" : hit.text;
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = Object.keys(hit.metadata || {}).length ? JSON.stringify(hit.metadata) : "";
    li.append(head, text, meta);
    list.appendChild(li);
  }
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("collection").value;
  if (!name) { setStatus("Pick a collection first.", true); return; }
  const body = { query: $("query").value, k: Number($("k").value) || 10 };
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
