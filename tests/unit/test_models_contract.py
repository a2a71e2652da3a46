"""verify_contract: a contract model passes; each kind of violation is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectops.errors import ContractError
from detectops.models import verify_contract
from tests.support.tiny_detector import make_tiny_detector


def _save(path: Path, *, signature: str = "serving_default", input_name: str = "input_tensor",
          dtype: str = "uint8", drop: str | None = None, boxes_rank: int = 3) -> Path:
    """A SavedModel that breaks the contract in one chosen way."""
    import tensorflow as tf

    class Bad(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], getattr(tf, dtype), name=input_name)])
        def serve(self, x):
            out = {
                "detection_boxes": tf.zeros([1, 2, 4]) if boxes_rank == 3 else tf.zeros([2, 4]),
                "detection_classes": tf.zeros([1, 2]),
                "detection_scores": tf.zeros([1, 2]),
                "num_detections": tf.zeros([1]),
            }
            out.pop(drop, None)
            return out

    module = Bad()
    tf.saved_model.save(module, str(path), signatures={signature: module.serve})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_detector(tmp_path_factory.mktemp("tiny") / "model")


def test_tiny_detector_satisfies_contract(tiny):
    spec = verify_contract(tiny)
    assert spec.input_shape == (1, None, None, 3)
    assert spec.input_size is None
    assert spec.outputs["detection_boxes"] == (1, 2, 4)


def test_not_a_saved_model_points_at_the_one_below(tmp_path, tiny):
    (tmp_path / "export").mkdir()
    with pytest.raises(ContractError, match="no saved_model.pb"):
        verify_contract(tmp_path / "export")
    with pytest.raises(ContractError, match=f"A SavedModel exists below it, at {tiny}"):
        verify_contract(tiny.parent)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signature": "predict"}, r"no 'serving_default' signature \(found: \['predict'\]\)"),
        ({"input_name": "images"}, r"input 'input_tensor' is missing \(inputs: \['images'\]\)"),
        ({"dtype": "float32"}, "input 'input_tensor' has dtype float32, expected uint8"),
        ({"drop": "num_detections"}, "output 'num_detections' is missing"),
        ({"boxes_rank": 2}, "output 'detection_boxes' has rank 2"),
    ],
)
def test_each_violation_is_named(tmp_path, kwargs, message):
    path = _save(tmp_path / "bad", **kwargs)
    with pytest.raises(ContractError, match=message):
        verify_contract(path)
