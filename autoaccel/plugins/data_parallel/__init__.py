"""Data-parallel training: PyTorch DistributedDataParallel in world_size processes on this machine (gloo on CPU,
NCCL on GPUs), launched the way torchrun launches them.

The trial's process starts the ranks (spawned, each with MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE set as torchrun
sets them) and waits for them; each rank builds the same model, wraps it in DDP, trains its shard of every
epoch with the core's own training loop, and rank 0 hands back the trained weights and its timings. One rank
failing stops the others and fails the trial with that rank's reason; the ranks live in the trial's process
group, so a trial that times out or a search that is killed takes them along.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import cloudpickle
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from autoaccel.plugin import Capability, Phase, Pipeline, Section, Strategy, Target, TrainingSetup, TrialFailure, hookimpl

RESULT = "rank0.pt"
JOB = "job.pkl"


@dataclass(frozen=True)
class DataParallelSection(Section):
    world_size: int
    bucket_cap_mb: int
    backend: str  # gloo (CPU) or nccl (CUDA)
    per_process_batch: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EpochLoader:
    """A DataLoader over a DistributedSampler, told the epoch at each pass (a new shuffle every epoch, the same
    on every rank), as DDP training scripts call ``sampler.set_epoch(epoch)``."""

    def __init__(self, loader: DataLoader, sampler: DistributedSampler) -> None:
        self.loader, self.sampler, self.epoch = loader, sampler, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


class Strided:
    """Every world-th batch of another source of batches (an in-memory cache of the dataset), the same count on
    every rank: DDP all-reduces once per step, so a rank with one batch more would wait for ever."""

    def __init__(self, batches: Sized, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        return len(self.batches) // self.world

    def __iter__(self) -> Iterator[Any]:
        usable = len(self) * self.world
        # Batches are Sized as TrainingSetup types them, and iterable too: one epoch of them.
        for index, batch in enumerate(cast("Iterable[Any]", self.batches)):
            if index >= usable:
                return
            if index % self.world == self.rank:
                yield batch


def shard(batches: Sized, rank: int, world: int, seed: int) -> Sized:
    """This rank's share of the training batches, whatever loader the other strategies configured."""
    if not isinstance(batches, DataLoader):
        return Strided(batches, rank, world)
    sampler: DistributedSampler[Any] = DistributedSampler(batches.dataset, num_replicas=world, rank=rank,
                                                          shuffle=isinstance(batches.sampler, RandomSampler), seed=seed)
    options: dict[str, Any] = {"num_workers": batches.num_workers, "pin_memory": batches.pin_memory,
                               "collate_fn": batches.collate_fn}
    if batches.num_workers > 0:
        options.update(persistent_workers=batches.persistent_workers, prefetch_factor=batches.prefetch_factor)
    return EpochLoader(DataLoader(batches.dataset, batch_size=batches.batch_size, sampler=sampler, **options), sampler)


def _die_with_parent(parent: int) -> None:
    """A rank whose launcher is gone (killed with -9) must not train on: nothing of a study may outlive it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="autoaccel-rank-watchdog", daemon=True).start()


def rank_main(folder: str) -> None:
    """One rank, in its own process, its place in the world read from the environment as under torchrun
    (``python -m autoaccel.plugins.data_parallel FOLDER``)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    _die_with_parent(os.getppid())
    job = cloudpickle.loads((Path(folder) / JOB).read_bytes())
    backend = "nccl" if job.plan.device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        job.plan = job.plan.replace(device=f"cuda:{os.environ['LOCAL_RANK']}")
    if job.max_samples is not None:
        job.max_samples = max(1, job.max_samples // world)  # the same work in all as one process's slice
    dist.init_process_group(backend, timeout=timedelta(minutes=5))  # env:// rendezvous, as torchrun's
    try:
        model = job.build()
        stats = job.run(model)
        if rank == 0:
            torch.save({"state": model.state_dict(), "stats": stats}, Path(folder) / RESULT)
        # Every rank leaves together: one tearing down gloo's connections while another still uses them aborts
        # it ("terminate called without an active exception").
        dist.barrier()
    except TrialFailure as failure:
        (Path(folder) / f"failure{rank}.json").write_text(json.dumps({"reason": failure.reason, "kind": failure.kind}))
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(folder: Path, world: int, threads: int) -> None:
    """Start ``world`` rank processes the way torchrun does (one command, RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT
    in the environment) and wait for all; the first that fails stops the others and fails the trial."""
    # The parent's import path too: the user's own modules (and their script's folder) import in the ranks.
    path = os.pathsep.join(p or os.getcwd() for p in sys.path)
    env = {**os.environ, "PYTHONPATH": path, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world),
           "LOCAL_WORLD_SIZE": str(world), "OMP_NUM_THREADS": str(threads)}
    procs = []
    for rank in range(world):
        log = (folder / f"rank{rank}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "autoaccel.plugins.data_parallel", str(folder)],
                                      env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                raise _failure(folder, *failed[0], world)
            if all(c == 0 for c in codes):
                return
            time.sleep(0.05)
    finally:
        for p in procs:  # one rank failed (or the trial was interrupted): the others must not wait for it for ever
            if p.poll() is None:
                p.kill()
            p.wait()


class DataParallelStrategy(Strategy[DataParallelSection]):
    name = "data_parallel"
    phase = Phase.TRAIN
    changes_training = True
    # Each process trains a share of every batch: every part of the step is divided (and an all-reduce added).
    relieves = ("data", "copy", "forward", "backward")
    description = "DistributedDataParallel over 1..N processes on this machine (gloo on CPU, NCCL on GPUs), as torchrun runs it."

    def check(self, target: Target) -> Capability:
        if not dist.is_available():
            return Capability(False, "this PyTorch build has no torch.distributed")
        if target.kind == "cpu":
            have, unit = target.cores, "cores"
        elif target.kind == "cuda":
            have, unit = torch.cuda.device_count(), "GPUs (NCCL needs one per process)"
        else:
            return Capability(False, "runs on CPU cores (gloo) or several CUDA GPUs (NCCL)")
        sizes = [w for w in (1, 2, 4, 8) if w <= have]
        if len(sizes) < 2:
            return Capability(False, f"needs at least 2 {unit}; this target has {have}")
        return Capability(True, "" if have >= 8 else f"world sizes up to {sizes[-1]} ({have} {unit})", {"world_size": sizes})

    def left_out_by_default(self, target: Target) -> str | None:
        if target.kind == "cpu":
            # Ranks on one CPU share the cores that one process's intra-op threads already use, and each pays a
            # process start and an all-reduce per step: rarely a win, and several seconds a trial to find out.
            return "on a CPU its processes share the cores one process already uses"
        return None

    def apply(self, pipeline: Pipeline, params: Mapping[str, Any]) -> Pipeline:
        world = int(params.get("world_size", 1))
        if world == 1:
            return pipeline
        if params.get("batch", "split") == "split":
            per, lr = max(1, pipeline.batch_size // world), pipeline.lr  # the same global batch, divided
        else:
            factor = {"none": 1.0, "linear": float(world), "sqrt": math.sqrt(world)}[str(params.get("lr_scaling", "none"))]
            per, lr = pipeline.batch_size, pipeline.lr * factor  # each process the whole batch: world times larger
        backend = "nccl" if pipeline.device.startswith("cuda") else "gloo"
        section = DataParallelSection(world, int(params.get("bucket_cap_mb", 25)), backend, per)
        return pipeline.replace(batch_size=per, lr=lr).with_section(self, section)

    def configure_training(self, section: DataParallelSection, setup: TrainingSetup) -> None:
        if not dist.is_initialized():
            return  # not inside a rank: launch_training runs the ranks
        device_ids = [torch.cuda.current_device()] if section.backend == "nccl" else None
        setup.model = DistributedDataParallel(setup.model, device_ids=device_ids, bucket_cap_mb=section.bucket_cap_mb)
        setup.batches = shard(setup.batches, dist.get_rank(), dist.get_world_size(), setup.seed)

    def launch_training(self, section: DataParallelSection, job: Any, model: nn.Module) -> Any:
        if dist.is_initialized():
            return None  # already a rank: train here
        threads = max(1, torch.get_num_threads() // section.world_size)  # the cores are shared among the ranks
        with tempfile.TemporaryDirectory(prefix="autoaccel-ddp-") as tmp:
            folder = Path(tmp)
            (folder / JOB).write_bytes(job.portable())
            started = time.perf_counter()
            run_ranks(folder, section.world_size, threads)
            wall = time.perf_counter() - started
            out = torch.load(folder / RESULT, map_location=job.plan.device, weights_only=False)
        model.load_state_dict(out["state"])
        stats = out["stats"]
        # Starting the processes (a Python and a torch import each, the process group's rendezvous) is a one-off
        # of the run, like compilation: counted apart from the training time, as compile_s.
        launch = max(0.0, wall - stats.seconds - stats.compile_s)
        return dataclasses.replace(stats, compile_s=stats.compile_s + launch, processes=section.world_size)

    def recipe(self, section: DataParallelSection) -> dict[str, Any]:
        w, per = section.world_size, section.per_process_batch
        gpu = section.backend == "nccl"
        return {
            "world_size": w, "backend": section.backend, "batch_size_per_process": per, "global_batch_size": per * w,
            "bucket_cap_mb": section.bucket_cap_mb,
            "launch": f"torchrun --standalone --nproc_per_node {w} your_training_script.py",
            "code_changes": [
                f"torch.distributed.init_process_group('{section.backend}')  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR/PORT",
                *(["local_rank = int(os.environ['LOCAL_RANK']); torch.cuda.set_device(local_rank)"] if gpu else []),
                f"model = torch.nn.parallel.DistributedDataParallel(model{', device_ids=[local_rank]' if gpu else ''}, "
                f"bucket_cap_mb={section.bucket_cap_mb})",
                f"sampler = DistributedSampler(train_data, shuffle=True); loader = DataLoader(train_data, batch_size={per}, sampler=sampler)",
                "sampler.set_epoch(epoch)  # at the start of every epoch",
                "evaluate and save on rank 0 only (torch.distributed.get_rank() == 0); torch.distributed.destroy_process_group() at the end",
            ],
        }


def _failure(folder: Path, rank: int, code: int, world: int) -> TrialFailure:
    """A rank's failure: its own words when it said them (diverged, stopped as too slow ...), else how it died
    and the last line it printed."""
    said = folder / f"failure{rank}.json"
    if said.exists():
        data = json.loads(said.read_text())
        return TrialFailure(data["reason"], kind=data["kind"], stage="training")
    lines = [line for line in (folder / f"rank{rank}.log").read_text(errors="replace").splitlines() if line.strip()]
    last = f": {lines[-1].strip()}" if lines else ""
    if code < 0:
        return TrialFailure(f"data-parallel rank {rank} of {world} died (signal {signal.Signals(-code).name}){last}",
                            kind="crash", stage="training")
    return TrialFailure(f"data-parallel rank {rank} of {world} failed (exit code {code}){last}", stage="training")


@hookimpl
def autoaccel_register_strategies(register: Callable[[Strategy], None]) -> None:
    register(DataParallelStrategy())

