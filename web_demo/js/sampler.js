// The manifest's loop on onnxruntime-web: encode the image and the masked image, then per step the UNet and the
// bundle's step graph (guidance, the DDIM update, the next UNet input), then decode. On WebGPU the UNet's and the
// step graph's outputs stay on the GPU (preferredOutputLocation "gpu-buffer"): nothing is read back between
// steps. Three read-backs per image: the two encodings (the latent mask and start latents are built here) and the
// decoded image. Semantics: edge/pipeline/loop.py (inpaint_tensors) and the manifest's `sampling`.

const GRAPHS = ["encoder", "unet", "decoder"];
const f32 = Math.fround;

// "auto": WebGPU where the browser has an adapter that runs the bundle (fp16 needs shader-f16), WASM otherwise.
export async function chooseProvider(wanted, manifest) {
  const adapter = navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null));
  const runsBundle = adapter && (manifest.quant !== "fp16" || adapter.features.has("shader-f16"));
  if (wanted === "auto") return runsBundle ? "webgpu" : "wasm";
  if (wanted === "webgpu" && !runsBundle) {
    throw new Error(adapter ? "this GPU lacks shader-f16, which fp16 bundles need on WebGPU: choose wasm"
      : "this browser has no WebGPU adapter: choose wasm");
  }
  return wanted;
}

// One session per graph; the provider each got is reported (a failed WebGPU session is an error, not a fallback).
export async function createSessions(ort, bundle, provider, onEvent = () => {}) {
  const { manifest } = bundle;
  const files = { ...Object.fromEntries(GRAPHS.map((name) => [name, manifest.graphs[name].file])),
    step: manifest.step_graph.file };
  const sessions = { provider };
  for (const [name, file] of Object.entries(files)) {
    const options = { executionProviders: [provider], graphOptimizationLevel: "all" };
    // int4 weights are DequantizeLinear nodes over constants: fold them to float32 as the session loads
    // (edge/backends/web/int4.py) instead of keeping them for QDQ fusion and dequantizing at every call
    if (manifest.quant === "int4") options.extra = { session: { disable_quant_qdq: "1" } };
    if (provider === "webgpu" && (name === "unet" || name === "step")) options.preferredOutputLocation = "gpu-buffer";
    sessions[name] = await ort.InferenceSession.create(new Uint8Array(await bundle.file(file)), options);
    onEvent({ kind: "session", graph: name, provider });
  }
  const features = new Float32Array(await bundle.file(manifest.sampling.time_features.file));
  sessions.timeFeatures = features;
  return sessions;
}

// inputs: image (1, 3, S, S) in [-1, 1], mask (1, 1, S, S) in [0, 1], noise (1, 4, s, s): flat Float32Arrays.
// Returns the decoded image (1, 3, S, S) in [0, 1] and what the run did.
export async function inpaint(ort, sessions, manifest, { image, mask, noise }, { onStep = () => {}, signal } = {}) {
  const S = manifest.image_size;
  const s = manifest.latent_size;
  const { scheduler, guidance } = manifest.sampling;
  const F = manifest.sampling.time_features.shape[1];
  const tensor = (data, dims) => new ort.Tensor("float32", data, dims);
  const only = async (session, feeds) => Object.values(await session.run(feeds))[0];
  let readBacks = 0;
  const readBack = async (value) => {
    readBacks += 1;
    const data = await value.getData();
    value.dispose();
    return data;
  };
  const encoderInput = manifest.graphs.encoder.inputs[0].name;

  const binary = mask.map((value) => (value >= 0.5 ? 1 : 0));
  const masked = image.map((value, i) => value * (1 - binary[i % (S * S)]));
  const latents = await readBack(await only(sessions.encoder, { [encoderInput]: tensor(image, [1, 3, S, S]) }));
  const maskedLatents = await readBack(await only(sessions.encoder, { [encoderInput]: tensor(masked, [1, 3, S, S]) }));
  // known (1, 5, s, s): the latent mask (nearest: every (S/s)-th pixel) and the masked image's latent
  const known = new Float32Array(5 * s * s);
  const stride = S / s;
  for (let y = 0; y < s; y += 1) {
    for (let x = 0; x < s; x += 1) known[y * s + x] = binary[y * stride * S + x * stride];
  }
  known.set(maskedLatents, s * s);
  // the clean latent noised to the first timestep, in float32 as torch computes it
  const alpha0 = f32(scheduler.alphas_cumprod[0]);
  const [signal0, noise0] = [f32(Math.sqrt(alpha0)), f32(Math.sqrt(f32(1 - alpha0)))];
  const start = latents.map((value, i) => f32(f32(signal0 * value) + f32(noise0 * noise[i])));

  const stepGraph = sessions.step;
  const scalar = (value) => tensor(new Float32Array([value]), [1]);
  const knownTensor = tensor(known, [1, 5, s, s]);
  const advance = async (latentsNow, noiseNow, alpha, alphaNext) => stepGraph.run({
    latents: latentsNow, noise: noiseNow, known: knownTensor, guidance: scalar(guidance),
    alpha: scalar(alpha), alpha_next: scalar(alphaNext),
  });
  // noise 0 and alpha = alpha_next = 1: the latents unchanged, and the first UNet input built on the device
  let { next_latents: x, unet_input: unetInput } = await advance(
    tensor(start, [1, 4, s, s]), tensor(new Float32Array(2 * 4 * s * s), [2, 4, s, s]), 1, 1);
  const unetNames = manifest.graphs.unet.inputs.map((spec) => spec.name);
  const steps = scheduler.timesteps.length;
  const stepMs = [];
  for (let i = 0; i < steps; i += 1) {
    if (signal?.aborted) throw new DOMException("cancelled", "AbortError");
    const started = performance.now();
    const features = tensor(sessions.timeFeatures.subarray(i * F, (i + 1) * F), [1, F]);
    const predicted = await only(sessions.unet, { [unetNames[0]]: unetInput, [unetNames[1]]: features });
    const next = await advance(x, predicted, scheduler.alphas_cumprod[i], scheduler.alphas_cumprod_next[i]);
    for (const used of [x, unetInput, predicted]) used.dispose();
    ({ next_latents: x, unet_input: unetInput } = next);
    stepMs.push(performance.now() - started);
    onStep({ step: i + 1, steps, ms: stepMs[i] });
  }
  const latentLocation = x.location;
  const decoderInput = manifest.graphs.decoder.inputs[0].name;
  const decoded = await only(sessions.decoder, { [decoderInput]: x });
  x.dispose();
  unetInput.dispose();
  return { image01: await readBack(decoded), stepMs, readBacks, latentLocation };
}
