"""COCO detection JSON: boxes, dangling ids, malformed files."""

import json

import pytest

from bpr.data.formats import LabelFormatError, import_coco
from bpr.data.formats.coco import CocoImport, read_coco
from bpr.data.registry import import_source


def coco(**overrides):
    data = {
        "images": [{"id": 1, "file_name": "dive/a.jpg", "width": 100, "height": 80},
                   {"id": 2, "file_name": "dive/b.jpg", "width": 100, "height": 80}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40]},
                        {"id": 11, "image_id": 2, "category_id": 4, "bbox": [90, 70, 20, 20]}],
        "categories": [{"id": 3, "name": "urchin"}, {"id": 4, "name": "sea star"}],
    }
    data.update(overrides)
    return data


def write(tmp_path, data):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_boxes_are_converted_and_clipped(tmp_path, project):
    report = import_coco(project, write(tmp_path, coco()), split="val")
    assert report.boxes_added == 2
    [a] = project.boxes("dive/a", 0)
    assert (a["species"], a["x1"], a["y1"], a["x2"], a["y2"]) == ("urchin", 10, 20, 40, 60)
    [b] = project.boxes("dive/b", 0)
    assert (b["x2"], b["y2"]) == (100, 80)
    assert any("clipped" in w for w in report.warnings)
    assert project.frame_status("dive/a", 0) == "full"
    assert project.video("dive/a")["status"] == "missing"  # no image file beside the JSON
    assert import_coco(project, write(tmp_path, coco()), split="val").boxes_added == 0


@pytest.mark.parametrize("change, message", [
    ({"annotations": [{"id": 10, "image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2]}]},
     "annotation id 10: image_id 9 is not among the images"),
    ({"annotations": [{"id": 10, "image_id": 1, "category_id": 8, "bbox": [1, 1, 2, 2]}]},
     "annotation id 10: category_id 8 is not among the categories"),
    ({"annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 1]}]},
     r"annotation id 10: bbox must be \[x, y, width, height\]"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 100}]}, r"images\[0\]: missing 'height'"),
    ({"images": {"id": 1}}, "'images' must be a list"),
    ({"categories": [{"id": "3", "name": "urchin"}]}, r"categories\[0\]: 'id' must be int"),
    ({"annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2]},
                      {"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 5, 2, 2]}]},
     "annotation id 10 appears twice"),
    ({"categories": [{"id": 3, "name": "urchin"}, {"id": 3, "name": "sea star"}]},
     r"categories\[1\]: category id 3 appears twice"),
    ({"images": [{"id": 1, "file_name": "dive/a.jpg", "width": 100, "height": 80},
                 {"id": 2, "file_name": "dive/a.png", "width": 50, "height": 40}]},
     r"images\[1\]: file_name 'dive/a.png' names the same image as images\[0\] \('dive/a.jpg'\)"),
])
def test_bad_coco(tmp_path, change, message):
    with pytest.raises(LabelFormatError, match=message):
        read_coco(write(tmp_path, coco(**change)))


def test_malformed_json_names_line(tmp_path, project):
    with pytest.raises(LabelFormatError, match=r"ann.json: line 2, column \d+: malformed JSON"):
        import_coco(project, write(tmp_path, '{"images": [],\n "annotations": [,]}'))
    assert project.videos() == []


def test_export_loads_in_pycocotools_and_round_trips(demo_project, tmp_path):
    from pycocotools.coco import COCO

    from bpr.data.formats.coco import export_coco

    path = export_coco(demo_project, tmp_path / "labels.json")
    coco = COCO(str(path))
    frames = demo_project.conn.execute("SELECT count(*) FROM frames WHERE label_status != 'none'").fetchone()[0]
    boxes = demo_project.conn.execute(
        "SELECT count(*) FROM boxes JOIN frames USING (video_id, frame_index) WHERE label_status != 'none'"
    ).fetchone()[0]
    assert len(coco.getImgIds()) == frames and len(coco.getAnnIds()) == boxes
    # and back in: the same boxes on the same (single-frame) images
    from bpr.data.formats import import_coco
    from bpr.data.store import Project

    with Project.create(tmp_path / "again") as again:
        report = import_coco(again, path, images_dir=tmp_path)
        assert report.boxes_added == boxes


def test_an_image_sets_export_names_the_original_files(tmp_path, project):
    """Other tools open the images where they are: file names are relative to info.images_root."""
    from bpr.data.formats import import_yolo
    from bpr.data.formats.coco import export_coco
    from bpr.data.store import Project
    from tests.bpr.test_formats_yolo import make_dataset

    data = make_dataset(tmp_path / "data", "0 0.5 0.5 0.5 0.5\n1 0.2 0.2 0.1 0.1\n")
    import_yolo(project, data)
    path = export_coco(project, tmp_path / "labels.json")
    exported = json.loads(path.read_text())
    assert exported["info"]["images_root"] == str(tmp_path / "data" / "train" / "images")
    assert [i["file_name"] for i in exported["images"]] == ["a.jpg"]
    with Project.create(tmp_path / "again") as again:
        import_coco(again, path, split="train", status="partial")  # images_root is the default
        [image] = again.videos()
        assert image["status"] == "ok" and image["width"] == 200
        assert [(b["species"], b["x1"], b["y2"]) for b in again.boxes(image["id"], 0)] == \
            [(b["species"], b["x1"], b["y2"]) for b in project.boxes("train/images/a", 0)]


def test_crowd_regions_are_left_out_with_a_warning_naming_them(tmp_path, project):
    """COCO's iscrowd regions mark a group of objects: not one animal's box. pycocotools leaves them out
    of matching; the import leaves them out and says which."""
    data = coco()
    data["annotations"] += [{"id": 12 + k, "image_id": 1, "category_id": 3, "bbox": [50, 5, 20, 20], "iscrowd": 1}
                            for k in range(7)]
    report = import_coco(project, write(tmp_path, data), split="val")
    assert report.boxes_added == 2
    assert report.left_out == [f"{tmp_path / 'ann.json'}: 7 crowd regions (iscrowd 1: a group of objects, not one "
                               "animal) left out (annotation id 12, annotation id 13, annotation id 14, … 7 in all)"]


def test_a_box_with_no_area_is_left_out_and_a_strict_import_refuses_it(tmp_path):
    """pycocotools and datumaro read a bbox of width 0; it is no animal's box. Left out and named; with
    --strict the import is refused and no project folder is made."""
    data = coco()
    data["annotations"].append({"id": 40, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 2]})
    path = write(tmp_path, data)
    with pytest.raises(LabelFormatError, match="annotation id 40: box with no area"):
        import_source(tmp_path / "strict", "coco", path, options=CocoImport(split="val"), strict=True)
    assert not (tmp_path / "strict").exists()
    report = import_source(tmp_path / "p", "coco", path, options=CocoImport(split="val"))
    assert report.boxes_added == 2
    assert report.left_out == [f"{path}: 1 box with no area (x2 <= x1 or y2 <= y1) left out (annotation id 40)"]


def test_the_export_gives_every_annotation_an_empty_segmentation(tmp_path, project):
    """Boxes only: `segmentation: []`, so that tools reading COCO (datumaro) find the key they expect."""
    from bpr.data.formats.coco import export_coco

    import_coco(project, write(tmp_path, coco()), split="val")
    out = export_coco(project, tmp_path / "out.json")
    annotations = json.loads(out.read_text())["annotations"]
    assert annotations and all(a["segmentation"] == [] and a["iscrowd"] == 0 for a in annotations)
