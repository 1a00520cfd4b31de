"""The data_parallel strategy: DistributedDataParallel over world size 2 on this CPU (gloo), launched as torchrun
would; a rank that crashes fails the trial and leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from autoaccel import Pipeline
from autoaccel.errors import TrialFailure
from autoaccel.plugin._strategy import Capability
from autoaccel.plugin.testing import CPU, StrategyContract
from autoaccel.plugins.data_parallel import DataParallelSection, DataParallelStrategy, Strided
from autoaccel.task._target import Target
from autoaccel.trial._run import run_trial
from tiny_digits import make_task, task_source, write_model

pytestmark = pytest.mark.slow  # each trial starts two ranks


class TestDataParallelContract(StrategyContract):
    strategy_class = DataParallelStrategy
    end_to_end_settings = 1  # each trial starts two ranks; the other settings run in the study test and below
    reproduced_settings = 1  # each reproduction trains three times over two ranks; the route is one for all settings


def children() -> set[int]:
    """Live descendants of this test process (the ranks would be there), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    kids = {os.getpid()}
    while more := {p for p, pp in parents.items() if pp in kids} - kids:
        kids |= more
    return kids - {os.getpid()}


def test_world_sizes_are_cut_to_the_cores_and_the_cpu_leaves_it_out_unless_named() -> None:
    s = DataParallelStrategy()
    cap = s.check(CPU)
    assert cap.supported and list(cap.allowed["world_size"]) == [1, 2]
    one = Target("cpu", "cpu", "one core", 1, 8.0)
    assert not s.check(one).supported and "at least 2 cores" in s.check(one).reason
    assert "share the cores" in (s.left_out_by_default(CPU) or "")


def test_split_keeps_the_global_batch_and_replicate_scales_it_with_the_learning_rate() -> None:
    s, base = DataParallelStrategy(), Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1)
    split = s.apply(base, {"world_size": 2, "batch": "split"})
    assert split.batch_size == 16 and split.lr == 0.1
    assert split.section("data_parallel") == DataParallelSection(2, 25, "gloo", 16)
    replicate = s.apply(base, {"world_size": 2, "batch": "replicate", "lr_scaling": "linear", "bucket_cap_mb": 5})
    assert replicate.batch_size == 32 and replicate.lr == pytest.approx(0.2)
    assert s.apply(base, {"world_size": 1}) == base


def test_two_ranks_train_together_and_say_so() -> None:
    task = make_task(epochs=2)
    base = Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=2)
    plan = DataParallelStrategy().apply(base, {"world_size": 2, "batch": "split"})
    before = children()  # what earlier tests in this process left running is not this trial's
    alone = run_trial(task, base, 0, 0.02)
    together = run_trial(task, plan, 0, 0.02)
    # Each rank took every step with half of each global batch, and the model learned as well.
    assert together.details["train_steps"] == alone.details["train_steps"]
    assert together.metrics["accuracy"] > 0.8 and abs(together.metrics["accuracy"] - alone.metrics["accuracy"]) < 0.1
    assert not children() - before, "a rank outlived its trial"


CRASHING = task_source(
    prelude='''
        import os
        import torch.distributed as dist

        class CrashesOnRankOne(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

            def forward(self, x):
                if self.training and dist.is_initialized() and dist.get_rank() == 1:
                    os.abort()  # a native crash in one rank
                return self.net(x)
    ''',
    model="CrashesOnRankOne()",
)


# Alone: beside another test's load the surviving rank may die of the broken process group within the same 50 ms
# poll as the crashing one, and which rank is named then depends on the load (the trial fails as a crash either way).
@pytest.mark.alone
def test_a_rank_that_crashes_fails_the_trial_and_leaves_no_process(tmp_path: Path) -> None:
    from autoaccel.task._loading import load_task

    task = load_task(write_model(tmp_path, CRASHING))
    plan = DataParallelStrategy().apply(Pipeline(device="cpu", batch_size=32, lr=0.1, epochs=1), {"world_size": 2})
    # What ran before in this process may have left Python's own helpers (multiprocessing's resource tracker lives
    # as long as the process that started it): only what this trial started must be gone.
    before = children()
    with pytest.raises(TrialFailure) as failure:
        run_trial(task, plan, 0, 0.02)
    assert failure.value.kind == "crash" and "rank 1 of 2 died (signal SIGABRT)" in failure.value.reason
    assert not children() - before, "a rank outlived the failed trial"


def test_shards_of_an_in_memory_cache_are_equal_in_length_on_every_rank() -> None:
    batches = list(range(7))
    shards = [list(Strided(batches, r, 2)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 5]] and all(len(Strided(batches, r, 2)) == 3 for r in range(2))


def test_apply_prints_the_torchrun_command_and_the_code_changes(tmp_path: Path) -> None:
    model = write_model(tmp_path, task_source())
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"task": "tiny", "params": {"data_parallel.world_size": 2}}))
    done = subprocess.run([sys.executable, "-m", "autoaccel.cli", "apply", str(recipe), str(model), "--export", "state_dict",
                           "--out", str(tmp_path / "model.pt")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)["training"]["data_parallel"]
    assert printed["launch"] == "torchrun --standalone --nproc_per_node 2 your_training_script.py"
    assert any("DistributedDataParallel(model, bucket_cap_mb=25)" in line for line in printed["code_changes"])
    assert printed["global_batch_size"] == 32 and printed["batch_size_per_process"] == 16
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert isinstance(state, dict) and state  # trained through the ranks, then exported


def test_capability_is_a_capability() -> None:
    assert isinstance(DataParallelStrategy().check(CPU), Capability)
    assert isinstance(nn.Module(), nn.Module)
