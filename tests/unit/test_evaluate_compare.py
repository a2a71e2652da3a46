"""evaluate_pair on tiny contract SavedModels (real TF, real pycocotools), then the gate on its result.

The tiny detectors ignore the pixels: the candidate always finds the box where batch "a"
has its object, the champion where batch "b" has it. Batch a's images are dark and batch b's
bright, so every slice's AP is known exactly: 1.0 where a model looks at the right place, 0.0
elsewhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from detectops.evaluate.compare import evaluate_pair, pair_metrics
from detectops.gate import GateThresholds, LabelMapMismatch, judge

# Needs the development environment (Airflow, Great Expectations, pandas, scipy, Docker, Node, the
# repository's scripts/): left out of the test image's run (tests/conftest.py).
pytestmark = pytest.mark.platform

LABELS = {1: "circle", 2: "square"}
BOX_A = (0.1, 0.1, 0.4, 0.4)  # normalised [ymin, xmin, ymax, xmax]
BOX_B = (0.5, 0.5, 0.9, 0.9)
SIZE = 100
#: file name -> (batch, pixel level, where its circle is)
IMAGES = {"a1.png": ("a", 40, BOX_A), "a2.png": ("a", 40, BOX_A), "a3.png": ("a", 40, BOX_A),
          "b1.png": ("b", 200, BOX_B), "b2.png": ("b", 200, BOX_B)}


def _dataset(root):
    from detectops.data import CocoDataset

    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, (name, (batch, level, box)) in enumerate(IMAGES.items(), start=1):
        Image.fromarray(np.full((SIZE, SIZE, 3), level, np.uint8)).save(root / "images" / name)
        # As in a dataset version's split, each image record names its batch.
        images.append({"id": i, "file_name": name, "width": SIZE, "height": SIZE, "batch": batch})
        ymin, xmin, ymax, xmax = (v * SIZE for v in box)
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                            "area": (xmax - xmin) * (ymax - ymin), "iscrowd": 0})
    categories = [{"id": k, "name": v} for k, v in LABELS.items()]
    CocoDataset(root=root, images=images, annotations=annotations, categories=categories).save()
    return root


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from tests.support.tiny_detector import make_tiny_detector

    tmp = tmp_path_factory.mktemp("pair")
    candidate = make_tiny_detector(tmp / "candidate", boxes=[BOX_A], classes=[1], scores=[0.9], label_map=LABELS)
    champion = make_tiny_detector(tmp / "champion", boxes=[BOX_B], classes=[1], scores=[0.9], label_map=LABELS)
    dataset = _dataset(tmp / "test")
    batches = {name: f"batch-{batch}" for name, (batch, _, _) in IMAGES.items()}
    pair = evaluate_pair(candidate, champion, dataset, image_batches=batches, min_slice_images=2, min_slice_boxes=2,
                         output_dir=tmp / "out")
    return pair, tmp


def test_both_models_are_evaluated_on_the_same_split_with_known_slice_ap(case):
    pair, _ = case
    cand, champ = pair["candidate"], pair["champion"]
    assert cand["dataset"]["sha256"] == champ["dataset"]["sha256"] == pair["test_split"]["sha256"]
    assert pair["test_split"]["images_per_batch"] == {"batch-a": 3, "batch-b": 2}
    assert pair["test_split"]["images_per_brightness"] == {"dark": 3, "bright": 2}
    # All detections score .9; pycocotools breaks the tie by image order. The candidate's 3 hits
    # (images 1-3) rank first: precision 1 up to recall .6 -> 61 of 101 recall points. The
    # champion's 3 misses rank before its 2 hits: precision 2/5 up to recall .4 -> .4 * 41/101.
    assert cand["metrics"]["AP"] == pytest.approx(61 / 101) and champ["metrics"]["AP"] == pytest.approx(0.4 * 41 / 101)
    assert cand["per_class"]["circle"]["ap"] == pytest.approx(61 / 101) and cand["per_class"]["circle"]["num_boxes"] == 5
    assert cand["per_class"]["square"]["ap"] is None  # no ground truth
    assert cand["slices"]["batch"]["batch-a"]["ap"] == pytest.approx(1.0)
    assert cand["slices"]["batch"]["batch-b"]["ap"] == 0.0
    assert champ["slices"]["batch"]["batch-b"]["ap"] == pytest.approx(1.0)
    assert cand["slices"]["brightness"]["dark"]["ap"] == pytest.approx(1.0)
    assert cand["slices"]["brightness"]["mid"] == {"kind": "brightness", "name": "mid", "num_images": 0, "num_boxes": 0,
                                                   "ap": None, "ap50": None, "too_small": True}
    assert 0 < cand["latency"]["p50_ms"] <= cand["latency"]["p95_ms"]
    assert cand["label_map"] == {"1": "circle", "2": "square"}


def test_the_result_is_json_and_written_beside_both_reports(case):
    pair, tmp = case
    on_disk = json.loads((tmp / "out" / "pair.json").read_text())
    assert on_disk == json.loads(json.dumps(pair))
    assert (tmp / "out" / "candidate" / "per_class_ap.csv").is_file()
    assert (tmp / "out" / "champion" / "coco_results.json").is_file()


def test_gate_on_the_pair_names_the_slice_the_candidate_lost(case):
    pair, _ = case
    verdict = judge(json.loads(json.dumps(pair)), GateThresholds(min_slice_images=2, min_slice_boxes=2),
                    contract_ok=True, infra_ok=True)
    # Better overall, but batch b (the bright images) went from 1.0 to 0.0.
    assert not verdict.passed
    assert verdict.reasons == [
        "slice batch 'batch-b' AP dropped 1.000 > 0.050 (1.000 -> 0.000)",
        "slice brightness 'bright' AP dropped 1.000 > 0.050 (1.000 -> 0.000)",
    ]


def test_metrics_for_mlflow_are_prefixed_by_role(case):
    pair, _ = case
    metrics = pair_metrics(pair)
    assert metrics["candidate/AP"] == pytest.approx(61 / 101) and metrics["champion/AP"] == pytest.approx(0.4 * 41 / 101)
    assert metrics["candidate/slice/batch/batch-a/AP"] == pytest.approx(1.0)
    assert metrics["champion/slice/brightness/bright/AP50"] == pytest.approx(1.0)
    assert "candidate/slice/brightness/mid/AP" not in metrics  # undefined is not logged as 0
    assert metrics["delta/AP"] == pytest.approx(61 / 101 - 0.4 * 41 / 101)
    assert metrics["candidate/latency_p95_ms"] == pair["candidate"]["latency"]["p95_ms"]


def test_no_champion_gives_a_candidate_only_result(case, tmp_path):
    _, tmp = case
    pair = evaluate_pair(tmp / "candidate", None, tmp / "test")
    assert pair["champion"] is None
    # No mapping given: the batches come from the image records.
    assert pair["candidate"]["slices"]["batch"]["a"]["ap"] == pytest.approx(1.0)
    assert pair["test_split"]["images_per_batch"] == {"a": 3, "b": 2}
    assert set(pair["candidate"]["slices"]["brightness"]) == {"dark", "mid", "bright"}
    assert judge(pair, GateThresholds(min_ap=0.5, min_ap50=0.5), contract_ok=True, infra_ok=True).passed


def test_models_with_different_label_maps_are_refused_before_inference(case, tmp_path):
    from tests.support.tiny_detector import make_tiny_detector

    _, tmp = case
    other = make_tiny_detector(tmp_path / "other", boxes=[BOX_A], classes=[1], scores=[0.9],
                               label_map={1: "circle", 2: "triangle"})
    with pytest.raises(LabelMapMismatch, match="id 2: candidate 'square', champion 'triangle'"):
        evaluate_pair(tmp / "candidate", other, tmp / "test", output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


@pytest.mark.integration
def test_pair_is_logged_as_one_mlflow_run_and_only_once(case, mlflow_server):
    from mlflow import MlflowClient

    from detectops.evaluate.compare import log_pair

    pair, _ = case
    run_id = log_pair(pair, experiment="test-evaluation-pair", dag_run_id="manual__pair")
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["detectops.kind"] == "evaluation_pair"
    assert run.data.metrics["candidate/AP"] == pytest.approx(61 / 101)
    assert run.data.metrics["champion/slice/batch/batch-b/AP"] == pytest.approx(1.0)
    assert run.data.params["champion_model_sha256"] == pair["champion"]["model"]["sha256"]
    artifacts = {f.path for f in MlflowClient().list_artifacts(run_id)}
    assert {"candidate", "champion", "pair.json"} <= artifacts
    assert log_pair(pair, experiment="test-evaluation-pair", dag_run_id="manual__pair") == run_id
