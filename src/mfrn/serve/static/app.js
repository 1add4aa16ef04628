// The mfrn serve page: uploads, the jobs list (polled), and a job's result. Plain JS, no external assets.
// Every text from the server is set with textContent (never innerHTML); files are fetched with the
// token in a header and shown through blob: URLs, so the token never appears in a URL.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "mfrn-serve-token";
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", selected: null, jobs: [], detail: null,
                shownResult: null, blobs: [], timer: null, limits: null };

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
};
const LABELS = { fake: "FAKE", real: "REAL", no_face: "NO FACE" };

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options || {}, { headers: headers((options || {}).headers) }));
  if (response.status === 401) {
    showTokenBox("the server asks for a token");
    throw new ApiError(401, "a token is needed");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();

async function blobURL(path) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  state.blobs.push(url);
  return { url, type: blob.type };
}

function releaseBlobs() {
  state.blobs.forEach((url) => URL.revokeObjectURL(url));
  state.blobs = [];
}

// -- token ---------------------------------------------------------------------------------------------
function showTokenBox(message) {
  $("token-box").hidden = false;
  $("token-msg").textContent = message || "";
}

function setupToken() {
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("token-msg").textContent = "";
    start();
  });
}

// -- model and limits ------------------------------------------------------------------------------
function fmtBytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + " GiB";
  if (n >= 1 << 20) return Math.round(n / (1 << 20)) + " MiB";
  return Math.round(n / 1024) + " KiB";
}

async function loadModel() {
  const info = await getJSON(API + "/model");
  const box = $("model");
  box.textContent = "";
  const parts = [["model", info.model + (info.backbone ? " / " + info.backbone : "")],
                 ["checkpoint", info.checkpoint], ["input", info.input_size + " px"],
                 ["threshold", Number(info.threshold).toFixed(3)]];
  const image = info.calibration && info.calibration.image_threshold;
  if (image !== null && image !== undefined) parts.push(["images", Number(image).toFixed(3)]);
  parts.forEach(([key, value], i) => {
    if (i) box.append(" · ");
    box.append(key + " ");
    box.append(el("b", null, value));
  });
  box.title = (info.calibration_line || "") + "\n" + (info.protocol || "");
  state.model = info;
}

async function loadLimits() {
  const limits = await getJSON(API + "/limits");
  state.limits = limits;
  $("limits").textContent = "images and videos up to " + fmtBytes(limits.max_upload_bytes) + ", "
    + Math.round(limits.max_pixels / 1e6) + " MP, " + limits.max_duration_s + " s, "
    + limits.max_frames.toLocaleString() + " frames" + (limits.retention_s > 0
      ? "; jobs are kept " + (limits.retention_s / 86400).toFixed(limits.retention_s % 86400 ? 1 : 0) + " days" : "");
}

// -- uploads ---------------------------------------------------------------------------------------
function uploadOne(file) {
  return new Promise((resolve) => {
    const line = el("span", null, "uploading " + file.name + "…");
    $("upload-msg").prepend(line);
    const form = new FormData();
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", API + "/jobs");
    if (state.token) request.setRequestHeader("Authorization", "Bearer " + state.token);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) line.textContent = "uploading " + file.name + " " + Math.round(100 * event.loaded / event.total) + " %";
    };
    request.onload = () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch (e) { /* not JSON */ }
      if (request.status === 202) {
        line.className = "ok";
        line.textContent = file.name + ": queued";
        resolve(body.id);
      } else {
        if (request.status === 401) showTokenBox("the server asks for a token");
        line.className = "error";
        line.textContent = file.name + ": refused (" + request.status + "): " + (body.detail || request.statusText);
        resolve(null);
      }
    };
    request.onerror = () => {
      line.className = "error";
      line.textContent = file.name + ": the upload failed (connection closed; is it over the size limit?)";
      resolve(null);
    };
    request.send(form);
  });
}

async function upload(files) {
  let first = null;
  for (const file of files) {
    const id = await uploadOne(file);
    if (id && !first) first = id;
  }
  const lines = $("upload-msg").children;
  while (lines.length > 6) lines[lines.length - 1].remove();
  await refreshJobs();
  if (first) select(first);
}

function setupDrop() {
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) upload(Array.from(event.dataTransfer.files));
  });
  $("file-input").addEventListener("change", (event) => {
    const files = Array.from(event.target.files);
    event.target.value = "";
    if (files.length) upload(files);
  });
}

// -- jobs list ---------------------------------------------------------------------------------------
function statusBadge(job) {
  const key = job.status === "done" ? job.label : job.status;
  const text = job.status === "done" ? (LABELS[job.label] || job.label) : job.status;
  return el("span", "badge " + key, text);
}

function renderJobs() {
  const list = $("jobs");
  list.textContent = "";
  $("no-jobs").hidden = state.jobs.length > 0;
  for (const job of state.jobs) {
    const item = el("li", "job" + (job.id === state.selected ? " selected" : ""));
    item.tabIndex = 0;
    item.dataset.id = job.id;
    item.dataset.status = job.status;
    item.append(el("span", "name", job.filename), statusBadge(job));
    if (job.status === "queued" || job.status === "running") {
      const bar = el("progress");
      bar.max = 1;
      bar.value = job.progress;
      item.append(bar);
    }
    const when = new Date(job.created).toLocaleString();
    const score = job.score === null || job.score === undefined ? "" : " · P(fake) " + job.score.toFixed(3);
    item.append(el("span", "when", job.kind + " · " + when + score + (job.status === "running" ? " · " + job.stage : "")));
    item.addEventListener("click", () => select(job.id));
    item.addEventListener("keydown", (event) => { if (event.key === "Enter") select(job.id); });
    list.append(item);
  }
}

async function refreshJobs() {
  try {
    const data = await getJSON(API + "/jobs?limit=100");
    state.jobs = data.jobs;
    const c = data.counts;
    $("job-counts").textContent = c.queued + " queued · " + c.running + " running · " + c.done + " done · " + c.failed + " failed";
    renderJobs();
    if (state.selected) {
      const job = state.jobs.find((j) => j.id === state.selected);
      if (!job) showEmpty();
      else if (!state.detail || state.detail.status !== job.status || job.status === "running" || job.status === "queued") {
        await loadDetail(state.selected);
      }
    }
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) console.warn(error);
  }
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  const busy = state.jobs.some((j) => j.status === "queued" || j.status === "running");
  state.timer = setTimeout(refreshJobs, busy ? 700 : 4000);
}

// -- one job -------------------------------------------------------------------------------------------
function showEmpty() {
  state.selected = null;
  state.detail = null;
  state.shownResult = null;
  releaseBlobs();
  $("result").hidden = true;
  $("empty").hidden = false;
  renderJobs();
}

async function select(id) {
  state.selected = id;
  state.shownResult = null;
  renderJobs();
  await loadDetail(id);
}

async function loadDetail(id) {
  let job;
  try { job = await getJSON(API + "/jobs/" + id); } catch (error) {
    if (error instanceof ApiError && error.status === 404) showEmpty();
    return;
  }
  if (id !== state.selected) return;
  state.detail = job;
  renderDetail(job);
}

function renderDetail(job) {
  $("empty").hidden = true;
  const box = $("result");
  box.hidden = false;
  box.dataset.jobId = job.id;
  box.dataset.status = job.status;
  $("result-name").textContent = job.filename;
  const verdict = $("verdict");
  const result = job.result;
  const label = job.status === "done" ? result.label : job.status;
  verdict.className = "verdict " + label;
  verdict.dataset.label = label;
  verdict.textContent = job.status === "done" ? (LABELS[label] || label) : job.status.toUpperCase();
  $("probability").textContent = result && result.score !== null && result.score !== undefined
    ? "P(fake) = " + result.score.toFixed(3) : (label === "no_face" ? "no face in any sampled frame" : "");
  $("threshold").textContent = result ? "threshold " + result.threshold.toFixed(3) + " (" + result.threshold_rule + ")" : "";
  const media = job.media;
  const size = media.width ? media.width + "×" + media.height : "";
  const frames = job.kind === "video" ? " · " + media.n_frames + " frames" + (media.duration ? ", " + media.duration.toFixed(1) + " s" : "") : "";
  const faceFrames = result && result.status === "ok" ? " · a face in " + result.n_frames_with_face + " of " + result.n_frames + " sampled frame" + (result.n_frames === 1 ? "" : "s") : "";
  $("result-meta").textContent = job.kind + " · " + job.media_format + " · " + size + frames + " · " + fmtBytes(job.size) + faceFrames;
  const running = job.status === "queued" || job.status === "running";
  $("result-progress").hidden = !running;
  $("result-progress-bar").value = job.progress;
  $("result-stage").textContent = job.status === "queued" ? "waiting in the queue" : job.stage + " " + Math.round(100 * job.progress) + " %";
  const note = job.status === "failed" ? job.error : (result && result.warning) || (running && job.error) || "";
  $("result-warning").hidden = !note;
  $("result-warning").textContent = note || "";
  const hasResult = !!result;
  $("download-json").hidden = !hasResult;
  $("download-csv").hidden = !hasResult;
  $("result-details").hidden = job.status !== "done";
  if (job.status === "done" && state.shownResult !== job.id) {
    state.shownResult = job.id;
    releaseBlobs();
    drawTimeline(result);
    showOverlay(job);
    showFaces(job);
  }
}

function drawTimeline(result) {
  const canvas = $("timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 640;
  const height = canvas.clientHeight || 170;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 38, right = 12, top = 10, bottom = 26;
  const w = width - left - right, h = height - top - bottom;
  const frames = result.frames || [];
  const useTime = frames.length > 1 && frames.every((f) => f.time !== null && f.time !== undefined);
  const xs = frames.map((f, i) => (useTime ? f.time : f.index));
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  const X = (v) => left + (frames.length === 1 ? w / 2 : (w * (v - x0)) / (x1 - x0 || 1));
  const Y = (p) => top + h * (1 - p);
  g.strokeStyle = "#d8dde6"; g.fillStyle = "#667085"; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    g.beginPath(); g.moveTo(left, Y(p)); g.lineTo(left + w, Y(p)); g.stroke();
    g.fillText(p.toFixed(2), 4, Y(p) + 4);
  }
  if (frames.length === 1) {
    g.fillText(result.kind === "image" ? "the image (one frame)" : "frame " + xs[0], X(xs[0]) - 50, height - 6);
  } else {
    g.fillText(useTime ? "time (s)" : "frame", left + w - 40, height - 6);
    g.fillText(String(useTime ? x0.toFixed(1) : x0), left, height - 6);
    g.fillText(String(useTime ? x1.toFixed(1) : x1), left + w - 80, height - 6);
  }
  // the verdict threshold
  g.strokeStyle = "#c62828"; g.setLineDash([5, 4]);
  g.beginPath(); g.moveTo(left, Y(result.threshold)); g.lineTo(left + w, Y(result.threshold)); g.stroke();
  g.setLineDash([]);
  // the per-frame score; frames without a face are grey ticks on the axis
  g.strokeStyle = "#2457c5"; g.lineWidth = 2; g.beginPath();
  let drawing = false;
  frames.forEach((f, i) => {
    if (f.score === null || f.score === undefined) { drawing = false; return; }
    const x = X(xs[i]), y = Y(f.score);
    if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
    drawing = true;
  });
  g.stroke();
  frames.forEach((f, i) => {
    const x = X(xs[i]);
    if (f.score === null || f.score === undefined) {
      g.fillStyle = "#9aa6b8"; g.fillRect(x - 1, Y(0) - 6, 2, 6);
    } else {
      g.fillStyle = f.score >= result.threshold ? "#c62828" : "#2e7d32";
      g.beginPath(); g.arc(x, Y(f.score), 3.5, 0, 2 * Math.PI); g.fill();
    }
  });
  canvas.dataset.points = String(frames.filter((f) => f.score !== null && f.score !== undefined).length);
}

async function showOverlay(job) {
  const box = $("overlay");
  box.textContent = "";
  if (!job.links.overlay) { box.append(el("p", "muted", "no overlay")); return; }
  try {
    const { url, type } = await blobURL(job.links.overlay);
    let media;
    if (type.startsWith("video/")) {
      media = el("video");
      media.controls = true; media.loop = true; media.muted = true; media.autoplay = true; media.playsInline = true;
    } else {
      media = el("img");
      media.alt = "overlay of " + job.filename;
    }
    media.id = "overlay-media";
    media.src = url;
    box.append(media);
  } catch (error) {
    box.append(el("p", "muted", "overlay unavailable: " + error.message));
  }
}

async function showFaces(job) {
  const box = $("faces");
  box.textContent = "";
  $("faces-note").textContent = job.faces.length ? "(the crops the model scored)" : "";
  if (!job.faces.length) { box.append(el("p", "muted", "no face found")); return; }
  for (const face of job.faces) {
    const figure = el("figure", face.label);
    const image = el("img");
    image.alt = "face " + face.face + " of frame " + face.frame;
    figure.append(image, el("figcaption", null, "frame " + face.frame + " · " + face.score.toFixed(3)));
    box.append(figure);
    blobURL(face.url).then(({ url }) => { image.src = url; }).catch(() => { image.alt = "unavailable"; });
  }
}

async function download(kind) {
  const job = state.detail;
  if (!job || !job.links[kind]) return;
  const response = await api(job.links[kind]);
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const url = URL.createObjectURL(await response.blob());
  const link = el("a");
  link.href = url;
  link.download = match ? match[1] : "results." + kind;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function deleteSelected() {
  const job = state.detail;
  if (!job || !confirm("Delete this job, its result and its files?")) return;
  await api(API + "/jobs/" + job.id, { method: "DELETE" });
  showEmpty();
  await refreshJobs();
}

// -- start ---------------------------------------------------------------------------------------------
async function start() {
  try {
    await loadModel();
    await loadLimits();
    $("token-box").hidden = true;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) $("model").textContent = "the server did not answer: " + error.message;
    return;
  }
  await refreshJobs();
}

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  setupDrop();
  $("download-json").addEventListener("click", () => download("json"));
  $("download-csv").addEventListener("click", () => download("csv"));
  $("delete-job").addEventListener("click", deleteSelected);
  window.addEventListener("resize", () => { if (state.detail && state.detail.status === "done") drawTimeline(state.detail.result); });
  start();
});
