// The `avat3r view` page: sends frame requests (expression code + orbit camera) over a WebSocket and draws the
// JPEG frames the server renders. One request is in flight at a time and only the newest state is sent, so a
// slow server skips frames instead of queueing them.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("frame");
const ctx = canvas.getContext("2d");
const DEFAULT_CAMERA = { azimuth: 0, elevation: 5, distance: 1, pan: [0, 0] };

const view = {
  info: null,
  code: [],
  camera: structuredClone(DEFAULT_CAMERA),
  size: 256,
  codes: null, // timeline: array of codes
  playing: false,
  frameIndex: 0,
  framesReceived: 0,
  lastMeta: null,
  sliders: [],
};
window.avat3rView = view; // for scripts and the browser test
view.refresh = () => markDirty(); // ask for a frame after changing view.camera or view.code from a script

// ----- the frame stream -------------------------------------------------------------------------------------
let ws = null;
let inflight = false;
let inflightSince = 0;
let dirty = true;
let nextId = 1;
let meta = null;
const arrivals = [];

function markDirty() {
  dirty = true;
  pump();
}

function pump() {
  if (inflight && performance.now() - inflightSince > 15000) inflight = false; // lost reply: retry
  if (!dirty || inflight || !ws || ws.readyState !== WebSocket.OPEN) return;
  dirty = false;
  inflight = true;
  inflightSince = performance.now();
  ws.send(JSON.stringify({ id: nextId++, code: view.code, camera: view.camera, size: view.size }));
}

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = !text;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.binaryType = "blob";
  ws.onopen = () => { showError(""); inflight = false; dirty = true; pump(); };
  ws.onclose = () => { showError("connection to the server lost; retrying…"); setTimeout(connect, 1000); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const msg = JSON.parse(ev.data);
      if (msg.type === "frame") meta = msg;
      else if (msg.type === "error") { showError(msg.error); inflight = false; pump(); }
      return;
    }
    drawFrame(ev.data, meta);
  };
}

async function drawFrame(blob, m) {
  try {
    const bmp = await createImageBitmap(blob);
    if (canvas.width !== bmp.width) { canvas.width = bmp.width; canvas.height = bmp.height; }
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
  } catch (err) {
    showError(`could not decode a frame: ${err}`);
  }
  view.framesReceived += 1;
  view.lastMeta = m;
  document.body.dataset.frames = String(view.framesReceived);
  const now = performance.now();
  arrivals.push(now);
  while (arrivals.length > 2 && now - arrivals[0] > 2000) arrivals.shift();
  const fps = arrivals.length > 1 ? (1000 * (arrivals.length - 1)) / (now - arrivals[0]) : 0;
  $("fps").textContent = `${fps.toFixed(1)} fps`;
  if (m) {
    const net = m.cached ? "network cached" : `network ${m.decode_ms.toFixed(0)} ms`;
    $("timing").textContent = `· render ${m.render_ms.toFixed(0)} ms · ${net}`;
  }
  inflight = false;
  pump();
}

// ----- mouse: orbit, pan, zoom ------------------------------------------------------------------------------
let drag = null;
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
  canvas.setPointerCapture(e.pointerId);
});
canvas.addEventListener("pointerup", (e) => { drag = null; canvas.releasePointerCapture(e.pointerId); });
canvas.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const dx = e.clientX - drag.x;
  const dy = e.clientY - drag.y;
  drag.x = e.clientX;
  drag.y = e.clientY;
  const cam = view.camera;
  if (drag.pan) {
    const k = (0.4 * cam.distance) / canvas.clientWidth; // metres per CSS pixel, roughly
    cam.pan = [cam.pan[0] - dx * k, cam.pan[1] + dy * k].map((v) => Math.max(-10, Math.min(10, v)));
  } else {
    cam.azimuth = ((cam.azimuth - dx * 0.4 + 540) % 360) - 180;
    cam.elevation = Math.max(-89, Math.min(89, cam.elevation + dy * 0.4));
  }
  markDirty();
});
canvas.addEventListener("wheel", (e) => {
  e.preventDefault();
  view.camera.distance = Math.max(0.05, Math.min(20, view.camera.distance * Math.exp(e.deltaY * 0.001)));
  markDirty();
}, { passive: false });
canvas.addEventListener("dblclick", () => { view.camera = structuredClone(DEFAULT_CAMERA); markDirty(); });

// ----- expression panel -------------------------------------------------------------------------------------
function setCode(code, fromTimeline = false) {
  view.code = Array.from(code, Number);
  view.sliders.forEach(({ input, output }, i) => {
    input.value = view.code[i];
    output.textContent = view.code[i].toFixed(2);
  });
  if (!fromTimeline) pause();
  markDirty();
}

function buildPanel(controls) {
  const groups = $("groups");
  const index = new Map(controls.names.map((n, i) => [n, i]));
  view.sliders = new Array(controls.names.length);
  for (const [group, names] of Object.entries(controls.groups)) {
    const box = document.createElement("details");
    box.open = ["jaw", "mouth", "brows", "eyes", "code"].includes(group);
    box.innerHTML = `<summary>${group} (${names.length})</summary>`;
    for (const name of names) {
      const i = index.get(name);
      const row = document.createElement("label");
      row.className = "channel";
      const input = Object.assign(document.createElement("input"), {
        type: "range", min: controls.low, max: controls.high, step: 0.01, value: 0, id: `ch-${name}`,
      });
      input.dataset.channel = name;
      const label = Object.assign(document.createElement("span"), { textContent: name, title: name });
      const output = Object.assign(document.createElement("output"), { textContent: "0.00" });
      input.addEventListener("input", () => {
        view.code[i] = Number(input.value);
        output.textContent = view.code[i].toFixed(2);
        pause();
        markDirty();
      });
      row.append(label, input, output);
      box.append(row);
      view.sliders[i] = { input, output };
    }
    groups.append(box);
  }
  for (const [name, code] of Object.entries(controls.presets)) {
    const b = Object.assign(document.createElement("button"), { type: "button", textContent: name });
    b.dataset.preset = name;
    b.addEventListener("click", () => setCode(code));
    $("presets").append(b);
  }
}

// ----- timeline ---------------------------------------------------------------------------------------------
let playStart = 0;
let playFrom = 0;

function setTimeline(codes) {
  view.codes = codes;
  const n = codes ? codes.length : 0;
  $("scrub").max = Math.max(0, n - 1);
  $("scrub").disabled = $("play").disabled = n === 0;
  showFrame(0);
}

function showFrame(k) {
  if (!view.codes) { $("frame-label").textContent = "no codes"; return; }
  view.frameIndex = k;
  $("scrub").value = k;
  $("frame-label").textContent = `frame ${k + 1} / ${view.codes.length}`;
  setCode(view.codes[k], true);
}

function play() {
  if (!view.codes) return;
  view.playing = true;
  $("play").textContent = "⏸";
  playStart = performance.now();
  playFrom = view.frameIndex;
  requestAnimationFrame(tick);
}

function pause() {
  view.playing = false;
  $("play").textContent = "▶";
}

function tick() {
  if (!view.playing) return;
  const fps = Math.max(1, Number($("tl-fps").value) || 25);
  const elapsed = Math.max(0, performance.now() - playStart); // rAF's own timestamp may predate playStart
  const k = (playFrom + Math.floor((elapsed * fps) / 1000)) % view.codes.length;
  if (k !== view.frameIndex) showFrame(k); // frames the server cannot keep up with are simply skipped
  requestAnimationFrame(tick);
}

$("play").addEventListener("click", () => (view.playing ? pause() : play()));
$("scrub").addEventListener("input", () => { pause(); showFrame(Number($("scrub").value)); });
$("codes-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const res = await fetch("/api/codes", { method: "POST", body: await file.arrayBuffer() });
  const body = await res.json();
  if (!res.ok) { showError(`${file.name}: ${body.error}`); return; }
  showError("");
  setTimeline(body.codes);
});

// ----- start ------------------------------------------------------------------------------------------------
async function start() {
  const info = await (await fetch("/api/info")).json();
  view.info = info;
  view.size = info.size;
  document.title = $("title").textContent = info.title;
  $("device").textContent = `rendering on ${info.device}`;
  $("tl-fps").value = info.fps;
  const sizes = [...new Set([128, 192, 256, 384, 512, 768, 1024, info.size])]
    .filter((s) => s <= info.max_size).sort((a, b) => a - b);
  for (const s of sizes) $("size").append(new Option(`${s}²`, s, s === info.size, s === info.size));
  $("size").addEventListener("change", () => { view.size = Number($("size").value); markDirty(); });
  view.code = new Array(info.controls.names.length).fill(0);
  buildPanel(info.controls);
  if (info.codes) setTimeline(info.codes);
  connect();
}

start();
