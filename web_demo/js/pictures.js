// Pixels in and out of the model: a photo and its mask at the model's size, the decoded image, and the
// paste-back at the photo's size (edge.pipeline.loop.paste_back: pixels outside the blurred mask are the photo's).
// The browser resizes with its own filter (edge resizes with Lanczos), so a page result matches `edge inpaint`
// closely, not bit for bit; at the model's size the loop itself matches (the tests check both).

export const PASTE_BLUR_SIGMA = 3; // PIL's GaussianBlur(3): its radius is the standard deviation

function canvas(width, height) {
  const surface = new OffscreenCanvas(width, height);
  const context = surface.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  return [surface, context];
}

function resized(source, width, height) {
  const [, context] = canvas(width, height);
  context.drawImage(source, 0, 0, width, height);
  return context.getImageData(0, 0, width, height);
}

// 0/1 per pixel: the mask rule of edge (white or painted = fill), from a mask drawn or loaded into `pixels`.
export function binaryMask(pixels) {
  const { data, width, height } = pixels;
  const fill = new Uint8Array(width * height);
  for (let i = 0; i < fill.length; i += 1) {
    const luma = 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
    fill[i] = data[4 * i + 3] >= 128 && luma >= 128 ? 1 : 0;
  }
  return fill;
}

// photo (any drawable) and its 0/1 mask (width x height) -> image (1, 3, S, S) in [-1, 1], mask (1, 1, S, S).
export function modelInputs(photo, fill, width, height, size) {
  const pixels = resized(photo, size, size).data;
  const image = new Float32Array(3 * size * size);
  for (let c = 0; c < 3; c += 1) {
    for (let i = 0; i < size * size; i += 1) image[c * size * size + i] = Math.fround(pixels[4 * i + c] / 255) * 2 - 1;
  }
  const [maskCanvas, context] = canvas(width, height);
  const maskPixels = context.createImageData(width, height);
  fill.forEach((value, i) => maskPixels.data.fill(value * 255, 4 * i, 4 * i + 4));
  context.putImageData(maskPixels, 0, 0);
  const small = resized(maskCanvas, size, size).data;
  const mask = new Float32Array(size * size).map((_, i) => small[4 * i] / 255);
  return { image, mask };
}

// (1, 3, S, S) in [0, 1] -> ImageData S x S
export function imageData(image01, size) {
  const pixels = new ImageData(size, size);
  for (let i = 0; i < size * size; i += 1) {
    for (let c = 0; c < 3; c += 1) {
      pixels.data[4 * i + c] = Math.round(Math.min(1, Math.max(0, image01[c * size * size + i])) * 255);
    }
    pixels.data[4 * i + 3] = 255;
  }
  return pixels;
}

// Separable Gaussian of a width x height plane, edges extended.
export function gaussianBlur(plane, width, height, sigma) {
  const radius = Math.ceil(3 * sigma);
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, k) => Math.exp(-((k - radius) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b, 0);
  const weights = kernel.map((w) => w / total);
  const pass = (source, step, span, lines, lineStep) => {
    const out = new Float64Array(source.length);
    for (let line = 0; line < lines; line += 1) {
      for (let p = 0; p < span; p += 1) {
        let sum = 0;
        for (let k = -radius; k <= radius; k += 1) {
          const q = Math.min(span - 1, Math.max(0, p + k));
          sum += weights[k + radius] * source[line * lineStep + q * step];
        }
        out[line * lineStep + p * step] = sum;
      }
    }
    return out;
  };
  return pass(pass(plane, 1, width, height, width), width, height, width, 1);
}

// The model's S x S result on the photo: result * w + photo * (1 - w), w = blur(mask); w = 0 keeps the photo's pixel.
export function pasteBack(resultPixels, photoPixels, fill) {
  const { width, height } = photoPixels;
  const [resultCanvas, context] = canvas(resultPixels.width, resultPixels.height);
  context.putImageData(resultPixels, 0, 0);
  const result = resized(resultCanvas, width, height).data;
  const weight = gaussianBlur(Float64Array.from(fill), width, height, PASTE_BLUR_SIGMA);
  const out = new ImageData(width, height);
  for (let i = 0; i < width * height; i += 1) {
    const w = weight[i];
    for (let c = 0; c < 3; c += 1) {
      out.data[4 * i + c] = Math.round(result[4 * i + c] * w + photoPixels.data[4 * i + c] * (1 - w));
    }
    out.data[4 * i + 3] = 255;
  }
  return out;
}
