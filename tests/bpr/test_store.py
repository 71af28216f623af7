"""The project store: schema, WAL, migrations, transactions, box edits, summary."""

import sqlite3

import pytest

from bpr.data.store import SCHEMA_VERSION, Project, ProjectError, counted, source_counts


def test_new_project_has_current_schema_and_wal(project):
    assert project.schema_version == SCHEMA_VERSION
    assert project.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert set(project.db.table_names()) >= {"videos", "species", "frames", "boxes", "runs",
                                             "detections"}
    indexes = {row[1] for row in project.conn.execute("SELECT * FROM sqlite_master WHERE type='index'")}
    assert {"boxes_frame", "detections_count", "detections_species"} <= indexes


def test_opening_a_folder_without_a_project_fails_clearly(tmp_path):
    with pytest.raises(ProjectError, match="is not a project"):
        Project.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_a_project_from_a_newer_version_is_refused(tmp_path):
    with Project.create(tmp_path / "p") as p:
        p.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer version"):
        Project.open(tmp_path / "p")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProjectError, match="cannot be opened"):
        Project.open(tmp_path / "p")


def test_reopening_keeps_data(tmp_path):
    with Project.create(tmp_path / "p") as p:
        p.conn.execute("INSERT INTO videos (id) VALUES ('v')")
        p.add_box("v", 3, "Basket star", (1, 2, 30, 40))
    with Project.open(tmp_path / "p") as p:
        [box] = p.boxes("v", 3)
        assert (box["species"], box["x1"], box["y2"], box["source"]) == ("Basket star", 1, 40, "drawn")


def test_a_copy_of_the_store_holds_what_the_open_project_holds_and_is_its_own(tmp_path):
    """copy_store (the benchmarks measure in a copy): what the write-ahead log still holds is copied,
    and a change to the copy leaves the project as it was."""
    with Project.create(tmp_path / "p") as p:
        p.conn.execute("INSERT INTO videos (id, path) VALUES ('v', 'videos/v.mp4')")  # inside the project
        p.add_box("v", 3, "Basket star", (1, 2, 30, 40))
        p.create_run("r", {})
        p.update_run("r", weights=p.stored_path(tmp_path / "p" / "runs" / "r" / "best.pt"))
        assert (tmp_path / "p" / "project.sqlite-wal").stat().st_size > 0  # not yet in the main file
        folder = p.copy_store(tmp_path / "copy" / "store")
        with Project.open(folder) as copy:
            [box] = copy.boxes("v", 3)
            assert (box["species"], box["x1"], box["y2"]) == ("Basket star", 1, 40)
            # the files stay where they are: the copy points back to them
            assert copy.resolve_path(copy.video("v")["path"]) == tmp_path / "p" / "videos" / "v.mp4"
            assert copy.resolve_path(copy.run("r").weights) == tmp_path / "p" / "runs" / "r" / "best.pt"
            with copy.transaction():
                copy.conn.execute("DELETE FROM boxes")
        assert len(p.boxes("v", 3)) == 1


def test_transaction_rolls_back_everything_on_error(project):
    project.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    with pytest.raises(RuntimeError):
        with project.transaction():
            project.add_box("v", 0, "urchin", (0, 0, 10, 10))   # nested: joins the outer one
            project.set_frame_status("v", 0, "full")
            raise RuntimeError("boom")
    assert project.conn.execute("SELECT count(*) FROM boxes").fetchone()[0] == 0
    assert project.frame_status("v", 0) == "none"
    assert project.species() == []


def test_species_match_case_insensitively(project):
    a = project.species_id("Basket star")
    assert project.species_id("basket  STAR") == a
    assert [s["name"] for s in project.species()] == ["Basket star"]


def test_box_edits(project):
    project.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    box = project.add_box("v", 0, "urchin", (0, 0, 10, 10))
    project.update_box(box, xyxy=(1, 1, 5, 6), species="lobster")
    [row] = project.boxes("v", 0)
    assert (row["x1"], row["y2"], row["species"]) == (1, 6, "lobster") and row["edited"]
    with pytest.raises(ValueError, match="x2 > x1"):
        project.update_box(box, xyxy=(5, 1, 5, 6))
    with pytest.raises(ValueError, match="x2 > x1"):
        project.add_box("v", 0, "urchin", (10, 0, 0, 10))
    project.delete_box(box)
    assert project.boxes("v", 0) == []


def test_the_schema_itself_rejects_bad_rows(project):
    project.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    with pytest.raises(sqlite3.IntegrityError):
        project.conn.execute("INSERT INTO frames VALUES ('v', 0, 'maybe')")
    with pytest.raises(sqlite3.IntegrityError):
        project.conn.execute("INSERT INTO frames VALUES ('no such video', 0, 'full')")


def test_frame_status_values(project):
    project.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    project.set_frame_status("v", 7, "partial")
    project.set_frame_status("v", 7, "full")
    assert project.frame_status("v", 7) == "full"
    assert project.labeled_frames("v") == [{"frame_index": 7, "label_status": "full"}]
    with pytest.raises(ValueError):
        project.set_frame_status("v", 7, "complete")


def test_a_version_1_project_is_upgraded_in_place(tmp_path):
    """A project written by schema 1 opens with the current code; its data stays."""
    import sqlite3

    from bpr.data.store import MIGRATIONS, _split_sql

    folder = tmp_path / "old"
    folder.mkdir()
    conn = sqlite3.connect(folder / "project.sqlite", isolation_level=None)
    conn.execute("BEGIN")
    for statement in _split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO videos (id) VALUES ('kept')")
    conn.execute("COMMIT")
    conn.close()
    with Project.open(folder) as p:
        assert p.schema_version == SCHEMA_VERSION >= 2
        assert "detected_frames" in p.db.table_names()
        assert [v["id"] for v in p.videos()] == ["kept"]


def test_a_run_whose_process_died_reads_as_interrupted(project, other_process):
    """A run records the process training it; once that process is gone (killed, power cut) without
    marking the run, the run reads as cancelled, and so can be resumed."""
    import json

    child, owner = other_process
    host, pid, started = json.loads(owner)
    for name in ("mine", "killed", "reused pid", "older version", "other machine"):
        project.create_run(name, {})
    owners = {"killed": owner, "reused pid": json.dumps([host, pid, started - 100]), "older version": None,
              "other machine": json.dumps(["elsewhere", 1, 0.0])}
    for name, value in owners.items():
        project.update_run(name, owner=value)
    assert project.run("killed").status == "running"  # its process runs
    child.kill()
    child.wait()
    status = {r.name: r.status for r in project.runs()}
    assert status == {"mine": "running", "killed": "cancelled", "reused pid": "cancelled",
                      "older version": "running", "other machine": "running"}
    assert project.run("killed").error.startswith("interrupted")


def test_image_sequences_group_images_by_their_real_folder(project, tmp_path):
    """Two real folders whose images' ids name the same folder stay two sequences, with distinct
    names; an image without a file groups by its id's folder, numbered among that folder's images."""
    for parent in ("a", "b"):
        (tmp_path / parent / "images").mkdir(parents=True)
        for name in ("f2", "f10"):
            (tmp_path / parent / "images" / f"{name}.png").write_bytes(b"")
            project.conn.execute("INSERT INTO videos (id, kind, path) VALUES (?, 'image', ?)",
                                 (f"images/{parent}{name}", str(tmp_path / parent / "images" / f"{name}.png")))
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('loose/x', 'image')")
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('clip', 'video')")
    sequences = project.image_sequences()
    assert [s.name for s in sequences] == ["images", "images-2", "loose"]
    first = sequences[0]
    assert [i["id"] for i in first.images] == ["images/af2", "images/af10"]  # natural order of file names
    assert first.frames == {"images/af2": 0, "images/af10": 1}
    assert sequences[2].frames == {"loose/x": 0}
    assert [s.name for s in project.image_sequences(["images/bf10", "clip"])] == ["images"]


def test_check_files_notices_files_gone_and_back(project, tmp_path):
    """A file deleted after it was recorded reads 'missing' once looked at again, and 'ok' when it is
    back at its place; a video that is back is probed again (here: it is not a video)."""
    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a video")
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('a', 'image'), ('clip', 'video'), ('never', 'image')")
    project.set_video_file("a", image, None, "ok")
    project.set_video_file("clip", video, {"frame_count": 5}, "ok")
    assert project.check_files() == {"gone": [], "back": []}

    image.unlink()
    moved = video.rename(tmp_path / "elsewhere.mp4")
    assert sorted(project.check_files()["gone"]) == ["a", "clip"]
    a = project.video("a")
    assert (a["status"], a["path"], a["status_reason"]) == ("missing", str(image), f"{image}: no such file")
    assert project.summary()["missing_videos"] == 3  # with "never", which has no file at all
    assert project.check_files() == {"gone": [], "back": []}  # nothing changed since

    image.write_bytes(b"png")
    moved.rename(video)
    assert sorted(project.check_files()["back"]) == ["a", "clip"]
    assert project.video("a")["status"] == "ok"
    clip = project.video("clip")
    assert clip["status"] == "unreadable" and "cannot open it as a video" in clip["status_reason"]
    assert clip["frame_count"] == 5
    assert project.video("never")["status"] == "missing"


def test_check_files_follows_an_unreadable_video_gone_or_replaced(project, tmp_path):
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"not a video")
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('clip', 'video')")
    project.set_video_file("clip", clip, {"frame_count": 5}, "unreadable", "cannot open it as a video")
    assert project.check_files() == {"gone": [], "back": []}  # looked at again, still unreadable

    clip.unlink()
    assert project.check_files()["gone"] == ["clip"]
    assert project.video("clip")["status"] == "missing"

    def write(frames):
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
        for _ in range(frames):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.release()

    write(7)  # a video at its place, but not of the frames the labels were made on: link-videos says so
    assert project.check_files() == {"gone": [], "back": []}
    assert project.video("clip")["status"] == "missing"
    clip.write_bytes(b"still not a video")
    assert project.check_files()["back"] == ["clip"] and project.video("clip")["status"] == "unreadable"
    write(7)
    assert project.check_files() == {"gone": [], "back": []}
    assert project.video("clip")["status"] == "unreadable"
    write(5)
    assert project.check_files()["back"] == ["clip"]
    assert (project.video("clip")["status"], project.video("clip")["frame_count"]) == ("ok", 5)


def test_check_files_stops_when_asked_and_keeps_what_it_found(project, tmp_path):
    project.conn.execute("INSERT INTO videos (id, kind) VALUES ('a', 'image'), ('b', 'image')")
    for vid in ("a", "b"):
        (tmp_path / f"{vid}.png").write_bytes(b"png")
        project.set_video_file(vid, tmp_path / f"{vid}.png", None, "ok")
        (tmp_path / f"{vid}.png").unlink()
    asked = iter([False, True])  # go on at the first file, stop at the second
    assert project.check_files(cancel=lambda: next(asked))["gone"] == ["a"]
    assert [project.video(v)["status"] for v in ("a", "b")] == ["missing", "ok"]


def test_counted_names_videos_and_images_apart():
    # an image is stored as a one-frame video, so `videos` counts both
    assert counted(source_counts(3, 1)) == "2 videos, 1 image"
    assert counted(source_counts(1, 0)) == "1 video"
    assert counted(source_counts(4, 4)) == "4 images"
    assert counted(source_counts(0, 0)) == "0 videos"
    assert counted(source_counts(0, 0, empty="images")) == "0 images"


def test_a_run_that_never_reached_one_point_of_val_map50_has_not_learned(project):
    from bpr.config import TrainConfig

    project.create_run("r", TrainConfig().to_dict())
    assert not project.run("r").not_learned  # no epoch yet: nothing to judge
    project.update_run("r", metrics=[{"epoch": 1, "mAP50": 0.0}, {"epoch": 2, "mAP50": 0.009}])
    assert project.run("r").not_learned
    project.update_run("r", metrics=[{"epoch": 1, "mAP50": 0.0}, {"epoch": 2, "mAP50": 0.01}])
    assert not project.run("r").not_learned
    project.create_run("w", {"external_weights": "x.pt"})  # weights trained elsewhere: not judged
    assert not project.run("w").not_learned


def species_project(project):
    """Two species with a label each; "urchn" (a typo) also has a detection the user rejected."""
    project.conn.execute("INSERT INTO videos (id) VALUES ('v')")
    project.add_box("v", 0, "urchin", (1, 1, 5, 5))
    typo = project.add_box("v", 1, "urchn", (1, 1, 5, 5))
    run = project.create_run("r", {})
    project.conn.execute("INSERT INTO detections (run_id, video_id, frame_index, species_id, x1, y1, x2, y2, "
                         "confidence) VALUES (?, 'v', 2, ?, 1, 1, 5, 5, 0.9)", (run, project.species_id("urchn")))
    project.conn.execute("INSERT INTO rejected_detections VALUES (1, 0)")
    return typo


def state_of(project):
    return (project.species(), project.conn.execute("SELECT * FROM boxes").fetchall(),
            project.conn.execute("SELECT * FROM detections").fetchall(),
            project.conn.execute("SELECT * FROM rejected_detections").fetchall())


def test_merging_a_species_moves_everything_and_undoes_exactly(project):
    species_project(project)
    before = state_of(project)
    assert project.species_usage("urchn") == {"boxes": 1, "detections": 1, "pseudo_boxes": 0}
    change = project.merge_species("urchn", "Urchin")
    assert [s["name"] for s in project.species()] == ["urchin"]
    assert project.species_usage("urchin") == {"boxes": 2, "detections": 1, "pseudo_boxes": 0}
    project.restore_species(change)
    assert state_of(project) == before
    with pytest.raises(ValueError, match="the same species"):
        project.merge_species("urchin", "URCHIN")


def test_deleting_a_species_deletes_its_rows_and_undoes_exactly(project):
    species_project(project)
    before = state_of(project)
    change = project.delete_species("urchn")
    assert [s["name"] for s in project.species()] == ["urchin"]
    assert project.conn.execute("SELECT count(*) FROM detections").fetchone()[0] == 0
    project.restore_species(change)
    assert state_of(project) == before


def test_renaming_a_species_to_another_ones_name_is_a_merge_not_a_rename(project):
    species_project(project)
    with pytest.raises(ValueError, match="'urchin' is another species: merge 'urchn' into it instead"):
        project.rename_species("urchn", "urchin")
    project.rename_species("urchn", "Urchin pale")
    project.rename_species("Urchin pale", "urchin Pale")  # its own name in other letters
    assert [s["name"] for s in project.species()] == ["urchin", "urchin Pale"]


def accepted_label(project, species="urchin"):
    """A pseudo-box of ``species`` accepted into a label; returns (pseudo-box id, label id)."""
    project.conn.execute("INSERT OR IGNORE INTO videos (id) VALUES ('v')")
    project.create_run("teacher", {})
    project.replace_pseudo_boxes("teacher", 1, [("pseudo", "v", 3, project.species_id(species),
                                                 1, 1, 5, 5, 0.8, 1)])
    [pseudo] = project.pseudo_boxes()
    return pseudo["id"], project.review_pseudo_box(pseudo["id"], accept=True)


def label_of(project, pseudo_id):
    return project.conn.execute("SELECT label_id FROM pseudo_boxes WHERE id = ?", (pseudo_id,)).fetchone()[0]


def test_a_deleted_label_comes_back_as_it_was_with_its_pseudo_box_link(project):
    pseudo, label = accepted_label(project)
    project.update_box(label, xyxy=(2, 2, 6, 6))
    [before] = project.conn.execute("SELECT * FROM boxes").fetchall()
    deleted = project.delete_box(label)
    assert label_of(project, pseudo) is None and project.delete_box(label) is None
    project.restore_box(deleted)
    assert project.conn.execute("SELECT * FROM boxes").fetchall() == [before]  # same id, times, edit
    assert label_of(project, pseudo) == label  # undoing the accept still deletes this label
    project.reopen_pseudo_box(pseudo)
    assert project.conn.execute("SELECT count(*) FROM boxes").fetchone()[0] == 0


def test_deleting_the_species_a_label_was_changed_to_keeps_its_pseudo_box_link_on_undo(project):
    pseudo, label = accepted_label(project, "urchin")
    project.update_box(label, species="crab")  # accepted as an urchin, then corrected
    change = project.delete_species("crab")
    assert label_of(project, pseudo) is None
    project.restore_species(change)
    assert label_of(project, pseudo) == label
