// The page: open the bundle (this origin's bundle/ or ?bundle=PATH, or a folder the user picks), open a photo,
// paint or load a mask, inpaint, show the result beside the photo. Every event (downloads, checks, sessions,
// steps, errors) goes to window.edgeEvents too, and window.edgeDemo is the page's scripting interface.
import * as ort from "../ort/ort.webgpu.bundle.min.mjs";
import { BundleError, folderSource, openBundle, originSource } from "./bundle.js";
import { startNoise } from "./noise.js";
import { binaryMask, modelInputs, pasteBack } from "./pictures.js";
import { chooseProvider, createSessions, inpaint } from "./sampler.js";

ort.env.wasm.wasmPaths = new URL("../ort/", import.meta.url).href;
ort.env.wasm.numThreads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1;

const $ = (id) => document.getElementById(id);
const photoCanvas = $("photo-canvas");
const maskCanvas = $("mask-canvas");
const maskContext = maskCanvas.getContext("2d", { willReadFrequently: true });
let bundle = null;
let sessions = {}; // provider -> sessions, created once
let photoPixels = null;
let running = null; // AbortController of the run in progress

window.edgeEvents = [];
function emit(event) {
  window.edgeEvents.push(event);
  if (event.kind === "download" && event.total) {
    showProgress(event.loaded / event.total, `downloading ${event.file}: ${(event.loaded / 1e6).toFixed(1)} MB`);
  } else if (event.kind === "step") {
    showProgress(event.step / event.steps, `step ${event.step}/${event.steps}: ${event.ms.toFixed(0)} ms`);
  } else if (event.kind === "warning") {
    $("warnings").textContent += `warning: ${event.message}\n`;
  }
}

function showProgress(fraction, text) {
  $("progress").value = fraction;
  $("progress-text").textContent = text;
}

function showError(error) {
  const message = error instanceof BundleError || error.name === "AbortError" ? error.message : String(error);
  $("error").textContent = `error: ${message}`;
  emit({ kind: "error", message });
}

async function useBundle(source) {
  $("error").textContent = "";
  sessions = {};
  try {
    bundle = await openBundle(source, emit);
  } catch (error) {
    bundle = null;
    $("status").textContent = `no bundle (${source.label})`;
    $("run").disabled = true;
    throw error;
  }
  const { manifest } = bundle;
  $("status").textContent = `${bundle.label}: ${manifest.model}, web ${manifest.quant}, ${manifest.image_size} px, `
    + `${manifest.sampling.scheduler.timesteps.length} steps, guidance ${manifest.sampling.guidance}`;
  $("runtime").textContent = `onnxruntime-web ${ort.env.versions.web}, WASM threads ${ort.env.wasm.numThreads}`
    + `${crossOriginIsolated ? "" : " (not cross-origin isolated: serve with `edge serve`)"}, WebGPU `
    + `${navigator.gpu ? "present" : "absent"}`;
  $("run").disabled = !photoPixels;
  emit({ kind: "bundle", label: bundle.label, quant: manifest.quant });
  return manifest;
}

async function sessionsFor(provider) {
  sessions[provider] ??= createSessions(ort, bundle, provider, emit).catch((error) => {
    delete sessions[provider];
    throw error;
  });
  const ready = await sessions[provider];
  const rows = ["encoder", "unet", "decoder", "step"].map((graph) => `<tr><td>${graph}</td><td>${provider}</td></tr>`);
  $("timings").querySelector("tbody").innerHTML = rows.join("");
  $("timings").hidden = false;
  return ready;
}

// Decoded image of the loop at the model's size, from model-size arrays (what the tests compare with Python).
async function inpaintTensors({ image, mask, noise, provider = "wasm" }) {
  const chosen = await chooseProvider(provider, bundle.manifest);
  const result = await inpaint(ort, await sessionsFor(chosen), bundle.manifest, {
    image: Float32Array.from(image), mask: Float32Array.from(mask), noise: Float32Array.from(noise),
  }, { onStep: (step) => emit({ kind: "step", ...step }) });
  return { ...result, image01: Array.from(result.image01), provider: chosen };
}

function setPhoto(picture) {
  for (const surface of [photoCanvas, maskCanvas]) {
    surface.width = picture.width;
    surface.height = picture.height;
  }
  photoCanvas.getContext("2d").drawImage(picture, 0, 0);
  photoPixels = photoCanvas.getContext("2d").getImageData(0, 0, picture.width, picture.height);
  $("run").disabled = !bundle;
}

function setMask(picture) {
  maskContext.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  maskContext.drawImage(picture, 0, 0, maskCanvas.width, maskCanvas.height);
  const fill = binaryMask(maskContext.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
  const painted = maskContext.createImageData(maskCanvas.width, maskCanvas.height);
  fill.forEach((value, i) => painted.data.fill(value * 255, 4 * i, 4 * i + 4));
  maskContext.putImageData(painted, 0, 0);
}

async function run() {
  const { manifest } = bundle;
  const fill = binaryMask(maskContext.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
  if (!fill.includes(1)) throw new BundleError("the mask is empty: paint the area to fill");
  running = new AbortController();
  $("run").disabled = true;
  $("cancel").disabled = false;
  try {
    const started = performance.now();
    const provider = await chooseProvider($("provider").value, manifest);
    const ready = await sessionsFor(provider);
    const size = manifest.image_size;
    const inputs = modelInputs(photoPixels, fill, size);
    const seed = Number($("seed").value) >>> 0;
    const noise = startNoise(4, manifest.latent_size, seed, manifest.sampling.noise_offset);
    const result = await inpaint(ort, ready, manifest, { ...inputs, noise },
      { signal: running.signal, onStep: (step) => emit({ kind: "step", ...step }) });
    const pasted = pasteBack(result.image01, size, photoPixels, fill);
    const resultCanvas = $("result-canvas");
    resultCanvas.width = pasted.width;
    resultCanvas.height = pasted.height;
    resultCanvas.getContext("2d").putImageData(pasted, 0, 0);
    $("save").href = URL.createObjectURL(await new Promise((done) => resultCanvas.toBlob(done, "image/png")));
    $("save").hidden = false;
    const seconds = (performance.now() - started) / 1000;
    const perStep = result.stepMs.reduce((a, b) => a + b, 0) / result.stepMs.length;
    showProgress(1, `done in ${seconds.toFixed(1)} s (${provider}, ${perStep.toFixed(0)} ms per step)`);
    emit({ kind: "done", provider, seconds, readBacks: result.readBacks });
  } finally {
    running = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
  }
}

function paint(event) {
  if (!(event.buttons & 1)) return;
  const box = maskCanvas.getBoundingClientRect();
  const scale = maskCanvas.width / box.width;
  maskContext.fillStyle = "#fff";
  maskContext.beginPath();
  maskContext.arc((event.clientX - box.left) * scale, (event.clientY - box.top) * scale,
    (Number($("brush").value) / 2) * scale, 0, 2 * Math.PI);
  maskContext.fill();
}

// pixels as the file holds them (edge reads files the same way: EXIF orientation applied, no colour management)
const pictureOf = (input) => createImageBitmap(input.files[0], {
  imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none",
});
const reported = (action) => (...args) => action(...args).catch(showError);

maskCanvas.addEventListener("pointerdown", paint);
maskCanvas.addEventListener("pointermove", paint);
$("clear-mask").addEventListener("click", () => maskContext.clearRect(0, 0, maskCanvas.width, maskCanvas.height));
$("photo").addEventListener("change", reported(async () => setPhoto(await pictureOf($("photo")))));
$("mask-file").addEventListener("change", reported(async () => {
  const picture = await pictureOf($("mask-file"));
  if (picture.width !== maskCanvas.width || picture.height !== maskCanvas.height) {
    throw new BundleError(`${$("mask-file").files[0].name}: mask is ${picture.width}x${picture.height} but the `
      + `photo is ${maskCanvas.width}x${maskCanvas.height}`);
  }
  setMask(picture);
}));
$("bundle-folder").addEventListener("change", reported(() => useBundle(folderSource($("bundle-folder").files))));
$("run").addEventListener("click", () => run().catch((error) => {
  if (error.name !== "AbortError") return showError(error);
  showProgress(0, "cancelled");
  return emit({ kind: "cancelled" });
}));
$("cancel").addEventListener("click", () => running?.abort());

const wanted = new URLSearchParams(location.search).get("bundle") ?? "bundle/";
const ready = new URL(wanted, location.href).origin === location.origin
  ? useBundle(originSource(wanted))
  : Promise.reject(new BundleError(`${wanted}: bundles load from this page's origin only`));
window.edgeDemo = {
  ready: ready.then(() => true, (error) => { showError(error); return false; }),
  inpaintTensors,
  startNoise: (seed) => Array.from(startNoise(4, bundle.manifest.latent_size, seed, bundle.manifest.sampling.noise_offset)),
};
