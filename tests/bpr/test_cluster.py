"""Detection on a Ray cluster: a local Ray with 2 CPU workers gives what plain detection gives; a worker
killed mid-shard costs that shard alone, redone, with nothing stored twice or lost; a rerun skips the
frames already stored."""

import pytest

from bpr.results.cluster import KILL_ONCE_ENV, shards
from bpr.results.detect import detect

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A Ray on this machine with 2 CPUs (2 workers with WORKER_THREADS 1); its workers see KILL_ONCE_ENV's
    file."""
    flag = tmp_path_factory.mktemp("ray") / "kill-once"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {KILL_ONCE_ENV: str(flag)}})
    yield flag
    ray.shutdown()


def stored(project, run):
    return project.conn.execute(
        "SELECT video_id, frame_index, species_id, round(x1, 3), round(y1, 3), round(x2, 3), round(y2, 3), "
        "round(confidence, 5) FROM detections WHERE run_id = ? ORDER BY 1, 2, 3, 4, 5, 6, 7, 8",
        (project.run(run).id,)).fetchall()


def frames_done(project, run):
    return project.conn.execute("SELECT video_id, frame_index FROM detected_frames WHERE run_id = ? "
                                "ORDER BY 1, 2", (project.run(run).id,)).fetchall()


def test_shards_hold_one_video_each_and_at_most_their_size():
    a, b = {"id": "a"}, {"id": "b"}
    plan = [(a, f) for f in range(5)] + [(b, f) for f in range(3)]
    assert [[(v["id"], f) for v, f in s] for s in shards(plan, 2)] == [
        [("a", 0), ("a", 1)], [("a", 2), ("a", 3)], [("a", 4)], [("b", 0), ("b", 1)], [("b", 2)]]


def test_ray_detection_equals_plain_detection_and_survives_a_killed_worker(trained_project, local_ray, tmp_path,
                                                                            monkeypatch):
    import shutil

    from bpr.data.store import Project
    from bpr.results import cluster

    p = trained_project
    videos = [v["id"] for v in p.videos("val")]
    plain = detect(p, run="tiny", videos=videos, stride=3, min_conf=0.001, batch=4)
    expected, expected_frames = stored(p, "tiny"), frames_done(p, "tiny")
    assert plain.frames > 8 and expected

    shutil.copytree(p.folder, tmp_path / "again")
    monkeypatch.setattr(cluster, "SHARD_FRAMES", 4)
    monkeypatch.setattr(cluster, "WORKER_THREADS", 1)  # two workers, one a core
    with Project.open(tmp_path / "again") as q:
        q.conn.execute("DELETE FROM detections")
        q.conn.execute("DELETE FROM detected_frames")
        local_ray.write_text("")  # the first worker to take a shard dies in it

        def cancel():  # once two shards are stored: the rerun must skip them
            return len(frames_done(q, "tiny")) >= 2 * 4

        first = detect(q, run="tiny", videos=videos, stride=3, min_conf=0.001, batch=4, ray="local", cancel=cancel)
        assert not local_ray.exists()  # a worker died mid-shard, and its shard was redone on another
        assert first.cancelled and 0 < first.frames < plain.frames
        second = detect(q, run="tiny", videos=videos, stride=3, min_conf=0.001, batch=4, ray="local")
        assert second.skipped == first.frames and first.frames + second.frames == plain.frames
        assert frames_done(q, "tiny") == expected_frames
        assert stored(q, "tiny") == expected  # the same detections as plain detect: none twice, none lost


def test_bpr_detect_ray_on_the_command_line(trained_project, local_ray, capsys):
    from bpr.cli import main

    video = trained_project.videos("test")[0]["id"]
    folder = str(trained_project.folder)
    assert main(["detect", folder, "--run", "tiny", "--video", video, "--stride", "10", "--ray"]) == 0
    out = capsys.readouterr().out
    assert "detection run tiny: done;" in out and "0 frames were already done" in out
    assert main(["detect", folder, "--run", "tiny", "--video", video, "--stride", "10", "--ray"]) == 0
    assert "detection run tiny: done; 0 frames" in capsys.readouterr().out  # a rerun finds nothing left
