"""Finding the files of a project's videos and images: after a move, on another machine, or one by one."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from pathlib import Path

from bpr.data.formats.dusia import find_video
from bpr.data.media import probe_video_file
from bpr.data.store import Project, counted, image_file_name, source_counts


def link_videos(project: Project, folder: str | Path | Iterable[str | Path]) -> dict[str, list[str]]:
    """Find in ``folder`` (or in each of several folders, first match wins) the files of the videos and
    images that have none, or whose file is gone (the data moved: another drive, another machine), and
    record them.

    A video is looked for as <id>.<ext> in a folder. An image is looked for under its id's folder,
    then in the folder itself, by its file name: for a YOLO set, the folder is the set's new root.
    Returns {"linked": video ids, "linked_images": image ids, "unreadable": ["id: reason"],
    "still_missing": ids, "frame_count_mismatch": ["id: ..."]}.
    """
    folders = [Path(folder)] if isinstance(folder, (str, os.PathLike)) else [Path(f) for f in folder]
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"{f}: no such folder")
    result: dict[str, list[str]] = {"linked": [], "linked_images": [], "unreadable": [], "still_missing": [],
                                    "frame_count_mismatch": []}
    found = []  # (id, path, info, status, reason), written at the end in one commit
    for video in project.videos():
        if video["status"] == "ok" and video["path"] and os.path.exists(project.resolve_path(video["path"])):
            continue
        if video["kind"] == "image":
            name = image_file_name(video)
            path = next((c for f in folders for c in (f / posixpath.dirname(video["id"]) / name, f / name)
                         if c.is_file()), None)
            if path is None:
                result["still_missing"].append(video["id"])
            else:
                found.append((video["id"], path, None, "ok", None))
                result["linked_images"].append(video["id"])
            continue
        path = next((p for p in (find_video(f, video["id"]) for f in folders) if p is not None), None)
        if path is None:
            result["still_missing"].append(video["id"])
            continue
        info, status, reason, mismatch = probe_video_file(video, path)
        if mismatch:
            result["frame_count_mismatch"].append(mismatch)
        found.append((video["id"], path, info, status, reason))
        (result["linked"] if status == "ok" else result["unreadable"]).append(
            video["id"] if status == "ok" else f"{video['id']}: {reason}")
    if found:
        with project.transaction():
            for row in found:
                project.set_video_file(*row)
    return result


def link_video(project: Project, video_id: str, path: str | os.PathLike) -> tuple[str, str | None]:
    """Record ``path`` as the file of one video: (its status, "ok", "unreadable" or "missing", and what
    is wrong with it, or None)."""
    info, status, reason, mismatch = probe_video_file(project.video(video_id), path)
    project.set_video_file(video_id, path, info, status, reason)
    return status, (mismatch or f"{video_id}: {reason}") if status != "ok" or mismatch else None


def describe_links(result: dict[str, list[str]]) -> str:
    """One line on what link_videos found."""
    images = len(result["linked_images"])
    return (f"linked {counted(source_counts(len(result['linked']) + images, images))}; "
            f"{len(result['still_missing'])} still missing")
