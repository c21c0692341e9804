"""Board export: `leaderboard list/show --json`, and `leaderboard export --format csv|latex` (values exact, best per
metric in bold by direction, LaTeX escaping, provenance markers, atomic --out, exit 2 on bad input)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from posebench.cli import app
from posebench.results.board_export import best_values, exact_text, latex_escape, to_csv, to_latex
from posebench.results.leaderboard import default_board_dir, load_board, load_boards

runner = CliRunner()
BOARDS = default_board_dir()
ODD = "A&B_ours 100%"  # a method name with LaTeX special characters
ODD_TEX = r"A\&B\_ours 100\%"

# Values typed as papers print them (trailing zeros kept) and a measured one at full precision. Best per metric:
# fid (lower) 5.0 PIDM, ssim (higher) 0.7923 RePoseDM, lpips (lower) 0.1463 RePoseDM; NaN never counts as best.
TOY = f"""\
schema_version: 1
board: toy
title: "Toy board: 50% of {{all}}"
protocol: toy
metrics: {{fid: lower, ssim: higher, lpips: lower}}
notes: ["a note"]
entries:
  - kind: reported
    method: "{ODD}"
    source: {{paper: "Paper A", where: "Table 1"}}
    values: {{fid: 18.450, ssim: 0.6786, lpips: 0.2330}}
    confidence: as-printed
  - kind: reported
    method: PIDM
    paper: {{title: "PIDM", year: 2023, arxiv: "2211.12500"}}
    source: {{paper: "Paper B", where: "Table 2"}}
    values: {{fid: 5.0, ssim: .nan, lpips: 0.1678}}
    confidence: as-reprinted
  - kind: reported
    method: RePoseDM
    source: {{paper: "Paper B", where: "Table 2"}}
    values: {{fid: 5.1986, ssim: 0.7923, lpips: 0.1463}}
    confidence: 3rd
  - kind: measured
    method: Mine
    values: {{fid: 6.01234567, ssim: 0.7345}}
    results:
      file: runs/r.json
      file_sha256: {"f" * 64}
      protocol: {{name: toy, version: 1}}
      profile: {{name: clean, version: 2, sha256: {"p" * 64}}}
      pairs_sha256: {"a" * 64}
      images_sha256: {"c" * 64}
      canonical: true
  - kind: measured
    method: Capped
    values: {{fid: 30.5, ssim: 0.5, lpips: 0.3}}
    results:
      file: runs/s.json
      protocol: {{name: toy, version: 1}}
      profile: {{name: clean, version: 2, sha256: {"p" * 64}}}
      pairs_sha256: {"a" * 64}
      images_sha256: {"d" * 64}
      canonical: false
      non_canonical_reasons: ["real set capped at 100 images"]
"""
BEST = {"fid": "PIDM", "ssim": "RePoseDM", "lpips": "RePoseDM"}


@pytest.fixture
def toy_dir(tmp_path) -> Path:
    d = tmp_path / "boards"
    d.mkdir()
    (d / "toy.yaml").write_text(TOY, encoding="utf-8")
    return d


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# ----------------------------------------------------------------------------------------------------------------
# CSV


def test_csv_reads_back_to_the_board_values_with_provenance(toy_dir):
    board = load_board(toy_dir / "toy.yaml")
    raw = {e["method"]: e for e in yaml.safe_load(TOY)["entries"]}
    rows = list(csv.DictReader(io.StringIO(to_csv(board))))
    assert list(rows[0]) == ["rank", "method", "fid", "ssim", "lpips", "kind", "confidence", "profile", "canonical",
                             "source"]
    assert [r["method"] for r in rows] == ["PIDM", "RePoseDM", "Mine", ODD, "Capped"]  # fid, lower first
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    for r in rows:
        values = raw[r["method"]]["values"]
        for m in ("fid", "ssim", "lpips"):
            if m in values:
                assert _same(float(r[m]), values[m]), (r["method"], m)
            else:
                assert r[m] == "", (r["method"], m)
    by_method = {r["method"]: r for r in rows}
    assert by_method[ODD]["lpips"] == "0.2330" and by_method[ODD]["fid"] == "18.450"  # as printed
    assert by_method["Mine"]["fid"] == "6.01234567"  # full precision (the board shows 6.0123)
    assert by_method["PIDM"]["ssim"] == "nan"
    assert [by_method[m]["kind"] for m in (ODD, "Mine")] == ["reported", "measured"]
    assert [by_method[m]["confidence"] for m in (ODD, "PIDM", "RePoseDM", "Mine")] == [
        "as-printed", "as-reprinted", "3rd", ""]
    assert by_method["PIDM"]["source"] == "Paper B, Table 2" and by_method["Mine"]["source"].startswith("runs/r.json")
    assert (by_method["Mine"]["profile"], by_method["Mine"]["canonical"]) == ("clean@2", "true")
    assert by_method["Capped"]["canonical"] == "false" and by_method[ODD]["canonical"] == ""


def test_csv_of_every_shipped_board_reads_back_exactly():
    for board in load_boards(BOARDS):
        rows = list(csv.DictReader(io.StringIO(to_csv(board))))
        assert len(rows) == len(board.entries)
        for r, e in zip(rows, board.ranked(), strict=True):
            assert r["method"] == e.method
            for m in board.metrics:
                assert r[m] == exact_text(e, m) and (m not in e.values or _same(float(r[m]), e.values[m]))
                if e.kind == "reported" and m in e.values:
                    assert r[m] == e.display(m)  # the digits the paper printed


def test_csv_sort_by_a_higher_is_better_metric(toy_dir):
    rows = list(csv.DictReader(io.StringIO(to_csv(load_board(toy_dir / "toy.yaml"), "ssim"))))
    assert [r["method"] for r in rows] == ["RePoseDM", "Mine", ODD, "Capped", "PIDM"]  # NaN last


# ----------------------------------------------------------------------------------------------------------------
# LaTeX


def test_latex_escape_every_special_character():
    assert latex_escape(ODD) == ODD_TEX
    assert latex_escape(r"a\b{c}~d^e$f#g") == r"a\textbackslash{}b\{c\}\textasciitilde{}d\textasciicircum{}e\$f\#g"
    assert latex_escape("x<y>z|w\nv") == r"x\textless{}y\textgreater{}z\textbar{}w v"


def _latex_rows(tex: str) -> dict[str, list[str]]:
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    rows = {}
    for line in body.strip().splitlines():
        cells = line.removesuffix(r" \\").split(" & ")
        rows[cells[0]] = cells[1:]
    return rows


def test_latex_booktabs_bold_best_by_direction_markers_and_escaping(toy_dir):
    board = load_board(toy_dir / "toy.yaml")
    tex = to_latex(board)
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrr}", r"\end{table}"):
        assert tex.count(rule) == 1, rule
    assert r"Method & fid $\downarrow$ & ssim $\uparrow$ & lpips $\downarrow$ \\" in tex
    assert r"\caption{Toy board: 50\% of \{all\}." in tex and r"\label{tab:toy}" in tex
    rows = _latex_rows(tex)
    # markers: as-printed none; as-reprinted and 3rd one each (in order of first use); non-canonical: dagger
    assert set(rows) == {"PIDM$^{*}$", r"RePoseDM$^{\ddagger}$", "Mine", ODD_TEX, r"Capped$^{\dagger}$"}
    assert rows[ODD_TEX] == ["18.450", "0.6786", "0.2330"]  # as printed
    assert rows["Mine"] == ["6.0123", "0.7345", "--"]  # as the board shows it; missing: --
    assert rows["PIDM$^{*}$"] == [r"\textbf{5.0}", "nan", "0.1678"]
    assert rows[r"RePoseDM$^{\ddagger}$"] == ["5.1986", r"\textbf{0.7923}", r"\textbf{0.1463}"]
    assert tex.count(r"\textbf{") == 3  # the highest fid (30.5) and lowest ssim are not bold
    legend = tex.split(r"\end{tabular}")[1]
    assert r"$^{*}$ reported, confidence \texttt{as-reprinted}: copied exactly from another paper" in legend
    assert r"$^{\ddagger}$ reported, confidence \texttt{3rd}" in legend
    assert r"$^{\dagger}$ measured with posebench, not canonical (Capped: real set capped at 100 images)" in legend
    assert "Mine (clean@2); Capped (clean@2)" in legend and "Paper A, Table 1; Paper B, Table 2" in legend


def test_bold_cells_of_a_shipped_board_follow_each_metric_direction():
    board = load_board(BOARDS / "deepfashion-256x176.yaml")
    assert best_values(board, list(board.entries))["fid"] == 5.1986  # RePoseDM, Table 1: the lowest FID
    rows = _latex_rows(to_latex(board))
    methods = {e.method: e for e in board.entries}
    for col, (m, pick) in enumerate([("fid", min), ("ssim", max), ("lpips", min)]):
        best = pick(e.values[m] for e in board.entries)
        worst = (max if pick is min else min)(e.values[m] for e in board.entries)
        for label, cells in rows.items():
            e = methods[label.split("$")[0]]
            assert cells[col] == (rf"\textbf{{{e.display(m)}}}" if e.values[m] == best else e.display(m)), label
            assert not (e.values[m] == worst and cells[col].startswith(r"\textbf")), label
    assert rows["Def-GAN$^{*}$"] == ["18.457", "0.6786", "0.2330"]


# ----------------------------------------------------------------------------------------------------------------
# JSON


def test_show_json_matches_the_board_file(toy_dir):
    res = runner.invoke(app, ["leaderboard", "show", "toy", "--dir", str(toy_dir), "--json", "--sort", "ssim"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)  # stdout holds the JSON and nothing else
    raw = yaml.safe_load(TOY)
    assert list(data) == ["board", "title", "protocol", "file", "metrics", "sorted_by", "notes", "entries"]
    assert (data["board"], data["title"], data["protocol"], data["sorted_by"]) == ("toy", raw["title"], "toy", "ssim")
    assert data["metrics"] == raw["metrics"] and list(data["metrics"]) == ["fid", "ssim", "lpips"]
    assert data["notes"] == ["a note"] and data["file"] == str(toy_dir / "toy.yaml")
    assert [e["method"] for e in data["entries"]] == ["RePoseDM", "Mine", ODD, "Capped", "PIDM"]
    assert [e["rank"] for e in data["entries"]] == [1, 2, 3, 4, 5]
    by_method = {e["method"]: e for e in data["entries"]}
    for i, want in enumerate(raw["entries"]):
        got = by_method[want["method"]]
        assert got["index"] == i and got["kind"] == want["kind"] and got["confidence"] == want.get("confidence")
        assert list(got["values"]) == [m for m in ("fid", "ssim", "lpips") if m in want["values"]]
        for m, v in want["values"].items():
            assert got["values"][m] == ("nan" if math.isnan(v) else v), (want["method"], m)
            assert type(got["values"][m]) is (str if math.isnan(v) else float)  # numbers as numbers
        assert got["source"] == want.get("source") and got["paper"] == want.get("paper")
        assert got["results"] == want.get("results")  # the whole provenance, hashes included
    assert by_method[ODD]["values_text"] == {"fid": "18.450", "ssim": "0.6786", "lpips": "0.2330"}
    assert by_method["Mine"]["results"]["file_sha256"] == "f" * 64 and by_method["Mine"]["canonical"] is True
    assert by_method["Capped"]["canonical"] is False and by_method[ODD]["canonical"] is None
    assert by_method["Mine"]["profile"] == "clean@2" and by_method["Mine"]["how"] == "measured: clean@2"
    assert by_method["Capped"]["how"] == "measured: clean@2†" and by_method["PIDM"]["where"] == "Paper B, Table 2"


def test_list_json_counts_every_board():
    res = runner.invoke(app, ["leaderboard", "list", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["dir"] == str(BOARDS)
    boards = load_boards(BOARDS)
    assert [b["board"] for b in data["boards"]] == [b.name for b in boards]
    for got, b in zip(data["boards"], boards, strict=True):
        assert list(got) == ["board", "title", "protocol", "file", "metrics", "reported", "measured"]
        assert got["metrics"] == b.metrics and got["protocol"] == b.protocol and got["title"] == b.title
        assert got["reported"] == sum(e.kind == "reported" for e in b.entries)
        assert got["measured"] == sum(e.kind == "measured" for e in b.entries)
    raw = yaml.safe_load((BOARDS / "deepfashion-256x176.yaml").read_text(encoding="utf-8"))["entries"]
    got = {b["board"]: b for b in data["boards"]}["deepfashion-256x176"]
    assert (got["reported"], got["measured"]) == (len(raw), 0)  # the shipped board holds reported rows only


# ----------------------------------------------------------------------------------------------------------------
# `leaderboard export`


@pytest.mark.parametrize("fmt", ["csv", "latex"])
def test_export_to_stdout_and_to_a_file(toy_dir, tmp_path, fmt):
    board = load_board(toy_dir / "toy.yaml")
    expected = to_csv(board, "lpips") if fmt == "csv" else to_latex(board, "lpips")
    res = runner.invoke(app, ["leaderboard", "export", "toy", "--dir", str(toy_dir), "--format", fmt,
                              "--sort", "lpips"])
    assert res.exit_code == 0, res.output
    assert res.stdout == expected
    out = tmp_path / "paper" / f"table.{fmt}"
    res = runner.invoke(app, ["leaderboard", "export", str(toy_dir / "toy.yaml"), "--format", fmt, "--out", str(out),
                              "--sort", "lpips"])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8") == expected and str(out) in res.stdout
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # written atomically: no temporary left


@pytest.mark.parametrize("args, message", [
    (["no-such-board", "--format", "csv"], "unknown board 'no-such-board'"),
    (["toy", "--format", "xls"], "unknown export format 'xls'; choose one of: csv, latex"),
    (["toy", "--format", "csv", "--sort", "psnr"], "no metric 'psnr'"),
])
def test_export_bad_input_exits_2(toy_dir, args, message):
    res = runner.invoke(app, ["leaderboard", "export", *args, "--dir", str(toy_dir)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output


def test_export_refuses_an_unwritable_out(toy_dir, tmp_path):
    res = runner.invoke(app, ["leaderboard", "export", "toy", "--dir", str(toy_dir), "--format", "latex",
                              "--out", str(tmp_path)])
    assert res.exit_code == 2 and f"--out {tmp_path} is a folder" in res.output and "table.tex" in res.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["leaderboard", "export", "toy", "--dir", str(toy_dir), "--format", "csv",
                              "--out", str(blocker / "t.csv")])
    assert res.exit_code == 2 and re.search(rf"{re.escape(str(blocker))} is a file, not a folder", res.output)
    assert blocker.read_text() == "x"


def test_show_json_unknown_board_exits_2(toy_dir):
    res = runner.invoke(app, ["leaderboard", "show", "tyo", "--dir", str(toy_dir), "--json"])
    assert res.exit_code == 2 and "Did you mean: toy" in res.output and res.stdout == ""
