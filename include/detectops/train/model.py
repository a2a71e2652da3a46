"""The trainable detector: a small CenterNet (Zhou et al., "Objects as Points", 2019) in Keras 3.

    image [B, S, S, 3] (0..255) -> backbone of depthwise-separable blocks (strides 2..16)
        -> two upsampling steps with lateral connections (back to stride 4)
        -> one tensor [B, S/4, S/4, C + 4]: C class-heatmap logits | size (w, h) | offset (x, y)

A box is a heatmap peak: its cell plus the offset is the centre, the size is in heatmap cells.
Training losses: penalty-reduced focal loss on the heatmap, L1 on size and offset at the centres.
:func:`decode` turns the raw output into the contract's boxes (max-pool "NMS", top-k).
Plain convolutions + batch norm + ReLU only, so the model is fast on 2 CPU cores and trains
from scratch (no pretrained weights exist here).
"""

from __future__ import annotations

import math
from typing import Any

from detectops.train.config import TrainConfig

#: Initial heatmap bias: sigmoid(-2.19) = 0.1, CenterNet's prior that keeps the early focal loss stable.
HEATMAP_PRIOR_BIAS = -math.log((1 - 0.1) / 0.1)
#: Batch-norm moving-average momentum. Keras' 0.99 needs ~500 steps to forget its initial
#: statistics; a run of a few hundred steps then evaluates with stale ones (inference output far
#: from training output, AP near 0). 0.9 tracks the weights within ~30 steps.
BN_MOMENTUM = 0.9


def _conv_bn_relu(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """Depthwise 3x3 (carries the stride) + pointwise 1x1, each with BN; residual when shapes allow."""
    from keras import layers

    inputs = x
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_pw_bn")(x)
    if stride == 1 and inputs.shape[-1] == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return layers.ReLU(name=f"{name}_relu")(x)


def _head(x: Any, width: int, outputs: int, name: str, bias: float = 0.0) -> Any:
    from keras import initializers, layers

    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.Conv2D(width, 1, activation="relu", name=f"{name}_hidden")(x)
    return layers.Conv2D(outputs, 1, bias_initializer=initializers.Constant(bias), name=f"{name}_out")(x)


def build_model(config: TrainConfig, num_classes: int) -> Any:
    """The Keras model for ``config``; input float32 [B, S, S, 3] in 0..255, output [B, S/4, S/4, C+4]."""
    import keras
    from keras import layers

    w2, w4, w8, w16 = (int(w) for w in config.widths)
    size = config.input_size
    image = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(image)
    x = _conv_bn_relu(x, w2, 3, 2, "stem")                      # stride 2
    x = _separable_block(x, w4, 2, "s4_down")                   # stride 4
    s4 = _separable_block(x, w4, 1, "s4_block")
    x = _separable_block(s4, w8, 2, "s8_down")                  # stride 8
    s8 = _separable_block(x, w8, 1, "s8_block")
    x = _separable_block(s8, w16, 2, "s16_down")                # stride 16
    for i in range(config.extra_blocks):
        x = _separable_block(x, w16, 1, f"s16_block{i}")

    # Upsampling path (an FPN-style top-down pass): coarse semantics + finer localisation.
    hw = config.head_width
    x = _conv_bn_relu(x, hw, 1, 1, "up16_reduce")
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up8")(x)
    x = layers.Add(name="up8_add")([x, _conv_bn_relu(s8, hw, 1, 1, "up8_lateral")])
    x = _separable_block(x, hw, 1, "up8_block")
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up4")(x)
    x = layers.Add(name="up4_add")([x, _conv_bn_relu(s4, hw, 1, 1, "up4_lateral")])
    x = _separable_block(x, hw, 1, "up4_block")

    heatmap = _head(x, hw, num_classes, "heatmap", bias=HEATMAP_PRIOR_BIAS)
    size_out = _head(x, hw, 2, "size")
    offset = _head(x, hw, 2, "offset")
    out = layers.Concatenate(name="centernet")([heatmap, size_out, offset])
    return keras.Model(image, out, name="detectops_centernet")


# ----------------------------------------------------------------------------- losses
def losses(output: Any, heatmap: Any, size: Any, offset: Any, mask: Any, config: TrainConfig) -> dict[str, Any]:
    """CenterNet's losses of one batch: ``{"heatmap", "size", "offset", "total"}`` (scalars).

    ``heatmap`` [B,G,G,C]: Gaussian targets, exactly 1 at object centres; ``size`` / ``offset``
    [B,G,G,2] hold the targets at centres (``mask`` [B,G,G,1] = 1 there, 0 elsewhere).
    All three are normalised by the number of objects, as in the paper.
    """
    import tensorflow as tf

    num_classes = heatmap.shape[-1]
    logits, pred_size, pred_offset = output[..., :num_classes], output[..., num_classes:num_classes + 2], output[..., num_classes + 2:]
    # Focal loss from logits: log(p) = log_sigmoid(z), log(1 - p) = log_sigmoid(-z), stable at the extremes.
    prob = tf.sigmoid(logits)
    is_centre = tf.cast(heatmap >= 1.0 - 1e-4, tf.float32)
    pos = tf.math.log_sigmoid(logits) * tf.square(1.0 - prob) * is_centre
    neg = tf.math.log_sigmoid(-logits) * tf.square(prob) * tf.pow(1.0 - heatmap, 4.0) * (1.0 - is_centre)
    num_objects = tf.maximum(tf.reduce_sum(mask), 1.0)
    heatmap_loss = -(tf.reduce_sum(pos) + tf.reduce_sum(neg)) / num_objects
    size_loss = tf.reduce_sum(tf.abs(pred_size - size) * mask) / num_objects
    offset_loss = tf.reduce_sum(tf.abs(pred_offset - offset) * mask) / num_objects
    total = heatmap_loss + config.size_loss_weight * size_loss + config.offset_loss_weight * offset_loss
    return {"heatmap": heatmap_loss, "size": size_loss, "offset": offset_loss, "total": total}


# ----------------------------------------------------------------------------- decoding
def decode(output: Any, num_classes: int, max_detections: int) -> dict[str, Any]:
    """Raw output [B,G,G,C+4] -> top-k detections: ``boxes`` [B,K,4] normalised ``[ymin, xmin, ymax, xmax]``,
    ``class_index`` int32 [B,K] (0..C-1), ``scores`` [B,K], best first.

    A 3x3 max-pool keeps only local maxima of the heatmap (CenterNet's replacement for NMS).
    """
    import tensorflow as tf

    grid_h, grid_w = tf.shape(output)[1], tf.shape(output)[2]
    heat = tf.sigmoid(output[..., :num_classes])
    peaks = tf.cast(tf.equal(heat, tf.nn.max_pool2d(heat, 3, 1, "SAME")), heat.dtype)
    batch = tf.shape(output)[0]
    flat = tf.reshape(heat * peaks, [batch, -1])
    k = tf.minimum(max_detections, tf.shape(flat)[1])
    scores, index = tf.math.top_k(flat, k=k, sorted=True)
    class_index = index % num_classes
    cell = index // num_classes
    ys, xs = cell // grid_w, cell % grid_w
    regress = tf.reshape(output[..., num_classes:], [batch, -1, 4])
    size_offset = tf.gather(regress, cell, batch_dims=1)  # [B, K, 4] = w, h, off_x, off_y
    gw, gh = tf.cast(grid_w, tf.float32), tf.cast(grid_h, tf.float32)
    cx = (tf.cast(xs, tf.float32) + size_offset[..., 2]) / gw
    cy = (tf.cast(ys, tf.float32) + size_offset[..., 3]) / gh
    half_w = tf.maximum(size_offset[..., 0], 0.0) / gw / 2
    half_h = tf.maximum(size_offset[..., 1], 0.0) / gh / 2
    boxes = tf.clip_by_value(tf.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1), 0.0, 1.0)
    return {"boxes": boxes, "class_index": class_index, "scores": scores}


def resize_images(images: Any, size: int) -> Any:
    """uint8 or float images [B,H,W,3] -> float32 [B,size,size,3] in 0..255: the ONE resize of training and serving."""
    import tensorflow as tf

    return tf.image.resize(tf.cast(images, tf.float32), (size, size), method="bilinear", antialias=True)
