"""The web demo (web_demo/, served by `edge serve`) in a real browser: Debian's Chromium driven by playwright, with
onnxruntime-web from web_demo/node_modules (`make test` runs `npm ci`). `--enable-unsafe-webgpu` gives Chromium a
software WebGPU adapter here, so the WebGPU path runs without a GPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge.inpaint import bundle_source
from edge.models.unet import timestep_features
from edge.models.weights import file_sha256
from edge.pipeline.loop import inpaint_tensors, model_inputs, paste_back, paste_weight, start_noise, to_image
from edge.pipeline.pictures import open_picture, prepare_pair
from edge.pipeline.schedule import ddim_schedule
from edge.serve import ONNXRUNTIME_WEB, DemoServer
from tests.helpers import REPO, manifest_json, rewrite_manifest

CHROMIUM = Path("/usr/bin/chromium")
PAIR = "flower"  # held out: neither trained nor calibrated on


@pytest.fixture(scope="module")
def web_fp32(compiled) -> Path:
    return compiled("web", "fp32")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file() or not ONNXRUNTIME_WEB.is_dir():
        pytest.fail(f"{CHROMIUM} or {ONNXRUNTIME_WEB} is missing: `make test` installs Chromium and runs npm ci")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--enable-unsafe-webgpu"])
        yield chromium
        chromium.close()


class Page:
    """One page of the demo in a fresh browser context (its own Cache Storage), with every request it made."""

    def __init__(self, browser, url: str, init_script: str | None = None):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        if init_script:
            self.page.add_init_script(init_script)
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(url)
        self.ready = self.page.evaluate("edgeDemo.ready")

    def events(self, kind: str | None = None) -> list[dict]:
        return [e for e in self.page.evaluate("edgeEvents") if kind is None or e["kind"] == kind]

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def demo_page(browser, web_fp32):
    with DemoServer(web_fp32, port=0) as server:
        page = Page(browser, server.url)
        yield page, server.url
        page.close()


@pytest.fixture(scope="module")
def held_out(web_fp32):
    """The held-out pair at the model's size and torch's start noise."""
    manifest = manifest_json(web_fp32)
    image, fill = prepare_pair(open_picture(REPO / "eval_data/images" / f"{PAIR}.png"),
                               open_picture(REPO / "eval_data/masks" / f"{PAIR}.png"))
    image_t, mask_t = model_inputs(image, fill, manifest["image_size"])
    noise = start_noise((1, 4, manifest["latent_size"], manifest["latent_size"]), seed=0)
    return {"image": image_t, "mask": mask_t, "noise": noise}


# (mode, provider): fp32 on both providers; fp16, int8 and int4 on WASM (the software WebGPU adapter has no
# shader-f16, its int8 run would take minutes, and int4 computes in fp32 as the fp32 run does once its weights are
# folded); measured max abs from Python's loop on the same bundle (2026-12-04; WebGPU's 4 steps: 2026-12-05)
PAGE_RUNS = [("fp32", "wasm"), ("fp32", "webgpu"), ("fp16", "wasm"), ("int8", "wasm"), ("int4", "wasm")]
MEASURED = {("fp32", "wasm"): 1.3e-5, ("fp32", "webgpu"): 2.4e-6, ("fp16", "wasm"): 4.9e-4, ("int8", "wasm"): 0.12,
            ("int4", "wasm"): 1.3e-5}
# the software WebGPU adapter takes about 10 s a step here: its run samples a 4-step schedule (every graph, the step
# graph and the GPU-resident latents all the same), the WASM runs the bundle's own 19 steps
WEBGPU_STEPS = 4  # t = 750, 500, 250, 0


def with_steps(bundle: Path, folder: Path, steps: int) -> Path:
    """A copy of `bundle` that fixes a DDIM schedule of `steps` steps, none dropped (strength 1), its time-feature
    table rewritten to match: what a bundle compiled with that schedule would hold."""
    strength = 1.0
    schedule = ddim_schedule(steps, strength)
    copy = folder / bundle.name
    shutil.copytree(bundle, copy)
    features_entry = manifest_json(copy)["sampling"]["time_features"]
    features = timestep_features(torch.tensor(schedule.timesteps), features_entry["shape"][1])  # (steps, F)
    table = copy / features_entry["file"]
    table.write_bytes(features.numpy().astype("<f4").tobytes())

    def edit(manifest: dict) -> None:
        manifest["sampling"].update(scheduler=schedule.to_json(), steps=schedule.steps, strength=strength)
        manifest["sampling"]["time_features"]["shape"] = list(features.shape)
        manifest["files"][features_entry["file"]] = file_sha256(table)

    rewrite_manifest(copy, edit)
    return copy


@pytest.mark.parametrize("mode, provider", PAGE_RUNS, ids=[f"{m}-{p}" for m, p in PAGE_RUNS])
def test_page_inpaints_the_held_out_pair_as_the_python_pipeline_does(browser, compiled, held_out, tmp_path, mode,
                                                                      provider):
    """inpaintTensors on the held-out pair with torch's start noise against `edge inpaint --bundle`'s loop on the
    same bundle, within the bundle's tolerance (int8: onnxruntime-web's WASM int8 kernels round otherwise than
    onnxruntime's x86 ones, 0.12 apart, inside int8's 0.75 from fp32 torch)."""
    bundle = compiled("web", mode)
    if provider == "webgpu":
        bundle = with_steps(bundle, tmp_path, WEBGPU_STEPS)
    source = bundle_source(bundle, None, None)
    reference = inpaint_tensors(source.graphs, source.plan, held_out["image"], held_out["mask"], held_out["noise"])
    inputs = {key: tensor.flatten().tolist() for key, tensor in held_out.items()}
    with DemoServer(bundle, port=0) as server:
        page = Page(browser, server.url)
        try:
            assert page.ready
            result = page.page.evaluate("inputs => edgeDemo.inpaintTensors(inputs)", {**inputs, "provider": provider})
            events = {kind: page.events(kind) for kind in ("step", "session")}
        finally:
            page.close()
    assert result["provider"] == provider
    difference = np.abs(np.asarray(result["image01"]) - reference.image01.flatten().numpy()).max()
    assert difference <= manifest_json(bundle)["end_to_end_tolerance"]["max_abs_image01"]
    assert difference <= 10 * MEASURED[mode, provider], difference  # a drift from what was measured is a finding
    # the latents stay where the provider computes them: on the GPU for WebGPU; three read-backs in all (two
    # encodings, the decoded image), never between steps
    assert result["latentLocation"] == ("gpu-buffer" if provider == "webgpu" else "cpu")
    assert result["readBacks"] == 3
    assert [e["step"] for e in events["step"]] == list(range(1, source.plan.schedule.steps + 1))
    assert {e["graph"]: e["provider"] for e in events["session"]} == dict.fromkeys(
        ("encoder", "unet", "decoder", "step"), provider)
    assert page.requests and all(request.startswith(server.url) for request in page.requests), page.requests


def test_painting_ui_gives_the_picture_edge_inpaint_gives(demo_page, web_fp32):
    """The page as a user drives it: photo and mask files in, `inpaint` clicked, the pasted result read from its
    canvas; against Python's whole `inpaint_image` path (Lanczos resizes, the loop, Pillow's blur and paste-back)
    with the page's own start noise."""
    page, _ = demo_page
    image_path, mask_path = (REPO / folder / f"{PAIR}.png" for folder in ("eval_data/images", "eval_data/masks"))
    page.page.set_input_files("#photo", str(image_path))
    page.page.set_input_files("#mask-file", str(mask_path))
    page.page.fill("#seed", "7")
    page.page.select_option("#provider", "wasm")  # auto would pick the software WebGPU adapter: the slow path here
    page.page.click("#run")
    page.page.wait_for_function("edgeEvents.some(e => e.kind === 'done' || e.kind === 'error')", timeout=120_000)
    assert not page.events("error"), page.events("error")
    assert page.events("done")[0]["readBacks"] == 3
    pixels = np.asarray(page.page.evaluate("""() => {
        const canvas = document.getElementById("result-canvas");
        return Array.from(canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data);
    }"""), dtype=np.int16).reshape(256, 256, 4)[..., :3]

    source = bundle_source(web_fp32, None, None)
    image, fill = prepare_pair(open_picture(image_path), open_picture(mask_path))
    image_t, mask_t = model_inputs(image, fill, source.image_size)
    noise = torch.tensor(page.page.evaluate("edgeDemo.startNoise(7)")).reshape(1, 4, 16, 16)
    result = inpaint_tensors(source.graphs, source.plan, image_t, mask_t, noise).image01
    python = np.asarray(paste_back(to_image(result).resize(image.size, Image.Resampling.LANCZOS), image, fill), np.int16)
    kept = paste_weight(fill) == 0
    assert np.array_equal(pixels[kept], np.asarray(image)[kept])
    # the same picture up to the loop's float rounding (WASM and torch differ by ~1e-5 before 8-bit rounding)
    difference = np.abs(pixels - python)
    assert difference.max() <= 2 and (difference > 0).mean() < 0.01, (difference.max(), (difference > 0).mean())
    hole = np.asarray(fill) > 0
    assert np.abs(pixels[hole] - np.asarray(image, np.int16)[hole]).mean() > 10  # the hole was filled, not copied


def test_a_model_file_changed_on_the_server_is_a_hash_error_on_the_page(browser, web_fp32, tmp_path, held_out):
    bundle = tmp_path / "bundle"
    shutil.copytree(web_fp32, bundle)
    with DemoServer(bundle, port=0) as server:  # the server checks the bundle as it starts; the file changes later
        unet = bundle / manifest_json(bundle)["graphs"]["unet"]["file"]
        data = bytearray(unet.read_bytes())
        data[len(data) // 2] ^= 0xFF
        unet.write_bytes(bytes(data))
        page = Page(browser, server.url)
        try:
            inputs = {key: tensor.flatten().tolist() for key, tensor in held_out.items()}
            with pytest.raises(Exception, match="unet.onnx: sha256 .* does not match the manifest's"):
                page.page.evaluate("inputs => edgeDemo.inpaintTensors(inputs)", {**inputs, "provider": "wasm"})
            assert not page.events("step")
            downloads = [e["loaded"] for e in page.events("download") if e["file"] == "unet.onnx"]
            assert downloads == sorted(downloads) and downloads[-1] == len(data)  # progress in order, to the end
        finally:
            page.close()


def test_a_bundle_from_another_origin_is_refused(browser, web_fp32):
    with DemoServer(web_fp32, port=0) as server:
        page = Page(browser, f"{server.url}?bundle=https://example.com/bundle/")
        try:
            assert page.ready is False
            assert "bundles load from this page's origin only" in page.page.inner_text("#error")
            assert all(request.startswith(server.url) for request in page.requests), page.requests
        finally:
            page.close()


@pytest.mark.parametrize("damage, error", [
    (lambda m: m["graphs"]["unet"].__setitem__("file", "../unet.onnx"), '"../unet.onnx" is not a relative path inside'),
    (lambda m: m["sampling"]["scheduler"]["alphas_cumprod"].__setitem__(0, 1.5), "alphas in (0, 1]"),
    (lambda m: m.__setitem__("schema", 2), "schema 2, this page reads schema 1"),
], ids=["path_outside", "alpha_out_of_range", "schema"])
def test_the_page_checks_the_manifest_as_edge_does(browser, web_fp32, tmp_path, damage, error):
    """A manifest edited on the server after `edge serve` checked it (with a matching manifest.sha256)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(web_fp32, bundle)
    with DemoServer(bundle, port=0) as server:
        rewrite_manifest(bundle, damage)
        page = Page(browser, server.url)
        try:
            assert page.ready is False
            assert error in page.page.inner_text("#error")
            assert not page.events("download")
        finally:
            page.close()


def test_a_full_cache_storage_costs_a_warning_not_the_run(browser, web_fp32, held_out):
    """A browser that refuses to store a model file (its quota full: a 900 MB fp32 UNet in a small profile did) still
    inpaints; each file not kept is one warning event."""
    with DemoServer(web_fp32, port=0) as server:
        page = Page(browser, server.url, "Cache.prototype.put = () => Promise.reject(new Error('quota exceeded'))")
        try:
            inputs = {key: tensor.flatten().tolist() for key, tensor in held_out.items()}
            result = page.page.evaluate("inputs => edgeDemo.inpaintTensors(inputs)", {**inputs, "provider": "wasm"})
            warnings = page.events("warning")
            shown = page.page.inner_text("#warnings")
        finally:
            page.close()
    assert result["readBacks"] == 3
    files = ["encoder.onnx", "unet.onnx", "decoder.onnx", "step.onnx", "time_features.f32"]
    assert sorted(w["file"] for w in warnings) == sorted(files)
    assert all("not kept in Cache Storage (quota exceeded)" in w["message"] for w in warnings)
    assert shown.count("warning: ") == len(files) and "unet.onnx: not kept in Cache Storage" in shown
