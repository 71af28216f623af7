"""Property-based fuzzing of every importer: arbitrary input either imports, or fails with one clear
LabelFormatError naming the file, and a failed import leaves the project exactly as it was."""

import json
import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpr.data.formats import LabelFormatError, import_coco, import_cvat, import_viame, import_yolo
from bpr.data.formats.viame import HEADER
from bpr.data.store import Project

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(st.integers(-10, 5000), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "x", "1e9", "-0", "nan"]))
junk_text = st.text(alphabet=string.printable + "éß\x00", max_size=300)


def check(project, path, importer, names=None) -> bool:
    """Import, or fail with a LabelFormatError naming the source (or one of ``names``), changing nothing.
    After an import, every stored box is sound. Returns whether the import went through."""
    before = project.summary()
    try:
        importer(project, path)
    except LabelFormatError as e:
        assert any(name in str(e) for name in (names or [path.name]))
        assert project.summary() == before
        return False
    assert_boxes_sound(project)
    return True


def assert_boxes_sound(project):
    """Every stored box is finite, has x2 > x1 and y2 > y1, and lies in its frame where the size is known."""
    rows = project.conn.execute("SELECT b.x1, b.y1, b.x2, b.y2, v.width, v.height FROM boxes b "
                                "JOIN videos v ON v.id = b.video_id").fetchall()
    for x1, y1, x2, y2, width, height in rows:
        assert all(isinstance(v, float) and math.isfinite(v) for v in (x1, y1, x2, y2)), (x1, y1, x2, y2)
        assert x2 > x1 and y2 > y1, (x1, y1, x2, y2)
        if width and height:
            assert 0 <= x1 and 0 <= y1 and x2 <= width and y2 <= height, (x1, y1, x2, y2, width, height)


def check_file(tmp_path_factory, file_name, text, importer):
    """check() on a new project, importing ``text`` written to a new folder as ``file_name``."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / file_name
    path.write_text(text, encoding="utf-8")
    with Project.create(folder / "p") as project:
        check(project, path, importer)


@st.composite
def cvat_xml(draw):
    boxes = "".join(
        f'<box frame="{draw(numbers)}" outside="{draw(st.sampled_from(["0", "1", "2"]))}" keyframe="1" '
        f'xtl="{draw(numbers)}" ytl="{draw(numbers)}" xbr="{draw(numbers)}" ybr="{draw(numbers)}"/>'
        for _ in range(draw(st.integers(0, 4))))
    label = draw(st.sampled_from(["urchin", "Urchin", "sea pig", ""]))
    size = draw(st.sampled_from(["100", "", "-5", "x"]))
    body = (f'<annotations><meta><task><name>v</name><size>{size}</size><labels><label><name>urchin</name>'
            f"</label></labels><original_size><width>{draw(numbers)}</width><height>640</height>"
            f'</original_size></task></meta><track id="{draw(st.sampled_from(["1", "x", ""]))}" '
            f'label="{label}">{boxes}</track></annotations>')
    cut = draw(st.integers(0, len(body)))
    return body if draw(st.booleans()) else body[:cut]


@FUZZ
@given(text=st.one_of(cvat_xml(), junk_text))
def test_cvat(tmp_path_factory, text):
    check_file(tmp_path_factory, "clip.xml", text, import_cvat)


@FUZZ
@given(lines=st.lists(st.lists(numbers.map(str), max_size=7).map(" ".join), max_size=6),
       names=st.sampled_from(["[a, b]", "{0: a, 1: b}", "{0: a, 2: b}", "[]", "x", "[a, [b]]"]))
def test_yolo(tmp_path_factory, lines, names):
    from PIL import Image

    folder = tmp_path_factory.mktemp("yolo")
    (folder / "train" / "images").mkdir(parents=True)
    (folder / "train" / "labels").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(folder / "train" / "images" / "a.jpg")
    (folder / "train" / "labels" / "a.txt").write_text("\n".join(lines))
    (folder / "data.yaml").write_text(f"path: .\ntrain: train/images\nnames: {names}\n")
    with Project.create(folder / "p") as project:
        check(project, folder / "data.yaml", import_yolo, names=["a.txt", "data.yaml"])


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@st.composite
def coco_json(draw):
    image = {"id": draw(st.sampled_from([1, 2, "1", None])), "file_name": draw(st.sampled_from(["a.jpg", 3])),
             "width": draw(st.sampled_from([100, 0, -1, "w"])), "height": 80}
    ann = {"id": draw(st.integers(0, 3)), "image_id": draw(st.sampled_from([1, 2, 9])),
           "category_id": draw(st.sampled_from([1, 5])),
           "bbox": draw(st.lists(numbers, max_size=5))}
    data = {"images": [image], "annotations": [ann], "categories": [{"id": 1, "name": "urchin"}]}
    if draw(st.booleans()):
        data[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(json_values)
    text = json.dumps(data, default=str)
    return text if draw(st.booleans()) else text[: draw(st.integers(0, len(text)))]


@FUZZ
@given(text=st.one_of(coco_json(), junk_text))
def test_coco(tmp_path_factory, text):
    check_file(tmp_path_factory, "ann.json", text, import_coco)


@FUZZ
@given(rows=st.lists(st.lists(st.one_of(numbers.map(str), st.sampled_from(["fish", "(kp) a 1 2", "", '"'])),
                              max_size=12).map(",".join), max_size=5),
       header=st.booleans())
def test_viame(tmp_path_factory, rows, header):
    text = "\n".join([HEADER] if header else []) + "\n" + "\n".join(rows)
    check_file(tmp_path_factory, "clip.csv", text, import_viame)


@FUZZ
@given(data=st.binary(max_size=400))
def test_binary_garbage_everywhere(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bin")
    with Project.create(folder / "p") as project:
        for name, importer in (("a.xml", import_cvat), ("a.json", import_coco), ("a.csv", import_viame),
                               ("a.yaml", import_yolo)):
            path = folder / name
            path.write_bytes(data)
            check(project, path, importer)


list_lines = st.lists(st.one_of(st.from_regex(r"0{0,4}[0-9]{1,20}(_[0-9]{1,8})?", fullmatch=True),
                                st.text(alphabet=string.printable, max_size=30)), max_size=6)


@FUZZ
@given(split_lines=list_lines, frame_lines=list_lines, xml=st.one_of(cvat_xml(), junk_text))
def test_dusia(tmp_path_factory, split_lines, frame_lines, xml):
    from bpr.data.formats import import_dusia

    root = tmp_path_factory.mktemp("dusia")
    (root / "cvat_annos").mkdir()
    (root / "idd_lsts").mkdir()
    (root / "cvat_annos" / "00000000000000000001.xml").write_text(xml.replace("<name>v</name>",
                                                                              "<name>1</name>"))
    (root / "idd_lsts" / "train_auspec.txt").write_text("\n".join(split_lines))
    (root / "idd_lsts" / "trainkf_auspec_cvat_frames.txt").write_text("\n".join(frame_lines))
    with Project.create(root / "p") as project:
        check(project, root, import_dusia, names=["auspec", ".xml"])


# One sound box and one with a coordinate that is not a number, in each format's own spelling.
def non_finite_cvat(folder, bad):
    path = folder / "clip.xml"
    path.write_text(
        "<annotations><meta><task><name>clip</name><size>10</size><labels><label><name>urchin</name></label>"
        "</labels><original_size><width>640</width><height>360</height></original_size></task></meta>"
        '<track id="0" label="urchin"><box frame="0" outside="0" keyframe="1" xtl="1" ytl="1" xbr="9" ybr="9"/>'
        '</track><track id="1" label="urchin">'
        f'<box frame="1" outside="0" keyframe="1" xtl="{bad}" ytl="1" xbr="9" ybr="9"/></track></annotations>')
    return path, import_cvat


def non_finite_yolo(folder, bad):
    from PIL import Image

    (folder / "train" / "images").mkdir(parents=True)
    (folder / "train" / "labels").mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (64, 48)).save(folder / "train" / "images" / f"{name}.jpg")
    (folder / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "train" / "labels" / "b.txt").write_text(f"0 {bad} 0.5 0.2 0.2\n")
    (folder / "data.yaml").write_text("path: .\ntrain: train/images\nnames: [urchin]\n")
    return folder / "data.yaml", import_yolo


def non_finite_coco(folder, bad):
    path = folder / "ann.json"
    value = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[bad]
    path.write_text(
        '{"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}, '
        '{"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}], "categories": [{"id": 1, "name": "urchin"}], '
        '"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}, '
        f'{{"id": 2, "image_id": 2, "category_id": 1, "bbox": [{value}, 1, 8, 8]}}]}}')
    return path, import_coco


def non_finite_viame(folder, bad):
    path = folder / "clip.csv"
    path.write_text(f"{HEADER}\n0,clip.mp4,0,1,1,9,9,1,-1,urchin,1\n1,clip.mp4,1,{bad},1,9,9,1,-1,urchin,1\n")
    return path, import_viame


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("write", [non_finite_cvat, non_finite_yolo, non_finite_coco, non_finite_viame])
def test_a_coordinate_that_is_not_a_number_never_becomes_a_box(tmp_path, write, bad):
    """Refused with a message naming the file, or left out: never a full-frame box, never a crash."""
    path, importer = write(tmp_path, bad)
    with Project.create(tmp_path / "p") as project:
        if check(project, path, importer, names=[path.name, "b.txt"]):
            assert project.summary()["boxes"] == 1
