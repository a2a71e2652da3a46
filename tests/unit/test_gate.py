"""The gate's rules, each passing and failing, on hand-written evaluation results (pure, no model)."""

from __future__ import annotations

import json

import pytest

from detectops.gate import GateError, GateThresholds, LabelMapMismatch, Verdict, judge

LABELS = {1: "circle", 2: "ring"}


def _slice(ap, *, images=50, boxes=80):
    return {"ap": ap, "ap50": None if ap is None else min(1.0, ap + 0.3), "num_images": images, "num_boxes": boxes,
            "too_small": False}


def _model(ap=0.5, *, ap50=0.8, p95=40.0, classes=None, batches=None, brightness=None):
    classes = classes or {"circle": 0.5, "ring": 0.5}
    return {
        "metrics": {"AP": ap, "AP50": ap50},
        "per_class": {name: _slice(v, boxes=60) for name, v in classes.items()},
        "slices": {
            "batch": {name: _slice(v) for name, v in (batches or {"b1": 0.5, "b2": 0.5}).items()},
            "brightness": {name: _slice(v) for name, v in (brightness or {"dark": 0.4, "mid": 0.5, "bright": 0.5}).items()},
        },
        "latency": {"p50_ms": p95 / 2, "p95_ms": p95},
        "label_map": {str(k): v for k, v in LABELS.items()},  # as after a JSON round trip
    }


def _judge(candidate, champion=None, thresholds=GateThresholds(), **kw):
    kw.setdefault("contract_ok", True)
    kw.setdefault("infra_ok", True)
    return judge({"candidate": candidate, "champion": champion}, thresholds, **kw)


def _check(verdict, name):
    (found,) = [c for c in verdict.checks if c["name"] == name]
    return found


def test_equal_models_pass_with_zero_margin_and_every_rule_is_reported():
    verdict = _judge(_model(0.45), _model(0.45))
    assert verdict.passed and verdict.reasons == [] and verdict.mode == "vs_champion"
    names = [c["name"] for c in verdict.checks]
    assert names[0] == "map" and {"class_ap/circle", "class_ap/ring", "slice_ap/batch/b1", "slice_ap/brightness/dark",
                                  "p95_latency_ms", "contract", "infra"} <= set(names)
    assert all(c["passed"] is True for c in verdict.checks)
    assert _check(verdict, "map")["value"] == 0.45 and _check(verdict, "map")["limit"] == pytest.approx(0.45)
    assert verdict.summary().startswith("gate passed: AP 0.450 >= champion 0.450 + 0.000")


def test_map_margin_fails_a_worse_candidate_and_a_negative_margin_tolerates_it():
    verdict = _judge(_model(0.41), _model(0.45))
    assert not verdict.passed
    assert verdict.summary() == "not promoted: AP 0.410 < champion 0.450 + 0.000"
    assert _check(verdict, "map") == {"name": "map", "passed": False, "value": 0.41, "limit": 0.45,
                                      "detail": "AP 0.410 < champion 0.450 + 0.000"}
    tolerant = _judge(_model(0.44), _model(0.45), GateThresholds(map_margin=-0.02))
    assert tolerant.passed and "champion 0.450 - 0.020" in _check(tolerant, "map")["detail"]
    demanding = _judge(_model(0.46), _model(0.45), GateThresholds(map_margin=0.02))
    assert not demanding.passed


def test_class_ap_drop_over_the_bound_fails_with_its_numbers():
    champion = _model(0.45, classes={"circle": 0.4, "ring": 0.5})
    candidate = _model(0.47, classes={"circle": 0.56, "ring": 0.38})
    verdict = _judge(candidate, champion)
    assert not verdict.passed
    ring = _check(verdict, "class_ap/ring")
    assert (ring["passed"], ring["value"], ring["limit"]) == (False, pytest.approx(0.12), 0.05)
    assert verdict.reasons == ["class 'ring' AP dropped 0.120 > 0.050 (0.500 -> 0.380)"]
    assert _check(verdict, "class_ap/circle")["passed"] is True  # it improved
    assert _judge(candidate, champion, GateThresholds(max_class_ap_drop=0.15)).passed


def test_slice_ap_drop_over_the_bound_fails():
    champion = _model(0.45, brightness={"dark": 0.40, "mid": 0.5, "bright": 0.5})
    candidate = _model(0.47, brightness={"dark": 0.30, "mid": 0.55, "bright": 0.5})
    verdict = _judge(candidate, champion)
    assert verdict.reasons == ["slice brightness 'dark' AP dropped 0.100 > 0.050 (0.400 -> 0.300)"]
    batch = _judge(_model(0.47, batches={"b1": 0.6, "b2": 0.3}), _model(0.45, batches={"b1": 0.5, "b2": 0.5}))
    assert not batch.passed and _check(batch, "slice_ap/batch/b2")["passed"] is False
    assert _judge(candidate, champion, GateThresholds(max_slice_ap_drop=0.1)).passed


def test_too_small_slices_and_classes_are_reported_but_not_gated():
    champion, candidate = _model(0.45), _model(0.45)
    candidate["slices"]["batch"]["b2"] = _slice(0.0, images=4, boxes=6)
    champion["slices"]["batch"]["b2"] = _slice(0.9, images=4, boxes=6)
    candidate["per_class"]["ring"] = _slice(0.0, boxes=5)
    champion["per_class"]["ring"] = _slice(0.9, boxes=5)
    verdict = _judge(candidate, champion)
    assert verdict.passed
    small = _check(verdict, "slice_ap/batch/b2")
    assert small["passed"] is None and small["value"] == pytest.approx(0.9) and "too small (4 images, 6 boxes)" in small["detail"]
    assert _check(verdict, "class_ap/ring")["passed"] is None
    # The limits are Params: lowered, the same slice is gated and fails.
    strict = _judge(candidate, champion, GateThresholds(min_slice_images=2, min_slice_boxes=2))
    assert not strict.passed and len(strict.reasons) == 2


def test_latency_budget():
    verdict = _judge(_model(0.5, p95=312.44), _model(0.45), GateThresholds(p95_latency_ms_budget=250))
    assert verdict.reasons == ["p95 latency 312.4 ms > budget 250.0 ms"]
    assert _check(_judge(_model(0.5, p95=250.0), None), "p95_latency_ms")["passed"] is True


def test_contract_and_infra_validation():
    broken = _judge(_model(0.5), _model(0.45), contract_ok=False, contract_detail="no serving_default signature")
    assert broken.reasons == ["does not honour the serving contract: no serving_default signature"]
    infra = _judge(_model(0.5), _model(0.45), infra_ok=False, infra_detail="pod answered 503")
    assert infra.reasons == ["infra validation failed: pod answered 503"]
    assert _check(infra, "infra")["detail"] == "infra validation failed: pod answered 503"


def test_infra_not_run_never_passes_but_tells_whether_building_is_worth_it():
    verdict = _judge(_model(0.5), _model(0.45), infra_ok=None)
    assert not verdict.passed and verdict.passed_so_far and verdict.pending == ["infra"]
    assert verdict.reasons == ["infra validation not run yet"]
    worse = _judge(_model(0.3), _model(0.45), infra_ok=None)
    assert not worse.passed_so_far


def test_absolute_thresholds_apply_without_a_champion():
    verdict = _judge(_model(0.35, ap50=0.7), None, GateThresholds(min_ap=0.3, min_ap50=0.6))
    assert verdict.passed and verdict.mode == "absolute"
    assert [c["name"] for c in verdict.checks] == ["min_ap", "min_ap50", "p95_latency_ms", "contract", "infra"]
    assert "(no champion)" in verdict.summary()
    weak = _judge(_model(0.2, ap50=0.5), None, GateThresholds(min_ap=0.3, min_ap50=0.6))
    assert weak.reasons == ["AP 0.200 < minimum 0.300 (no champion)", "AP50 0.500 < minimum 0.600 (no champion)"]
    undefined = _judge(_model(None, ap50=None), None)
    assert not undefined.passed and _check(undefined, "min_ap")["value"] is None


def test_different_label_maps_are_refused():
    with pytest.raises(LabelMapMismatch, match=r"id 2: candidate 'ring', champion 'square'.*new model"):
        _judge(_model(), _model(), candidate_label_map=LABELS, champion_label_map={1: "circle", 2: "square"})
    with pytest.raises(LabelMapMismatch, match="id 3"):
        _judge(_model(), _model(), candidate_label_map={**LABELS, 3: "cross"}, champion_label_map=LABELS)
    with pytest.raises(LabelMapMismatch, match="champion model carries no label map"):
        _judge(_model(), _model(), champion_label_map={})
    # int and str ids (after XCom) are the same map; no champion means nothing to compare.
    assert _judge(_model(), _model(), candidate_label_map=LABELS).passed
    assert _judge(_model(0.5), None, candidate_label_map={9: "other"}).passed


def test_verdict_round_trips_and_gives_model_version_tags():
    verdict = _judge(_model(0.41), _model(0.45, classes={"circle": 0.5, "ring": 0.62}))
    again = Verdict.from_dict(json.loads(json.dumps(verdict.to_dict())))
    assert again == verdict and again.summary() == verdict.summary()
    tags = verdict.tags()
    assert tags["gate.passed"] == "false" and tags["gate.mode"] == "vs_champion"
    assert tags["gate.reasons"].startswith("AP 0.410 < champion 0.450 + 0.000; class 'ring' AP dropped 0.120")
    assert tags["gate.candidate_ap"] == "0.41" and tags["gate.champion_ap"] == "0.45"
    assert json.loads(tags["gate.thresholds"])["map_margin"] == 0.0
    assert {"name": "map", "passed": False, "value": 0.41, "limit": 0.45} in json.loads(tags["gate.checks"])
    assert all(isinstance(v, str) and len(v) <= 5000 for v in tags.values())


def test_thresholds_from_params():
    t = GateThresholds.from_params({"gate_map_margin": "-0.01", "max_class_ap_drop": 0.1, "min_slice_images": "12",
                                    "p95_latency_ms_budget": None, "model_name": "shapes"})
    assert (t.map_margin, t.max_class_ap_drop, t.min_slice_images) == (-0.01, 0.1, 12)
    assert t.p95_latency_ms_budget == GateThresholds().p95_latency_ms_budget
    with pytest.raises(GateError, match="map_margin must be a number"):
        GateThresholds.from_params({"map_margin": "a lot"})
    with pytest.raises(GateError, match="whole number"):
        GateThresholds.from_params({"min_slice_boxes": 2.5})
    with pytest.raises(GateError, match="max_slice_ap_drop must be within"):
        GateThresholds(max_slice_ap_drop=-0.1)
    with pytest.raises(GateError, match="finite"):
        GateThresholds.from_params({"min_ap": "nan"})


def test_a_pair_without_candidate_is_an_error():
    with pytest.raises(GateError, match="no candidate"):
        judge({"candidate": None, "champion": None}, GateThresholds(), contract_ok=True, infra_ok=True)
