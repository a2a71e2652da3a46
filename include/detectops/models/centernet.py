"""CenterNet (MobileNetV3, COCO) from @vladmandic/human's TF.js graph model, as a contract SavedModel.

Two steps, TensorFlow and NumPy only:

1. ``load_graph_model``: TF.js ``model.json`` + weight shards -> a pruned TF function.
   ``modelTopology`` is a GraphDef in protobuf-JSON whose weight ``Const`` nodes have no
   values; the values come from ``weightsManifest`` (shards concatenated per group, weights in
   order, float16-quantized here). TF.js also fuses ops that stock TensorFlow only runs after
   its own grappler rewrite (``_FusedConv2D``, ``FusedDepthwiseConv2dNative``, ``_FusedMatMul``);
   they are split back into Conv2D / DepthwiseConv2dNative / MatMul + BiasAdd + activation.
2. ``save_contract_model``: wraps that function in the detector contract (uint8 image of any
   size -> resize to 512x512 -> ``tower_0/detections`` -> NMS -> normalised boxes, COCO ids,
   padded to ``MAX_DETECTIONS``) and saves it with ``assets/label_map.json``.

NMS is class-agnostic on purpose. CenterNet's head emits one heatmap per class, and on
ambiguous objects neighbouring class maps peak at the same place (the astronaut is "person"
and a weaker "tie"-sized "person" part; a cat is "dog" and "cat"). One object should produce
one box, which is what a service user expects and what @vladmandic/human itself does.
The price: two different-class objects overlapping by more than ``IOU_THRESHOLD`` (a rider
on a horse) lose the weaker one. A slightly lower mAP, traded for readable output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detectops.errors import ModelSourceError
from detectops.models.contract import INPUT

INPUT_NODE = "tower_0/images"
DETECTIONS_NODE = "tower_0/detections"
INPUT_SIZE = 512
MAX_DETECTIONS = 100
IOU_THRESHOLD = 0.5
#: Keep low so that COCO mAP sees the whole precision/recall curve; callers filter further.
SCORE_THRESHOLD = 0.05

_QUANTIZED_BYTES = {"float16": 2, "uint8": 1, "uint16": 2}
_DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1}
_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu"}


def _decode_weights(model_dir: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Weight name -> float32/int32 array, from the manifest's shard groups."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        buffer = b"".join((model_dir / shard).read_bytes() for shard in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            stored = quant["dtype"] if quant else w["dtype"]
            width = _QUANTIZED_BYTES.get(stored) if quant else _DTYPE_BYTES.get(stored)
            if width is None:
                raise ModelSourceError(f"weight {w['name']}: unsupported stored dtype {stored}")
            size = count * width
            if offset + size > len(buffer):
                raise ModelSourceError(
                    f"weight shards {group['paths']} end before weight {w['name']}: the model files are "
                    "truncated or mismatched; fetch the package again."
                )
            values = np.frombuffer(buffer, dtype=stored, count=count, offset=offset).copy()
            if quant and stored != "float16":  # affine quantization: q * scale + min
                values = values.astype(np.float32) * quant["scale"] + quant["min"]
            values = values.astype(w["dtype"])
            weights[w["name"]] = values.reshape(shape)
            offset += size
        if offset != len(buffer):
            raise ModelSourceError(
                f"weight shards {group['paths']} hold {len(buffer)} bytes but the manifest describes "
                f"{offset}: the model files are truncated or mismatched; fetch the package again."
            )
    return weights


def _split_fused(node: Any) -> list[Any]:
    """Rewrite one fused node as standard ops; the last new node keeps the fused node's name."""
    fused_ops = [s.decode() for s in node.attr["fused_ops"].list.s]
    base_op = {
        "_FusedConv2D": "Conv2D",
        "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
        "_FusedMatMul": "MatMul",
    }[node.op]
    data_inputs = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    if not fused_ops or fused_ops[0] != "BiasAdd" or len(fused_ops) > 2 or (
        len(fused_ops) == 2 and fused_ops[1] not in _ACTIVATIONS
    ):
        raise ModelSourceError(f"{node.name}: unsupported fused ops {fused_ops} on {node.op}")

    keep_attrs = {
        "Conv2D": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"),
        "DepthwiseConv2dNative": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations"),
        "MatMul": ("T", "transpose_a", "transpose_b"),
    }[base_op]
    nodes = []
    base = type(node)()  # a NodeDef
    base.name, base.op = f"{node.name}/{base_op}", base_op
    base.input.extend(data_inputs[:2] + controls)
    for key in keep_attrs:
        if key in node.attr:
            base.attr[key].CopyFrom(node.attr[key])
    nodes.append(base)

    bias = type(node)()
    bias.name, bias.op = f"{node.name}/BiasAdd", "BiasAdd"
    bias.input.extend([base.name, data_inputs[2]])
    bias.attr["T"].CopyFrom(node.attr["T"])
    if base_op != "MatMul" and "data_format" in node.attr:
        bias.attr["data_format"].CopyFrom(node.attr["data_format"])
    nodes.append(bias)

    if len(fused_ops) == 2:
        act = type(node)()
        act.name, act.op = f"{node.name}/{fused_ops[1]}", fused_ops[1]
        act.input.append(bias.name)
        act.attr["T"].CopyFrom(node.attr["T"])
        if fused_ops[1] == "LeakyRelu" and "leakyrelu_alpha" in node.attr:
            act.attr["alpha"].CopyFrom(node.attr["leakyrelu_alpha"])
        nodes.append(act)
    nodes[-1].name = node.name  # consumers refer to the fused node's name
    return nodes


def load_graph_model(model_json: Path, inputs: list[str], outputs: list[str]) -> Any:
    """A TF.js graph model as a TF ``ConcreteFunction`` from ``inputs`` to ``outputs``."""
    import tensorflow as tf
    from google.protobuf import json_format

    model_json = Path(model_json)
    spec = json.loads(model_json.read_text())
    if spec.get("format") != "graph-model":
        raise ModelSourceError(f"{model_json} is a TF.js '{spec.get('format')}', not a graph-model")
    source = tf.compat.v1.GraphDef()
    json_format.ParseDict(spec["modelTopology"], source, ignore_unknown_fields=True)
    weights = _decode_weights(model_json.parent, spec["weightsManifest"])

    graph_def = tf.compat.v1.GraphDef()
    graph_def.versions.CopyFrom(source.versions)
    graph_def.library.CopyFrom(source.library)
    for node in source.node:
        node.device = ""  # TF.js records CPU:0 on some nodes; let TensorFlow place them
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
        if node.op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"):
            graph_def.node.extend(_split_fused(node))
        else:
            graph_def.node.append(node)

    def _import() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    graph = wrapped.graph
    return wrapped.prune(
        feeds=[graph.get_tensor_by_name(f"{n}:0") for n in inputs],
        fetches=[graph.get_tensor_by_name(f"{n}:0") for n in outputs],
    )


def save_contract_model(graph_fn: Any, out_dir: Path, coco_ids: list[int], label_map: dict[int, str]) -> Path:
    """Wrap CenterNet's ``tower_0/detections`` function in the detector contract and save it."""
    import tensorflow as tf

    from detectops.models.labels import write_label_map

    class CenterNetDetector(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph_fn = graph_fn
            self.coco_ids = tf.constant(coco_ids, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT)])
        def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
            # Plain bilinear resize without aspect-ratio padding, as @vladmandic/human feeds it;
            # boxes normalised by 512 therefore map straight back onto the original image.
            image = tf.cast(input_tensor, tf.float32)
            image = tf.raw_ops.ResizeBilinear(
                images=image, size=[INPUT_SIZE, INPUT_SIZE], align_corners=False, half_pixel_centers=False
            )
            det = self.graph_fn(image)[0][0]  # [100, 6]: x1, y1, x2, y2 (pixels), score, class index
            finite = tf.reduce_all(tf.math.is_finite(det), axis=-1)
            det = tf.boolean_mask(det, finite)
            boxes = tf.clip_by_value(tf.gather(det, [1, 0, 3, 2], axis=-1) / INPUT_SIZE, 0.0, 1.0)
            scores = det[:, 4]
            index = tf.clip_by_value(tf.cast(det[:, 5], tf.int32), 0, len(coco_ids) - 1)
            keep = tf.image.non_max_suppression(
                boxes, scores, MAX_DETECTIONS, iou_threshold=IOU_THRESHOLD, score_threshold=SCORE_THRESHOLD
            )
            n = tf.shape(keep)[0]
            pad = MAX_DETECTIONS - n
            return {
                "detection_boxes": tf.pad(tf.gather(boxes, keep), [[0, pad], [0, 0]])[tf.newaxis],
                "detection_classes": tf.pad(tf.gather(tf.gather(self.coco_ids, index), keep), [[0, pad]])[tf.newaxis],
                "detection_scores": tf.pad(tf.gather(scores, keep), [[0, pad]])[tf.newaxis],
                "num_detections": tf.cast(tf.reshape(n, [1]), tf.float32),
            }

    module = CenterNetDetector()
    tf.saved_model.save(module, str(out_dir), signatures={"serving_default": module.serve})
    write_label_map(out_dir, label_map)
    return out_dir


def convert(model_json: Path, labels_ts: Path, out_dir: Path) -> Path:
    """Convert @vladmandic/human's ``centernet.json`` (+ ``.bin``) and ``labels.ts`` to a contract SavedModel."""
    from detectops.models.labels import COCO80_TO_COCO91, coco80_label_map, parse_labels_ts

    try:
        label_map = coco80_label_map(parse_labels_ts(Path(labels_ts).read_text()))
    except ValueError as e:
        raise ModelSourceError(f"{labels_ts}: {e}; this package version's labels are not the 80 COCO classes") from e
    graph_fn = load_graph_model(model_json, [INPUT_NODE], [DETECTIONS_NODE])
    return save_contract_model(graph_fn, Path(out_dir), list(COCO80_TO_COCO91), label_map)


PACKAGE = "@vladmandic/human"
DEFAULT_VERSION = "3.3.6"
_MEMBERS = {
    "model": "package/models/centernet.json",
    "labels": "package/src/object/labels.ts",
}
SOURCE_FILE = "detectops-source.json"
#: Bump when the conversion or the wrapper changes: cached conversions of older revisions are redone.
CONVERTER_REVISION = 1


def _cached_revision(entry: Path) -> int | None:
    try:
        return int(json.loads((entry / SOURCE_FILE).read_text())["converter_revision"])
    except (OSError, ValueError, KeyError):
        return None


def fetch_centernet(version: str, cache_root: Path) -> tuple[Path, str]:
    """Get (or reuse) the converted CenterNet of ``@vladmandic/human@version``.

    Returns (SavedModel dir, tarball sha256). The conversion is cached by package version and
    tarball sha256 in ``cache_root/centernet/<version>-<sha12>``; with the tarball already in
    ``cache_root/npm/`` nothing touches the network.
    """
    import tarfile
    import time

    from detectops.fsutil import publish, scratch_dir
    from detectops.models.cache import sha256_file
    from detectops.models.contract import verify_contract
    from detectops.models.npm import fetch_tarball

    tarball = fetch_tarball(PACKAGE, version, cache_root)
    tar_sha = sha256_file(tarball)
    final = Path(cache_root) / "centernet" / f"{version}-{tar_sha[:12]}"
    if (final / "saved_model.pb").is_file() and _cached_revision(final) == CONVERTER_REVISION:
        return final, tar_sha

    with scratch_dir(final) as tmp:
        src = tmp / "src"
        try:
            with tarfile.open(tarball, "r:gz") as tar:
                model_json = json.load(tar.extractfile(_MEMBERS["model"]))
                shards = [f"package/models/{p}" for g in model_json["weightsManifest"] for p in g["paths"]]
                members = [tar.getmember(m) for m in [*_MEMBERS.values(), *shards]]
                tar.extractall(src, members=members, filter="data")
        except (KeyError, tarfile.TarError, EOFError, OSError, ValueError) as e:
            tarball.unlink(missing_ok=True)  # a damaged cached tarball must not stick
            raise ModelSourceError(
                f"{tarball.name} lacks CenterNet's files or is damaged ({e}); it was removed from the cache. "
                f"Fetch again; if it persists, {PACKAGE}@{version} does not ship models/centernet.json."
            ) from e
        started = time.monotonic()
        out = tmp / "saved_model"
        convert(src / _MEMBERS["model"], src / _MEMBERS["labels"], out)
        verify_contract(out)
        (out / SOURCE_FILE).write_text(json.dumps({
            "package": f"{PACKAGE}@{version}",
            "tarball_sha256": tar_sha,
            "converter_revision": CONVERTER_REVISION,
            "conversion_seconds": round(time.monotonic() - started, 2),
            "nms": {"class_agnostic": True, "iou_threshold": IOU_THRESHOLD, "score_threshold": SCORE_THRESHOLD},
        }, indent=1) + "\n")
        publish(out, final, replace=True)  # an existing entry is an older converter revision
    return final, tar_sha
