"""Names: DeepFashion flattening and identity unit (on the real lists), Market names, generated names."""

from __future__ import annotations

from pathlib import Path

import pytest

from posebench.datasets.names import (
    PairKey,
    flat_name,
    parse_deepfashion,
    parse_generated_name,
    parse_ground_truth_name,
    parse_market,
)

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "deepfashion"


def test_flat_name_rule():
    assert flat_name("img/MEN/Denim/id_00000080/01_1_front.jpg") == "fashionMENDenimid0000008001_1front.jpg"
    assert flat_name("img_highres/MEN/Shirts_Polos/id_00001802/02_4_full.jpg") == \
        "fashionMENShirts_Polosid0000180202_4full.jpg"
    with pytest.raises(ValueError):
        flat_name("MEN/Denim/01_1_front.jpg")


def test_identity_unit_includes_outfit():
    n = parse_deepfashion("fashionWOMENDressesid0000175906_1front.jpg")
    assert (n.gender, n.category, n.item, n.outfit, n.view) == ("WOMEN", "Dresses", "00001759", "06", "1front")
    assert n.identity == "fashionWOMENDressesid0000175906"
    with pytest.raises(ValueError, match="not a flattened DeepFashion name"):
        parse_deepfashion("fashionMENDenim_1front.jpg")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data not beside the checkout")
def test_real_lists_identity_counts_and_disjointness():
    ids = {}
    items = {}
    for split in ("train", "test"):
        names = [ln.strip() for ln in (SHARED / f"{split}.lst").read_text().splitlines() if ln.strip()]
        parsed = [parse_deepfashion(n) for n in names]
        ids[split] = {p.identity for p in parsed}
        items[split] = {(p.gender, p.category, p.item) for p in parsed}
        assert len(names) == {"train": 48_674, "test": 4_038}[split]
    assert len(ids["train"]) == 12_029 and len(ids["test"]) == 1_000
    assert not ids["train"] & ids["test"]  # disjoint at the identity unit
    # ...but not at the item level (item folder gender/category/id_N): datasets.md §1.2
    assert len(items["train"] & items["test"]) == 503


def test_market_names():
    m = parse_market("0002_c1s1_000451_03.jpg")
    assert (m.pid, m.camid, m.seq, m.frame, m.box) == (2, 1, 1, 451, 3)
    assert parse_market("-1_c3s2_000001_01.jpg").is_junk
    assert parse_market("0000_c1s1_000001_01.jpg").is_distractor
    with pytest.raises(ValueError):
        parse_market("2_c1s1_000451_03.jpg")


@pytest.mark.parametrize("filename, scheme", [
    ("A_1front__B_2side.png", "posebench"),
    ("A_1front.jpg___B_2side.jpg_vis.jpg", "patn"),
    ("A_1front___B_2side_vis.png", "patn"),
    ("A_1front_2_B_2side_vis.png", "gfla"),
    ("A_1front_2_B_2side_vis.jpg", "gfla"),
])
def test_generated_name_schemes(filename, scheme):
    assert parse_generated_name(filename) == (scheme, PairKey("A_1front", "B_2side"))


def test_gfla_separator_inside_names_is_resolved_with_known_images():
    # '_2_' occurs inside the source name: ambiguous without the dataset's names
    fname = "x_2_y_2_z_vis.png"
    with pytest.raises(ValueError, match="several gfla pairs"):
        parse_generated_name(fname, scheme="gfla")
    assert parse_generated_name(fname, known={"x_2_y", "z"}) == ("gfla", PairKey("x_2_y", "z"))


def test_market_generated_names():
    name = "0002_c1s1_000451_03_2_0002_c2s1_000451_02_vis.png"
    assert parse_generated_name(name) == ("gfla", PairKey("0002_c1s1_000451_03", "0002_c2s1_000451_02"))


def test_pcdms_needs_a_name_map():
    with pytest.raises(ValueError, match="name map"):
        parse_generated_name("img12_to_img7.png")
    assert parse_generated_name("img12_to_img7.png", name_map={"img12": "a", "img7": "b"}) == \
        ("pcdms", PairKey("a", "b"))


def test_pcdms_names_with_dataset_names():
    """PCDMs' test scripts write `{source stem}_to_{target file}`; with dataset names no map is needed, and the
    dataset's names resolve a `_to_` inside a name."""
    src, tgt = "fashionWOMENBlouses_Shirtsid0000000102_1front", "fashionWOMENBlouses_Shirtsid0000000102_2side"
    assert parse_generated_name(f"{src}_to_{tgt}.png") == ("pcdms", PairKey(src, tgt))
    assert parse_generated_name("a_to_b_to_c.png", known={"a_to_b", "c"}) == ("pcdms", PairKey("a_to_b", "c"))


def test_read_name_map_formats_and_errors(tmp_path):
    from posebench.datasets.formats import read_name_map
    from posebench.datasets.problems import ProblemLog

    js = tmp_path / "map.json"
    js.write_text('{"img1.png": "fashionA_1front.jpg", "img2": "fashionA_2side"}')
    log = ProblemLog()
    assert read_name_map(js, log) == {"img1": "fashionA_1front", "img2": "fashionA_2side"} and not log.errors
    csv_file = tmp_path / "map.csv"
    csv_file.write_text("name,dataset_name\nimg1.png,fashionA_1front.jpg\n\nimg2 fashionA_2side.jpg\n")
    assert read_name_map(csv_file, log) == {"img1": "fashionA_1front", "img2": "fashionA_2side"}
    bad = tmp_path / "bad.csv"
    bad.write_text("img1,a.jpg\nimg2\nimg1,b.jpg\n")
    log = ProblemLog()
    read_name_map(bad, log)
    assert [(p.line, p.message.split(" (")[0]) for p in log.errors] == [
        (2, "expected two names"), (3, "'img1' is mapped twice")]
    broken = tmp_path / "broken.json"
    broken.write_text('{"img1": ')
    log = ProblemLog()
    read_name_map(broken, log)
    assert log.errors and "not valid JSON" in log.errors[0].message


def test_unknown_names_and_scheme():
    with pytest.raises(ValueError, match="matches no known naming scheme"):
        parse_generated_name("random.png")
    with pytest.raises(ValueError, match="no known naming scheme with images of this dataset"):
        parse_generated_name("a__b.png", known={"c"})
    from posebench.errors import PosebenchError

    with pytest.raises(PosebenchError, match="unknown naming scheme"):
        parse_generated_name("a__b.png", scheme="cfld")


def test_ground_truth_names_and_pair_filename():
    assert parse_ground_truth_name("deepfashionMENDenimid0000008001_1front.png") == "fashionMENDenimid0000008001_1front"
    assert parse_ground_truth_name("fashionMENDenimid0000008001_1front.jpg") == "fashionMENDenimid0000008001_1front"
    assert PairKey.of("a.jpg", "b.png").filename == "a__b.png"
