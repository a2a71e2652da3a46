"""The detector contract (the TF2 Detection Model Zoo's serving signature), checked without running.

``verify_contract`` reads ``saved_model.pb``'s signature definitions (no graph is loaded or
executed), so it is cheap enough to call before every load, upload or deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detectops.errors import ContractError

SIGNATURE = "serving_default"
INPUT = "input_tensor"

#: output name -> (dtype name, rank, last dimension or None)
OUTPUTS: dict[str, tuple[str, int, int | None]] = {
    "detection_boxes": ("float32", 3, 4),
    "detection_classes": ("float32", 2, None),
    "detection_scores": ("float32", 2, None),
    "num_detections": ("float32", 1, None),
}


@dataclass(frozen=True)
class SignatureSpec:
    """What the serving signature declares. A dimension of ``None`` is dynamic."""

    input_shape: tuple[int | None, ...]
    outputs: dict[str, tuple[int | None, ...]]

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` when the model only accepts one image size, else ``None``."""
        h, w = self.input_shape[1], self.input_shape[2]
        return (h, w) if h is not None and w is not None else None


def _shape(proto) -> tuple[int | None, ...] | None:
    """A TensorShapeProto as a tuple (``None`` for unknown dims); ``None`` for unknown rank."""
    if proto.unknown_rank:
        return None
    return tuple(d.size if d.size >= 0 else None for d in proto.dim)


def _dtype_name(enum: int) -> str:
    import tensorflow as tf

    return tf.dtypes.as_dtype(enum).name


def verify_contract(path: str | Path) -> SignatureSpec:
    """Check that ``path`` is a SavedModel satisfying the detector contract; describe it.

    Raises ``ContractError`` listing every problem found (signature name, input name, dtype,
    rank, and each output), so one run tells a user everything to fix.
    """
    path = Path(path)
    pb = path / "saved_model.pb"
    if not pb.is_file():
        hint = ""
        if path.is_dir():
            found = sorted(p.parent for p in path.rglob("saved_model.pb"))
            if found:
                hint = f" A SavedModel exists below it, at {found[0]}: pass that directory."
        raise ContractError(
            f"{path} is not a SavedModel directory (no saved_model.pb).{hint} "
            "Export the model with tf.saved_model.save(...) and pass the directory containing saved_model.pb."
        )

    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as e:  # protobuf raises DecodeError, which has no stable import path
        raise ContractError(f"{pb} is not a readable SavedModel protobuf ({e}); re-export the model.") from e
    signatures = {}
    for meta_graph in saved.meta_graphs:
        signatures.update(meta_graph.signature_def)
    signatures.pop("__saved_model_init_op", None)  # TF's internal initializer, not a user signature
    if SIGNATURE not in signatures:
        raise ContractError(
            f"{path}: no '{SIGNATURE}' signature (found: {sorted(signatures) or 'none'}). "
            f"Save the model with signatures={{'{SIGNATURE}': fn}} taking '{INPUT}' uint8 [1,H,W,3]."
        )
    sig = signatures[SIGNATURE]
    problems: list[str] = []

    input_shape: tuple[int | None, ...] = (1, None, None, 3)
    if INPUT not in sig.inputs:
        problems.append(f"input '{INPUT}' is missing (inputs: {sorted(sig.inputs)})")
    else:
        spec = sig.inputs[INPUT]
        dtype = _dtype_name(spec.dtype)
        shape = _shape(spec.tensor_shape)
        if dtype != "uint8":
            problems.append(f"input '{INPUT}' has dtype {dtype}, expected uint8")
        if shape is None or len(shape) != 4:
            problems.append(f"input '{INPUT}' has shape {shape}, expected rank 4 [1, H, W, 3]")
        else:
            if shape[0] not in (1, None):
                problems.append(f"input '{INPUT}' has batch dimension {shape[0]}, expected 1 (or dynamic)")
            if shape[3] not in (3, None):
                problems.append(f"input '{INPUT}' has {shape[3]} channels, expected 3 (RGB)")
            input_shape = shape
    if len(sig.inputs) > 1:
        extra = sorted(set(sig.inputs) - {INPUT})
        problems.append(f"unexpected extra inputs {extra}: the contract has exactly one input, '{INPUT}'")

    outputs: dict[str, tuple[int | None, ...]] = {}
    for name, (want_dtype, want_rank, want_last) in OUTPUTS.items():
        if name not in sig.outputs:
            problems.append(f"output '{name}' is missing")
            continue
        spec = sig.outputs[name]
        dtype = _dtype_name(spec.dtype)
        shape = _shape(spec.tensor_shape)
        if dtype != want_dtype:
            problems.append(f"output '{name}' has dtype {dtype}, expected {want_dtype}")
        if shape is not None and len(shape) != want_rank:
            problems.append(f"output '{name}' has rank {len(shape)} {list(shape)}, expected rank {want_rank}")
        elif shape is not None and want_last is not None and shape[-1] not in (want_last, None):
            problems.append(f"output '{name}' has last dimension {shape[-1]}, expected {want_last}")
        outputs[name] = shape if shape is not None else ()

    if problems:
        raise ContractError(
            f"{path} does not satisfy the detector contract (docs/DESIGN.md):\n  - "
            + "\n  - ".join(problems)
            + f"\nExpected '{SIGNATURE}': {INPUT} uint8 [1,H,W,3] -> detection_boxes float32 [1,N,4], "
            "detection_classes float32 [1,N], detection_scores float32 [1,N], num_detections float32 [1]."
        )
    return SignatureSpec(input_shape=input_shape, outputs=outputs)
