"""The study design drawn from a seed: blocks per method, distinct targets, repeats for attention checks."""

from __future__ import annotations

import pytest

from posebench.datasets.names import PairKey
from posebench.study import StudyError
from posebench.study.design import MIN_GAP, draw_design

METHODS = ["a", "b", "c"]
PAIRS = sorted(PairKey(f"s{i}", f"t{j}") for i in range(4) for j in range(10) if i != j)  # 10 targets


def _draw(**kw):
    args = {"real": 3, "generated": 2, "sets": 6, "checks": 2, "seed": 7, **kw}
    return draw_design(METHODS, PAIRS, **args)


def _summary(design):
    return [(i.id, i.scheme, i.pair, i.kind, i.method, i.order, i.repeat_of.id if i.repeat_of else None)
            for i in design.items]


def test_the_same_seed_draws_the_same_design_and_another_seed_another():
    assert _summary(_draw()) == _summary(_draw())
    assert _summary(_draw()) != _summary(_draw(seed=8))


def test_scheme1_has_a_block_per_method_with_distinct_targets():
    design = _draw()
    assert len(design.scheme1) == 3 * (3 + 2) + 2
    originals = [i for i in design.scheme1 if i.repeat_of is None]
    for m in METHODS:
        block = [i for i in originals if i.method == m]
        assert sorted(i.kind for i in block) == ["generated"] * 2 + ["real"] * 3
        targets = [i.pair.target for i in block]
        assert len(set(targets)) == len(targets)  # never the real image and a generation of the same target
        positions = [originals.index(i) for i in block]
        assert positions == list(range(min(positions), min(positions) + 5))  # contiguous: one block
    assert [i.id for i in design.scheme1] == [f"a{n:03d}" for n in range(1, len(design.scheme1) + 1)]
    assert [i.id for i in design.scheme2] == [f"b{n:03d}" for n in range(1, len(design.scheme2) + 1)]


def test_scheme2_sets_show_every_method_once_in_a_recorded_order():
    design = _draw()
    originals = [i for i in design.scheme2 if i.repeat_of is None]
    assert len(originals) == 6 and len({i.pair for i in originals}) == 6
    assert all(sorted(i.order) == sorted(METHODS) for i in design.scheme2)
    assert len({i.order for i in originals}) > 1  # shuffled, not one fixed order


@pytest.mark.parametrize("scheme", ["scheme1", "scheme2"])
def test_attention_checks_repeat_an_earlier_item_later(scheme):
    items = getattr(_draw(), scheme)
    repeats = [i for i in items if i.repeat_of is not None]
    assert len(repeats) == 2
    for r in repeats:
        orig = r.repeat_of
        assert orig.repeat_of is None and (r.pair, r.kind, r.method) == (orig.pair, orig.kind, orig.method)
        assert items.index(r) - items.index(orig) >= MIN_GAP + 1
        if scheme == "scheme2":
            assert r.order != orig.order and sorted(r.order) == sorted(orig.order)


def test_no_checks_means_no_repeats():
    assert all(i.repeat_of is None for i in _draw(checks=0).items)


@pytest.mark.parametrize(("kw", "message"), [
    ({"real": 6, "generated": 5}, "fewer images than asked for: distinct target images"),
    ({"sets": 37}, "fewer images than asked for: pairs for scheme 2"),
    ({"real": 0}, "--real must be >= 1"),
    ({"checks": -1}, "--checks must be >= 0"),
    ({"checks": 99}, "--checks 99 repeats more items"),
])
def test_impossible_designs_are_refused(kw, message):
    with pytest.raises(StudyError, match=message):
        _draw(**kw)
