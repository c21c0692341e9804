"""The study's design, drawn from one seed: which images are shown, in which order, and which are repeated.

Scheme 1 (real or generated?) has a block per method, as PATN's study ran a session per method: `real` real
target images and `generated` images of that method, of distinct targets (a block never shows a real image and
a generation of the same target), shuffled; the blocks come in a shuffled order. Scheme 2 (which is best?)
shows `sets` pairs: the source image, the target pose and one image per method in a shuffled slot order.

Attention checks repeat `checks` items of each scheme later in the same scheme (a repeated set gets a new slot
order); a participant whose two answers to a repeated item disagree fails that check. Everything is drawn from
`numpy.random.default_rng(seed)` in a fixed order, so the same inputs and seed give the same design.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posebench.datasets.names import PairKey
from posebench.study import StudyError

MIN_GAP = 3  # a repeated item comes at least this many items after its original, where the scheme allows


@dataclass(eq=False)  # items are compared by identity: a repeat equals its original in every shown field
class Item:
    """One screen of the study. Scheme 1: `kind` real or generated, `method` the block; scheme 2: `order` the
    methods in slot order (slot 1 first). `repeat_of` is the original of an attention-check repeat."""

    scheme: int
    pair: PairKey
    kind: str = ""
    method: str = ""
    order: tuple[str, ...] = ()
    repeat_of: Item | None = field(default=None, repr=False)
    id: str = ""


@dataclass
class Design:
    scheme1: list[Item]
    scheme2: list[Item]

    @property
    def items(self) -> list[Item]:
        return self.scheme1 + self.scheme2


def _need(what: str, got: int, want: int, hint: str) -> None:
    if got < want:
        raise StudyError(f"fewer images than asked for: {what}: the methods share {got}, the study asks for {want}; "
                         f"{hint}")


def _insert_repeats(items: list[Item], checks: int, rng: np.random.Generator, reorder: bool) -> list[Item]:
    """`items` with `checks` repeats inserted, each after its original (MIN_GAP later where possible)."""
    if checks == 0:
        return items
    if checks > len(items):
        raise StudyError(f"--checks {checks} repeats more items than a scheme has ({len(items)}); lower --checks")
    # originals come from the part of the scheme that leaves room for the gap after them
    room = max(checks, len(items) - MIN_GAP)
    originals = [items[i] for i in sorted(rng.choice(room, size=checks, replace=False))]
    out = list(items)
    for orig in originals:
        at = out.index(orig)
        lo = min(at + 1 + MIN_GAP, len(out))
        pos = int(rng.integers(lo, len(out) + 1))
        order = orig.order
        if reorder and len(order) > 1:
            while order == orig.order:  # a new slot order, so the check is about the image, not the position
                order = tuple(orig.order[i] for i in rng.permutation(len(order)))
        out.insert(pos, Item(orig.scheme, orig.pair, orig.kind, orig.method, order, repeat_of=orig))
    return out


def draw_design(methods: list[str], common: list[PairKey], *, real: int, generated: int, sets: int, checks: int,
                seed: int) -> Design:
    """The items of both schemes, in presentation order, with ids `a001`.. (scheme 1) and `b001`.. (scheme 2).

    Raises:
        StudyError: counts below what a study needs, or fewer shared images than asked for.
    """
    for name, value, low in (("--real", real, 1), ("--generated", generated, 1), ("--sets", sets, 1),
                             ("--checks", checks, 0), ("--seed", seed, 0)):
        if value < low:
            raise StudyError(f"{name} must be >= {low}, got {value}")
    rng = np.random.default_rng(seed)
    targets = sorted({p.target for p in common})
    by_target: dict[str, list[PairKey]] = {}
    for p in common:
        by_target.setdefault(p.target, []).append(p)
    _need("distinct target images per scheme-1 block (--real + --generated)", len(targets), real + generated,
          "lower --real/--generated, or add pairs every method has")
    _need("pairs for scheme 2 (--sets)", len(common), sets, "lower --sets, or add pairs every method has")

    blocks: list[list[Item]] = []
    for method in methods:
        chosen = [targets[i] for i in rng.choice(len(targets), size=real + generated, replace=False)]
        block = []
        for t in chosen[:generated]:
            options = by_target[t]
            block.append(Item(1, options[int(rng.integers(len(options)))], "generated", method))
        for t in chosen[generated:]:
            # a real image has no pair of its own; the first pair with this target names it
            block.append(Item(1, by_target[t][0], "real", method))
        blocks.append([block[i] for i in rng.permutation(len(block))])
    scheme1 = [item for b in rng.permutation(len(blocks)) for item in blocks[b]]
    scheme1 = _insert_repeats(scheme1, checks, rng, reorder=False)

    scheme2 = [Item(2, common[i], order=tuple(methods[j] for j in rng.permutation(len(methods))))
               for i in rng.choice(len(common), size=sets, replace=False)]
    scheme2 = _insert_repeats(scheme2, checks, rng, reorder=True)

    for prefix, items in (("a", scheme1), ("b", scheme2)):
        for n, item in enumerate(items, 1):
            item.id = f"{prefix}{n:03d}"
    return Design(scheme1, scheme2)
