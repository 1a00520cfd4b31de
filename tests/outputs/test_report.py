"""report.py: report.html built from a real in-memory Optuna study shaped like autoaccel's, with and without
the optional study attributes (re-measurement, ablation, importances, target, environment)."""

from __future__ import annotations

import re
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autoaccel.finish._summary import Summary, summarize_study
from autoaccel.outputs._report import _ticks, build_report, technique_warnings
from tiny_digits import builtin_strategies

OBJECTIVES = ("accuracy", "train_time", "latency")
EVIL = "<script>alert(1)</script>"
DISTS = {
    "precision.dtype": optuna.distributions.CategoricalDistribution(["fp32", "bf16", "fp16", EVIL]),
    "pruning.method": optuna.distributions.CategoricalDistribution(["none", "unstructured"]),
    "quantization.method": optuna.distributions.CategoricalDistribution(["none", "dynamic_int8"]),
}
# (precision, pruning, quantization, accuracy, train_time s, latency ms, extra user attrs)
TRIALS: list[tuple[str, str, str, float, float, float, dict[str, Any]]] = [
    ("fp32", "none", "none", 0.900, 10.0, 2.00, {"role": "baseline"}),  # 0
    ("bf16", "none", "none", 0.905, 5.0, 1.00, {}),  # 1: 2x faster, as accurate: recommended
    ("fp16", "none", "none", 0.800, 1.0, 0.50, {}),  # 2: fastest, over the accuracy budget
    ("fp16", "none", "none", 0.895, 8.0, 0.90, {}),  # 3: a trade-off with 1, within budget
    ("fp32", "unstructured", "none", 0.900, 10.2, 2.10, {}),  # 4: pruning no faster
    ("fp32", "unstructured", "none", 0.890, 10.0, 2.05, {}),  # 5
    (EVIL, "none", "none", 0.850, 9.0, 1.80, {}),  # 6: over budget, hostile value
    ("fp32", "none", "dynamic_int8", 0.900, 10.0, 2.50, {}),  # 7: int8 slower
]
INFEASIBLE = {2, 6}
TARGET = {"kind": "cpu", "device": "cpu", "name": "Test CPU <x86>", "cores": 8, "memory_gb": 31.2,
          "compute_capability": None, "precisions": ["fp32", "bf16"], "libraries": {"onnxruntime": True, "torchao": False},
          "cpu_flags": ["avx2", "avx512f"]}
ENVIRONMENT = {"python": "3.11.7", "torch": "2.13.0", "optuna": "5.0.0", "platform": "Linux-x86_64"}


def make_study(keep: tuple[int, ...] | None = None, baseline_details: dict[str, Any] | None = None) -> optuna.Study:
    """TRIALS (or only those numbered in ``keep``) then one failed trial, as autoaccel records them."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for dtype, prune, quant, acc, tt, lat, extra in (TRIALS if keep is None else [TRIALS[i] for i in keep]):
        metrics = {"accuracy": acc, "train_time": tt, "latency": lat, "throughput": 1000.0 / lat, "memory": 50.0}
        config = {k: v for k, v, off in (("precision.dtype", dtype, "fp32"), ("pruning.method", prune, "none"),
                                          ("quantization.method", quant, "none")) if v != off}
        factors = {"train" if k.startswith("precision") else "serve" for k in config}
        goal = "baseline" if not factors else factors.pop() if len(factors) == 1 else "combined"
        attrs = {"metrics": metrics, "ci95": {"accuracy": [acc - 0.004, acc + 0.004], "latency": [lat * 0.95, lat * 1.05]},
                 "details": (baseline_details or {}) if extra.get("role") == "baseline" else {}, "plan": {},
                 "config": config, "goal": goal, **extra}
        study.add_trial(optuna.trial.create_trial(
            params={"precision.dtype": dtype, "pruning.method": prune, "quantization.method": quant},
            distributions=DISTS, values=[acc, tt, lat], user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(
        params={"precision.dtype": "fp16", "pruning.method": "none", "quantization.method": "none"}, distributions=DISTS,
        state=TrialState.FAIL, user_attrs={"failure_kind": "oom", "reason": "CUDA out of memory <tried 2 GiB>"}))
    return study


def render(study: optuna.Study, meta: dict[str, Any] | None = None) -> tuple[str, Summary]:
    summary = summarize_study(study, OBJECTIVES, 0.01)
    return build_report(study, summary, {"task": "digits", "study": "s", "mode": "both"} if meta is None else meta), summary


def full_study(baseline_details: dict[str, Any] | None = None) -> optuna.Study:
    study = make_study(baseline_details=baseline_details)
    study.set_user_attr("target", TARGET)
    study.set_user_attr("environment", ENVIRONMENT)
    # Why some settings are known to disappoint, as the search records it from the strategies' own hints.
    study.set_user_attr("hints", {f"{s.name}.{k}": why for s in builtin_strategies().values() for k, why in s.hints.items()})
    faster = {"value": 1.84, "ci95": [1.71, 1.98], "label": "faster"}
    noise = {"value": 1.02, "ci95": [0.95, 1.10], "label": "no faster than baseline (within noise)"}
    study.set_user_attr("remeasure", {"baseline": 0, "rounds": 5, "trials": {
        "1": {"objectives": {"train_time": faster, "latency": faster}},
        "3": {"objectives": {"train_time": noise, "latency": noise}}}})
    return study


def text(markup: str) -> str:
    """What a reader sees: tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", markup).split())


def charts(html: str) -> dict[str, str]:
    svg = re.search(r'<svg id="pareto-plot".*?</svg>', html, re.S)
    assert svg, "no inline <svg id=pareto-plot>"
    return dict(re.findall(r'<g class="chart" data-objective="([^"]+)">(.*?)</g>', svg.group(0), re.S))


def test_every_section_is_there_and_the_page_is_offline() -> None:
    html, _ = render(full_study())
    for section in ("answers", "pareto-plot", "pareto-table", "ablation", "warnings", "failures", "environment"):
        assert f'id="{section}"' in html
    assert re.search(r"<h1>[^<]*digits</h1>", html)
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"<link|\bsrc=|https?://|@import|url\(", html)


def test_one_dot_per_completed_trial_per_speed_objective() -> None:
    html, summary = render(full_study())
    per_chart = charts(html)
    assert sorted(per_chart) == ["latency", "train_time"], "one chart per speed objective, none for accuracy"
    for body in per_chart.values():
        assert body.count("<circle") == len(summary.points) == len(TRIALS)
        assert sorted(int(t) for t in re.findall(r'<circle[^>]*data-trial="(\d+)"', body)) == list(range(len(TRIALS)))
        assert body.count('class="mark baseline"') == 1 and body.count('class="mark recommended"') == 1
        # Tick labels on both axes, and tooltips naming the trial and its settings.
        assert len(re.findall(r'text-anchor="middle" fill="#4b5563">', body)) >= 3
        assert len(re.findall(r'text-anchor="end" fill="#4b5563">', body)) >= 3
        assert "<title>trial 1 (pareto): accuracy 0.9050" in body and "precision.dtype=bf16" in body


def test_infeasible_dots_are_dimmed_and_the_front_is_highlighted() -> None:
    html, summary = render(full_study())
    for body in charts(html).values():
        dots = re.findall(r'<circle class="dot (\w+)" data-trial="(\d+)"[^>]*>', body)
        by_class = {cls: {int(t) for c, t in dots if c == cls} for cls in ("pareto", "feasible", "infeasible")}
        assert by_class["infeasible"] == INFEASIBLE
        assert by_class["pareto"] == {p.trial for p in summary.pareto} == {1, 3}
        for tag in re.findall(r"<circle [^>]*>", body):
            assert ('opacity="0.3"' in tag) == ("infeasible" in tag)


def test_user_strings_are_escaped() -> None:
    html, _ = render(full_study(), {"task": "<b>digits</b>"})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1, "only the report's own script; the hostile parameter value stays text"
    assert "&lt;b&gt;digits&lt;/b&gt;" in html and "<b>digits" not in html
    assert "Test CPU &lt;x86&gt;" in html


def test_failures_are_listed_with_kind_and_reason() -> None:
    html, _ = render(full_study())
    failures = html[html.index('id="failures"'):html.index('id="environment"')]
    assert "oom" in failures and "CUDA out of memory &lt;tried 2 GiB&gt;" in failures and ">8<" in failures


def test_trials_stopped_as_too_slow_are_listed_apart_from_failures() -> None:
    study = full_study()
    study.add_trial(optuna.trial.create_trial(
        params={"precision.dtype": "fp32", "pruning.method": "unstructured", "quantization.method": "none"}, distributions=DISTS,
        state=TrialState.FAIL, user_attrs={"failure_kind": "too_slow", "reason": "stopped early after 20 of 400 steps"}))
    html, _ = render(study)
    section = text(html[html.index('id="failures"'):html.index('id="environment"')])
    failed, stopped = section.split("Stopped early as too slow (1)")
    assert "Failed trials: 1 failed (1 oom)" in failed and "oom" in failed and "too_slow" not in failed
    assert "stopped early after 20 of 400 steps" in stopped


def test_the_console_lists_failures_with_reasons_and_stopped_trials_by_number() -> None:
    import io

    from autoaccel.outputs._console import make_console, print_summary

    study = full_study()
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            params={"precision.dtype": "fp32", "pruning.method": "unstructured", "quantization.method": "none"},
            distributions=DISTS, state=TrialState.FAIL,
            user_attrs={"failure_kind": "too_slow", "reason": "stopped early after 20 of 400 steps"}))
    _, summary = render(study)
    console = make_console()
    console.file = io.StringIO()
    print_summary(console, summary, {})
    out = console.file.getvalue()
    assert "1 trial(s) failed:" in out and "(oom)" in out
    stopped = [f.trial for f in summary.failures if f.kind == "too_slow"]
    assert len(stopped) == 2
    assert f"2 trial(s) stopped early, on course to train slower than an answer could (reasons in the report): {stopped[0]}, {stopped[1]}" in out.replace("\n", " ")
    assert "stopped early after 20 of 400 steps" not in out  # one line for all of them, not two lines each


def test_pareto_table_shows_remeasured_speedups_intervals_and_noise() -> None:
    html, summary = render(full_study())
    assert summary.remeasured and summary.recommended.trial == 1
    table = html[html.index('id="pareto-table"'):html.index('id="ablation"')]
    rows = {t: text(row) for t, row in re.findall(r'<tr data-trial="(\d+)"[^>]*>(.*?)</tr>', table, re.S)}
    assert sorted(rows) == ["0", "1", "3"], "the baseline for reference, then the front"
    assert "1.84x [1.71, 1.98]" in rows["1"] and "train answer" in rows["1"]
    assert "1.02x [0.95, 1.10]" in rows["3"] and "within noise" in rows["3"]
    # Accuracy drop with its interval: 0.900 - 0.895 = +0.005, half width hypot(0.004, 0.004).
    assert "+0.0050 [-0.0007, +0.0107]" in rows["3"]
    rec = text(html[html.index('id="answers"'):html.index('id="pareto-table"')])
    assert "precision.dtype" in rec and "bf16" in rec and "1.84x [1.71, 1.98]" in rec and "5 rounds" in rec


def test_renders_without_any_optional_study_attribute() -> None:
    html, summary = render(make_study(), meta={})
    assert not summary.remeasured
    assert "Ablation not available" in html and "Target not available" in html and "Environment not available" in html
    assert "single measurements" in html and "2.00x" in html  # trial 1's train_time speedup, no interval
    assert len(charts(html)) == 2
    # `autoaccel report` passes None for what the study does not record: shown as missing, never as "None".
    html, _ = render(make_study(), meta={"task": None, "study": "s", "mode": None, "target": None, "storage": "sqlite:///x.db"})
    assert "None" not in text(html) and "mode n/a" in text(html) and "target not available" in html


def test_when_nothing_beats_the_baseline_the_report_says_keep_it() -> None:
    html, summary = render(make_study(keep=(0, 4, 5, 7)))
    assert summary.recommended is summary.baseline
    rec = text(html[html.index('id="answers"'):html.index('id="pareto-table"')])
    assert "train: keep your recipe" in rec and "serve: keep your recipe" in rec
    assert "speedup" not in rec, "no speedup cards for the recipe against itself"
    # The best candidate tried is named, with why it was rejected.
    assert "the best candidate, trial" in rec and "was rejected because" in rec
    for body in charts(html).values():
        assert body.count('class="mark baseline"') == 1 and 'class="mark recommended"' not in body
        assert body.count("<circle") == 4


def test_environment_lists_target_and_versions() -> None:
    html, _ = render(full_study())
    env = html[html.index('id="environment"'):]
    for text in ("31.2 GB", "fp32, bf16", "onnxruntime", "torchao (missing)", "avx512f", "2.13.0", "5.0.0", ">8<"):
        assert text in env


def test_ablation_rows_and_what_did_not_help() -> None:
    study = full_study()
    study.set_user_attr("ablation", {"method": "ablation", "trial": 1, "rows": [
        {"technique": "precision", "dropped": {"precision.dtype": "bf16"}, "accuracy": 0.9, "accuracy_change": 0.005,
         "speedup": {"latency": {"value": 1.9, "ci95": [1.7, 2.1], "label": "faster"}}},
        {"technique": "memory_format", "dropped": {"memory_format.format": "channels_last"}, "accuracy": 0.905,
         "accuracy_change": 0.0, "speedup": {"latency": {"value": 0.99, "ci95": [0.9, 1.08], "label": "no faster than baseline (within noise)"}}},
        {"technique": "compile", "dropped": {"compile.mode": "default"}, "error": "worker crashed"},
    ]})
    html, summary = render(study)
    ablation = text(html[html.index('id="ablation"'):html.index('id="warnings"')])
    assert "1.90x [1.70, 2.10]" in ablation and "memory_format.format=channels_last" in ablation and "+0.0050" in ablation
    assert "worker crashed" in ablation
    found = technique_warnings(study, summary)
    assert any(w.startswith("memory_format did not help") and "0.99x [0.90, 1.08]" in w for w in found)
    assert any(w.startswith("compile could not be ablated") for w in found)
    assert not any(w.startswith("precision") for w in found), "a technique that pays off beyond noise is not flagged"


def test_importances_are_drawn_as_bars() -> None:
    study = full_study()
    study.set_user_attr("ablation", {"method": "importance", "importances": {
        "latency": {"precision.dtype": 0.75, "pruning.method": 0.25}, "accuracy": {"precision.dtype": 1.0}}})
    html, _ = render(study)
    ablation = html[html.index('id="ablation"'):html.index('id="warnings"')]
    assert "importances" in ablation
    widths = [float(w) for w in re.findall(r'class="bar" style="width:([\d.]+)%"', ablation)]
    assert widths == [100.0, pytest.approx(33.3, abs=0.1), 100.0], "bars scale to the largest importance per objective"


def test_warnings_name_techniques_that_did_not_help() -> None:
    study = full_study()
    html, summary = render(study)
    found = technique_warnings(study, summary)
    assert any(w.startswith("pruning.method=unstructured did not help") and "2 of 2" in w and "dense kernels" in w for w in found)
    assert any(w.startswith("quantization.method=dynamic_int8 did not help") for w in found)
    assert any(w.startswith("Trial 3 ") and "within noise" in w for w in found), "a front point no faster after re-measurement"
    assert not any("bf16" in w for w in found), "bf16 made trial 1 twice as fast"
    section = html[html.index('id="warnings"'):html.index('id="failures"')]
    assert section.count("<li>") == len(found) >= 3


def test_no_warnings_says_so() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for i, (dtype, tt) in enumerate((("fp32", 10.0), ("bf16", 5.0))):
        study.add_trial(optuna.trial.create_trial(
            params={"precision.dtype": dtype}, distributions={"precision.dtype": DISTS["precision.dtype"]},
            values=[0.9, tt, 1.0], user_attrs={"metrics": {"accuracy": 0.9, "train_time": tt, "latency": 1.0},
                                               **({"role": "baseline"} if i == 0 else {})}))
    html, _ = render(study)
    assert "Nothing in this study shows a technique that failed to help" in html
    assert "No trial failed." in html


def test_ticks_are_round_numbers_inside_the_range() -> None:
    ticks, decimals = _ticks(0.37, 2.62)
    assert ticks == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5]) and decimals == 1
    ticks, decimals = _ticks(812.0, 1290.0)
    assert ticks == pytest.approx([900.0, 1000.0, 1100.0, 1200.0]) and decimals == 0


def test_a_recipe_that_failed_to_learn_does_not_squash_the_accuracy_axis() -> None:
    study = make_study(keep=(0, 1, 3))
    metrics = {"accuracy": 0.1, "train_time": 2.0, "latency": 1.0, "throughput": 1000.0, "memory": 50.0}
    study.add_trial(optuna.trial.create_trial(
        params={"precision.dtype": "fp16", "pruning.method": "none", "quantization.method": "none"}, distributions=DISTS,
        values=[0.1, 2.0, 1.0], user_attrs={"metrics": metrics, "config": {"precision.dtype": "fp16"}, "goal": "train"}))
    html, _ = render(study)
    for body in charts(html).values():
        ticks = [float(t) for t in re.findall(r'text-anchor="end" fill="#4b5563">([0-9.]+)<', body)]
        assert min(ticks) > 0.8, f"the accuracy axis spans {min(ticks)}..{max(ticks)}"
        assert "accuracy 0.1000" in body  # the pinned point keeps its real value in its tooltip
        labels = re.findall(r'<text x="([0-9.]+)" y="([0-9.]+)"[^>]*font-weight="600" text-anchor="\w+" fill="#(?:111827|f59e0b)">', body)
        assert len(labels) == 2 and labels[0][1] != labels[1][1], "baseline and answer labels on separate lines"


def test_the_search_section_draws_the_baselines_profile_and_the_screening() -> None:
    profile = {"data": 5.8, "copy": 0.2, "forward": 1.6, "backward": 1.8, "optimizer": 0.6, "other": 0.0, "evaluation": 0.4}
    study = full_study({"profile": profile})
    study.set_user_attr("screening", {
        "dataloader": {"strategy": "dataloader", "status": "helps", "reason": "2.40x faster beyond noise", "trial": 3,
                       "speedup": 2.4},
        "pruning": {"strategy": "pruning", "status": "no gain", "reason": f"no speedup beyond noise {EVIL}", "trial": 4,
                    "speedup": 0.9}})
    html, _ = render(study)
    section = re.search(r'<section id="search">.*?</section>', html, re.S)
    assert section, "no search section"
    seen = text(section.group(0))
    assert "waiting for data 58% (5.80 s)" in seen and "the backward pass 18%" in seen
    assert re.search(r'id="profile-bar"[^>]*>(<div title="[^"]+" style="width:[0-9.]+%;background:#[0-9a-f]{6}"></div>){5}', html)
    assert "dataloader helps 2.40x faster beyond noise 3" in seen
    assert EVIL not in section.group(0) and "&lt;script&gt;" in section.group(0)


def test_without_a_profile_the_search_section_says_why() -> None:
    html, _ = render(make_study())
    assert "No training profile" in text(re.search(r'<section id="search">.*?</section>', html, re.S).group(0))
