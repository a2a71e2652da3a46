"""Label maps: the COCO 91-id scheme and the 80-index mapping CenterNet needs."""

from __future__ import annotations

import pytest

from detectops.models import labels


def test_coco_label_map_has_the_80_used_ids():
    coco = labels.coco_label_map()
    assert len(coco) == 80
    assert coco[1] == "person" and coco[47] == "cup" and coco[90] == "toothbrush"
    assert 12 not in coco and 26 not in coco and 83 not in coco
    assert tuple(sorted(coco)) == labels.COCO80_TO_COCO91


def test_labels_ts_maps_onto_coco_ids():
    names = list(labels.coco_label_map().values())
    ts = "export const labels = [\n" + "".join(
        f"  {{ class: {i + 1}, label: '{n}' }},\n" for i, n in enumerate(names)) + "];\n"
    parsed = labels.parse_labels_ts(ts)
    assert parsed[41] == "cup"
    assert labels.coco80_label_map(parsed)[47] == "cup"


def test_reordered_labels_are_refused():
    names = list(labels.coco_label_map().values())
    names[0], names[1] = names[1], names[0]
    with pytest.raises(ValueError, match="do not match COCO"):
        labels.coco80_label_map(names)


def test_label_map_round_trip(tmp_path):
    labels.write_label_map(tmp_path, {3: "car", 1: "person"})
    assert (tmp_path / "assets" / "label_map.json").read_text().startswith('{\n "1": "person"')
    assert labels.read_label_map(tmp_path) == {1: "person", 3: "car"}
    assert labels.read_label_map(tmp_path / "nothing") == {}
