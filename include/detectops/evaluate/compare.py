"""``evaluate_pair``: a candidate and the champion on the same test split, with slices and latency.

Each model runs once over the split (``evaluate_model``: COCO metrics, latency, the report
files); its COCO results are then scored per class, per batch and per brightness bucket
(``evaluate.slices``). The result is one JSON-able dict, what ``detectops.gate.judge`` reads:

    pair = evaluate_pair(candidate_dir, champion_dir_or_None, test_dir,
                         image_batches={"img_0001.jpg": "batch-3f2a...", ...})
    pair["candidate"]["metrics"]["AP"], pair["champion"]["slices"]["brightness"]["dark"]["ap"]

Optionally both evaluations are logged to MLflow as one run (``log_pair``), each model's
numbers under its role: ``candidate/AP``, ``champion/slice/batch/<id>/AP``, ...
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detectops import settings
from detectops.evaluate.slices import (
    BRIGHTNESS_EDGES,
    MIN_SLICE_BOXES,
    MIN_SLICE_IMAGES,
    UNMAPPED_BATCH,
    batches_from_images,
    brightness_bucket,
    evaluate_slices,
    image_brightness,
)
from detectops.fsutil import atomic_write_text
from detectops.gate import check_same_label_map

ROLES = ("candidate", "champion")
PAIR_FILE = "pair.json"
#: Tag that identifies one pair evaluation (models, data, code, settings, DAG run) for idempotency.
PAIR_KEY_TAG = "detectops.evaluation_pair_key"


def _label_map_of(info: Mapping[str, Any]) -> dict[str, str]:
    """The SavedModel's label map with string ids, as it will look after an XCom round trip."""
    from detectops.models.labels import read_label_map

    return {str(k): v for k, v in sorted(read_label_map(Path(info["path"])).items())}


def _evaluate_one(
    info: dict[str, Any],
    dataset_dir: Path,
    gt: dict[str, Any],
    *,
    output_dir: Path | None,
    score_threshold: float,
    slice_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One model: ``EvaluationResult`` fields plus ``label_map``, ``per_class`` and ``slices``."""
    from detectops.evaluate.evaluation import ARTIFACT_FILES, evaluate_model

    result = evaluate_model(info, dataset_dir, output_dir=output_dir, score_threshold=score_threshold)
    # The detections the metrics were computed from: slices reuse them, no second inference pass.
    detections = json.loads(Path(result.output_dir, ARTIFACT_FILES["coco_results_json"]).read_text())
    report = evaluate_slices(gt, detections, **slice_kwargs).to_dict()
    return {**result.to_dict(), "label_map": _label_map_of(info), "per_class": report["per_class"],
            "slices": report["slices"], "slices_config": report["config"]}


def _split_summary(dataset: Any, brightness: Mapping[int, float], image_batches: Mapping[str, str] | None,
                   edges: Sequence[float]) -> dict[str, Any]:
    """How the test split divides: images per batch and per brightness bucket."""
    buckets: dict[str, int] = {}
    for luma in brightness.values():
        bucket = brightness_bucket(luma, edges)
        buckets[bucket] = buckets.get(bucket, 0) + 1
    summary: dict[str, Any] = {
        "num_images": len(dataset.images),
        "num_boxes": sum(1 for a in dataset.annotations if not a.get("iscrowd")),
        "images_per_brightness": buckets,
    }
    if image_batches is not None:
        per_batch: dict[str, int] = {}
        for im in dataset.images:
            batch = str(image_batches.get(str(im["file_name"]), UNMAPPED_BATCH))
            per_batch[batch] = per_batch.get(batch, 0) + 1
        summary["images_per_batch"] = dict(sorted(per_batch.items()))
    return summary


def evaluate_pair(
    candidate_model_dir: Any,
    champion_model_dir: Any | None,
    test_dataset_dir: str | Path,
    *,
    image_batches: Mapping[str, str] | None = None,
    brightness_edges: Sequence[float] = BRIGHTNESS_EDGES,
    min_slice_images: int = MIN_SLICE_IMAGES,
    min_slice_boxes: int = MIN_SLICE_BOXES,
    score_threshold: float = 0.0,
    output_dir: str | Path | None = None,
    mlflow_experiment: str | None = None,
    run_name: str | None = None,
    dag_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate the candidate and (if any) the champion on the same test split.

    Models: SavedModel directories, ``ModelRef``s or their dicts, or anything
    ``detectops.models.fetch_model`` accepts (the contract is verified on the way).
    ``image_batches``: ``{image file_name: batch id}`` from the dataset version's manifest
    (``DatasetVersion.image_batches("test")``); by default the ``"batch"`` of each image record
    of the split, when every image has one; else there are no batch slices.

    Returns ``{"candidate": {...}, "champion": {...} | None, "test_split": {...}, "run_id"}``,
    each model with ``metrics``, ``per_class_ap``, ``per_class`` (AP, AP50, box count,
    ``too_small``), ``slices`` (``{"batch"|"brightness": {name: ...}}``), ``latency``
    (``p95_ms``), ``label_map``, ``model`` and its report files. ``output_dir``: reports go to
    ``<output_dir>/candidate`` and ``/champion``, and the whole result to ``pair.json``.
    ``mlflow_experiment``: log both models as one run there (see ``log_pair``).

    Raises ``detectops.gate.LabelMapMismatch`` before any inference when the two models
    predict different classes: such a pair must never be compared.
    """
    from detectops.data import CocoDataset
    from detectops.evaluate.evaluation import _model_info

    started = time.perf_counter()
    infos = {"candidate": _model_info(candidate_model_dir)}
    if champion_model_dir is not None:
        infos["champion"] = _model_info(champion_model_dir)
        check_same_label_map(_label_map_of(infos["candidate"]), _label_map_of(infos["champion"]))

    dataset_dir = Path(test_dataset_dir)
    dataset = CocoDataset.load(dataset_dir)
    gt = dataset.to_json_dict()
    if image_batches is None:  # a dataset version's split records each image's batch itself
        image_batches = batches_from_images(dataset.images)
    brightness = image_brightness(dataset)  # a property of the data: computed once for both models
    slice_kwargs = {"image_batches": image_batches, "brightness": brightness, "edges": tuple(brightness_edges),
                    "min_images": min_slice_images, "min_boxes": min_slice_boxes}
    out = Path(output_dir) if output_dir is not None else None

    pair: dict[str, Any] = {role: None for role in ROLES}
    for role, info in infos.items():
        pair[role] = _evaluate_one(info, dataset_dir, gt, output_dir=out / role if out else None,
                                   score_threshold=score_threshold, slice_kwargs=slice_kwargs)
    pair["test_split"] = {**pair["candidate"]["dataset"],
                          **_split_summary(dataset, brightness, image_batches, brightness_edges)}
    pair["duration_s"] = round(time.perf_counter() - started, 3)
    pair["run_id"] = None
    if mlflow_experiment:
        pair["run_id"] = log_pair(pair, experiment=mlflow_experiment, run_name=run_name, dag_run_id=dag_run_id,
                                  tags=tags, tracking_uri=tracking_uri)
    if out is not None:
        atomic_write_text(out / PAIR_FILE, json.dumps(pair, indent=1, sort_keys=True) + "\n")
    return pair


# --------------------------------------------------------------------------- MLflow
def pair_metrics(pair: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics of a pair: each model's evaluation and slice numbers under its role."""
    from detectops.evaluate.evaluation import EvaluationResult
    from detectops.evaluate.mlflow_log import evaluation_metrics, metric_key

    out: dict[str, float] = {}
    for role in ROLES:
        entry = pair.get(role)
        if not entry:
            continue
        out.update({f"{role}/{k}": v for k, v in evaluation_metrics(EvaluationResult.from_dict(entry)).items()})
        for kind, group in entry.get("slices", {}).items():
            for name, s in group.items():
                prefix = f"{role}/slice/{kind}/{metric_key(name)}"
                out.update({f"{prefix}/{k.upper()}": float(s[k]) for k in ("ap", "ap50") if s.get(k) is not None})
                out[f"{prefix}/num_images"] = float(s["num_images"])
    cand, champ = pair.get("candidate") or {}, pair.get("champion") or {}
    for key in ("AP", "AP50"):
        a, b = (cand.get("metrics") or {}).get(key), (champ.get("metrics") or {}).get(key)
        if a is not None and b is not None:
            out[f"delta/{key}"] = float(a - b)
    return out


def _pair_params(pair: Mapping[str, Any], code_version: str) -> dict[str, str]:
    params: dict[str, Any] = {"code_version": code_version}
    split = pair.get("test_split") or {}
    params.update({f"dataset_{k}": split.get(k) for k in ("name", "sha256", "num_images", "sample_of")})
    config = (pair.get("candidate") or {}).get("slices_config") or {}
    params.update({"brightness_edges": config.get("brightness_edges"), "min_slice_images": config.get("min_images"),
                   "min_slice_boxes": config.get("min_boxes"),
                   "score_threshold": (pair.get("candidate") or {}).get("score_threshold")})
    for role in ROLES:
        model = (pair.get(role) or {}).get("model") or {}
        params.update({f"{role}_model_{k}": model.get(k) for k in ("source", "name", "version", "sha256")})
    params["has_champion"] = bool(pair.get("champion"))
    return {k: str(v) for k, v in params.items() if v is not None}


def log_pair(
    pair: dict[str, Any],
    *,
    experiment: str,
    run_name: str | None = None,
    dag_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log a pair as one MLflow run: metrics by role, both report directories, ``pair.json``.

    Idempotent like ``log_evaluation``: a finished run of the same pair (same model hashes,
    dataset hash, code version, settings and DAG run) is returned instead of a duplicate.
    """
    from mlflow.entities import Metric, Param

    from detectops.evaluate.mlflow_log import connect, find_finished_run, get_or_create_experiment

    code_version = settings.code_version()
    params = _pair_params(pair, code_version)
    key = hashlib.sha256(json.dumps({"params": params, "dag_run_id": dag_run_id}, sort_keys=True).encode()).hexdigest()[:32]
    client = connect(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment)
    existing = find_finished_run(client, experiment_id, PAIR_KEY_TAG, key)
    if existing:
        return existing

    all_tags = {PAIR_KEY_TAG: key, "detectops.kind": "evaluation_pair", "code_version": code_version,
                "dataset_sha256": params.get("dataset_sha256"), "candidate_model_sha256": params.get("candidate_model_sha256"),
                "champion_model_sha256": params.get("champion_model_sha256"), "dag_run_id": dag_run_id, **(tags or {})}
    all_tags = {k: str(v) for k, v in all_tags.items() if v is not None}
    short = (params.get("candidate_model_sha256") or "")[:8]
    run = client.create_run(experiment_id, run_name=run_name or f"eval-pair-{short}", tags=all_tags)
    run_id = run.info.run_id
    try:
        ts = int(time.time() * 1000)
        metrics = [Metric(k, v, ts, 0) for k, v in sorted(pair_metrics(pair).items())]
        for i in range(0, len(metrics), 1000):  # MLflow's log_batch takes at most 1000 metrics
            client.log_batch(run_id, metrics=metrics[i:i + 1000],
                             params=[Param(k, v[:6000]) for k, v in params.items()] if i == 0 else [])
        for role in ROLES:
            entry = pair.get(role)
            if entry:
                client.log_artifacts(run_id, entry["output_dir"], artifact_path=role)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / PAIR_FILE
            path.write_text(json.dumps({**pair, "run_id": run_id}, indent=1, sort_keys=True) + "\n")
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
