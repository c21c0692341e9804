"""The weights registry: downloads from a real local HTTP server, checksums, resume, offline errors."""

from __future__ import annotations

import hashlib
import logging
import re

import pytest
import torch

from posebench import weights
from posebench.errors import ChecksumError, OfflineError, WeightsError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several read chunks


def _spec(server, name="tiny-test-file", data=PAYLOAD, sha=None, filename="tiny-test.bin"):
    server.files[filename] = data
    return weights.WeightFile(
        name=name,
        filename=filename,
        url=server.url(filename),
        sha256=sha or hashlib.sha256(data).hexdigest(),
        licence="test",
        description="made by the test",
        size=len(data),
    )


def test_download_verifies_and_caches(file_server):
    spec = _spec(file_server)
    path = weights.download(spec, progress=False)
    assert path == weights.cache_path(spec)
    assert path.read_bytes() == PAYLOAD
    assert weights.status(spec) is weights.Status.VERIFIED
    assert not any(weights.downloads_dir().glob("*")), "partial file left behind"
    # a second call uses the cache: no new request
    n = len(file_server.requests)
    assert weights.ensure(spec) == path
    assert len(file_server.requests) == n


def test_checksum_mismatch_deletes_and_explains(file_server):
    spec = _spec(file_server, sha="0" * 64)
    with pytest.raises(ChecksumError, match="deleted") as info:
        weights.download(spec, progress=False)
    assert "0" * 64 in str(info.value) and hashlib.sha256(PAYLOAD).hexdigest() in str(info.value)
    assert not weights.cache_path(spec).exists()
    assert not any(weights.downloads_dir().glob("*"))


def test_prefix_hash_is_checked_like_torch_hub(file_server):
    good = _spec(file_server, sha=hashlib.sha256(PAYLOAD).hexdigest()[:8])
    assert weights.download(good, progress=False).is_file()
    bad = _spec(file_server, name="bad", filename="bad.bin", sha="deadbeef")
    with pytest.raises(ChecksumError):
        weights.download(bad, progress=False)


def test_interrupted_download_leaves_cache_clean_then_resumes(file_server):
    spec = _spec(file_server)
    file_server.truncate_at = 300_000
    with pytest.raises(WeightsError, match="interrupted after 300000 bytes"):
        weights.download(spec, progress=False)
    assert not weights.cache_path(spec).exists(), "a partial file reached the cache"
    assert weights.status(spec) is weights.Status.MISSING

    file_server.truncate_at = None
    path = weights.download(spec, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.requests[-1]["range"] == "bytes=300000-"  # resumed, not restarted


def test_server_without_range_support_restarts_cleanly(file_server):
    spec = _spec(file_server)
    file_server.truncate_at = 100_000
    with pytest.raises(WeightsError):
        weights.download(spec, progress=False)
    file_server.truncate_at = None
    file_server.support_range = False
    assert weights.download(spec, progress=False).read_bytes() == PAYLOAD


def test_offline_error_names_file_url_path_and_command(file_server, monkeypatch):
    spec = _spec(file_server)
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        weights.ensure(spec)
    text = str(info.value)
    assert spec.filename in text and spec.url in text and str(weights.cache_path(spec)) in text
    assert f"posebench weights add {spec.name}" in text and "POSEBENCH_OFFLINE=1" in text
    assert file_server.requests == [], "offline mode must not touch the network"


def test_unreachable_server_is_an_offline_error(file_server):
    spec = _spec(file_server)
    spec = weights.WeightFile(**{**spec.__dict__, "url": "http://127.0.0.1:9/nothing-listens-here"})
    with pytest.raises(OfflineError, match="download failed"):
        weights.download(spec, progress=False, timeout=5)


def test_http_error_is_reported(file_server):
    spec = _spec(file_server)
    del file_server.files[spec.filename]
    with pytest.raises(WeightsError, match="HTTP 404"):
        weights.download(spec, progress=False)


def test_corrupted_cache_file_is_found_and_removed(file_server):
    spec = _spec(file_server)
    path = weights.download(spec, progress=False)
    path.write_bytes(b"tampered")
    assert weights.status(spec, check=True) is weights.Status.CORRUPT
    with pytest.raises(ChecksumError, match="deleted"):
        weights.ensure(spec, allow_download=False)
    assert not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"tampered again")
    assert weights.ensure(spec).read_bytes() == PAYLOAD  # allowed to download: replaced by a good copy
    path.write_bytes(b"and again")
    assert weights.download(spec, progress=False).read_bytes() == PAYLOAD


def test_add_local_file(tmp_path, file_server):
    spec = _spec(file_server)
    hand = tmp_path / "by-hand.bin"
    hand.write_bytes(PAYLOAD)
    assert weights.add_local_file(spec, hand).read_bytes() == PAYLOAD
    assert weights.status(spec) is weights.Status.VERIFIED
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"x")
    other = _spec(file_server, name="other", filename="other.bin")
    with pytest.raises(ChecksumError, match="not copied"):
        weights.add_local_file(other, wrong)
    assert not weights.cache_path(other).exists()


def test_missing_without_download_permission(file_server):
    spec = _spec(file_server)
    with pytest.raises(OfflineError, match="not allowed"):
        weights.ensure(spec, allow_download=False)


def test_user_supplied_file_is_accepted_with_warning(tmp_path, caplog):
    custom = tmp_path / "my-inception.pth"
    custom.write_bytes(b"my own weights")
    with caplog.at_level(logging.WARNING, logger="posebench.weights"):
        resolved = weights.resolve(custom, default="inception-fid-clean")
    assert resolved.registry_name is None
    assert resolved.sha256 == hashlib.sha256(b"my own weights").hexdigest()
    assert "not a registry file" in caplog.text
    with pytest.raises(WeightsError, match="does not exist"):
        weights.resolve(tmp_path / "nope.pth", default="inception-fid-clean")


def test_load_state_dict_refuses_pickled_objects(tmp_path):
    from safetensors.torch import save_file

    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(sd, tmp_path / "a.safetensors")
    torch.save(sd, tmp_path / "b.pth")
    torch.save({"state_dict": sd, "meta": {"epoch": 3}}, tmp_path / "c.pth")
    for name in ("a.safetensors", "b.pth", "c.pth"):
        assert torch.equal(weights.load_state_dict(tmp_path / name)["w"], sd["w"])

    torch.save({"w": sd["w"], "obj": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="would run code from the file, which posebench never does"):
        weights.load_state_dict(tmp_path / "evil.pth")


class _Evil:  # any non-allow-listed class is refused by weights_only loading
    pass


def test_builtin_catalog_is_well_formed():
    specs = weights.all_files()
    assert len(specs) >= 9
    assert len({s.filename for s in specs}) == len(specs)
    for spec in specs:
        assert spec.url.startswith("https://"), spec.name
        assert spec.licence and spec.description and spec.used_by, spec.name
        # torch-hub style names embed the sha256 prefix; the registry must agree with its own file name
        embedded = re.search(r"-([0-9a-f]{8,})(?:_\d{8})?\.(?:pth|pt)$", spec.filename)
        if embedded and spec.sha256 is not None:
            assert spec.sha256.startswith(embedded.group(1)) or embedded.group(1).startswith(spec.sha256), spec


def test_html_answer_is_refused_with_instructions(file_server):
    page = b"<!DOCTYPE html><html><body>Google Drive can't scan this file for viruses</body></html>"
    spec = _spec(file_server, data=page)
    spec = weights.WeightFile(**{**spec.__dict__, "sha256": None})
    with pytest.raises(WeightsError, match="web page") as info:
        weights.download(spec, progress=False)
    assert f"posebench weights add {spec.name}" in str(info.value)
    assert not weights.cache_path(spec).exists()


def test_unpinned_file_is_trusted_once_then_checked(file_server, caplog):
    spec = _spec(file_server)
    spec = weights.WeightFile(**{**spec.__dict__, "sha256": None})
    with caplog.at_level(logging.WARNING, logger="posebench.weights"):
        path = weights.download(spec, progress=False)
    assert "trust on first use" in caplog.text
    assert weights.status(spec) is weights.Status.VERIFIED
    path.write_bytes(b"changed later")
    assert weights.status(spec, check=True) is weights.Status.CORRUPT
    with pytest.raises(ChecksumError):
        weights.verify(spec)


def test_registry_names_cover_every_role():
    names = set(weights.REGISTRY.names())
    for role in ("inception-fid-clean", "inception-tv-imagenet", "alexnet-tv-imagenet", "vgg16-tv-imagenet",
                 "resnet50-tv-imagenet", "higherhrnet-w32-coco", "higherhrnet-w48-coco-udp",
                 "higherhrnet-w48-humanart-udp", "sd-vae-ft-mse"):
        assert role in names
