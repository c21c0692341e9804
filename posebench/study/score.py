"""`posebench study score`: R2G, G2R and JAB per method from a study's answers, with bootstrap intervals.

Definitions (percent; repeats of attention checks are never counted, only the first showing):
    R2G/m  real images of method m's scheme-1 block judged generated / real images of that block judged
    G2R/m  generated images of m judged real / generated images of m judged
    JAB/m  scheme-2 sets in which m's image was chosen / sets judged
    R2G    (no method) over every real image shown
Participants: one with more failed attention checks than `max_failed_checks` is excluded; one who stopped before
the end is `partial` and counts with the answers given (a missing judgement is left out, never counted as
either answer), unless `complete_only`. Both are listed in the results file.

Interval: a two-way percentile bootstrap. Each resample draws the included participants with replacement and,
independently, the metric's items with replacement; the statistic is the ratio of sums over the crossed
resample (each judgement weighted by its participant's count times its item's count), so participants with
fewer answers weigh less. Every metric starts its own generator from `seed` (`numpy.random.default_rng`), so
its interval does not depend on which other metrics exist.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posebench.results.bootstrap import LEVEL, percentile_interval
from posebench.results.human_study import HIGHER_IS_BETTER, KIND, PROTOCOL, metric_key
from posebench.study import StudyError
from posebench.study.folder import Study, load_study
from posebench.study.store import AnswerRow, AnswerStore

PROTOCOL_VERSION = 1
PROFILE = "r2g-g2r-jab"
PROFILE_VERSION = 1
PROTOCOL_TEXT = ("scheme 1: one image at a time, real or generated?, a block per method of --real real and "
                 "--generated generated images of distinct targets; scheme 2: source image, target pose and one "
                 "image per method in a recorded random slot order, which is best?; attention checks repeat "
                 "--checks items of each scheme")
_CHUNK = 256  # resamples per vectorised step


@dataclass
class Participant:
    id: int
    started: str
    answers: dict[str, str] = field(default_factory=dict)  # item id -> answer
    last: str | None = None
    checks_passed: int = 0
    checks_failed: int = 0
    checks_not_reached: int = 0
    status: str = ""
    reason: str = ""


def _judged(study: Study, item_id: str, answer: str) -> str:
    """What an answer says about the item: scheme 1 the label, scheme 2 the chosen method."""
    item = study.items[item_id]
    if item["scheme"] == 1:
        return answer
    return next(o["method"] for o in item["options"] if o["slot"] == answer)


def _participants(study: Study, store: AnswerStore) -> list[Participant]:
    # answers before participants: a session always exists before its answers, so a participant who starts and
    # answers while a live study is scored is seen without answers, never as answers without a session
    rows = store.answers()
    people = {pid: Participant(pid, started) for pid, started in store.participants()}
    sequence = study.sequence
    for row in rows:
        _check_row(study, row, sequence, store.path)
        if row.participant not in people:
            raise StudyError(f"{store.path}: answer {row.seq} belongs to participant {row.participant}, who has no "
                             "session; the database was edited (nothing was scored)")
        p = people[row.participant]
        p.answers[row.item_id] = row.answer
        p.last = row.received_at
    return list(people.values())


def _check_row(study: Study, row: AnswerRow, sequence: list[str], db: Path) -> None:
    """The server checked every answer; a row that fails here was written by something else."""
    where = f"{db}: participant {row.participant}, answer {row.seq}"
    if row.seq >= len(sequence) or sequence[row.seq] != row.item_id:
        raise StudyError(f"{where} names item {row.item_id!r}, which is not the study's item at that position; the "
                         "database was not written by `posebench study serve` for this study (nothing was scored)")
    if row.answer not in study.allowed_answers(row.item_id):
        raise StudyError(f"{where}: answer {row.answer!r} is not one the item offers; the database was edited "
                         "(nothing was scored)")


def _classify(study: Study, people: list[Participant], max_failed_checks: int, complete_only: bool) -> None:
    repeats = [(i["id"], i["repeat_of"]) for i in study.key["items"] if i["repeat_of"]]
    total = len(study.sequence)
    for p in people:
        for rep, orig in repeats:
            if rep not in p.answers or orig not in p.answers:
                p.checks_not_reached += 1
            elif _judged(study, rep, p.answers[rep]) == _judged(study, orig, p.answers[orig]):
                p.checks_passed += 1
            else:
                p.checks_failed += 1
        if not p.answers:
            p.status = "without answers"
        elif p.checks_failed > max_failed_checks:
            p.status = "excluded"
            p.reason = (f"failed {p.checks_failed} of {p.checks_failed + p.checks_passed} attention checks reached "
                        f"(allowed: {max_failed_checks})")
        elif len(p.answers) < total and complete_only:
            p.status = "excluded"
            p.reason = f"partial: answered {len(p.answers)} of {total} items (--complete-only)"
        else:
            p.status = "complete" if len(p.answers) == total else "partial"


def _matrices(study: Study, people: list[Participant]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric key -> (Y, M): participants x items, Y 1 where the judgement counts towards the metric, M 1 where
    a judgement exists."""
    items = [i for i in study.key["items"] if not i["repeat_of"]]
    groups: dict[str, list[tuple[dict[str, Any], Any]]] = {"r2g": []}
    for m in study.methods:
        for metric in ("r2g", "g2r", "jab"):
            groups[metric_key(metric, m)] = []
    for item in items:
        if item["scheme"] == 1:
            metric = "r2g" if item["kind"] == "real" else "g2r"
            positive = "generated" if item["kind"] == "real" else "real"
            groups[metric_key(metric, item["method"])].append((item, positive))
            if item["kind"] == "real":
                groups["r2g"].append((item, positive))
        else:
            for m in study.methods:
                groups[metric_key("jab", m)].append((item, m))
    out = {}
    for key, members in groups.items():
        y = np.zeros((len(people), len(members)))
        mask = np.zeros_like(y)
        for pi, p in enumerate(people):
            for ii, (item, positive) in enumerate(members):
                if item["id"] in p.answers:
                    mask[pi, ii] = 1.0
                    y[pi, ii] = float(_judged(study, item["id"], p.answers[item["id"]]) == positive)
        out[key] = (y, mask)
    return out


def two_way_bootstrap(y: np.ndarray, mask: np.ndarray, *, resamples: int, seed: int) -> np.ndarray:
    """Percent statistics of `resamples` two-way resamples (participants and items, independently, with
    replacement): sum(w_p v_i y_pi) / sum(w_p v_i m_pi); NaN where a resample has no judgement."""
    rng = np.random.default_rng(seed)
    n_p, n_i = y.shape
    out = np.empty(resamples)
    ym = y * mask
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        w = rng.multinomial(n_p, np.full(n_p, 1.0 / n_p), size=b).astype(float)
        v = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=b).astype(float)
        num = np.einsum("bp,pi,bi->b", w, ym, v)
        den = np.einsum("bp,pi,bi->b", w, mask, v)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = np.where(den > 0, 100.0 * num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _metric(y: np.ndarray, mask: np.ndarray, metric: str, *, resamples: int, seed: int, level: float
            ) -> dict[str, Any]:
    n = int(mask.sum())
    higher = HIGHER_IS_BETTER[metric]
    if n == 0:
        return {"value": "nan", "stderr": None, "higher_is_better": higher, "n": 0,
                "details": {"ci95": ["nan", "nan"], "positive": 0, "participants": 0, "items": int(y.shape[1])}}
    value = 100.0 * float((y * mask).sum()) / n
    stats = two_way_bootstrap(y, mask, resamples=resamples, seed=seed)
    finite = stats[np.isfinite(stats)]
    lo, hi = percentile_interval(finite, level)
    return {"value": round(value, 6), "stderr": round(float(np.std(finite, ddof=1)), 6) if finite.size > 1 else None,
            "higher_is_better": higher, "n": n,
            "details": {"ci95": [round(lo, 6), round(hi, 6)], "positive": int((y * mask).sum()),
                        "participants": int((mask.sum(axis=1) > 0).sum()), "items": int(y.shape[1])}}


def _judgements_csv(study: Study, people: list[Participant]) -> str:
    """Every recorded answer with what it says and whether it counted: for re-analysis without SQLite."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["participant", "status", "item", "scheme", "repeat_of", "kind", "method", "answer", "judged",
                "counted"])
    for p in people:
        for item_id in study.sequence:
            if item_id not in p.answers:
                continue
            item = study.items[item_id]
            judged = _judged(study, item_id, p.answers[item_id])
            counted = p.status in ("complete", "partial") and not item["repeat_of"]
            w.writerow([p.id, p.status, item_id, item["scheme"], item["repeat_of"] or "", item.get("kind", ""),
                        item.get("method", ""), p.answers[item_id], judged, int(counted)])
    return buf.getvalue()


def score_study(folder: str | Path, *, out_name: str = "score.json", resamples: int = 2000, seed: int = 0,
                level: float = LEVEL, max_failed_checks: int = 0, complete_only: bool = False
                ) -> tuple[dict[str, Any], str]:
    """Score a study folder's answers; returns (results document, judgements CSV text).

    Raises:
        StudyError: the folder fails its manifest, there is no answers database, or it was not written by the
            server for this study.
    """
    from posebench.results.schema import results_document

    if resamples < 100:
        raise StudyError(f"--resamples must be >= 100 for a 95% interval, got {resamples}")
    if max_failed_checks < 0:
        raise StudyError(f"--max-failed-checks must be >= 0, got {max_failed_checks}")
    if seed < 0:
        raise StudyError(f"--seed must be >= 0, got {seed}")
    t0 = time.perf_counter()
    study = load_study(folder)
    store = AnswerStore(study.db_path, study.manifest_sha256, create=False)
    people = _participants(study, store)
    _classify(study, people, max_failed_checks, complete_only)
    included = [p for p in people if p.status in ("complete", "partial")]
    matrices = _matrices(study, included)
    metrics = {}
    for key, (y, mask) in matrices.items():
        metrics[key] = _metric(y, mask, key.split("/")[0], resamples=resamples, seed=seed, level=level)

    warnings = []
    if not included:
        warnings.append("no participant is included: every value is undefined (NaN)")
    checks = sum(1 for i in study.key["items"] if i["repeat_of"])
    non_canonical = []
    if checks == 0:
        non_canonical.append("the study has no attention checks (--checks 0)")
    if max_failed_checks > 0:
        non_canonical.append(f"participants failing up to {max_failed_checks} attention checks are kept")
    for given in study.build["inputs"]:  # studies built before inputs recorded this say nothing here
        if given.get("canonical") is False:
            why = "; ".join(given.get("non_canonical_reasons") or []) or "no reason recorded"
            non_canonical.append(f"built from a non-canonical evaluation of {given['label']!r} ({why})")
    scoring = {"percent": True, "max_failed_checks": max_failed_checks, "complete_only": complete_only,
               "partial": "counted with the answers given" if not complete_only else "excluded",
               "interval": "two-way percentile bootstrap: participants and items", "level": level}
    build = study.build
    shown = {i["image"] for i in study.key["items"] if i["scheme"] == 1}
    shown |= {o["image"] for i in study.key["items"] if i["scheme"] == 2 for o in i["options"]}
    doc: dict[str, Any] = dict(results_document(
        protocol={"name": PROTOCOL, "version": PROTOCOL_VERSION,
                  "sha256": hashlib.sha256(PROTOCOL_TEXT.encode()).hexdigest()},
        profile={"name": PROFILE, "version": PROFILE_VERSION,
                 "sha256": hashlib.sha256(json.dumps(scoring, sort_keys=True).encode()).hexdigest()},
        dataset={"name": build["dataset"]["name"], "split": build["dataset"]["split"],
                 "pairs": build["dataset"]["pairs_shown"], "pairs_sha256": build["dataset"]["pairs_shown_sha256"]},
        predictions={"dir": str(study.folder), "count": len(shown), "images_sha256": study.manifest_sha256,
                     "scheme": None},
        metrics=metrics, warnings=warnings, non_canonical=non_canonical, env={},
        seconds=time.perf_counter() - t0, scored=sum(int(m.sum()) for _, m in matrices.values()),
        config={"study": str(folder), "resamples": resamples, "seed": seed, "level": level,
                "max_failed_checks": max_failed_checks, "complete_only": complete_only},
        per_image_file=Path(out_name).stem + ".judgements.csv",
    ))
    doc["kind"] = KIND
    inputs = {i["label"]: i for i in build["inputs"]}
    doc["methods"] = [{"label": m, "results": inputs[m]["results"], "results_sha256": inputs[m]["results_sha256"],
                       "images_sha256": study.key["method_images_sha256"][m]} for m in study.methods]
    doc["study"] = {"folder": str(folder), "id": build["study"], "manifest_sha256": study.manifest_sha256,
                    "seed": build["seed"], "parameters": build["parameters"], "posebench": build["posebench"],
                    "items": len(study.sequence), "attention_checks": checks}
    counts = {s: sum(p.status == s for p in people) for s in ("complete", "partial", "excluded", "without answers")}
    doc["participants"] = {**counts, "total": len(people), "rows": [
        {"id": p.id, "status": p.status, "answered": len(p.answers), "of": len(study.sequence),
         "checks_passed": p.checks_passed, "checks_failed": p.checks_failed,
         "checks_not_reached": p.checks_not_reached, "started": p.started, "last_answer": p.last} for p in people]}
    doc["exclusions"] = [{"participant": p.id, "reason": p.reason} for p in people if p.status == "excluded"]
    doc["bootstrap"] = {"resamples": resamples, "seed": seed, "level": level,
                        "method": "two-way: participants and items resampled independently with replacement, "
                                  "ratio of weighted sums, percentile interval"}
    return doc, _judgements_csv(study, people)


def write_score(folder: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`score_study` written atomically: the results JSON and its judgements CSV beside it, both or neither."""
    from posebench.results.schema import results_json
    from posebench.utils.io import atomic_write_texts, check_output_path

    out = check_output_path(out, "--out")
    doc, table = score_study(folder, out_name=out.name, **kwargs)
    atomic_write_texts({out: results_json(doc), out.parent / doc["per_image_file"]: table})
    return doc
