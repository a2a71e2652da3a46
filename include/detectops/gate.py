"""The gate: does a candidate model deserve to replace the champion?

Pure functions over the JSON of ``detectops.evaluate.compare.evaluate_pair`` (no TensorFlow,
no MLflow), so the rules are unit-tested in milliseconds and a DAG can import this module.

    thresholds = GateThresholds.from_params(params)          # every threshold is a DAG Param
    verdict = judge(pair, thresholds, contract_ok=True, infra_ok=True, infra_detail="answered 200",
                    candidate_label_map=cand_map, champion_label_map=champ_map)
    verdict.passed, verdict.summary(), verdict.tags()

Against a champion the candidate passes when all of these hold: its AP is at least the
champion's plus ``map_margin`` (zero or slightly negative asks "not worse"); no class AP and
no slice AP (batch, brightness bucket) drops by more than its bound; its p95 latency is within
budget; it honours the serving contract; its serving image passed infra validation. With no
champion, ``min_ap`` and ``min_ap50`` replace the comparisons. Classes and slices with too few
images or boxes are reported but not gated: their AP is noise (see ``evaluate.slices``).

Every rule is reported with its numbers, the passing ones too. A gate never compares models
with different label maps: ``judge`` raises ``LabelMapMismatch`` instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from detectops.errors import DetectOpsError

#: Float sums such as ``0.45 + 0.0`` must not fail a candidate whose AP equals the champion's.
_EPS = 1e-9
#: MLflow refuses tag values over 8000 characters; keep well below.
_MAX_TAG_CHARS = 5000


class GateError(DetectOpsError):
    """The gate cannot judge: its inputs are wrong (fix the thresholds or what was evaluated)."""


class LabelMapMismatch(GateError):
    """Candidate and champion predict different classes: comparing their AP would be meaningless."""


# --------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class GateThresholds:
    """The gate's limits; each is a Param of the DAG (``from_params``).

    AP values are COCO AP (IoU .50:.95) in 0-1; drops are absolute AP points (0.05 = 5 points).
    ``min_slice_images`` / ``min_slice_boxes``: a slice below either is reported, not gated;
    a class below ``min_slice_boxes`` ground-truth boxes likewise.
    """

    map_margin: float = 0.0
    max_class_ap_drop: float = 0.05
    max_slice_ap_drop: float = 0.05
    p95_latency_ms_budget: float = 250.0
    #: With no champion: the first model must be useful on its own. Below the issue's
    #: benchmark target (AP 0.5, AP50 0.8 after 5 minutes of training) so that a short
    #: demo training can pass; raise them for production.
    min_ap: float = 0.3
    min_ap50: float = 0.6
    min_slice_images: int = 10
    min_slice_boxes: int = 20

    def __post_init__(self) -> None:
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                problems.append(f"{f.name} must be a finite number, got {value!r}")
        if not problems:
            if not -1.0 <= self.map_margin <= 1.0:
                problems.append(f"map_margin must be within [-1, 1] (AP points as a fraction), got {self.map_margin}")
            for name in ("max_class_ap_drop", "max_slice_ap_drop", "min_ap", "min_ap50"):
                if not 0.0 <= getattr(self, name) <= 1.0:
                    problems.append(f"{name} must be within [0, 1], got {getattr(self, name)}")
            if self.p95_latency_ms_budget <= 0:
                problems.append(f"p95_latency_ms_budget must be > 0 ms, got {self.p95_latency_ms_budget}")
            if self.min_slice_images < 0 or self.min_slice_boxes < 0:
                problems.append("min_slice_images and min_slice_boxes must be >= 0")
        if problems:
            raise GateError("invalid gate thresholds: " + "; ".join(problems) + ". Fix the DAG run's gate Params.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GateThresholds:
        """Thresholds from a DAG's Params: ``map_margin`` or ``gate_map_margin`` etc.

        Other keys are ignored (a DAG passes all its Params); ``None`` or ``""`` keeps the
        default. Strings such as ``"0.05"`` (from a form or the REST API) are converted.
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = params.get(f"gate_{f.name}", params.get(f.name))
            if raw is None or raw == "":
                continue
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise GateError(f"gate Param {f.name} must be a number, got {raw!r}") from None
            if f.type in (int, "int"):
                if not number.is_integer():
                    raise GateError(f"gate Param {f.name} must be a whole number, got {raw!r}")
                number = int(number)
            values[f.name] = number
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- label maps
def normalise_label_map(label_map: Mapping[Any, Any] | None) -> dict[int, str]:
    """``{int id: name}``; JSON (XCom) turns ids into strings, which must compare equal."""
    return {int(k): str(v) for k, v in (label_map or {}).items()}


def check_same_label_map(candidate: Mapping[Any, Any] | None, champion: Mapping[Any, Any] | None) -> None:
    """Raise ``LabelMapMismatch`` unless both label maps are present and identical."""
    cand, champ = normalise_label_map(candidate), normalise_label_map(champion)
    if not cand or not champ:
        which = "candidate" if not cand else "champion"
        raise LabelMapMismatch(
            f"the {which} model carries no label map (assets/label_map.json), so the gate cannot tell whether it "
            "predicts the same classes; export it with its label map, or register the candidate under a new model name"
        )
    if cand == champ:
        return
    differences = []
    for cid in sorted(set(cand) | set(champ)):
        if cand.get(cid) != champ.get(cid):
            differences.append(f"id {cid}: candidate {cand.get(cid)!r}, champion {champ.get(cid)!r}")
    raise LabelMapMismatch(
        "candidate and champion have different label maps (" + "; ".join(differences[:10])
        + (f"; and {len(differences) - 10} more" if len(differences) > 10 else "")
        + "). A gate never compares models that predict different classes: a new class set is a new model, "
        "so register the candidate under its own model name (its first version then faces the absolute thresholds)"
    )


# --------------------------------------------------------------------------- verdict
@dataclass
class Verdict:
    """The gate's decision.

    ``checks``: every rule as ``{name, passed, value, limit, detail}``; ``passed`` is ``None``
    for what was reported but not gated (a too-small slice) or not run (infra validation).
    ``reasons``: one line with numbers per failed or missing check (empty when passed).
    ``mode``: ``vs_champion`` or ``absolute`` (no champion).
    """

    passed: bool
    reasons: list[str]
    checks: list[dict[str, Any]]
    mode: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        """Checks that must run before the candidate can pass (infra validation not run yet)."""
        return [c["name"] for c in self.checks if c["passed"] is None and c.get("pending")]

    @property
    def passed_so_far(self) -> bool:
        """No check failed; only pending ones (infra validation) remain. Worth building the image."""
        return not any(c["passed"] is False for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def summary(self) -> str:
        """One line for the DAG run's note and the task log, with the numbers."""
        if not self.passed:
            return "not promoted: " + "; ".join(self.reasons)
        n = self.numbers
        if self.mode == "absolute":
            head = (f"AP {_f(n.get('candidate_ap'))} >= {_f(self.thresholds.get('min_ap'))}, "
                    f"AP50 {_f(n.get('candidate_ap50'))} >= {_f(self.thresholds.get('min_ap50'))} (no champion)")
        else:
            head = (f"AP {_f(n.get('candidate_ap'))} >= champion {_f(n.get('champion_ap'))} "
                    f"{_signed(self.thresholds.get('map_margin', 0.0))}")
        gated = [c for c in self.checks if c["name"].startswith(("class_ap/", "slice_ap/")) and c["passed"] is not None]
        tail = f"; {len(gated)} class/slice APs within bounds" if gated else ""
        return (f"gate passed: {head}{tail}; p95 {_f(n.get('candidate_p95_ms'), 1)} ms <= "
                f"{_f(self.thresholds.get('p95_latency_ms_budget'), 0)} ms; contract and infra ok")

    def tags(self, prefix: str = "gate.") -> dict[str, str]:
        """MLflow model-version tags: the decision, the reasons, the headline numbers, the checks."""
        tags = {
            f"{prefix}passed": str(self.passed).lower(),
            f"{prefix}mode": self.mode,
            f"{prefix}summary": _clip(self.summary()),
            f"{prefix}reasons": _clip("; ".join(self.reasons)),
            f"{prefix}thresholds": _clip(json.dumps(self.thresholds, sort_keys=True)),
        }
        tags.update({f"{prefix}{_tag_key(k)}": _fmt_value(v) for k, v in self.numbers.items() if v is not None})
        compact = [{k: c[k] for k in ("name", "passed", "value", "limit")} for c in self.checks]
        tags[f"{prefix}checks"] = _clip(json.dumps(compact, separators=(",", ":")))
        return tags


def _f(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _signed(margin: float) -> str:
    return f"- {_f(-margin)}" if margin < 0 else f"+ {_f(margin)}"


def _fmt_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TAG_CHARS else text[: _MAX_TAG_CHARS - 3] + "..."


def _tag_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def _check(name: str, passed: bool | None, value: Any, limit: Any, detail: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "passed": passed, "value": value, "limit": limit, "detail": detail, **extra}


# --------------------------------------------------------------------------- rules
def _map_rule(cand: Mapping[str, Any], champ: Mapping[str, Any], t: GateThresholds) -> dict[str, Any]:
    ap, champ_ap = cand["metrics"].get("AP"), champ["metrics"].get("AP")
    if ap is None or champ_ap is None:
        return _check("map", False, ap, None, "AP undefined: the test split has no ground-truth box; "
                      "check the dataset version's test split")
    limit = champ_ap + t.map_margin
    ok = ap >= limit - _EPS
    detail = f"AP {_f(ap)} {'>=' if ok else '<'} champion {_f(champ_ap)} {_signed(t.map_margin)}"
    return _check("map", ok, ap, round(limit, 6), detail)


def _absolute_rules(cand: Mapping[str, Any], t: GateThresholds) -> list[dict[str, Any]]:
    out = []
    for name, key, limit in (("min_ap", "AP", t.min_ap), ("min_ap50", "AP50", t.min_ap50)):
        value = cand["metrics"].get(key)
        ok = value is not None and value >= limit - _EPS
        detail = f"{key} {_f(value)} {'>=' if ok else '<'} minimum {_f(limit)} (no champion)"
        out.append(_check(name, ok, value, limit, detail))
    return out


def _drop_rule(name: str, label: str, cand: Mapping[str, Any] | None, champ: Mapping[str, Any] | None,
               max_drop: float, t: GateThresholds, *, is_class: bool) -> dict[str, Any]:
    """One class or slice: the champion's AP minus the candidate's must not exceed ``max_drop``."""
    if cand is None or champ is None:
        return _check(name, None, None, max_drop, f"{label}: not gated, evaluated for only one model")
    images, boxes = int(cand.get("num_images", 0)), int(cand.get("num_boxes", 0))
    small = boxes < t.min_slice_boxes or (not is_class and images < t.min_slice_images)
    ap, champ_ap = cand.get("ap"), champ.get("ap")
    if ap is None or champ_ap is None:
        return _check(name, None, None, max_drop, f"{label}: not gated, no ground truth")
    drop = round(champ_ap - ap, 6)
    numbers = f"{_f(champ_ap)} -> {_f(ap)}"
    if small:
        size = f"{boxes} boxes" if is_class else f"{images} images, {boxes} boxes"
        return _check(name, None, drop, max_drop, f"{label}: not gated, too small ({size}); AP {numbers}")
    ok = drop <= max_drop + _EPS
    verb = "dropped" if drop > 0 else "changed"
    return _check(name, ok, drop, max_drop, f"{label} AP {verb} {_f(drop)} {'<=' if ok else '>'} {_f(max_drop)} ({numbers})")


def _class_rules(cand: Mapping[str, Any], champ: Mapping[str, Any], t: GateThresholds) -> list[dict[str, Any]]:
    names = sorted(set(cand.get("per_class", {})) | set(champ.get("per_class", {})))
    return [
        _drop_rule(f"class_ap/{n}", f"class {n!r}", cand.get("per_class", {}).get(n), champ.get("per_class", {}).get(n),
                   t.max_class_ap_drop, t, is_class=True)
        for n in names
    ]


def _slice_rules(cand: Mapping[str, Any], champ: Mapping[str, Any], t: GateThresholds) -> list[dict[str, Any]]:
    out = []
    cand_slices, champ_slices = cand.get("slices", {}), champ.get("slices", {})
    for kind in sorted(set(cand_slices) | set(champ_slices)):
        mine, theirs = cand_slices.get(kind, {}), champ_slices.get(kind, {})
        for n in sorted(set(mine) | set(theirs)):
            out.append(_drop_rule(f"slice_ap/{kind}/{n}", f"slice {kind} {n!r}", mine.get(n), theirs.get(n),
                                  t.max_slice_ap_drop, t, is_class=False))
    return out


def _latency_rule(cand: Mapping[str, Any], t: GateThresholds) -> dict[str, Any]:
    p95 = (cand.get("latency") or {}).get("p95_ms")
    if p95 is None:
        return _check("p95_latency_ms", False, None, t.p95_latency_ms_budget, "p95 latency was not measured")
    ok = p95 <= t.p95_latency_ms_budget
    detail = f"p95 latency {_f(p95, 1)} ms {'<=' if ok else '>'} budget {_f(t.p95_latency_ms_budget, 1)} ms"
    return _check("p95_latency_ms", ok, p95, t.p95_latency_ms_budget, detail)


def _contract_rule(contract_ok: bool, detail: str | None) -> dict[str, Any]:
    text = "honours the serving contract" if contract_ok else "does not honour the serving contract"
    return _check("contract", bool(contract_ok), bool(contract_ok), True, text + (f": {detail}" if detail else ""))


def _infra_rule(infra_ok: bool | None, detail: str | None) -> dict[str, Any]:
    if infra_ok is None:
        return _check("infra", None, None, True, "infra validation not run yet" + (f": {detail}" if detail else ""),
                      pending=True)
    text = "infra validation passed" if infra_ok else "infra validation failed"
    return _check("infra", bool(infra_ok), bool(infra_ok), True, text + (f": {detail}" if detail else ""))


def judge(
    pair: Mapping[str, Any],
    thresholds: GateThresholds,
    *,
    contract_ok: bool,
    infra_ok: bool | None,
    infra_detail: str | None = None,
    contract_detail: str | None = None,
    candidate_label_map: Mapping[Any, Any] | None = None,
    champion_label_map: Mapping[Any, Any] | None = None,
) -> Verdict:
    """Judge ``pair`` (``evaluate_pair(...)``'s dict: ``{"candidate": {...}, "champion": {...} | None}``).

    ``contract_ok``: the candidate SavedModel passed ``verify_contract``. ``infra_ok``: its
    serving image started in a throwaway pod and answered a real request; ``None`` = not
    run yet, which never passes (``Verdict.passed_so_far`` tells whether building is worth it).
    The label maps default to those recorded in ``pair``; with a champion they must be equal,
    or ``LabelMapMismatch`` is raised: nothing is compared.
    """
    cand, champ = pair.get("candidate"), pair.get("champion")
    if not cand:
        raise GateError("the evaluation has no candidate; run evaluate_pair(candidate_model_dir, ...) first")
    if champ:
        check_same_label_map(
            candidate_label_map if candidate_label_map is not None else cand.get("label_map"),
            champion_label_map if champion_label_map is not None else champ.get("label_map"),
        )
        checks = [_map_rule(cand, champ, thresholds), *_class_rules(cand, champ, thresholds),
                  *_slice_rules(cand, champ, thresholds)]
        mode = "vs_champion"
    else:
        checks = _absolute_rules(cand, thresholds)
        mode = "absolute"
    checks += [_latency_rule(cand, thresholds), _contract_rule(contract_ok, contract_detail),
               _infra_rule(infra_ok, infra_detail)]
    reasons = [c["detail"] for c in checks if c["passed"] is False or c.get("pending")]
    numbers = {
        "candidate_ap": cand["metrics"].get("AP"),
        "candidate_ap50": cand["metrics"].get("AP50"),
        "candidate_p95_ms": (cand.get("latency") or {}).get("p95_ms"),
        "champion_ap": champ["metrics"].get("AP") if champ else None,
        "champion_ap50": champ["metrics"].get("AP50") if champ else None,
        "champion_p95_ms": (champ.get("latency") or {}).get("p95_ms") if champ else None,
    }
    return Verdict(passed=not reasons, reasons=reasons, checks=checks, mode=mode,
                   thresholds=thresholds.to_dict(), numbers=numbers)
