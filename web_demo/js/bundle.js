// A web bundle as the page reads it. manifest.json must match manifest.sha256; every other file must match the
// manifest's sha256 for it, checked with SubtleCrypto each time it is used. Files are kept in Cache Storage
// under their sha256, so a new bundle never runs on stale weights and an unchanged one is not downloaded twice.

export class BundleError extends Error {}

const CACHE = "edge-bundle-files";
const GRAPHS = ["encoder", "unet", "decoder"];

// Where the files come from: the page's own origin (a URL folder) or a folder the user picked.
export function originSource(base) {
  const folder = base.endsWith("/") ? base : `${base}/`;
  return {
    label: folder,
    async read(name, onProgress = () => {}) {
      const response = await fetch(new URL(name, new URL(folder, location.href)), { cache: "no-cache" });
      if (!response.ok) throw new BundleError(`${folder}${name}: HTTP ${response.status}`);
      const total = Number(response.headers.get("Content-Length")) || 0;
      const reader = response.body.getReader();
      const chunks = [];
      let loaded = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        loaded += value.length;
        onProgress(loaded, total);
      }
      const bytes = new Uint8Array(loaded);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      return bytes.buffer;
    },
  };
}

// files: a FileList from <input type=file webkitdirectory>; names are relative to the picked folder.
export function folderSource(files) {
  const byName = new Map([...files].map((file) => [file.webkitRelativePath.split("/").slice(1).join("/"), file]));
  const label = files.length ? files[0].webkitRelativePath.split("/")[0] : "(empty folder)";
  return {
    label,
    async read(name, onProgress = () => {}) {
      const file = byName.get(name);
      if (!file) throw new BundleError(`${label}/${name}: not in the folder`);
      const buffer = await file.arrayBuffer();
      onProgress(buffer.byteLength, buffer.byteLength);
      return buffer;
    },
  };
}

export async function sha256Hex(buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function checkManifest(manifest, where) {
  const problem = (text) => new BundleError(`${where}: ${text}`);
  if (manifest.schema !== 1) throw problem(`schema ${manifest.schema}, this page reads schema 1`);
  if (manifest.backend !== "web") throw problem(`is for target ${manifest.target}; this page runs web bundles`);
  if (!manifest.step_graph) throw problem("no step_graph (compiled by an older edge): compile it again");
  for (const name of GRAPHS) {
    if (!manifest.graphs?.[name]) throw problem(`lacks graph ${name}`);
  }
  const files = [...GRAPHS.map((name) => manifest.graphs[name].file), manifest.step_graph.file,
    manifest.sampling.time_features.file];
  for (const file of files) {
    if (!insideBundle(file)) throw problem(`${JSON.stringify(file)} is not a relative path inside the bundle`);
    if (!/^[0-9a-f]{64}$/.test(manifest.files?.[file] ?? "")) throw problem(`'files' has no sha256 for ${file}`);
  }
  const { guidance, noise_offset: noiseOffset, scheduler } = manifest.sampling;
  const { timesteps, alphas_cumprod: alphas, alphas_cumprod_next: alphasNext } = scheduler;
  if (timesteps.length !== alphas.length || alphas.length !== alphasNext.length) {
    throw problem("the scheduler's timesteps and alphas differ in length");
  }
  if (![guidance, noiseOffset, ...alphas, ...alphasNext].every(Number.isFinite)
    || ![...alphas, ...alphasNext].every((alpha) => alpha > 0 && alpha <= 1)) {
    throw problem("'sampling' needs finite numbers and alphas in (0, 1]");
  }
}

// the rule edge's manifest reader applies: relative, no "..", ".", empty parts or backslashes
function insideBundle(name) {
  return typeof name === "string" && name !== "" && !name.startsWith("/") && !name.includes("\\")
    && name.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}

// Opens a bundle: its manifest checked. file(name) gives a file's bytes, checked against the manifest.
export async function openBundle(source, onEvent = () => {}) {
  const manifestBytes = await source.read("manifest.json");
  const digestLine = new TextDecoder().decode(await source.read("manifest.sha256"));
  if ((await sha256Hex(manifestBytes)) !== digestLine.split(/\s+/)[0]) {
    throw new BundleError(`${source.label}manifest.json: does not match manifest.sha256`);
  }
  let manifest;
  try {
    manifest = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(manifestBytes));
  } catch (error) {
    throw new BundleError(`${source.label}manifest.json: not JSON (${error.message})`);
  }
  checkManifest(manifest, `${source.label}manifest.json`);
  const cache = globalThis.caches ? await caches.open(CACHE) : null; // Cache Storage needs a secure context

  async function file(name) {
    const expected = manifest.files[name];
    const key = new Request(new URL(`/edge-bundle-files/${expected}`, location.href));
    const cached = cache && (await cache.match(key));
    if (cached) {
      const buffer = await cached.arrayBuffer();
      if ((await sha256Hex(buffer)) === expected) {
        onEvent({ kind: "verified", file: name, bytes: buffer.byteLength, from: "cache" });
        return buffer;
      }
      await cache.delete(key); // damaged in storage: fetch it again
    }
    const buffer = await source.read(name, (loaded, total) => onEvent({ kind: "download", file: name, loaded, total }));
    const actual = await sha256Hex(buffer);
    if (actual !== expected) {
      throw new BundleError(`${source.label}${name}: sha256 ${actual.slice(0, 16)}… does not match the manifest's `
        + `${expected.slice(0, 16)}…: the file is damaged or from another bundle`);
    }
    onEvent({ kind: "verified", file: name, bytes: buffer.byteLength, from: "network" });
    if (cache) {
      // a full browser storage quota (a 900 MB fp32 UNet in a small profile) costs the next visit a download only
      await cache.put(key, new Response(buffer)).catch((error) => onEvent({
        kind: "warning", file: name, message: `${name}: not kept in Cache Storage (${error.message})`,
      }));
    }
    return buffer;
  }

  return { manifest, label: source.label, file };
}
