"""Leaderboards: schema validation, the seeded RePoseDM tables, and the `posebench leaderboard` commands."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.metrics.registry import higher_is_better
from posebench.protocols import get_profile
from posebench.results.leaderboard import (
    BoardError,
    add_measured,
    check_board,
    default_board_dir,
    load_board,
    load_boards,
    render_markdown,
)
from posebench.results.schema import json_safe, write_results

runner = CliRunner()
BOARDS = default_board_dir()
WIDE = {"COLUMNS": "240"}  # rich tables without wrapping
CLEAN_VERSION = get_profile("clean").version


def _results(protocol: str = "deepfashion-256x176", canonical: bool = True, **values: Any) -> dict[str, Any]:
    """A minimal results dict that `write_results` / `read_results` accept."""
    values = values or {"fid": 6.1, "ssim": 0.73, "lpips": 0.17}
    return {
        "schema_version": 1, "posebench": "0.0.0-test", "created": "2025-01-01T00:00:00+00:00",
        "canonical": canonical, "non_canonical_reasons": [] if canonical else ["real set capped at 100 images"],
        "protocol": {"name": protocol, "version": 1, "sha256": "b" * 64},
        "profile": {"name": "clean", "version": CLEAN_VERSION, "sha256": "p" * 64},
        "dataset": {"name": "deepfashion", "split": "test", "pairs": 8570, "pairs_sha256": "a" * 64},
        "predictions": {"dir": "samples", "count": 8570, "images_sha256": "c" * 64},
        "flags": [],
        "metrics": {k: {"value": v, "stderr": None, "higher_is_better": higher_is_better(k), "n": 8570, "details": {}}
                    for k, v in values.items()},
        "warnings": [], "env": {},
    }


# ----------------------------------------------------------------------------------------------------------------
# Schema validation


def _toy() -> dict[str, Any]:
    reported = {"kind": "reported", "method": "A", "source": {"paper": "P", "where": "Table 1"},
                "values": {"fid": 6.0, "ssim": 0.7}, "confidence": "as-printed"}
    return {"schema_version": 1, "board": "toy", "title": "Toy", "metrics": {"fid": "lower", "ssim": "higher"},
            "entries": [reported, {**copy.deepcopy(reported), "method": "B"}]}


def _mutate_measured_without_profile_hash(entry: dict[str, Any]) -> None:
    entry.clear()
    entry.update({"kind": "measured", "method": "B", "values": {"fid": 6.0},
                  "results": {"protocol": {"name": "toy", "version": 1}, "profile": {"name": "clean", "version": 1},
                              "pairs_sha256": "a", "images_sha256": "c", "canonical": True}})


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: e["values"].update({"fdi": 5.0}), "unknown metric 'fdi'"),
    (lambda e: e["values"].update({"fid": "6.3"}), "value of 'fid' must be a number"),
    (lambda e: e.pop("source"), "missing provenance field 'source'"),
    (lambda e: e["source"].pop("where"), "missing provenance field 'source.where'"),
    (lambda e: e.update({"kind": "guessed"}), "unknown kind 'guessed'"),
    (lambda e: e.update({"confidence": "sure"}), "unknown confidence 'sure'"),
    (lambda e: e.update({"method": "A"}), "duplicate of entries[0]"),
    (_mutate_measured_without_profile_hash, "missing provenance field 'results.profile.sha256'"),
    (lambda e: e.update({"confidance": "verified"}), "unknown keys ['confidance']"),
])
def test_validation_names_file_and_entry(tmp_path, mutate, expected):
    data = _toy()
    path = tmp_path / "toy.yaml"
    assert check_board(data, path) == []
    mutate(data["entries"][1])
    problems = check_board(data, path)
    assert len(problems) == 1, problems
    assert str(path) in problems[0] and "entries[1]" in problems[0] and expected in problems[0], problems[0]


def test_load_board_lists_every_problem_and_cli_exits_2(tmp_path):
    data = _toy()
    data["entries"][0]["values"]["fdi"] = 1.0
    data["entries"][1]["kind"] = "guessed"
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BoardError, match=r"(?s)entries\[0\].*unknown metric 'fdi'.*entries\[1\].*unknown kind"):
        load_board(path)
    res = runner.invoke(app, ["leaderboard", "validate", str(path)])
    assert res.exit_code == 2
    assert "entries[0]" in res.output and "entries[1]" in res.output and "2 problem(s)" in res.output


def test_duplicate_yaml_keys_are_errors(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(_toy(), default_flow_style=None).replace("{fid: 6.0,", "{fid: 6.0, fid: 7.0,", 1))
    assert "fid: 7.0" in path.read_text()
    with pytest.raises(BoardError, match="duplicate key 'fid'"):
        load_board(path)


# ----------------------------------------------------------------------------------------------------------------
# The seeded tables: RePoseDM (arXiv 2310.16074), numbers typed here independently of the YAML files

SEEDED: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "deepfashion-256x176": ("Table 1", ("fid", "ssim", "lpips"), {
        "Def-GAN": "18.457 / 0.6786 / 0.2330", "PATN": "20.751 / 0.6709 / 0.2562",
        "ADGAN": "14.458 / 0.6721 / 0.2283", "PISE": "13.610 / 0.6629 / 0.2059",
        "GFLA": "10.573 / 0.7074 / 0.2341", "DPTN": "11.387 / 0.7112 / 0.1931",
        "CASD": "11.373 / 0.7248 / 0.1936", "NTED": "8.6838 / 0.7182 / 0.1752",
        "PIDM": "6.3671 / 0.7312 / 0.1678", "RePoseDM": "5.1986 / 0.7923 / 0.1463"}),
    "deepfashion-512x352": ("Table 1", ("fid", "ssim", "lpips"), {
        "CocosNet2": "13.325 / 0.7236 / 0.2265", "NTED": "7.7821 / 0.7376 / 0.1980",
        "PIDM": "5.8365 / 0.7419 / 0.1768", "RePoseDM": "4.7284 / 0.7944 / 0.1566"}),
    "market-128x64": ("Table 1", ("fid", "ssim", "lpips"), {
        "Def-GAN": "25.364 / 0.2683 / 0.2994", "PTN": "22.657 / 0.2821 / 0.3196",
        "GFLA": "19.751 / 0.2883 / 0.2817", "DPTN": "18.995 / 0.2854 / 0.2711",
        "PIDM": "14.451 / 0.3054 / 0.2415", "RePoseDM": "13.689 / 0.3284 / 0.2206"}),
    "ablation-deepfashion": ("Table 2", ("fid", "ssim", "lpips"), {
        "B1": "7.5274 / 0.7189 / 0.1912", "B2": "6.9113 / 0.7055 / 0.1634",
        "RePoseDM": "5.1986 / 0.7923 / 0.1463"}),
    "humanart-val": ("Table 3", ("fid", "ap", "ap_m", "cap", "pce"), {
        "HumanSD": "26.28 / 31.85 / 24.95 / 59.11 / 1.61", "RePoseSD": "24.83 / 33.79 / 26.85 / 61.25 / 1.56"}),
    "market-reid": ("", ("map_20", "map_40", "map_60", "map_80"), {
        "PTN": "54.9 / 56.7 / 66.5 / 71.9", "GFLA": "58.1 / 60.1 / 68.2 / 73.4", "DPTN": "58.1 / 62.6 / 69.0 / 74.2",
        "PIDM": "61.5 / 64.9 / 71.8 / 75.7", "RePoseDM": "63.6 / 65.5 / 72.4 / 76.1"}),
    "human-study": ("", ("g2r", "jab", "r2g"), {"RePoseDM": "62 / 82 / –"}),
}
DIRECTIONS = {"fid": "lower", "ssim": "higher", "lpips": "lower", "ap": "higher", "ap_m": "higher",
              "cap": "higher", "pce": "lower", "g2r": "higher", "jab": "higher", "r2g": "higher",
              **{f"map_{p}": "higher" for p in (20, 40, 60, 80)}}
OWN_ROWS = {"RePoseDM", "RePoseSD", "B1", "B2"}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_tables_match_the_paper_exactly(name):
    table, metrics, rows = SEEDED[name]
    board = load_board(BOARDS / f"{name}.yaml")
    assert tuple(board.metrics) == metrics
    assert all(board.metrics[m] == DIRECTIONS[m] for m in metrics)
    seeded = [e for e in board.entries if e.source.get("paper") == "RePoseDM (arXiv 2310.16074)"]
    assert sorted(e.method for e in seeded) == sorted(rows)
    for e in seeded:
        printed = rows[e.method].split(" / ")
        assert [e.display(m) for m in metrics] == printed, e.method  # the text, as printed
        assert [e.values.get(m) for m in metrics] == [None if p == "–" else float(p) for p in printed], \
            e.method  # and the number ("–": not printed)
        assert e.kind == "reported"
        assert e.confidence == ("as-printed" if e.method in OWN_ROWS else "as-reprinted"), e.method
        if table:
            assert e.source["where"] == table


def test_shipped_boards_validate_and_readme_is_current():
    res = runner.invoke(app, ["leaderboard", "validate"])
    assert res.exit_code == 0, res.output
    assert "7 board(s) valid" in res.output
    res = runner.invoke(app, ["leaderboard", "render", "--check"])
    assert res.exit_code == 0, res.output  # posebench/leaderboards/README.md was regenerated after the last board edit
    res = runner.invoke(app, ["leaderboard", "list"], env=WIDE)
    assert res.exit_code == 0 and re.search(r"deepfashion-256x176 .*\b12\b.*\b0\b", res.output), res.output


# ----------------------------------------------------------------------------------------------------------------
# show / render


def _order(output: str, methods: list[str]) -> list[str]:
    return sorted(methods, key=lambda m: re.search(rf"│\s*{re.escape(m)}\s*│", output).start())


def test_show_sorts_by_direction():
    board = load_board(BOARDS / "deepfashion-256x176.yaml")
    methods = [e.method for e in board.entries]
    res = runner.invoke(app, ["leaderboard", "show", "deepfashion-256x176", "--sort", "fid"], env=WIDE)
    assert res.exit_code == 0, res.output
    by_fid = sorted(board.entries, key=lambda e: e.values["fid"])
    assert _order(res.output, methods) == [e.method for e in by_fid]
    assert "fid ↓" in res.output and "ssim ↑" in res.output and "reported: as-reprinted" in res.output
    res = runner.invoke(app, ["leaderboard", "show", "deepfashion-256x176", "--sort", "ssim"], env=WIDE)
    assert _order(res.output, methods)[:2] == ["RePoseDM", "PCDMs"]  # highest SSIM first
    res = runner.invoke(app, ["leaderboard", "show", "deepfashion-256x176", "--sort", "psnr"])
    assert res.exit_code == 2 and "no metric 'psnr'" in res.output
    res = runner.invoke(app, ["leaderboard", "show", "deepfashion-265x176"])
    assert res.exit_code == 2 and "Did you mean: deepfashion-256x176" in res.output


def test_render_writes_markdown_with_every_method_and_self_contained_html(tmp_path):
    md, page = tmp_path / "README.md", tmp_path / "index.html"
    res = runner.invoke(app, ["leaderboard", "render", "--out", str(md), "--html", str(page)])
    assert res.exit_code == 0, res.output
    text, html = md.read_text(), page.read_text()
    assert text.startswith("<!-- generated by") and "do not edit by hand" in text
    assert "do not edit by hand" in html and html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "<link" not in html and "stylesheet" not in html
    for board in load_boards(BOARDS):
        assert f"## {board.title}" in text
        for e in board.entries:
            assert e.method in text and e.method in html
    assert "| 0.2330 |" in text  # printed digits kept
    assert runner.invoke(app, ["leaderboard", "render", "--out", str(md), "--check"]).exit_code == 0
    md.write_text(text + "edited by hand\n")
    assert runner.invoke(app, ["leaderboard", "render", "--out", str(md), "--check"]).exit_code == 1


# ----------------------------------------------------------------------------------------------------------------
# add


@pytest.fixture
def board_dir(tmp_path) -> Path:
    d = tmp_path / "boards"
    d.mkdir()
    for name in ("deepfashion-256x176", "market-reid"):
        shutil.copy(BOARDS / f"{name}.yaml", d)
    return d


def test_add_appends_a_measured_entry_with_provenance(board_dir, tmp_path):
    rfile = tmp_path / "runs" / "results.json"
    write_results(rfile, _results(fid=6.01234567, ssim=0.7345, lpips=0.1712, psnr=17.5))
    before = (board_dir / "deepfashion-256x176.yaml").read_text()
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(rfile), "--method", "Mine",
                              "--dir", str(board_dir)])
    assert res.exit_code == 0, res.output
    after = (board_dir / "deepfashion-256x176.yaml").read_text()
    assert after.startswith(before)  # appended: comments and layout of the hand-written part untouched
    board = load_board(board_dir / "deepfashion-256x176.yaml")
    e = board.entries[-1]
    assert (e.kind, e.method, e.index) == ("measured", "Mine", 12)
    assert e.values == {"fid": 6.01234567, "ssim": 0.7345, "lpips": 0.1712}  # psnr is not a board metric
    assert e.results["profile"] == {"name": "clean", "version": CLEAN_VERSION, "sha256": "p" * 64}
    assert e.results["pairs_sha256"] == "a" * 64 and e.results["images_sha256"] == "c" * 64
    assert e.results["file"] == "../runs/results.json" and len(e.results["file_sha256"]) == 64
    assert e.how == f"measured: clean@{CLEAN_VERSION}" and e.display("fid") == "6.0123"
    res = runner.invoke(app, ["leaderboard", "show", "deepfashion-256x176", "--dir", str(board_dir)], env=WIDE)
    assert f"measured: clean@{CLEAN_VERSION}" in res.output and "†" not in res.output
    assert runner.invoke(app, ["leaderboard", "validate", "--dir", str(board_dir)]).exit_code == 0
    # the same method and profile again: refused, file unchanged
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(rfile), "--method", "Mine",
                              "--dir", str(board_dir)])
    assert res.exit_code == 2 and "duplicate" in res.output
    assert (board_dir / "deepfashion-256x176.yaml").read_text() == after


def test_add_refuses_another_protocol_and_boards_without_one(board_dir, tmp_path):
    rfile = tmp_path / "market.json"
    write_results(rfile, _results(protocol="market-128x64"))
    before = (board_dir / "deepfashion-256x176.yaml").read_text()
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(rfile), "--method", "X",
                              "--dir", str(board_dir)])
    assert res.exit_code == 2 and "'market-128x64'" in res.output and "takes 'deepfashion-256x176'" in res.output
    assert (board_dir / "deepfashion-256x176.yaml").read_text() == before
    with pytest.raises(BoardError, match="takes no measured entries"):
        add_measured(board_dir / "market-reid.yaml", _results(protocol="market-reid"), "X")


def test_add_refuses_results_of_a_superseded_profile_version(board_dir, tmp_path):
    """pidm@1 (like legacy-gfla@1 and cfld@1) reported the mean of two SSIM variants as `ssim`: such results
    never reach a board; the error quotes what changed."""
    rfile = tmp_path / "old.json"
    old = _results()
    old["profile"] = {"name": "pidm", "version": 1, "sha256": "p" * 64}
    write_results(rfile, old)
    before = (board_dir / "deepfashion-256x176.yaml").read_text()
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(rfile), "--method", "X",
                              "--dir", str(board_dir)])
    assert res.exit_code == 2 and "pidm@1, superseded by pidm@2" in res.output and "ssim_win51" in res.output
    assert (board_dir / "deepfashion-256x176.yaml").read_text() == before


def test_add_non_canonical_and_invalid_values(board_dir, tmp_path):
    """Non-canonical results become a marked row; NaN, null, infinite FID, out-of-range values and a negative n
    are refused (exit 2, the board unchanged), naming the file and the key."""
    rfile = tmp_path / "r.json"
    write_results(rfile, _results(canonical=False, fid=6.0, ssim=0.5, lpips=0.2))
    entry = add_measured(board_dir / "deepfashion-256x176.yaml", rfile, "Marked")
    assert entry.how.endswith("†")
    board = load_board(board_dir / "deepfashion-256x176.yaml")
    text = render_markdown([board])
    assert f"measured: clean@{CLEAN_VERSION}†" in text and "non-canonical: real set capped at 100 images" in text
    before = (board_dir / "deepfashion-256x176.yaml").read_text()
    bad = {"nan lpips": ({"lpips": math.nan}, "no value for lpips"),
           "inf fid": ({"fid": math.inf}, "metrics.fid.value: inf is not a value fid can have"),
           "ssim 7": ({"ssim": 7.0}, "metrics.ssim.value: 7.0 is outside what ssim can be"),
           "null": ({"ssim": None}, "metrics.ssim.value: None is not a number")}
    for label, (values, message) in bad.items():
        data = _results(**{"fid": 6.0, "ssim": 0.5, "lpips": 0.2, **values})
        (tmp_path / "bad.json").write_text(json.dumps(json_safe(data)))
        res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(tmp_path / "bad.json"), "--method",
                                  "Bad", "--dir", str(board_dir)])
        assert res.exit_code == 2 and message in res.output, (label, res.output)
    data = _results()
    data["metrics"]["ssim"]["n"] = -5
    (tmp_path / "bad.json").write_text(json.dumps(data))
    res = runner.invoke(app, ["leaderboard", "add", "deepfashion-256x176", str(tmp_path / "bad.json"), "--method",
                              "Bad", "--dir", str(board_dir)])
    assert res.exit_code == 2 and f"{tmp_path / 'bad.json'}: metrics.ssim.n" in res.output
    assert (board_dir / "deepfashion-256x176.yaml").read_text() == before


def test_validate_refuses_a_folder_without_boards(tmp_path):
    res = runner.invoke(app, ["leaderboard", "validate", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "no board files" in res.output and str(tmp_path) in res.output


def test_render_checks_both_outputs_before_writing(tmp_path):
    (tmp_path / "page").mkdir()
    out = tmp_path / "boards.md"
    res = runner.invoke(app, ["leaderboard", "render", "--out", str(out), "--html", str(tmp_path / "page")])
    assert res.exit_code == 2 and "--html" in res.output and "is a folder" in res.output
    assert not out.exists()  # the Markdown was not written either
