"""The results JSON schema (version 1) with atomic writing and strict reading (style rule R4).

Top-level keys:
    schema_version, posebench, created, canonical, non_canonical_reasons,
    protocol {name, version, sha256}, profile {name, version, sha256},
    dataset {name, layout, split, pairs, pairs_sha256, real_sets {name: {images, images_sha256, used}}},
    predictions {dir, count, images_sha256, scheme, lossy, sizes, resized},
    flags [str], declared {best_of, oracle_selection},
    metrics {name: {value, stderr, higher_is_better, n, details}},
    per_image_file, warnings [str], env {...}, timing {seconds, images_per_second}
Optional (for `posebench regress` intervals): per_image_id_columns [str] (the CSV columns that name an image),
    features_file (the kept FID/KID features, `posebench.results.kept_features`; a bare file name like
    per_image_file)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypedDict

from posebench.errors import PosebenchError
from posebench.utils.io import atomic_write_text

SCHEMA_VERSION = 1

REQUIRED_KEYS = ("schema_version", "posebench", "protocol", "profile", "dataset", "predictions", "metrics",
                 "canonical", "warnings", "env")


class MetricResult(TypedDict):
    value: float
    stderr: float | None
    higher_is_better: bool
    n: int  # images actually used (after drop-last, failures excluded)
    details: dict[str, Any]


class RunResults(TypedDict, total=False):
    """The results document every writer produces (`results_document` builds it)."""

    schema_version: int
    posebench: str
    created: str
    canonical: bool
    non_canonical_reasons: list[str]
    protocol: dict[str, Any]  # {name, version, sha256}
    profile: dict[str, Any]  # {name, version, sha256} (+ kind for pose profiles)
    dataset: dict[str, Any]
    predictions: dict[str, Any]
    flags: list[str]
    declared: dict[str, Any]
    metrics: dict[str, MetricResult]
    breakdown: dict[str, Any]  # {by, rows}: per group (Human-Art scenarios)
    per_image_file: str
    per_image_id_columns: list[str]
    features_file: str
    warnings: list[str]
    env: dict[str, Any]
    timing: dict[str, Any]
    config: dict[str, Any]


def results_document(*, protocol: dict[str, Any], profile: dict[str, Any], dataset: dict[str, Any],
                     predictions: dict[str, Any], metrics: dict[str, MetricResult], warnings: list[str],
                     non_canonical: list[str], env: dict[str, Any], seconds: float, scored: int,
                     config: dict[str, Any], per_image_file: str, flags: list[str] | None = None,
                     declared: dict[str, Any] | None = None, breakdown: dict[str, Any] | None = None) -> RunResults:
    """A results document with the fields every writer shares filled in (schema version, posebench version,
    time, canonical flag from the reasons, software versions in `env`, timing)."""
    import datetime as dt

    from posebench._version import __version__
    from posebench.env import provenance, versions

    doc: RunResults = {
        "schema_version": SCHEMA_VERSION, "posebench": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "canonical": not non_canonical, "non_canonical_reasons": list(non_canonical),
        "protocol": protocol, "profile": profile, "dataset": dataset, "predictions": predictions,
        "flags": list(flags or []), "declared": declared or {"best_of": 1, "oracle_selection": False},
        "metrics": metrics, "per_image_file": per_image_file, "warnings": list(warnings),
        "env": {**versions(), **provenance(), **env},
        "timing": {"seconds": round(seconds, 3), "images_per_second": round(scored / seconds, 3) if seconds else None},
        "config": config,
    }
    if breakdown is not None:
        doc["breakdown"] = breakdown
    return doc


class ResultsError(PosebenchError):
    """A results file that cannot be read as this schema."""


def json_safe(obj: Any) -> Any:
    """JSON has no inf/NaN: store them as strings so nothing is silently lost."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dig(data: Any, dotted: str, default: Any = None) -> Any:
    """`data["a"]["b"]` for `dotted="a.b"`, or `default` where any level is missing or not a mapping."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return default
        data = data[part]
    return data


def results_json(result: dict[str, Any]) -> str:
    """The text of a results file (non-finite numbers as strings, see `json_safe`)."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"results lack {missing}")
    return json.dumps(json_safe(result), indent=1) + "\n"


def write_results(path: str | Path, result: dict[str, Any]) -> None:
    atomic_write_text(path, results_json(result))


def metric_value(raw: Any) -> float:
    """A stored metric value as a float ("inf", "-inf", "nan" are how JSON holds the non-finite ones); raises
    ValueError for anything else (null, booleans, other strings)."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"{raw!r} is not a number")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str) and raw in ("inf", "-inf", "nan"):
        return float(raw)
    raise ValueError(f"{raw!r} is not a number")


def validate_results(data: Any, where: str) -> dict[str, Any]:
    """Every check a results file must pass before anything reads a number from it (report, regress, leaderboard
    add, the gate): the schema, the types, every metric value within what its metric can be, `n` >= 1 for a defined
    value, and a per-image file named by a bare file name beside the results. Raises ResultsError naming `where`
    and the key."""
    from posebench.metrics.registry import METRICS, base_name

    if not isinstance(data, dict):
        raise ResultsError(f"{where}: expected a JSON object")
    if data.get("kind") == "reid-augment":  # the same schema family, another kind of result
        raise ResultsError(f"{where} is a re-ID augmentation results file (posebench reid-augment: mAP per real-data "
                           "fraction), not an evaluation of generated images; report, regress and leaderboard add "
                           "read `posebench eval` results. Its tables are in that file's rows and "
                           "map_vs_fraction.png beside it")
    version = data.get("schema_version")
    if version is None:
        raise ResultsError(f"{where}: not a posebench results file (no schema_version); posebench eval writes them")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{where}: results schema {version!r} is not supported (this posebench reads "
                           f"{SCHEMA_VERSION}); upgrade posebench or re-run the evaluation")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ResultsError(f"{where}: missing keys {missing}")
    for block in ("protocol", "profile"):
        if not isinstance(data[block], dict) or not isinstance(data[block].get("name"), str) \
                or not data[block]["name"]:
            raise ResultsError(f"{where}: {block}.name must be a non-empty string, got "
                               f"{_short(data[block].get('name') if isinstance(data[block], dict) else data[block])}")
    if not isinstance(data["canonical"], bool):
        raise ResultsError(f"{where}: canonical must be true or false, got {_short(data['canonical'])}")
    if not isinstance(data["warnings"], list):
        raise ResultsError(f"{where}: warnings must be a list")
    for key in ("per_image_file", "features_file"):
        name = data.get(key)
        if name is not None and (not isinstance(name, str) or not name or "/" in name or "\\" in name
                                 or name in (".", "..")):
            raise ResultsError(f"{where}: {key} must be a bare file name beside the results file, got {_short(name)}")
    id_columns = data.get("per_image_id_columns")
    if id_columns is not None and (not isinstance(id_columns, list) or not id_columns
                                   or not all(isinstance(c, str) and c for c in id_columns)):
        raise ResultsError(f"{where}: per_image_id_columns must be a non-empty list of column names, got "
                           f"{_short(id_columns)}")
    metrics = data["metrics"]
    if not isinstance(metrics, dict):
        raise ResultsError(f"{where}: metrics must be a mapping of metric name -> entry, got a "
                           f"{type(metrics).__name__}")
    for name, m in metrics.items():
        at = f"{where}: metrics.{name}"
        if not isinstance(m, dict) or "value" not in m or "n" not in m:
            raise ResultsError(f"{at} must be a mapping with value and n")
        try:
            value = metric_value(m["value"])
        except ValueError as exc:
            raise ResultsError(f"{at}.value: {exc}") from None
        n = m["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or (n == 0 and not math.isnan(value)):
            raise ResultsError(f"{at}.n: expected the number of images used (an integer >= 1), got {_short(n)}")
        if "higher_is_better" in m and not isinstance(m["higher_is_better"], bool):
            raise ResultsError(f"{at}.higher_is_better: expected true or false, got {_short(m['higher_is_better'])}")
        stderr = m.get("stderr")
        if stderr is not None:
            try:
                metric_value(stderr)
            except ValueError as exc:
                raise ResultsError(f"{at}.stderr: {exc}") from None
        base = base_name(name)
        if base in METRICS and not math.isnan(value):
            spec = METRICS.get(base)
            lo, hi = spec.valid
            if math.isinf(value) and not (spec.allows_inf and value > 0):
                raise ResultsError(f"{at}.value: {value} is not a value {name} can have")
            if not math.isinf(value) and not lo <= value <= hi:
                raise ResultsError(f"{at}.value: {value!r} is outside what {name} can be ({lo:g} to {hi:g})")
    if data.get("kind") == "human-study":  # `posebench study score`: every method of one study in one file
        from posebench.results.human_study import check_study

        check_study(data, where)
    return data


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_results(path: str | Path) -> dict[str, Any]:
    """Read and check a results file (`validate_results`); unknown schema versions are refused, not guessed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a folder, not a results file") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
    return validate_results(data, str(path))
