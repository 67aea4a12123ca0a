"""The cache never stops a command: a damaged entry is computed again and an unwritable cache skipped, each with
one warning."""

from __future__ import annotations

import logging

import pytest
import torch

from edge.cache import read_cached_bytes, write_cached_bytes
from edge.compile.calibration import cached_recordings

KEY = {"test": "cache"}


def recordings():
    return {"encoder": [(torch.ones(1, 3, 8, 8),)], "unet": [(torch.zeros(2, 9, 2, 2), torch.ones(1, 4))],
            "decoder": [(torch.full((1, 4, 2, 2), 0.5),)]}


class Collected(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warned():
    """The messages edge's logger warns with during the test (pytest's logging plugin is off in this project)."""
    collected = Collected()
    logging.getLogger("edge").addHandler(collected)
    yield collected.messages
    logging.getLogger("edge").removeHandler(collected)


def test_truncated_calibration_entry_is_recorded_again(tmp_path, monkeypatch, warned):
    monkeypatch.setenv("EDGE_CACHE", str(tmp_path))
    assert cached_recordings(KEY, recordings)[1] is False
    (entry,) = (tmp_path / "calibration").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:40])
    again, from_cache = cached_recordings(KEY, recordings)
    assert from_cache is False and torch.equal(again["unet"][0][1], torch.ones(1, 4))
    assert warned == [f"{entry}: damaged cache entry; computing it again"]
    assert cached_recordings(KEY, recordings)[1] is True  # rewritten whole


def test_unwritable_cache_is_skipped_with_a_warning(tmp_path, monkeypatch, warned):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("EDGE_CACHE", str(tmp_path / "a-file" / "cache"))  # no folder can be made there, even by root
    result, from_cache = cached_recordings(KEY, recordings)
    assert from_cache is False and torch.equal(result["decoder"][0][0], torch.full((1, 4, 2, 2), 0.5))
    assert len(warned) == 1 and warned[0].startswith(f"{tmp_path / 'a-file' / 'cache' / 'calibration'}: cache not written (")


def test_conversion_entry_that_fails_its_digest_is_not_used(tmp_path, warned):
    entry = tmp_path / "unet.tflite"
    write_cached_bytes(entry, b"flatbuffer bytes")
    assert read_cached_bytes(entry) == b"flatbuffer bytes"
    entry.write_bytes(b"flatbuffer")  # truncated by a crash or a full disk
    assert read_cached_bytes(entry) is None
    assert warned[0] == f"{entry}: damaged cache entry; computing it again"
    assert read_cached_bytes(tmp_path / "absent.tflite") is None
