"""`posebench weights ...` end to end against a local HTTP server."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from posebench import weights
from posebench.cli import app

runner = CliRunner()
DATA = b"posebench-weights-test" * 5000


@pytest.fixture
def served(file_server):
    file_server.files["served.bin"] = DATA
    spec = weights.WeightFile(name="cli-test-file", filename="served.bin", url=file_server.url("served.bin"),
                              sha256=hashlib.sha256(DATA).hexdigest(), licence="test",
                              description="cli test", size=len(DATA), used_by=("tests",))
    weights.register(spec)
    yield spec
    weights.REGISTRY.unregister(spec.name)


def test_list_json_contains_builtin_and_status(served):
    res = runner.invoke(app, ["weights", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["files"]}
    assert rows["cli-test-file"]["status"] == "missing"
    assert "inception-fid-clean" in rows and "sd-vae-ft-mse" in rows


def test_download_verify_path(served):
    res = runner.invoke(app, ["weights", "download", "cli-test-file"])
    assert res.exit_code == 0, res.output
    path = weights.cache_path(served)
    assert path.read_bytes() == DATA
    res = runner.invoke(app, ["weights", "verify", "cli-test-file"])
    assert res.exit_code == 0 and "ok" in res.stdout
    res = runner.invoke(app, ["weights", "path", "cli-test-file"])
    assert res.exit_code == 0 and res.stdout.strip() == str(path)
    res = runner.invoke(app, ["weights", "list"])
    assert "verified" in res.stdout


def test_verify_corrupt_file_exit_2(served):
    assert runner.invoke(app, ["weights", "download", "cli-test-file"]).exit_code == 0
    weights.cache_path(served).write_bytes(b"bad")
    res = runner.invoke(app, ["weights", "verify"])
    assert res.exit_code == 2
    assert "deleted" in res.output and not weights.cache_path(served).exists()


def test_download_checksum_failure_exit_2(file_server):
    file_server.files["bad.bin"] = DATA
    spec = weights.WeightFile(name="cli-bad", filename="bad.bin", url=file_server.url("bad.bin"),
                              sha256="1" * 64, licence="test", description="bad", used_by=("tests",))
    weights.register(spec)
    try:
        res = runner.invoke(app, ["weights", "download", "cli-bad"])
    finally:
        weights.REGISTRY.unregister("cli-bad")
    assert res.exit_code == 2
    assert "deleted" in res.output and not weights.cache_path(spec).exists()


def test_offline_download_exit_2(served, monkeypatch):
    monkeypatch.setenv("POSEBENCH_OFFLINE", "1")
    res = runner.invoke(app, ["weights", "download", "cli-test-file"])
    assert res.exit_code == 2
    assert "posebench weights add cli-test-file" in res.output


def test_add_by_hand(served, tmp_path):
    f = tmp_path / "served.bin"
    f.write_bytes(DATA)
    res = runner.invoke(app, ["weights", "add", "cli-test-file", str(f)])
    assert res.exit_code == 0, res.output
    assert weights.status(served) is weights.Status.VERIFIED


def test_download_needs_a_name():
    res = runner.invoke(app, ["weights", "download"])
    assert res.exit_code == 2


def test_compare_same_names_other_shapes_is_a_difference(tmp_path):
    """Tensors with the same name and another shape differ (exit 1), not 'share no tensor names' (exit 2)."""
    import torch
    from typer.testing import CliRunner

    from posebench.cli import app

    torch.save({"foo": torch.zeros(3)}, tmp_path / "a.pt")
    torch.save({"foo": torch.zeros(4)}, tmp_path / "b.pt")
    res = CliRunner().invoke(app, ["weights", "compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
    assert res.exit_code == 1, res.output
    assert "shape differs" in res.output and "1 of 1 shared tensors differ" in res.output
