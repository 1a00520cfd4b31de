"""The report's account of the search: where the user's training spent its time (a picture), what each
technique did alone against it (screening), and what the training answer removed."""

from __future__ import annotations

from html import escape
from typing import Any

import optuna

from autoaccel.finish import Summary
from autoaccel.plugin._strategy import PROFILE_PARTS
from autoaccel.trial import OTHER, WORDS, record, relieved, shares

COLOURS = {"data": "#f59e0b", "copy": "#a855f7", "forward": "#3b82f6", "backward": "#1e3a8a",
           "optimizer": "#10b981", OTHER: "#9ca3af"}
STATUS_TAG = {"helps": "yes", "more accurate": "yes", "not screened": "", "no gain": "no", "failed": "slower",
              "pending": ""}


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def profile_bar(profile: dict[str, float]) -> str:
    """One horizontal bar split by part, with a legend carrying the percentages and seconds."""
    parts = [p for p in (*PROFILE_PARTS, OTHER) if profile.get(p, 0.0) > 0]
    share = shares({p: profile[p] for p in parts})
    bar = "".join(f'<div title="{e(WORDS[p])}: {share[p]:.0%}" style="width:{share[p] * 100:.2f}%;background:{COLOURS[p]}">'
                  "</div>" for p in parts)
    legend = "".join(f'<span><span class="sw" style="background:{COLOURS[p]}"></span>{e(WORDS[p])} {share[p]:.0%} '
                     f'<span class="muted">({profile[p]:.2f} s)</span></span>' for p in parts)
    return (f'<div id="profile-bar" role="img" aria-label="where the training time went" style="display:flex;height:22px;'
            f'border-radius:4px;overflow:hidden;margin:8px 0">{bar}</div><div class="legend">{legend}</div>')


def _relief_lines(study: optuna.Study, summary: Summary, before: dict[str, float]) -> list[str]:
    trials = study.get_trials(deepcopy=False)
    lines = []
    for answer in summary.answers:
        if not answer.given or answer.goal not in ("train", "combined") or answer.trial is None:
            continue
        after = record.read(trials[answer.trial]).details.get("profile") or {}
        if (said := relieved(before, after)) is not None:
            lines.append(f"The {answer.goal} answer (trial {answer.trial}): {said}.")
    return lines


def search_section(study: optuna.Study, summary: Summary) -> str:
    profile = summary.profile
    parts: list[str] = []
    if profile:
        parts.append("<h3>Where your recipe's training time went</h3>" + profile_bar(profile))
        parts += [f"<p>{e(line)}</p>" for line in _relief_lines(study, summary, profile)]
    else:
        parts.append('<p class="muted">No training profile: your recipe did not train here (inference mode with '
                     "weights), or the study predates profiling.</p>")
    verdicts = summary.screening
    if verdicts:
        rows = [f"<tr><td>{e(name)}</td><td><span class=\"tag {STATUS_TAG.get(v['status'], '')}\">{e(v['status'])}</span></td>"
                f"<td>{e(v['reason'])}</td><td class=\"num\">{'' if v.get('trial') is None else e(v['trial'])}</td></tr>"
                for name, v in verdicts.items()]
        parts.append("<h3>Each technique alone against your recipe</h3><p>Techniques that helped (or were kept to "
                     "combine) went on to the combined search; the others left it, for the reason given, and were "
                     "tried once more on top of the best configuration found.</p>"
                     "<table id=\"screening\"><tr><th>technique</th><th>alone</th><th>why</th><th>trial</th></tr>"
                     + "".join(rows) + "</table>")
    return f'<section id="search"><h2>How the search went</h2>{"".join(parts)}</section>'
