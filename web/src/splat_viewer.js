// Offline viewer for one avat3r expression: the page embeds the Gaussians as base64 `.splat` records
// (already turned into gsplat.js's y-down world by the exporter) and a small JSON config; this file draws
// them with gsplat.js and orbit controls. It is bundled with esbuild into stages/view/static/splat_bundle.js
// and inlined into the exported HTML, so the page opens from disk (file://) with no network.
import "./classic_workers.js";
import * as SPLAT from "gsplat";

function decodeBase64(text) {
  const bin = atob(text.replace(/\s+/g, ""));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes.buffer;
}

function main() {
  const config = JSON.parse(document.getElementById("avatar-config").textContent);
  const canvas = document.getElementById("splat-canvas");
  const status = document.getElementById("status");
  // No render passes: the default fade-in advances per frame, so on a slow (software) GPU it would keep the
  // splats invisible for a long time.
  const renderer = new SPLAT.WebGLRenderer(canvas, []);
  renderer.backgroundColor = new SPLAT.Color32(...config.background.map((v) => Math.round(255 * v)), 255);
  const scene = new SPLAT.Scene();
  const camera = new SPLAT.Camera();
  camera.data.near = 0.01;
  // gsplat.js reads the focal length (pixels) once when it first draws: frame the head as the server does.
  camera.data.fx = camera.data.fy = config.focal * Math.min(canvas.clientWidth || 512, canvas.clientHeight || 512);
  const controls = new SPLAT.OrbitControls(camera, canvas, 0, 0, config.radius, false);
  controls.minZoom = 0.05 * config.radius;
  controls.maxZoom = 4 * config.radius;
  const splat = SPLAT.Loader.LoadFromArrayBuffer(decodeBase64(document.getElementById("splat-data").textContent),
    scene);
  status.textContent = `${splat.data.vertexCount} Gaussians · drag: orbit · right-drag: pan · wheel: zoom`;
  window.splatView = { scene, camera, controls, renderer, splat };
  let frames = 0;
  const frame = () => {
    controls.update();
    renderer.render(scene, camera);
    frames += 1;
    document.body.dataset.frames = String(frames);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

main();
