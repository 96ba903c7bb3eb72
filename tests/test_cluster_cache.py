"""The worker's object cache: what it keeps, what it sends back, and its size bound."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from workbench.adapters.cluster_cache import ObjectCache, cache_limit_bytes, folder_manifest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_object_whose_bytes_do_not_match_its_name_is_refused(tmp_path):
    cache = ObjectCache(tmp_path / "objects")
    with pytest.raises(ValueError, match="arrived with other bytes than its hash"):
        cache.put(_sha(b"model"), b"tampered")
    assert cache.missing({_sha(b"model")}) == {_sha(b"model")}


def test_a_stages_outputs_are_only_its_regular_files(tmp_path):
    """A stage that leaves a link to a file of the worker machine, or a FIFO, in its output
    folder gets neither sent back: only regular files it wrote travel."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "model.txt").write_text("trees")
    (out / "sub" / "metrics.json").write_text("{}")
    (out / "passwd").symlink_to("/etc/passwd")
    (out / "up").symlink_to(tmp_path)
    os.mkfifo(out / "pipe")
    assert folder_manifest(out) == {"model.txt": _sha(b"trees"), "sub/metrics.json": _sha(b"{}")}


def test_trim_removes_the_objects_used_longest_ago_and_keeps_what_stages_hold(tmp_path):
    cache = ObjectCache(tmp_path / "objects")
    blobs = {name: name.encode() * 1000 for name in ("old", "mid", "new")}
    for age, (name, data) in zip((300, 200, 100), blobs.items()):
        cache.put(_sha(data), data)
        os.utime(cache.path(_sha(data)), (0, os.path.getmtime(cache.path(_sha(data))) - age))
    # A stage uses "old" now: building its folder marks it used, so "mid" goes first.
    cache.materialize({"data.bin": _sha(blobs["old"])}, tmp_path / "stage")
    removed, freed = cache.trim(limit_bytes=2 * 3000)
    assert (removed, freed) == (1, 3000)
    assert cache.missing(set(map(_sha, blobs.values()))) == {_sha(blobs["mid"])}
    cache.trim(limit_bytes=0)
    assert cache.missing(set(map(_sha, blobs.values()))) == set(map(_sha, blobs.values()))
    assert (tmp_path / "stage" / "data.bin").read_bytes() == blobs["old"]  # the stage's hard link survives


def test_the_cache_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("WORKBENCH_WORKER_CACHE_MB", "1.5")
    assert cache_limit_bytes() == int(1.5 * 1024 * 1024)
    monkeypatch.delenv("WORKBENCH_WORKER_CACHE_MB")
    assert cache_limit_bytes() == 10240 * 1024 * 1024
    for bad in ("ten", "-5", "nan"):
        monkeypatch.setenv("WORKBENCH_WORKER_CACHE_MB", bad)
        with pytest.raises(ValueError, match=r"\$WORKBENCH_WORKER_CACHE_MB = .* expected a size in MB"):
            cache_limit_bytes()
