"""One trial, in whatever process runs it: build, train (or reuse a cached training), transform, evaluate, time."""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoaccel.errors import TrialFailure, describe
from autoaccel.measure import LoadProbe
from autoaccel.plugin._contexts import Guards, ServeContext, Stage, TrainStats, TransformContext
from autoaccel.plugin._pipeline import Pipeline
from autoaccel.task import BaseLoss, Task, call, features, sample_batch, targets_of, training_loss
from autoaccel.trial import _lifecycle as lifecycle
from autoaccel.trial import _quality as quality
from autoaccel.trial._checkpoints import CheckpointCache, training_key
from autoaccel.trial._evaluate import latency_input, peak_memory_mb, reset_peak_memory, time_inference
from autoaccel.trial._launch import TrainingJob, baseline_loader, launch_training, seed_everything
from autoaccel.trial._remeasure import TRAIN_SAMPLES
from autoaccel.trial._train import train
from autoaccel.trial._where import located
from autoaccel.vocab import REMEASURED, TRAINING_OBJECTIVES

# The shared vocabulary of objectives lives in vocab.py (light to import); re-exported here for the runner's users.
MAX_WARNINGS = 10


@dataclass
class TrialResult:
    metrics: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    details: dict[str, Any] = field(default_factory=dict)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def run_trial(task: Task, plan: Pipeline, seed: int = 0, timing_budget_s: float = 1.0,
              cache_dir: str | None = None, guards: Guards | None = None) -> TrialResult:
    """Run one plan end to end and return its metrics; any failure becomes a TrialFailure with a reason.
    ``guards``: the search's early stops of the training (see train.train).

    Warnings (torch.compile's, schedulers', libraries') go into the result's details, not the terminal.
    """
    stage = Stage()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            result = _run(task, plan, seed, timing_budget_s, cache_dir, stage, guards)
        except TrialFailure as exc:
            exc.stage = exc.stage or stage.name
            if not exc.where:
                exc.where, exc.trace = located(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - the user's model may raise anything; the study must go on
            at, trace = located(exc)
            if _is_oom(exc):
                raise TrialFailure(f"out of memory at batch size {plan.batch_size} (infeasible): {exc}".splitlines()[0],
                                   kind="oom", stage=stage.name, where=at, trace=trace) from exc
            raise TrialFailure(describe(exc), kind="error", stage=stage.name, where=at, trace=trace) from exc
    seen = dict.fromkeys(f"{w.category.__name__}: {str(w.message).strip().splitlines()[0] if str(w.message).strip() else ''}"
                         for w in caught)
    if seen:
        result.details["warnings"] = "\n".join(list(seen)[:MAX_WARNINGS])
    return result


def warm_up(task: Task) -> None:
    """Pay the process's one-off costs before any trial is timed.

    The first Optimizer step imports parts of torch lazily (about 2 s here); unpaid, it lands in whichever
    trial runs first in a fresh worker, which is the baseline, and flatters every candidate against it.
    """
    try:
        model = task.model()
        batch = torch.utils.data.default_collate([task.train_data[i] for i in range(min(2, len(task.train_data)))])
        optimizer = task.optimizer(model.parameters(), task.lr)
        base = BaseLoss(task)
        training_loss(task, base, base, model, batch, lambda inputs: inputs).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            call(model, features(batch))
    except Exception:  # noqa: BLE001 - a warm-up problem shows up, with its reason, in the first real trial
        pass


@dataclass
class Trained:
    """A plan's trained model, its checkpoint key, and what its training measured: ``metrics`` (train_time and
    train_throughput), their ``ci``, and ``details`` of how it was obtained (cached_training, profile, fidelity)."""

    model: nn.Module
    key: str
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def trained_model(task: Task, plan: Pipeline, seed: int, cache: CheckpointCache | None, stage: Stage | None = None,
                  guards: Guards | None = None) -> Trained:
    """The trained model for the plan's training recipe: loaded from Task.weights, from the cache, or trained.

    With ``plan.weights_from`` (inference mode without weights) the model always comes from that one frozen
    recipe, whatever the plan changes for serving: those must not retrain it.
    """
    if plan.weights_from is not None:
        return trained_model(task, plan.weights_from, seed, cache, stage)
    seed += plan.replica  # a replica of a recipe: another initialisation and data order (curve.py)
    seed_everything(seed)  # the same initial weights wherever this recipe is built
    model = lifecycle.build_model(task, plan, seed, stage)
    if stage is not None:
        stage("training")
    key = training_key(task, plan)
    if not plan.train:
        model.load_state_dict(torch.load(task.weights, map_location=plan.device, weights_only=True))  # type: ignore[arg-type]
        return Trained(model, key, {"train_time": 0.0, "train_throughput": 0.0})
    entry = cache.get(key) if cache is not None else None
    if entry is not None:
        cache.load(entry, model, plan.device)  # type: ignore[union-attr]
        # The training this model came from was measured when it ran; its cost is still this recipe's cost.
        done = Trained(model, key, {"train_time": float(entry.meta["train_time"]),
                                    "train_throughput": float(entry.meta.get("train_samples_per_s", 0.0))},
                       details={"cached_training": True, "profile": entry.meta.get("profile", {})})
        if "fidelity" in entry.meta:
            done.details["fidelity"] = entry.meta["fidelity"]
        return done
    # Seeded here, not only at the trial's start: the model's own initialisation above drew from the generator,
    # and whoever reaches this point (a trial, an apply, an ensemble member) must train the same weights.
    seed_everything(seed)
    job = TrainingJob(task, plan, seed, str(cache.root) if cache is not None else None, guards)
    stats = launch_training(job, model) or job.run(model)  # a section may run it elsewhere (several processes)
    # Every process of a launched run trains its own batches: the run's throughput is theirs together.
    rate, rate_ci = stats.step_time.rate(plan.batch_size * stats.processes)
    # The whole recipe's training time: measured, or projected from a compressed run (Pipeline.fraction < 1).
    done = Trained(model, key, {"train_time": stats.projected_s, "train_throughput": rate}, {"train_throughput": rate_ci},
                   {"compile_s": stats.compile_s, "fidelity": fidelity_details(plan, stats), "train_steps": stats.steps,
                    "train_loss": stats.final_loss, "train_step_noisy": stats.step_time.noisy, "cached_training": False,
                    "profile": stats.profile})
    if cache is not None:
        metric = task.metric_fn()
        raw = quality.evaluate(model, task, plan, metric, seed)
        cache.put(key, model, {"train_time": stats.projected_s, "train_samples_per_s": rate, "accuracy": raw.value * metric.sign,
                               "profile": stats.profile, "fidelity": done.details["fidelity"]})
    return done


def probe(task: Task, plan: Pipeline, seed: int = 0, steps: int = 30) -> dict[str, float]:
    """A few dozen steps of the user's recipe, timed: its steady step time projected to the whole run (what the
    budget plans the search's fidelity from; see fidelity.py). Nothing is evaluated or cached."""
    lifecycle.start(plan)
    seed_everything(seed)
    model = lifecycle.build_model(task, plan, seed)
    seed_everything(seed)
    per_epoch = -(-len(task.train_data) // max(1, plan.batch_size))
    full = max(1, per_epoch * plan.epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = train(model, task, plan.replace(fraction=min(1.0, steps / full)), seed)
    steady = stats.step_time.median
    return {"full_s": stats.projected_s, "full_steps": float(stats.full_steps), "step_s": steady}


def fidelity_details(plan: Pipeline, stats: TrainStats) -> dict[str, Any]:
    """How a trial's training figures were obtained: the share of the schedule it trained (its accuracy is at that
    fidelity), the steps its step time was measured over, and whether its train_time is projected."""
    return {"fraction": plan.fraction, "steps": stats.steps, "full_steps": stats.full_steps,
            "steady_steps": stats.steady_steps, "own_s": stats.seconds, "projected": plan.fraction < 1.0,
            "epoch_cost_s": stats.epoch_cost_s, "loss_curve": [list(p) for p in stats.loss_curve]}


def serve(task: Task | None, plan: Pipeline, model: nn.Module, example: Any, seed: int,
          stage: Stage | None = None) -> nn.Module:
    """The model as the plan serves it, through every section's ``serve`` hook."""
    return lifecycle.serve(model, ServeContext(task, plan, seed, example, torch.get_num_threads()), stage)


def _run(task: Task, plan: Pipeline, seed: int, timing_budget_s: float, cache_dir: str | None, stage: Stage,
         guards: Guards | None = None) -> TrialResult:
    lifecycle.start(plan)
    reset_peak_memory(plan.device)
    seed_everything(seed)
    probe = LoadProbe()
    cache = CheckpointCache(cache_dir) if cache_dir else None
    trained = trained_model(task, plan, seed, cache, stage, guards)
    model, metrics, ci = trained.model, dict(trained.metrics), dict(trained.ci)
    details: dict[str, Any] = {**trained.details, "checkpoint": trained.key}
    model, held_out = transformed(task, plan, seed, model, cache, stage)
    one = latency_input(task.val_data, task.example_input)
    model = serve(task, plan, model, one, seed, stage)
    stage("evaluation")
    evaluating = time.perf_counter()
    metric = task.metric_fn()
    if held_out is not None:
        # A transform fit on the validation set (a stacking combiner) is scored on outputs it computed held out.
        got = quality.of_outputs(held_out, targets_of(task.val_data), metric, seed)
    else:
        got = quality.evaluate(model, task, plan, metric, seed)
    # The quality slot: higher is better, so a lower-is-better metric is negated (its interval flipped with it).
    low, high = sorted((got.ci95[0] * metric.sign, got.ci95[1] * metric.sign))
    metrics["accuracy"], ci["accuracy"] = got.value * metric.sign, (low, high)
    details["metric"] = {"name": metric.name, "direction": metric.direction}
    if "profile" in details:
        details["profile"] = {**details["profile"], "evaluation": time.perf_counter() - evaluating}
    # What pairs the drop against the baseline: per-sample correctness, the metric's rows, or its bootstrap replicates.
    details.update(got.pairing)
    lat = time_inference(model, one, plan, timing_budget_s)
    metrics["latency"] = lat.median * 1000.0
    ci["latency"] = (lat.ci95[0] * 1000.0, lat.ci95[1] * 1000.0)
    batch = min(plan.eval_batch_size, max(len(task.val_data), 1))
    thr = time_inference(model, sample_batch(task.val_data, batch), plan, timing_budget_s)
    metrics["throughput"], ci["throughput"] = thr.rate(batch)
    metrics["memory"] = peak_memory_mb(plan.device)
    if stage.finetune_s:
        # Fine-tuning after pruning is training this recipe needs beyond the user's run: it pays for it.
        metrics["train_time"] += stage.finetune_s
        details["finetune_s"] = stage.finetune_s
    if plan.members:
        # Whoever reuses a model pays for it: an ensemble of k costs the training (and memory) of all k.
        metrics["train_time"] += sum(m.train_time for m in plan.members)
        metrics["memory"] += sum(m.memory for m in plan.members)
        ci.pop("train_throughput", None)
        metrics["train_throughput"] = _combined_rate(metrics, plan, task)
        details["members"] = [{"trial": m.trial, "train_time": m.train_time} for m in plan.members]
    details.update(latency_first_call_ms=lat.first_call * 1000.0, runtime=type(model).__name__, latency_noisy=lat.noisy, throughput_noisy=thr.noisy,
                   parameters=sum(p.numel() for p in model.parameters()))
    details.update(probe.stop().to_details())
    return TrialResult(metrics, ci, details)


def _combined_rate(metrics: dict[str, float], plan: Pipeline, task: Task) -> float:
    """Training samples per second over all the trainings the plan and its members needed."""
    samples = plan.epochs * len(task.train_data) * (1 + len(plan.members))
    return samples / metrics["train_time"] if metrics["train_time"] > 0 else 0.0


def transform_model(task: Task | None, plan: Pipeline, seed: int, model: nn.Module, cache: CheckpointCache | None,
                    stage: Stage | None = None) -> nn.Module:
    """Every section's post-training ``transform`` in order; fine-tuning they ask for is charged to the plan."""
    return transformed(task, plan, seed, model, cache, stage)[0]


def transformed(task: Task | None, plan: Pipeline, seed: int, model: nn.Module, cache: CheckpointCache | None,
                stage: Stage | None = None) -> tuple[nn.Module, torch.Tensor | None]:
    """``transform_model``, and the validation outputs a transform asked the trial to be judged on
    (``TransformContext.judge_on``; None: evaluate the served model)."""
    def trained(member: Pipeline) -> nn.Module:
        assert task is not None  # offered to the transforms only with a task (below)
        return trained_model(task, member, seed, cache).model

    def finetune(m: nn.Module, epochs: int) -> nn.Module:
        if epochs <= 0:
            return m
        if task is None:
            raise TrialFailure("fine-tuning after training needs the Task (its data); pass the Task, not a bare model",
                               kind="unsupported")
        seconds = train(m, task, plan.replace(epochs=epochs), seed, baseline=baseline_loader(task, plan, cache),
                        finetuning=True).projected_s
        if stage is not None:
            stage.finetune_s += seconds
        return m.eval()  # back as it is served

    ctx = TransformContext(task, plan, seed, finetune, trained if task is not None else None)
    # Transforms get the trained model as it is served, in eval mode: a torch.fx trace (structured pruning) bakes
    # BatchNorm's mode into its graph, and a model traced in training mode serves so for good (timm's MobileNetV3
    # at 32x32 then failed on a batch of one).
    return lifecycle.transform(model.eval(), ctx, stage).eval(), ctx.held_out.outputs


def served_model(task: Task, plan: Pipeline, seed: int = 0, cache_dir: str | None = None) -> nn.Module:
    """The model exactly as a trial serves it (trained or cached, transformed, wrapped), for export."""
    return serving(task, plan, seed, cache_dir)[0]


def serving(task: Task, plan: Pipeline, seed: int = 0, cache_dir: str | None = None) -> tuple[nn.Module, Trained]:
    """``served_model``, and the training it came from (reused from the cache, or trained now, and its cost)."""
    cache = CheckpointCache(cache_dir) if cache_dir else None
    trained = trained_model(task, plan, seed, cache)
    return transform_model(task, plan, seed, trained.model, cache).eval(), trained


@dataclass
class Timings:
    """Seconds per fixed amount of work, and the cores other programs kept busy meanwhile, each as
    [objective][plan][round]."""

    seconds: dict[str, list[list[float]]]
    load: dict[str, list[list[float | None]]]


def remeasure_plans(task: Task, plans: list[Pipeline], objectives: tuple[str, ...], rounds: int, seed: int = 0,
                    budget_s: float = 0.2, train_samples: int = TRAIN_SAMPLES, cache_dir: str | None = None) -> Timings:
    """Seconds per fixed amount of work, per objective, per plan, per round, measured interleaved.

    Training is timed over the same number of samples for every plan (a whole epoch for small data), so a
    larger batch is credited with exactly the speed it brings; inference on the same inputs for every plan,
    each served exactly as its trial served it (from the checkpoint cache).
    """
    from autoaccel.trial._remeasure import interleave

    # Training speed is timed once per round and serves both training objectives (time per fixed samples).
    for plan in plans:
        lifecycle.start(plan)
    wanted = []
    for o in objectives:
        o = "train_time" if o in TRAINING_OBJECTIVES else o
        if o in REMEASURED and o not in wanted and (o != "train_time" or plans[0].train):
            wanted.append(o)
    samples = min(train_samples, len(task.train_data))
    one = latency_input(task.val_data, task.example_input)
    trainees, served = {}, {}
    for i, plan in enumerate(plans):
        seed_everything(seed)
        if "train_time" in wanted:
            trainees[i] = lifecycle.build_model(task, plan, seed)
        served[i] = serve(task, plan, served_model(task, plan, seed, cache_dir), one, seed)
    batch = sample_batch(task.val_data, min(plans[0].eval_batch_size, max(len(task.val_data), 1)))
    cache = CheckpointCache(cache_dir) if cache_dir else None

    # A model a plan learns from (the baseline's) is loaded once, not once per round.
    baselines = {i: baseline_loader(task, plan, cache) for i, plan in enumerate(plans)}

    def measure_once(objective: str, i: int) -> float:
        plan = plans[i]
        if objective == "train_time":
            # Launched as its trial was (several processes for data parallelism), else trained here.
            # A fixed slice of the recipe's own steps, whatever share of the schedule the plan's trial trained.
            whole = plan.replace(fraction=1.0)
            job = TrainingJob(task, whole, seed, cache_dir, max_samples=samples)
            launched = launch_training(job, trainees[i])
            return (launched or train(trainees[i], task, whole, seed, max_samples=samples, baseline=baselines[i])).seconds
        return time_inference(served[i], one if objective == "latency" else batch, plan, budget_s).median

    out = Timings({}, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the trials already recorded these plans' warnings
        for objective in wanted:
            # One warm-up pass per plan first: the first round would otherwise pay lazy initialisation for some.
            for i in range(len(plans)):
                measure_once(objective, i)
            loads: list[list[float | None]] = []
            out.seconds[objective] = interleave(len(plans), rounds, functools.partial(measure_once, objective), loads)
            out.load[objective] = loads
    return out
