// Pillow's Image.resize(size, LANCZOS) and ImageFilter.GaussianBlur(radius) of one 8-bit channel, value for value:
// `edge inpaint` prepares its inputs and pastes its result back with them, so the page's pixels match Python's.
// A channel is { width, height, values: Int32Array } with values in 0..255.

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed point for 8-bit resampling
const LANCZOS_SUPPORT = 3;
const BLUR_PASSES = 3;
const f32 = Math.fround;

function sinc(x) {
  return x === 0 ? 1 : Math.sin(x * Math.PI) / (x * Math.PI);
}

function lanczos(x) {
  return x >= -LANCZOS_SUPPORT && x < LANCZOS_SUPPORT ? sinc(x) * sinc(x / LANCZOS_SUPPORT) : 0;
}

// Per output position: the first input position it reads and its fixed-point weights.
function lanczosTaps(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = LANCZOS_SUPPORT * filterScale;
  return Array.from({ length: outSize }, (_, o) => {
    const center = (o + 0.5) * scale;
    const low = Math.max(0, Math.trunc(center - support + 0.5));
    const high = Math.min(inSize, Math.trunc(center + support + 0.5));
    const raw = Array.from({ length: high - low }, (__, k) => lanczos((k + low - center + 0.5) / filterScale));
    const total = raw.reduce((a, b) => a + b, 0);
    const weights = raw.map((w) => {
      const normal = total !== 0 ? w / total : w;
      return Math.trunc(normal < 0 ? -0.5 + normal * (1 << PRECISION_BITS) : 0.5 + normal * (1 << PRECISION_BITS));
    });
    return { low, weights };
  });
}

function resizePass(channel, size, horizontal) {
  const inSize = horizontal ? channel.width : channel.height;
  const lines = horizontal ? channel.height : channel.width;
  const width = horizontal ? size : channel.width;
  const height = horizontal ? channel.height : size;
  const taps = lanczosTaps(inSize, size);
  const values = new Int32Array(width * height);
  for (let line = 0; line < lines; line += 1) {
    for (let o = 0; o < size; o += 1) {
      const { low, weights } = taps[o];
      let sum = 1 << (PRECISION_BITS - 1);
      for (let k = 0; k < weights.length; k += 1) {
        const i = low + k;
        sum += (horizontal ? channel.values[line * channel.width + i] : channel.values[i * channel.width + line]) * weights[k];
      }
      values[horizontal ? line * width + o : o * width + line] = Math.max(0, Math.min(255, sum >> PRECISION_BITS));
    }
  }
  return { width, height, values };
}

export function lanczosResize(channel, width, height) {
  let out = channel;
  if (width !== out.width) out = resizePass(out, width, true);
  if (height !== out.height) out = resizePass(out, height, false);
  return out;
}

// The extended box (Gwosdek et al. 2011) whose three passes have the Gaussian's variance, as Pillow computes it.
function boxRadius(radius) {
  const sigma2 = f32(f32(radius * radius) / BLUR_PASSES);
  const length = f32(Math.sqrt(12 * sigma2 + 1));
  const whole = f32(Math.floor((length - 1) / 2));
  let fraction = f32(f32(2 * whole + 1) * f32(f32(whole * f32(whole + 1)) - f32(3 * sigma2)));
  fraction = f32(fraction / f32(6 * f32(sigma2 - f32(f32(whole + 1) * f32(whole + 1)))));
  return f32(whole + fraction);
}

function boxPass(values, width, height, radius, horizontal) {
  const taps = Math.trunc(radius);
  const inner = Math.trunc(f32(f32(1 << 24) / f32(radius * 2 + 1)));
  const outer = Math.trunc((2 ** 24 - (taps * 2 + 1) * inner) / 2);
  const length = horizontal ? width : height;
  const lines = horizontal ? height : width;
  const stride = horizontal ? 1 : width;
  const at = (start, index) => values[start + stride * Math.max(0, Math.min(length - 1, index))];
  const out = new Int32Array(values.length);
  for (let line = 0; line < lines; line += 1) {
    const start = horizontal ? line * width : line;
    for (let x = 0; x < length; x += 1) {
      let window = 0;
      for (let k = -taps; k <= taps; k += 1) window += at(start, x + k);
      const far = at(start, x - taps - 1) + at(start, x + taps + 1);
      out[start + stride * x] = Math.floor((window * inner + far * outer + 2 ** 23) / 2 ** 24);
    }
  }
  return out;
}

export function gaussianBlur(channel, radius) {
  const box = boxRadius(radius);
  let { values } = channel;
  for (const horizontal of [true, false]) {
    for (let pass = 0; pass < BLUR_PASSES; pass += 1) values = boxPass(values, channel.width, channel.height, box, horizontal);
  }
  return { width: channel.width, height: channel.height, values };
}
