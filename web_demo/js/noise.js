// Seeded start noise: standard normals from a 32-bit seed (mulberry32, Box-Muller), plus the manifest's
// per-channel noise offset, as the Python pipeline adds it (edge.pipeline.loop.start_noise). The generator is not
// torch's: seed 7 here and seed 7 in `edge inpaint` give different noise (the tests hand the page torch's noise).

function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(uniform, count) {
  const values = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - uniform())); // 1 - u: never log(0)
    const angle = 2 * Math.PI * uniform();
    values[i] = radius * Math.cos(angle);
    if (i + 1 < count) values[i + 1] = radius * Math.sin(angle);
  }
  return values;
}

// (1, C, s, s) as a flat Float32Array: noise + noiseOffset * one normal per channel.
export function startNoise(channels, side, seed, noiseOffset) {
  const uniform = mulberry32(seed);
  const noise = normals(uniform, channels * side * side);
  const offsets = normals(uniform, channels);
  for (let c = 0; c < channels; c += 1) {
    for (let i = c * side * side; i < (c + 1) * side * side; i += 1) noise[i] += noiseOffset * offsets[c];
  }
  return noise;
}
