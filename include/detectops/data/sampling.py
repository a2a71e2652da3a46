"""A fixed-size, stratified, seeded sample of a COCO split: the evaluation budget.

Level 1's dataset only grows, and evaluating both the candidate and the champion on the whole
test split made a retrain's evaluation grow with it (80 s for two models on 900 images on 2
cores). A sample of at most ``max_images``, drawn from every batch in proportion to its share of
the split (at least one image each, so every batch slice still exists), keeps it flat. Both
models are scored on the same sample, so their comparison stays paired.

The sample is a directory of its own (``annotations.json`` and ``images/`` of symbolic links to
the split's files): every evaluator reads it as it reads a split. The same split, budget and seed
give the same sample.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detectops.data.coco import IMAGES_DIR, CocoDataset
from detectops.fsutil import staged_dir

#: Stratum of images no batch mapping names.
UNMAPPED = "(unmapped)"


def quotas(sizes: Mapping[str, int], budget: int) -> dict[str, int]:
    """Images per stratum: proportional to ``sizes`` (largest remainders), at least one each while
    the budget allows, never more than a stratum has, summing to ``min(budget, total)``."""
    total = sum(sizes.values())
    if budget >= total:
        return dict(sizes)
    strata = sorted(sizes, key=lambda s: (-sizes[s], s))
    out = {s: 0 for s in strata}
    for s in strata[:budget]:  # every stratum is seen, the largest first when the budget is smaller
        out[s] = 1
    left = budget - sum(out.values())
    exact = {s: (sizes[s] - out[s]) * left / max(total - sum(out.values()), 1) for s in strata}
    for s in strata:
        out[s] += int(exact[s])
    rest = budget - sum(out.values())
    for s in sorted(strata, key=lambda s: (-(exact[s] - int(exact[s])), s)):
        if rest <= 0:
            break
        if out[s] < sizes[s]:
            out[s] += 1
            rest -= 1
    return out


def sample_split(split_dir: str | Path, max_images: int, out_dir: str | Path, *,
                 strata: Mapping[str, str] | None = None, seed: int = 0) -> Path:
    """``split_dir`` itself when it holds at most ``max_images`` images (or ``max_images`` is 0),
    else a sample of it in ``out_dir``: ``strata`` maps each image's ``file_name`` to its stratum
    (its batch); the sample keeps each stratum's share. Returns the directory to evaluate on."""
    split_dir = Path(split_dir)
    dataset = CocoDataset.load(split_dir)
    if max_images <= 0 or len(dataset.images) <= max_images:
        return split_dir
    strata = strata or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for image in sorted(dataset.images, key=lambda im: str(im["file_name"])):
        groups.setdefault(str(strata.get(str(image["file_name"]), UNMAPPED)), []).append(image)
    rng = random.Random(seed)
    chosen: list[dict[str, Any]] = []
    for stratum, n in sorted(quotas({s: len(g) for s, g in groups.items()}, max_images).items()):
        chosen.extend(rng.sample(groups[stratum], n))
    chosen.sort(key=lambda im: int(im["id"]))
    ids = {int(im["id"]) for im in chosen}

    out_dir = Path(out_dir)
    sample = CocoDataset(root=out_dir, images=chosen,
                         annotations=[a for a in dataset.annotations if int(a["image_id"]) in ids],
                         categories=dataset.categories,
                         info={**dataset.info, "sampled_from": str(split_dir), "sample_seed": seed,
                               "sample_of": len(dataset.images)},
                         licenses=dataset.licenses)
    if _same_sample(out_dir, sample):
        return out_dir  # a retried task: the sample is already there
    with staged_dir(out_dir, replace=True) as tmp:
        (tmp / IMAGES_DIR).mkdir(parents=True)
        for image in chosen:
            link = tmp / IMAGES_DIR / image["file_name"]
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(dataset.image_path(image).resolve())
        sample.save(tmp)
    return out_dir


def _same_sample(out_dir: Path, sample: CocoDataset) -> bool:
    try:
        return json.loads((out_dir / "annotations.json").read_text()) == json.loads(json.dumps(sample.to_json_dict()))
    except (OSError, ValueError):
        return False
