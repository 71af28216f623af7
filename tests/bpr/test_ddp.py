"""Training on several GPUs: ultralytics' own DDP launcher starts the ranks, and each rank sets up the
run's partial-label learning from the run's record (no callback travels to it).

No GPU is needed: the ranks are launched exactly as ultralytics launches them on GPUs (its generated
script under torch.distributed.run), as a world of one rank on the CPU, whose process group is gloo's.
"""

from __future__ import annotations

import threading

import pytest

from bpr.learn import trainer as trainer_module
from bpr.learn import training
from bpr.learn.loss import Rebalancing
from bpr.learn.training import TrainConfig, TrainingCancelled, train


class CpuRankTrainer(trainer_module.PartialLabelTrainer):
    """bpr's trainer, launched through ultralytics' DDP script as one rank on the CPU."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ultralytics counts no devices on the CPU, so it would train in this process: launch as for GPUs
        self.ddp = trainer_module.ddp_rank() is None
        self.world_size = 1

    def _do_train(self):
        import torch.distributed as dist

        # ultralytics' _setup_ddp, on the CPU (its RANK is -1 in a world of one: it trains as one process)
        dist.init_process_group("gloo", rank=trainer_module.ddp_rank(), world_size=1)
        try:
            super()._do_train()
        finally:
            dist.destroy_process_group()


@pytest.fixture
def ranks_on_the_cpu(monkeypatch):
    monkeypatch.setattr(training, "_launches_ranks", lambda device: True)
    monkeypatch.setattr(trainer_module, "PartialLabelTrainer", CpuRankTrainer)


def tiny_config(**overrides):
    settings = dict(model="yolov5n.yaml", epochs=1, imgsz=96, batch=16, workers=0, device="cpu",
                    rebalancing=Rebalancing(p_obj=0.5, p_box=0.25))
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_a_ddp_rank_installs_bpr_and_the_ema_teacher_from_the_run_record_and_rank_0_records_and_reports(
        demo_project, ranks_on_the_cpu):
    from bpr.config import PseudoLabels

    events = []
    config = tiny_config(pseudo=PseudoLabels(teacher="ema", burn_in=0))
    run = train(demo_project, config, name="ddp", on_event=events.append)
    assert run.status == "finished" and run.error is None
    [epoch] = run.metrics  # recorded by rank 0
    assert epoch["teacher"]["batches"] > 0  # the EMA teacher scored the rank's batches
    drop = epoch["drop"]  # the rank's criterion dropped: BPR was installed there
    assert drop["negatives"] > 0 and 0.4 < drop["obj_drop_fraction"] < 0.6
    assert 0.1 < drop["box_drop_fraction"] < 0.4
    assert "mAP50" in epoch and epoch["software"] == training.software("cpu")
    # rank 0's progress reached this process's on_event, relayed in order
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "epoch" in kinds
    batches = [e for e in events if e.kind == "batch"]
    assert [e.batch for e in batches] == list(range(1, batches[0].batches + 1))
    assert batches[-1].drop["negatives_dropped"] > 0
    # the checkpoint is plain ultralytics
    from ultralytics import YOLO

    assert YOLO(str(demo_project.resolve_path(run.weights))).task == "detect"
    folder = demo_project.folder / "runs" / "ddp"
    assert not (folder / training.RANK_CANCEL).exists()


@pytest.mark.slow
def test_a_ddp_run_cancels_in_every_rank_and_resumes(demo_project, ranks_on_the_cpu):
    """The cancel reaches the ranks a moment later than in one process (the launching process passes it
    on within a quarter of a second): asked at the first batch, the run stops within its 3 epochs."""
    stop = threading.Event()

    def on_event(event):
        if event.kind == "batch" and event.epoch == 1 and event.batch == 1:
            stop.set()

    with pytest.raises(TrainingCancelled, match="run c cancelled at epoch ., batch"):
        train(demo_project, tiny_config(epochs=3), name="c", on_event=on_event, cancel=stop.is_set)
    run = demo_project.run("c")
    done = [m["epoch"] for m in run.metrics]
    assert run.status == "cancelled" and done == list(range(1, len(done) + 1)) and len(done) < 3

    events = []
    run = train(demo_project, resume="c", on_event=events.append)
    assert run.status == "finished" and [m["epoch"] for m in run.metrics] == [1, 2, 3]
    assert events[0].kind == "start" and events[0].epoch == len(done) + 1  # continued, not restarted
    assert run.metrics[-1]["drop"]["negatives_dropped"] > 0


def _sum_in_rank(rank: int, world: int, port: int, results) -> None:
    import torch
    import torch.distributed as dist

    from bpr.config import PseudoLabels
    from bpr.learn.loss import DropStats
    from bpr.learn.pseudo import OnlineTeacher

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    stats = DropStats()
    for _ in range(rank + 1):  # rank r saw r + 1 steps of (10, 5, 4, 1, 0) x (r + 1)
        stats.add(torch.tensor([10, 5, 4, 1, 0]) * (rank + 1))
    stats.sum_over_ranks(torch.device("cpu"))
    # only rank 0 reads the validation's metrics: the calibrated score reaches the other ranks
    teacher = OnlineTeacher(PseudoLabels(teacher="ema"), set(), calibrated=0.3 if rank == 0 else None)
    teacher.share_calibration(torch.device("cpu"))
    results.put((rank, {**stats.summary(), "calibrated": teacher.calibrated}))
    dist.destroy_process_group()


def test_drop_counts_are_summed_over_the_ranks_and_the_calibrated_score_shared():
    import torch.multiprocessing as mp
    from ultralytics.utils.dist import find_free_network_port

    context = mp.get_context("spawn")
    results = context.Queue()
    port = find_free_network_port()
    processes = [context.Process(target=_sum_in_rank, args=(rank, 2, port, results)) for rank in range(2)]
    for p in processes:
        p.start()
    summaries = dict(results.get(timeout=120) for _ in processes)
    for p in processes:
        p.join(timeout=60)
    # rank 0: 1 step of (10, 5, 4, 1, 0); rank 1: 2 steps of (20, 10, 8, 2, 0)
    assert summaries[0] == summaries[1]
    assert summaries[0]["negatives"] == 10 + 40 and summaries[0]["negatives_dropped"] == 5 + 20
    assert summaries[0]["steps"] == 3 and summaries[0]["obj_drop_fraction"] == pytest.approx(0.5)
    assert summaries[1]["calibrated"] == pytest.approx(0.3)


def test_several_gpus_are_one_ddp_device_and_inference_takes_the_first(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert training.resolve_device("0,1") == "0,1" and training.resolve_device("cuda:0, 1") == "0,1"
    assert training._launches_ranks("0,1") and not training._launches_ranks(training.resolve_device("cuda:1"))
    assert training.inference_device(training.resolve_device("0,1")) == "0"
    with pytest.raises(ValueError, match=r"not available here \(CUDA devices: 2\)"):
        training.resolve_device("0,2")
    with pytest.raises(ValueError, match="unknown device"):
        training.resolve_device("0,0")
