"""fetch_model's dispatch, local SavedModels, ModelRef, and the TF.js graph-model converter."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from detectops.errors import ContractError, ModelSourceError
from detectops.models import ModelRef, fetch_model
from detectops.models import centernet, npm, sources, zoo
from tests.support.tiny_detector import make_tiny_detector


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_detector(tmp_path_factory.mktemp("tiny") / "saved_model")


def test_local_directory_is_verified_and_hashed(tiny, tmp_path):
    ref = fetch_model(str(tiny), cache_dir=tmp_path)
    assert ref.path == str(tiny.resolve())
    assert ref.name == tiny.parent.name  # "saved_model" says nothing; its parent names the model
    assert len(ref.sha256) == 64 and ref.version == ref.sha256[:12]
    assert fetch_model(str(tiny), cache_dir=tmp_path).sha256 == ref.sha256  # stable
    assert not list(tmp_path.iterdir())  # a local model is used in place, not copied


def test_model_ref_round_trips_through_a_dict(tiny, tmp_path):
    ref = fetch_model(str(tiny), cache_dir=tmp_path)
    data = json.loads(json.dumps(ref.to_dict()))  # what crosses XCom
    assert ModelRef.from_dict(data) == ref


def test_a_changed_file_changes_the_hash(tmp_path):
    a = make_tiny_detector(tmp_path / "a", scores=[0.9, 0.5])
    b = make_tiny_detector(tmp_path / "b", scores=[0.9, 0.4])
    assert fetch_model(str(a)).sha256 != fetch_model(str(b)).sha256


def test_directory_without_contract_model_is_refused(tmp_path):
    with pytest.raises(ContractError, match="no saved_model.pb"):
        fetch_model(str(tmp_path))


def test_unknown_source_lists_the_accepted_forms():
    with pytest.raises(ModelSourceError, match="use 'centernet'.*'zoo:<name>'.*models:/<name>@<alias>"):
        fetch_model("ftp://example.invalid/model")


def test_archive_sources_parse(monkeypatch):
    monkeypatch.delenv("DETECTOPS_ZOO_BASE_URL", raising=False)
    url, name, sha = zoo.parse_archive_source("zoo:ssd_mobilenet_v2_320x320_coco17_tpu-8")
    assert url == ("http://download.tensorflow.org/models/object_detection/tf2/20200711/"
                   "ssd_mobilenet_v2_320x320_coco17_tpu-8.tar.gz")
    assert (name, sha) == ("ssd_mobilenet_v2_320x320_coco17_tpu-8", None)
    monkeypatch.setenv("DETECTOPS_ZOO_BASE_URL", "http://127.0.0.1:9/mirror/")
    assert zoo.parse_archive_source("zoo:m")[0] == "http://127.0.0.1:9/mirror/m.tar.gz"
    digest = "ab" * 32
    assert zoo.parse_archive_source(f"https://h/x/m.tar.gz#sha256={digest.upper()}") == ("https://h/x/m.tar.gz", "m", digest)
    with pytest.raises(ModelSourceError, match="#sha256=<64 hex digits>"):
        zoo.parse_archive_source("https://h/m.tar.gz#md5=00")
    assert zoo.is_archive_url("https://h/m.tar.gz") and not zoo.is_archive_url("https://h/m.zip")


def test_npm_specs_and_mlflow_names():
    assert npm.parse_spec("@vladmandic/human@3.3.6") == ("@vladmandic/human", "3.3.6")
    with pytest.raises(ModelSourceError, match="exact version"):
        npm.parse_spec("@vladmandic/human")
    with pytest.raises(ModelSourceError, match="only @vladmandic/human"):
        fetch_model("npm:left-pad@1.3.0")
    class Registry:  # resolves aliases like MlflowClient.get_model_version_by_alias
        def get_model_version_by_alias(self, name, alias):
            return type("MV", (), {"version": 7})()

    assert sources._mlflow_name_version("models:/detector/3", Registry()) == ("detector", "3")
    assert sources._mlflow_name_version("models:/detector@champion", Registry()) == ("detector", "7")
    assert sources._mlflow_name_version("runs:/abc123/model", Registry()) == ("model", "abc123")


# --- the TF.js graph-model converter, on a hand-written two-layer model ---------------------

def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _conv_attrs(fused: list[str], depthwise: bool = False) -> dict:
    attrs = {
        "T": {"type": "DT_FLOAT"}, "padding": {"s": _b64("SAME")}, "data_format": {"s": _b64("NHWC")},
        "strides": {"list": {"i": ["1", "1", "1", "1"]}}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
        "explicit_paddings": {"list": {}}, "num_args": {"i": "1"},
        "fused_ops": {"list": {"s": [_b64(op) for op in fused]}},
    }
    if not depthwise:
        attrs["use_cudnn_on_gpu"] = {"b": True}
        attrs["epsilon"] = {"f": 0}
    return attrs


def _const(name: str) -> dict:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {"dtype": "DT_FLOAT"}}}}


def test_graph_model_with_fused_ops_and_float16_weights_converts_exactly(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    # Multiples of 1/8 are exact in float16, so quantization loses nothing here.
    w = (rng.integers(-8, 8, (3, 3, 2, 3)) / 8).astype(np.float32)
    b = (rng.integers(-8, 8, (3,)) / 8).astype(np.float32)
    dw = rng.normal(size=(3, 3, 3, 1)).astype(np.float32)
    db = rng.normal(size=(3,)).astype(np.float32)
    (tmp_path / "group1-shard1of1.bin").write_bytes(
        w.astype(np.float16).tobytes() + b.astype(np.float16).tobytes() + dw.tobytes() + db.tobytes()
    )
    f16 = {"dtype": "float16", "original_dtype": "float32"}
    spec = {
        "format": "graph-model",
        "modelTopology": {"node": [
            {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
             "shape": {"shape": {"dim": [{"size": "1"}, {"size": "6"}, {"size": "5"}, {"size": "2"}]}}}},
            _const("w"), _const("b"), _const("dw"), _const("db"),
            {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"], "device": "/device:CPU:0",
             "attr": _conv_attrs(["BiasAdd", "Relu"])},
            {"name": "dconv", "op": "FusedDepthwiseConv2dNative", "input": ["conv", "dw", "db"],
             "attr": _conv_attrs(["BiasAdd"], depthwise=True)},
            {"name": "out", "op": "Identity", "input": ["dconv"], "attr": {"T": {"type": "DT_FLOAT"}}},
        ], "versions": {}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [
            {"name": "w", "shape": list(w.shape), "dtype": "float32", "quantization": f16},
            {"name": "b", "shape": list(b.shape), "dtype": "float32", "quantization": f16},
            {"name": "dw", "shape": list(dw.shape), "dtype": "float32"},
            {"name": "db", "shape": list(db.shape), "dtype": "float32"},
        ]}],
    }
    (tmp_path / "model.json").write_text(json.dumps(spec))

    fn = centernet.load_graph_model(tmp_path / "model.json", ["x"], ["out"])
    x = rng.normal(size=(1, 6, 5, 2)).astype(np.float32)
    got = fn(tf.constant(x))[0].numpy()
    expected = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + b)
    expected = tf.nn.depthwise_conv2d(expected, dw, [1, 1, 1, 1], "SAME") + db
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)

    # A truncated shard is caught, not silently read as zeros.
    shard = tmp_path / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(ModelSourceError, match="truncated or mismatched"):
        centernet.load_graph_model(tmp_path / "model.json", ["x"], ["out"])


@pytest.mark.parametrize("source", ["models:/detector@champion", "runs:/0123/model"])
def test_mlflow_sources_need_an_explicit_tracking_uri(source, tmp_path, monkeypatch):
    """A task reaches MLflow through its connection: the worker's MLFLOW_TRACKING_URI is not used."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    with pytest.raises(ModelSourceError, match="mlflow_default connection"):
        fetch_model(source, cache_dir=tmp_path)


def test_the_cli_takes_the_tracking_uri_from_its_flag_and_tasks_ask_only_for_mlflow_sources(monkeypatch, capsys):
    from detectops.cli import main
    from detectops.pipeline import needs_mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["fetch-model", "models:/detector@champion"]) == 2
    assert "--mlflow or MLFLOW_TRACKING_URI" in capsys.readouterr().err
    assert needs_mlflow(" models:/detector@champion") and needs_mlflow("runs:/abc/model")
    assert not needs_mlflow("centernet") and not needs_mlflow("/models/x")
