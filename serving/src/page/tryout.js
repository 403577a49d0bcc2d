// The try-out page: one image, the large and the small model side by side.
// Everything the server sends is put in the page as text, never as HTML.
"use strict";

const TOKEN_KEY = "semiclass-token";
const $ = (id) => document.getElementById(id);
let models = [];

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function api(path, options) {
  const headers = Object.assign({ Authorization: "Bearer " + token() }, (options || {}).headers);
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({ code: "bad_answer", message: "not JSON" }));
  if (!response.ok) {
    throw new Error(body.message || response.statusText);
  }
  return body;
}

function fillSelect(select, role) {
  select.replaceChildren();
  const preferred = models.filter((m) => m.role === role);
  const ordered = preferred.concat(models.filter((m) => m.role !== role));
  for (const model of ordered) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = `${model.arch} (${model.role}) ${model.id}`;
    select.appendChild(option);
  }
}

async function loadModels() {
  try {
    models = (await api("/v1/models")).models;
  } catch (err) {
    status("The server refused the token: " + err.message, true);
    return;
  }
  fillSelect($("large-model"), "large");
  fillSelect($("small-model"), "small");
  status(`${models.length} model(s) served. Choose an image.`);
  if ($("file").files.length) {
    predictBoth();
  }
}

function renderBars(list, predictions) {
  list.replaceChildren();
  for (const entry of predictions) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.class_name;
    name.title = `class ${entry.class_id}: ${entry.class_name}`;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (entry.score * 100).toFixed(1) + "%";
    track.appendChild(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = (entry.score * 100).toFixed(1) + "%";
    item.append(name, track, score);
    list.appendChild(item);
  }
}

async function predictOne(role, file) {
  const id = $(role + "-model").value;
  const list = $(role + "-result");
  const latency = $(role + "-latency");
  if (!id) {
    latency.textContent = "no model";
    return;
  }
  latency.textContent = "running...";
  const form = new FormData();
  form.append("image", file, file.name);
  const started = performance.now();
  try {
    const answer = await api(`/v1/models/${encodeURIComponent(id)}/predict?topk=${$("topk").value}`, {
      method: "POST",
      body: form,
    });
    const roundTrip = performance.now() - started;
    renderBars(list, answer.predictions[0].top);
    latency.textContent = `${roundTrip.toFixed(1)} ms round trip (${answer.latency_ms.toFixed(1)} ms in the server)`;
    list.dataset.done = "true";
  } catch (err) {
    list.replaceChildren();
    const message = document.createElement("li");
    message.className = "message";
    message.textContent = err.message;
    list.appendChild(message);
    latency.textContent = "";
    list.dataset.done = "error";
  }
}

function predictBoth() {
  const file = $("file").files[0];
  if (!file) {
    return;
  }
  const preview = $("preview");
  if (preview.src.startsWith("blob:")) {
    URL.revokeObjectURL(preview.src);
  }
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("preview-caption").textContent = `${file.name} (${(file.size / 1024).toFixed(1)} KiB)`;
  for (const role of ["large", "small"]) {
    delete $(role + "-result").dataset.done;
  }
  Promise.all([predictOne("large", file), predictOne("small", file)]);
}

window.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    loadModels();
  });
  $("file").addEventListener("change", predictBoth);
  $("topk").addEventListener("change", predictBoth);
  $("large-model").addEventListener("change", predictBoth);
  $("small-model").addEventListener("change", predictBoth);
  if (token()) {
    loadModels();
  }
});
