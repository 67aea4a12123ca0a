// Pixels in and out of the model, as edge.pipeline.loop prepares and pastes them: the photo and its mask resized
// to the model's size with Pillow's Lanczos, the decoded image rounded to 8 bits and resized back, and the
// paste-back through Pillow's Gaussian blur of the mask (pixels where the blur is 0 are the photo's, unchanged).
// With the same start noise, the page's picture is `edge inpaint --bundle`'s (tests/test_web_demo.py).
import { gaussianBlur, lanczosResize } from "./pillow.js";

export const PASTE_BLUR_RADIUS = 3; // edge.pipeline.loop.PASTE_BLUR_RADIUS

// 0/1 per pixel: edge's mask rule (white or painted = fill), from a mask drawn or loaded into `pixels`.
export function binaryMask(pixels) {
  const { data, width, height } = pixels;
  const fill = new Uint8Array(width * height);
  for (let i = 0; i < fill.length; i += 1) {
    const luma = 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
    fill[i] = data[4 * i + 3] >= 128 && luma >= 128 ? 1 : 0;
  }
  return fill;
}

function channel(pixels, c) {
  const values = new Int32Array(pixels.width * pixels.height).map((_, i) => pixels.data[4 * i + c]);
  return { width: pixels.width, height: pixels.height, values };
}

function maskChannel(fill, width, height) {
  return { width, height, values: Int32Array.from(fill, (value) => value * 255) };
}

// photo (ImageData) and its 0/1 mask -> image (1, 3, S, S) in [-1, 1] and mask (1, 1, S, S) in [0, 1]
export function modelInputs(photo, fill, size) {
  const image = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c += 1) {
    const resized = lanczosResize(channel(photo, c), size, size).values;
    for (let i = 0; i < size * size; i += 1) image[c * size * size + i] = Math.fround(resized[i] / 255) * 2 - 1;
  }
  const mask = Float32Array.from(lanczosResize(maskChannel(fill, photo.width, photo.height), size, size).values,
    (value) => value / 255);
  return { image, mask };
}

// numpy's rint and torch's round: halves to even
function roundHalfEven(x) {
  const down = Math.floor(x);
  const rest = x - down;
  return rest > 0.5 || (rest === 0.5 && down % 2 !== 0) ? down + 1 : down;
}

// The decoded (1, 3, S, S) in [0, 1], on the photo: result * w + photo * (1 - w), w = blur(mask) / 255.
export function pasteBack(image01, size, photo, fill) {
  const { width, height } = photo;
  const weight = gaussianBlur(maskChannel(fill, width, height), PASTE_BLUR_RADIUS).values;
  const out = new ImageData(width, height);
  for (let c = 0; c < 3; c += 1) {
    const plane = image01.subarray(c * size * size, (c + 1) * size * size);
    const bytes = Int32Array.from(plane, (v) => roundHalfEven(Math.fround(Math.min(1, Math.max(0, v)) * 255)));
    const result = lanczosResize({ width: size, height: size, values: bytes }, width, height).values;
    for (let i = 0; i < width * height; i += 1) {
      const w = weight[i] / 255;
      out.data[4 * i + c] = roundHalfEven(result[i] * w + photo.data[4 * i + c] * (1 - w));
    }
  }
  for (let i = 0; i < width * height; i += 1) out.data[4 * i + 3] = 255;
  return out;
}
