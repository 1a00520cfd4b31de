"""`autoaccel confirm OUT`: the answers trained whole beside the user's recipe.

A search that trained compressed runs (fidelity.py) gives answers whose speed was projected from slices and
whose quality was measured at a share of the schedule. Confirming trains the user's recipe and each answer at
full length, back to back in one worker (the recipe first, then the answers; the serve answer reuses the recipe's
whole training and costs an evaluation), as trials of the same study: a
confirmation killed midway keeps the trainings it finished, and running it again reuses them. The answers are
then updated (their evidence becomes ``full``, or the answer is withdrawn when its quality does not hold at full
length) and published as a new generation of OUT.

A user who trained their recipe already saves its whole training (known_recipe.py): with Task.weights set, the
weights are evaluated instead (and the serve answer is evaluated on them); with --baseline-metric, the stated value
stands for the recipe's quality. The recipe's time is then the one the search projected from its steady steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import pluggy

from autoaccel.errors import AutoaccelError, TrialFailure
from autoaccel.finish import Answer, Summary, accuracy_drop, describe_speed, evidence, keep, known_recipe, summarize_study
from autoaccel.options import Options
from autoaccel.outputs import Generation, publish
from autoaccel.plugin._strategy import strategy_of
from autoaccel.scratch import run_scratch
from autoaccel.search import Search
from autoaccel.search import study as studies
from autoaccel.task import Task, load_task
from autoaccel.trial import Fidelity, TrialRecord, duration

GOALS = ("train", "serve", "combined")  # serve costs an evaluation: it reuses the recipe's whole training


def load_run(out: Path, storage: str | None, name: str | None) -> optuna.Study:
    """The study of an optimize run: OUT/study.db, or --storage and --study."""
    from autoaccel.search.team import is_companion

    if storage is None and not (out / "study.db").exists():
        raise AutoaccelError(f"confirm: {out / 'study.db'} does not exist; give the folder of an optimize run (OUT), or --storage")
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    store = studies.open_storage(url)
    names = [n for n in optuna.get_all_study_names(storage=store) if not is_companion(n)]
    name = name or (names[0] if len(names) == 1 else None)
    if name is None or name not in names:
        raise AutoaccelError(f"--study: {'choose one of' if names else 'no study in this storage;'} {', '.join(names)}")
    return optuna.load_study(study_name=name, storage=store)


def to_confirm(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """The run's given answers that a confirmation trains (or, for serve, evaluates) at full length."""
    stored = study.user_attrs.get("answers") or {}
    return {g: a for g, a in (stored.get("goals") or {}).items() if g in GOALS and a.get("given")}


def confirm(out: str | Path, pm: pluggy.PluginManager, model: str | None = None, storage: str | None = None,
            study_name: str | None = None, quiet: bool = False, task: Task | None = None,
            baseline_metric: float | None = None) -> Summary:
    """Train the run's answers and the user's recipe at full length (serve: evaluated on it); update, publish.
    ``task``: the Task itself (optimize --confirm from Python), instead of loading the model file;
    ``baseline_metric``: the recipe's full-length metric as the user measured it (else the run's, if it was given)."""
    with run_scratch():  # before the model file is loaded: what it imports may write to the temp dir
        return _confirm(Path(out), pm, model, storage, study_name, quiet, task, baseline_metric)


def _confirm(out: Path, pm: pluggy.PluginManager, model: str | None, storage: str | None, study_name: str | None,
             quiet: bool, task: Task | None, baseline_metric: float | None) -> Summary:
    study = load_run(out, storage, study_name)
    goals = to_confirm(study)
    if not goals:
        raise AutoaccelError(f"confirm: study '{study.study_name}' has no answer to confirm "
                             "(they say keep your recipe, or the run did not finish)")
    search, task = _search_of(study, out, pm, model, storage, quiet, task, goals)
    fid = Fidelity.from_json(study.user_attrs.get("fidelity"))
    # A whole training may take much longer than a search trial: allow it (ten projected trainings at most).
    search.options.trial_timeout = max(search.options.trial_timeout, 10 * fid.full_s + 600)
    if baseline_metric is None and study.user_attrs.get("baseline_metric") is not None:
        baseline_metric = float(study.user_attrs["baseline_metric"])
    base, judged_by = _train_whole(search, study, task, goals, fid, baseline_metric)
    _update_answers(search, study, goals, base, judged_by, fid)
    summary = summarize_study(study, search.objectives, float(study.user_attrs.get("max_accuracy_drop", 0.01)))
    generation = Generation(out)
    try:
        generation.adopt_model()  # the exported model of the run; the answers are rebuilt from the study
        publish(generation, summary, study, {**search.meta(), "fidelity": fid.to_json(), "export": study.user_attrs.get("export")})
    except BaseException:
        generation.discard()
        raise
    return summary


def _search_of(study: optuna.Study, out: Path, pm: pluggy.PluginManager, model: str | None, storage: str | None,
               quiet: bool, task: Task | None, goals: dict[str, dict[str, Any]]) -> tuple[Search, Task]:
    """A search over the answers' strategies only, in the study's own mode, objectives, budget and narrowed
    space, at full length; and the task, loaded from the study's model file unless given."""
    path = model or study.user_attrs.get("task_path")
    if task is None:
        if not path:
            raise AutoaccelError("--model: the study does not name its model file; pass --model MODEL.py")
        task = load_task(path)
    names = tuple(sorted({strategy_of(k) for a in goals.values() for k in a["params"]}))
    options = Options(out=str(out), storage=storage, study=study.study_name, mode=str(study.user_attrs.get("mode", "both")),
                      objectives=tuple(study.user_attrs["objectives"]), strategies=names or None, remeasure_rounds=0,
                      quiet=quiet, fidelity=1, val_fraction=float(study.user_attrs.get("val_fraction", 1.0)),
                      choices={k: tuple(v) for k, v in (study.user_attrs.get("choices") or {}).items()
                               if strategy_of(k) in names} or None,
                      max_accuracy_drop=float(study.user_attrs.get("max_accuracy_drop", 0.01)))
    return Search(task, path, options, pm), task


def _train_whole(search: Search, study: optuna.Study, task: Task, goals: dict[str, dict[str, Any]], fid: Fidelity,
                 baseline_metric: float | None) -> tuple[TrialRecord, dict[str, TrialRecord | None]]:
    """Train each answer whole (and the recipe, unless its quality is known): the recipe's record, and the record
    each goal is judged by (None: its training failed)."""
    base, served = _known_recipe(search, study, task, goals, baseline_metric)
    trained = {g: a for g, a in goals.items() if g not in served}
    whole = sum(g != "serve" for g in trained) + (base is None)  # the serve answer reuses the recipe's training
    search.progress.info(f"confirming {', '.join(goals)} at full length: {whole} whole training(s)"
                         + (f" (about {duration(fid.full_s)} for your recipe)" if base is None else
                            f"; your recipe's quality from {known_recipe.label(base)}, its time as the search projected it"))
    trials = search.confirm_trials(study, ([{}] if base is None else []) + [a["params"] for a in trained.values()])
    if base is None:
        base, trials = trials[0], trials[1:]
        if base is None:
            raise AutoaccelError("confirm: your recipe failed to train at full length; see the study's last trial for why")
    return base, dict(zip(trained, trials)) | served


def _update_answers(search: Search, study: optuna.Study, goals: dict[str, dict[str, Any]], base: TrialRecord,
                    judged_by: dict[str, TrialRecord | None], fid: Fidelity) -> None:
    """Judge each answer on its whole training and store the updated answers and the confirmation in the study."""
    stored = study.user_attrs.get("answers") or {}
    summary = summarize_study(study, search.objectives, float(study.user_attrs.get("max_accuracy_drop", 0.01)))
    updated = dict(stored["goals"])
    record: dict[str, Any] = {"baseline": base.number if base.number >= 0 else known_recipe.label(base), "goals": {}}
    for goal, answer in goals.items():
        judged = _judge(Answer.from_json(answer), base, judged_by[goal], fid, summary)
        updated[goal] = judged.to_json()
        record["goals"][goal] = judged.evidence.get("speed", {})
        search.progress.info(f"{goal}: {judged.notes[-1] if judged.given else judged.verdict}")
    study.set_user_attr("answers", {**stored, "goals": updated})
    study.set_user_attr("confirmation", record)


def _known_recipe(search: Any, study: optuna.Study, task: Task, goals: dict[str, dict[str, Any]],
                  stated: float | None) -> tuple[TrialRecord | None, dict[str, TrialRecord | None]]:
    """The recipe at full length without training it (known_recipe.py), and the serve answer evaluated on its
    weights; (None, {}) when it must be trained whole: no weights, and no stated metric or a serve answer to
    evaluate on the recipe's whole training."""
    searched = studies.baseline_of(study)
    if searched is None or (not task.weights and (stated is None or "serve" in goals)):
        if stated is not None:
            search.progress.info("--baseline-metric: the serve answer is evaluated on your recipe trained whole here, so "
                                 "your recipe is trained and measured (set Task.weights to evaluate your own weights instead)")
        return None, {}
    served: dict[str, TrialRecord | None] = {}
    if task.weights:
        configs = [{}] + ([goals["serve"]["params"]] if "serve" in goals else [])
        results = search.evaluate_weights(configs)
        if isinstance(results[0], TrialFailure):
            raise AutoaccelError(f"Task.weights: evaluating {task.weights} failed: {results[0].reason}")
        base = known_recipe.from_weights(results[0], searched)
        if stated is not None:
            search.progress.info(f"--baseline-metric: Task.weights is set; its evaluation here stands for your recipe, "
                                 f"not the value {stated:g}")
        if "serve" in goals:
            one = results[1]
            served["serve"] = None if isinstance(one, TrialFailure) else known_recipe.served(one, goals["serve"]["params"])
        return base, served
    assert stated is not None
    if float(study.user_attrs.get("val_fraction", 1.0)) < 1.0:
        search.progress.info("--baseline-metric: this run measures quality on a share of the validation set "
                             "(--val-fraction); the value you stated should come from the same rows")
    return known_recipe.stated(stated, searched), served


def _judge(answer: Answer, base: TrialRecord, trial: TrialRecord | None, fid: Fidelity, summary: Summary) -> Answer:
    """The answer with its full-length evidence, or withdrawn when its quality does not hold at full length."""
    if trial is None:
        answer.notes.append("its full-length training failed; its evidence stays as the search measured it")
        return answer
    shown = summary.baseline.shown
    drop = accuracy_drop(base, trial)
    figures = (f"{shown.name} {shown.fmt(trial.metrics['accuracy'])} vs {shown.fmt(base.metrics['accuracy'])} at full "
               f"length ({known_recipe.label(trial)} and {known_recipe.label(base)})")
    if drop["value"] > summary.max_accuracy_drop + 1e-12:
        return keep(answer.goal, summary.baseline, {
            "trial": answer.trial, "params": answer.params,
            "reason": f"trained at full length its {shown.drop_word} is {drop['value']:.4g}, over the budget of "
                      f"{summary.max_accuracy_drop:g}: {figures}"})
    searched = float((answer.evidence.get("quality") or {}).get("search_fraction", fid.search))
    noise = " (the difference is within noise)" if drop["within_noise"] else ""
    if answer.goal == "serve":
        # Served from your recipe's model trained whole: its quality is now a full-length one; its speed was
        # always timed on the served model itself.
        verdict = f"{describe_speed(answer.speedup, summary.objectives)}; {figures}{noise}"
        return dataclasses.replace(answer, verdict=verdict, accuracy_drop={**drop, "fraction": 1.0},
                                   evidence={**answer.evidence, "quality": {
                                       "fraction": 1.0, "search_fraction": searched, "informative": True, "basis": "measured",
                                       "recipe_value": base.metrics["accuracy"], "why": "full length: served from your "
                                       "recipe's model trained whole"}},
                                   notes=[*answer.notes, f"confirmed at full length: {figures}"])
    ratio = base.metrics["train_time"] / trial.metrics["train_time"] if trial.metrics["train_time"] > 0 else 0.0
    projected = float((answer.speedup.get("train_time") or {}).get("value", 0.0))
    confirmed: dict[str, Any] = {"rounds": 1, "ratio": ratio, "projected_ratio": projected, "baseline_trial": base.number,
                                 "trial": trial.number, "baseline_s": base.metrics["train_time"],
                                 "answer_s": trial.metrics["train_time"], "recipe_value": base.metrics["accuracy"]}
    if base.number < 0:  # the recipe was not trained here: its time is the search's projection
        confirmed["baseline"] = "projected"
        speed = (f"training {ratio:.2f}x faster: its whole training {trial.metrics['train_time']:.1f} s against your "
                 f"recipe's {base.metrics['train_time']:.1f} s as projected from its steady steps (the paired slices said "
                 f"{projected:.2f}x)")
    else:
        speed = (f"training {ratio:.2f}x faster in one whole training each ({trial.metrics['train_time']:.1f} s vs "
                 f"{base.metrics['train_time']:.1f} s; the paired slices said {projected:.2f}x)")
    verdict = f"{describe_speed(answer.speedup, summary.objectives)}; {figures}{noise}"
    return dataclasses.replace(answer, verdict=verdict, accuracy_drop={**drop, "fraction": 1.0},
                               notes=[*answer.notes, f"confirmed at full length: {speed}"],
                               evidence=evidence.of(answer.goal, None, {"fraction": 1.0}, searched, confirmed))
