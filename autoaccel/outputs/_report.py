"""report.html: one self-contained page (inline CSS and SVG, no network) with the recommendation, how the
search went (the baseline's profile, the screening), the Pareto plots and table, what each technique did, what did not help, failed trials, and the target and environment.

Everything the user supplied (task name, parameter values, failure reasons) is HTML-escaped: a reason can
carry a traceback line with ``<`` in it, and a parameter value is whatever a third-party strategy chose.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

import optuna

from autoaccel.finish import Point, Summary, goal_score, judging, speed_objectives
from autoaccel.finish import words as evidence_words
from autoaccel.outputs._console import fmt_metric, fmt_params
from autoaccel.outputs._report_search import search_section
from autoaccel.task import Shown
from autoaccel.vocab import METRICS

NOT_FASTER = ("slower", "no faster than baseline (within noise)")
W, H, ML, MR, MT, MB = 460, 310, 64, 18, 36, 50  # one chart's box and margins, in SVG user units

CSS = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2937;
background:#f3f4f6;margin:0}main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}.sub{color:#6b7280;margin:0 0 20px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:18px 22px;margin:0 0 18px}
#answers .answer{border-left:5px solid #1e40af;padding-left:12px;margin:0 0 18px}#answers .keep{border-left-color:#9ca3af}.verdict{font-size:16px;font-weight:600;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}.card{border:1px solid #e5e7eb;border-radius:8px;
padding:10px 14px;min-width:170px}.card .big{font-size:22px;font-weight:700}.muted{color:#6b7280}
.small{font-size:12px}table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;
padding:6px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}th{background:#f9fafb;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.rec{background:#eff6ff}
tr.hl,tr.hl td{background:#fef3c7}code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:#f3f4f6;padding:1px 4px;border-radius:4px;word-break:break-word}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:9px;background:#e5e7eb;margin-left:4px;
white-space:nowrap}.tag.faster,.tag.yes{background:#dcfce7;color:#166534}.tag.slower{background:#fee2e2;
color:#991b1b}.tag.noise,.tag.no{background:#fef3c7;color:#92400e}svg text{font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:16px;font-size:12px;color:#4b5563;margin:6px 0 0}.sw{display:inline-block;
width:10px;height:10px;border-radius:50%;margin-right:5px;vertical-align:middle}
circle.dot:hover,circle.dot.hl{stroke:#111827;stroke-width:2.5}.bar{background:#60a5fa;height:12px;
border-radius:3px}.bars td{padding:3px 8px}ul.warn li{margin:0 0 6px}.grid2{display:grid;
grid-template-columns:1fr 1fr;gap:18px}@media(max-width:800px){.grid2{grid-template-columns:1fr}}
.scroll{overflow-x:auto}td.cfg{min-width:140px}.ci{white-space:nowrap}.tag:first-child{margin-left:0}
#pareto-table th{text-align:right}#pareto-table th:first-child,#pareto-table th:last-child{text-align:left}
"""
# Hover a dot or a table row: the same trial lights up in every chart and in the table. Optional sugar;
# the page reads the same without it.
JS = """document.addEventListener('mouseover',function(ev){var el=ev.target.closest&&ev.target.closest('[data-trial]');
document.querySelectorAll('.hl').forEach(function(n){n.classList.remove('hl')});if(!el)return;
document.querySelectorAll('[data-trial="'+el.getAttribute('data-trial')+'"]').forEach(function(n){n.classList.add('hl')});});"""


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(v: float, digits: int = 2) -> str:
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def _ratio(entry: Mapping[str, Any] | None, wrap: bool = True) -> str:
    """'1.84x [1.71, 1.98]' with its label as a coloured tag."""
    if not entry:
        return "n/a"
    ci = entry.get("ci95")
    text = f'<span class="ci">{entry["value"]:.2f}x' + (f" [{_num(ci[0])}, {_num(ci[1])}]" if ci else "") + "</span>"
    return text + ("<br>" if wrap else "") + _tag(str(entry.get("label", "")))


def _signed(value: float) -> str:
    return f"{value:+.4f}" if abs(value) < 10 else f"{value:+.4g}"


def _tag(label: str) -> str:
    if not label:
        return ""
    cls = {"faster": "faster", "slower": "slower", NOT_FASTER[1]: "noise"}.get(label, "")
    return f' <span class="tag {cls}">{e("within noise" if label == NOT_FASTER[1] else label)}</span>'


def _with_ci(p: Point, name: str) -> str:
    if name == "accuracy":  # the quality slot, as the task's metric shows it (its interval flipped with its sign)
        ci = p.metrics_ci95.get(name)
        extra = ""
        if ci:
            low, high = p.shown.interval(ci)
            extra = (f'<br><span class="muted small ci">[{e(p.shown.fmt(p.shown.sign * low))}, '
                     f'{e(p.shown.fmt(p.shown.sign * high))}]</span>')
        return e(p.shown.fmt(p.metrics[name])) + extra
    ci = p.metrics_ci95.get(name)
    extra = f'<br><span class="muted small ci">[{e(fmt_metric(name, ci[0]))}, {e(fmt_metric(name, ci[1]))}]</span>' if ci else ""
    return e(fmt_metric(name, p.metrics[name])) + extra


def _drop(d: Mapping[str, Any], wrap: bool = True) -> str:
    ci = d.get("ci95") or [d["value"], d["value"]]
    interval = f'<span class="ci">[{ci[0]:+.4f}, {ci[1]:+.4f}]</span>'
    return f"{d['value']:+.4f}{'<br>' if wrap else ' '}{interval}" + (_tag("within noise") if d.get("within_noise") else "")


def _table(head: Sequence[str], rows: Sequence[str], tid: str = "") -> str:
    ident = f' id="{tid}"' if tid else ""
    return (f'<div class="scroll"><table{ident}><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _axis_label(name: str) -> str:
    unit = {"train_time": " (s)", "latency": " (ms)", "memory": " (MB)"}.get(name, " (samples/s)" if name.endswith("throughput") else "")
    return f"{name}{unit} — {'higher' if METRICS.get(name, False) else 'lower'} is better"


# --- the charts ---------------------------------------------------------------------------------------------


def _domain(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or (abs(hi) * 0.1 or 1.0)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, most: int = 7) -> tuple[list[float], int]:
    """'Nice' ticks (1, 2, 5 x 10^k) inside [lo, hi], at most ``most`` of them, and the decimals they need."""
    raw = (hi - lo) / most
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]
    return ticks, max(0, -math.floor(math.log10(step)))


def _chart(summary: Summary, objective: str, ox: float, oy: float) -> str:
    pts = [p for p in summary.points if objective in p.metrics and "accuracy" in p.metrics]
    if not pts:
        return f'<text x="{ox + W / 2}" y="{oy + H / 2}" text-anchor="middle">no {e(objective)} measured</text>'
    budget = summary.baseline.metrics["accuracy"] - summary.max_accuracy_drop
    # The accuracy axis spans what matters around the budget; a point far below it (a recipe that failed to
    # learn) is pinned to the bottom edge, its real value in its tooltip, instead of squashing the front flat.
    floor = budget - max(4 * summary.max_accuracy_drop, 0.02)
    acc: Callable[[Point], float] = lambda p: max(p.metrics["accuracy"], floor)  # noqa: E731
    shown = summary.metric  # the y axis is quality (better up), its ticks labelled with the metric's own values
    x0, x1 = _domain([p.metrics[objective] for p in pts])
    y0, y1 = _domain([acc(p) for p in pts] + [budget])
    sx: Callable[[float], float] = lambda v: ox + ML + (v - x0) / (x1 - x0) * (W - ML - MR)  # noqa: E731
    sy: Callable[[float], float] = lambda v: oy + MT + (y1 - v) / (y1 - y0) * (H - MT - MB)  # noqa: E731
    left, right, top, bottom = ox + ML, ox + W - MR, oy + MT, oy + H - MB
    out = [f'<g class="chart" data-objective="{e(objective)}">',
           f'<text x="{left}" y="{oy + 20}" font-size="14" font-weight="600" fill="#111827">{e(shown.name)} vs {e(objective)}</text>',
           f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="#fafafa" stroke="#d1d5db"/>']
    xt, xd = _ticks(x0, x1)
    for t in xt:
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{bottom}" stroke="#eceff3"/>'
                   f'<text x="{sx(t):.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle" fill="#4b5563">{t:.{xd}f}</text>')
    yt, yd = _ticks(y0, y1)
    for t in yt:
        out.append(f'<line x1="{left}" x2="{right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eceff3"/>'
                   f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="11" text-anchor="end" fill="#4b5563">{shown.value(t) + 0.0:.{yd}f}</text>')
    out.append(f'<line x1="{left}" x2="{right}" y1="{sy(budget):.1f}" y2="{sy(budget):.1f}" stroke="#dc2626" '
               f'stroke-dasharray="5 4"><title>{e(shown.name)} budget: {e(shown.fmt(budget))}</title></line>'
               f'<text x="{right - 4}" y="{sy(budget) + 12:.1f}" font-size="10" text-anchor="end" fill="#dc2626">{e(shown.name)} budget</text>')
    front = {p.trial for p in summary.pareto}
    # Infeasible first and the front last, so the points that matter are drawn on top.
    for p in sorted(pts, key=lambda p: (p.trial in front, p.feasible)):
        cls = "pareto" if p.trial in front else ("feasible" if p.feasible else "infeasible")
        style = {"pareto": 'r="6" fill="#2563eb"', "feasible": 'r="4.5" fill="#94a3b8"',
                 "infeasible": 'r="4.5" fill="#9ca3af" opacity="0.3"'}[cls]
        tip = (f"trial {p.trial} ({'baseline' if p is summary.baseline else cls}): {shown.name} {shown.fmt(p.metrics['accuracy'])}, "
               f"{objective} {fmt_metric(objective, p.metrics[objective])}\n{fmt_params(p.params, summary.baseline.params)}")
        out.append(f'<circle class="dot {cls}" data-trial="{p.trial}" cx="{sx(p.metrics[objective]):.1f}" '
                   f'cy="{sy(acc(p)):.1f}" {style}><title>{e(tip)}</title></circle>')
    placed: list[tuple[float, float, float]] = []  # (left, right, baseline y) of labels already drawn
    for p, name, color in ((summary.baseline, "baseline", "#111827"), (summary.recommended, "recommended", "#f59e0b")):
        if p not in pts or (name == "recommended" and p is summary.baseline):
            continue
        x, y = sx(p.metrics[objective]), sy(acc(p))
        shape = (f'<rect x="{x - 9:.1f}" y="{y - 9:.1f}" width="18" height="18"' if name == "baseline"
                 else f'<path d="M{x:.1f} {y - 12:.1f} L{x + 12:.1f} {y:.1f} L{x:.1f} {y + 12:.1f} L{x - 12:.1f} {y:.1f} Z"')
        label = _mark_label(summary, name)
        tx, ty, anchor = _place_label(x, y, len(label) * 6.5, (left + right) / 2, placed)
        out.append(f'{shape} class="mark {name}" fill="none" stroke="{color}" stroke-width="2" pointer-events="none"/>'
                   f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="11" font-weight="600" text-anchor="{anchor}" fill="{color}">{e(label)}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{oy + H - 12}" font-size="12" text-anchor="middle" fill="#374151">{e(_axis_label(objective))}</text>'
               f'<text transform="translate({ox + 16},{(top + bottom) / 2}) rotate(-90)" font-size="12" text-anchor="middle" fill="#374151">{e(shown.name + ("" if shown.direction == "maximize" else " (lower is better)"))}</text></g>')
    return "".join(out)


def _place_label(x: float, y: float, width: float, middle: float,
                 placed: list[tuple[float, float, float]]) -> tuple[float, float, str]:
    """Where a mark's label goes: above or below it, on the side facing the chart's middle (or the other side),
    at the first spot that overlaps no label already placed (which it joins)."""
    inward = "end" if x > middle else "start"
    outward = "start" if inward == "end" else "end"
    for anchor, dy in ((inward, -10), (inward, 22), (outward, -10), (outward, 22), (inward, -24), (inward, 36)):
        lo = x - 14 - width if anchor == "end" else x + 14
        spot = (lo, lo + width, y + dy)
        if all(spot[1] < a or spot[0] > b or abs(spot[2] - ty) >= 14 for a, b, ty in placed):
            break
    placed.append(spot)
    return (x - 14 if anchor == "end" else x + 14), y + dy, anchor


def _mark_label(summary: Summary, name: str) -> str:
    """'baseline', or the primary answer's goal ('combined answer')."""
    if name == "baseline":
        return name
    return next((f"{a.goal} answer" for a in summary.answers if a.given and a.trial == summary.recommended.trial), name)


def _plots(summary: Summary) -> str:
    speeds = speed_objectives(summary.objectives)
    cols = 1 if len(speeds) <= 1 else 2
    rows = max(1, math.ceil(len(speeds) / cols))
    charts = "".join(_chart(summary, o, (i % cols) * W, (i // cols) * H) for i, o in enumerate(speeds))
    if not speeds:
        charts = f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no speed objective to plot</text>'
    name = e(summary.metric.name)
    legend = ('<div class="legend"><span><i class="sw" style="background:#2563eb"></i>feasible Pareto front</span>'
              '<span><i class="sw" style="background:#94a3b8"></i>feasible, dominated</span>'
              f'<span><i class="sw" style="background:#9ca3af;opacity:.3"></i>over the {name} budget</span>'
              '<span><i class="sw" style="border:2px solid #111827;border-radius:0;width:8px;height:8px"></i>baseline (your recipe)</span>'
              '<span><i class="sw" style="border:2px solid #f59e0b;border-radius:0;transform:rotate(45deg);width:8px;height:8px"></i>primary answer (combined, else train, else serve)</span>'
              f'<span style="color:#dc2626">- - {name} budget</span></div>')
    return (f'<svg id="pareto-plot" role="img" aria-label="{name} against each speed objective" viewBox="0 0 {cols * W} {rows * H}" '
            f'style="width:100%;max-width:{cols * W * 1.3:.0f}px;height:auto">{charts}</svg>{legend}'
            '<p class="muted small">Every completed trial is a dot; hover one for its trial number and settings.</p>')


# --- sections -----------------------------------------------------------------------------------------------


def _answers(summary: Summary, rounds: Any) -> str:
    """One block per goal: the settings to change with every requested metric's ratio, or why to keep yours."""
    base = summary.baseline
    blocks = []
    for a in summary.answers:
        p = summary.point(a.trial) if a.given else None
        if p is None:
            blocks.append(f'<div class="answer keep" data-goal="{e(a.goal)}"><h3>{e(a.goal)}: keep your recipe</h3>'
                          f'<p class="verdict">{e(a.verdict)}</p></div>')
            continue
        settings = "".join(f"<li><code>{e(k)}</code> = <code>{e(v)}</code></li>" for k, v in a.params.items())
        m = summary.metric
        cards = [f'<div class="card"><div class="muted small">{e(m.name)}</div><div class="big">{e(m.fmt(p.metrics["accuracy"]))}</div>'
                 f'<div class="small">baseline {e(m.fmt(base.metrics["accuracy"]))}; {e(m.drop_word.split()[-1])} {_drop(a.accuracy_drop, wrap=False)}</div></div>']
        for o in speed_objectives(summary.objectives):
            if o in p.metrics:
                sp = a.speedup.get(o)
                cards.append(f'<div class="card"><div class="muted small">{e(o)} speedup</div><div class="big">{(sp or {}).get("value", 1.0):.2f}x</div>'
                             f'<div class="small">{_ratio(sp, wrap=False)}<br>{e(fmt_metric(o, p.metrics[o]))}'
                             + (f" vs {e(fmt_metric(o, base.metrics[o]))}" if o in base.metrics else "") + "</div></div>")
        extra = "".join(f"<li>{e(n)}</li>" for n in a.notes)
        if said := evidence_words(a.evidence, a.goal, summary.metric):
            extra = f"<li>Evidence: {e(said)}</li>" + extra
        if a.members:
            paid = ", ".join(f"trial {m['trial']} ({m['train_time']:.3g} s)" for m in a.members)
            extra += f"<li>{e('Its train_time includes the training of the other models it serves: ' + paid)}</li>"
        blocks.append(f'<div class="answer" data-goal="{e(a.goal)}"><h3>{e(a.goal)}: trial {a.trial}</h3>'
                      f'<p class="verdict">{e(a.verdict)}</p><p>Change these settings (everything else as in your recipe):</p>'
                      f'<ul>{settings}</ul><div class="cards">{"".join(cards)}</div>'
                      + (f'<ul class="small">{extra}</ul>' if extra else "") + "</div>")
    how = (f"Speedups are paired ratios from re-measuring each candidate interleaved with the baseline ({e(rounds)} rounds, "
           "95% intervals); each answer is judged on its own goal's metrics (train: training time, serve: latency and "
           "throughput), and every other requested metric is reported beside it." if summary.remeasured else
           "Speedups are single measurements against the baseline (not re-measured side by side), so they carry no interval.")
    return (f'<section id="answers"><h2>Answers</h2>{"".join(blocks)}<p class="muted small">{how} Quality budget: a {e(summary.metric.drop_word)} of at '
            f'most {summary.max_accuracy_drop:g} from the baseline.</p></section>')


def _pareto_table(summary: Summary) -> str:
    speeds = speed_objectives(summary.objectives)
    head = ["trial", e(summary.metric.name), e(summary.metric.drop_word)] + [h for o in speeds for h in (e(o), f"{e(o)} speedup")] + ["changes from your recipe"]
    rows = []
    answered = {a.trial: a.goal for a in summary.answers if a.given}
    shown = {p.trial: p for p in [summary.baseline, *summary.pareto, *(summary.point(t) for t in answered)] if p is not None}
    for p in shown.values():
        mark = f"{answered[p.trial]} answer" if p.trial in answered else ("baseline" if p is summary.baseline else p.verdict)
        cells = [f'<td>{p.trial}<br>{_tag(mark) if mark else ""}</td><td class="num">{_with_ci(p, "accuracy")}</td>',
                 f'<td class="num">{"—" if p is summary.baseline else _drop(p.accuracy_drop)}</td>']
        for o in speeds:
            speedup = "—" if p is summary.baseline else _ratio(p.speedup.get(o))
            cells.append(f'<td class="num">{_with_ci(p, o) if o in p.metrics else "n/a"}</td><td class="num">{speedup}</td>')
        cells.append(f'<td class="cfg">{e(fmt_params(p.params, summary.baseline.params))}</td>')
        cls = ' class="rec"' if p is summary.recommended else ""
        rows.append(f'<tr data-trial="{p.trial}"{cls}>{"".join(cells)}</tr>')
    n_inf = sum(not p.feasible for p in summary.points)
    stopped = f", {len(summary.stopped)} stopped early as too slow (by design)" if summary.stopped else ""
    return (f'<section><h2>Pareto front</h2>{_plots(summary)}<p>{len(summary.points)} completed trial(s), {len(summary.pareto)} on the '
            f'feasible front, {n_inf} over the {e(summary.metric.name)} budget, {_failed_count(summary)}{stopped}.</p>'
            f'{_table(head, rows, "pareto-table")}</section>')


def _ablation(ab: Mapping[str, Any] | None, objectives: Sequence[str], shown: Shown) -> str:
    if ab and ab.get("method") == "ablation" and ab.get("rows"):
        speeds = [o for o in objectives if any(o in r.get("speedup", {}) for r in ab["rows"])]
        head = (["answer", "technique", "removed settings"] + [f"{e(o)}: with vs without" for o in speeds]
                + [f"{e(shown.name)} without", f"{e(shown.name)}: with − without", "verdict"])
        rows = []
        for r in ab["rows"]:
            cells = [f"<td>{e(r.get('goal', ''))} (trial {e(r.get('trial', ab.get('trial', '?')))})</td>"
                     f"<td>{e(r.get('technique', '?'))}</td><td>{e(', '.join(f'{k}={v}' for k, v in r.get('dropped', {}).items()))}</td>"]
            cells += [f'<td class="num">{_ratio(r["speedup"].get(o)) if "speedup" in r else e(r.get("error", "n/a"))}</td>' for o in speeds]
            acc, change = r.get("accuracy"), r.get("accuracy_change")
            cells.append(f'<td class="num">{"n/a" if acc is None else e(shown.fmt(acc))}</td><td class="num">{"n/a" if change is None else _signed(shown.sign * change)}</td>'
                         f"<td>{e(r.get('verdict', ''))}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        body = ("<p>Each row removes one technique from an answer and times both side by side: a speedup above 1 means the "
                "answer is that much faster <em>with</em> the technique. A technique whose removal does not slow the answer "
                "beyond noise (and keeps accuracy within budget) is dropped from it.</p>" + _table(head, rows))
    elif ab and ab.get("method") == "importance" and ab.get("importances"):
        blocks = []
        for objective, imp in ab["importances"].items():
            top = max(imp.values(), default=0.0) or 1.0
            bars = "".join(f'<tr><td><code>{e(k)}</code></td><td style="width:60%"><div class="bar" style="width:{100 * v / top:.1f}%"></div>'
                           f'</td><td class="num">{v:.2f}</td></tr>' for k, v in sorted(imp.items(), key=lambda kv: -kv[1]))
            blocks.append(f'<div><h3 class="small">{e(shown.name if objective == "accuracy" else objective)}</h3>'
                          f'<table class="bars">{bars}</table></div>')
        body = ("<p>There was nothing to ablate, so these are Optuna's parameter importances (fANOVA): how much of each objective's "
                "variation across trials each setting explains. They show influence, not direction.</p>"
                f'<div class="grid2">{"".join(blocks)}</div>' + (f'<p class="muted small">{e(ab["note"])}</p>' if ab.get("note") else ""))
    else:
        note = f" ({e(ab['note'])})" if ab and ab.get("note") else ""
        body = f"<p>Ablation not available: this study records no ablation or parameter importances{note}.</p>"
    return f'<section id="ablation"><h2>What each technique did</h2>{body}</section>'


def technique_warnings(study: optuna.Study, summary: Summary) -> list[str]:
    """Plain sentences on techniques that did not help here, each resting on a measurement the report shows."""
    out: list[str] = []
    ab = study.user_attrs.get("ablation") or {}
    for r in ab.get("rows", []) if ab.get("method") == "ablation" else []:
        name = r.get("technique", "?")
        if "error" in r:
            out.append(f"{name} could not be ablated ({r['error']}), so its own contribution is unknown.")
            continue
        sp = {o: s for o, s in r.get("speedup", {}).items() if s.get("ci95")}
        if str(r.get("verdict", "")).startswith("kept"):
            continue  # the answer needed it after all (with the others); its row says why
        if sp and not any(s["ci95"][0] > 1.0 for s in sp.values()):
            how = ", ".join(f"{o} {s['value']:.2f}x [{_num(s['ci95'][0])}, {_num(s['ci95'][1])}]" for o, s in sp.items())
            verb = "made the answer slower" if all(s["ci95"][1] < 1.0 for s in sp.values()) else "did not make the answer faster beyond noise"
            out.append(f"{name} did not help on this target: keeping it {verb} ({how}); consider leaving it out.")
    for p in summary.points:
        if p.load.get("foreign_cores", 0.0) > BUSY_CORES:
            out.append(f"Trial {p.trial} was measured while other programs kept {p.load['foreign_cores']:.2f} cores busy: "
                       "its single-measurement figures are unreliable (re-measured candidates are compared in pairs).")
    for p in summary.pareto:
        if p is not summary.baseline and p.verdict in NOT_FASTER:
            out.append(f"Trial {p.trial} ({fmt_params(p.params, summary.baseline.params)}) is on the front but, re-measured side by side, "
                       f"is {p.verdict}: its techniques bought no speed on this target.")
    # Technique selectors only (a string or boolean default such as 'none', 'fp32', false): a numeric knob
    # like pruning.amount means nothing on its own, and flagging it would blame a setting that was never active.
    # A point's params are only the settings it changed; each is judged on its own goal's metrics.
    used: dict[tuple[str, str], list[float]] = {}
    for p in summary.points:
        judged = judging(p.goal, summary.objectives) if p.goal in ("train", "serve", "combined") else []
        for k, v in p.params.items():
            if isinstance(v, (str, bool)):
                used.setdefault((k, str(v)), []).append(goal_score(p, judged or speed_objectives(summary.objectives)))
    speeds = "the metrics of each trial's own goal"
    # Why some settings are known to disappoint, as their strategies said (``Strategy.hints``) when the study ran.
    hints: dict[str, str] = study.user_attrs.get("hints") or {}
    for (k, v), scores in sorted(used.items()):
        known = hints.get(f"{k}={v}")
        # Unknown settings need two trials, none faster; a known trap is named once most of its trials lose.
        never_faster = max(scores) <= 1.0 and (len(scores) >= 2 or known is not None)
        if never_faster or (known is not None and statistics.median(scores) <= 1.0):
            n_slow = sum(s <= 1.0 for s in scores)
            out.append(f"{k}={v} did not help on this target: {n_slow} of {len(scores)} trial(s) using it were no faster than your recipe "
                       f"(median speedup {statistics.median(scores):.2f}x, on {speeds})"
                       + (f". Expected: {known}." if known else "."))
    return out


def _warnings(study: optuna.Study, summary: Summary) -> str:
    items = technique_warnings(study, summary)
    body = ('<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in items) + "</ul>" if items else
            "<p>Nothing in this study shows a technique that failed to help: no ablation row, front point or technique "
            "setting came out no faster than your recipe.</p>")
    return f'<section id="warnings"><h2>Techniques that did not help on this target</h2>{body}</section>'


def _failed_count(summary: Summary) -> str:
    """"3 failed (2 diverged, 1 unsupported)": the kinds say whether a technique does not fit or something broke."""
    kinds = Counter(f.kind for f in summary.failed)
    said = ", ".join(f"{n} {e(kind)}" for kind, n in kinds.most_common())
    return f"{len(summary.failed)} failed" + (f" ({said})" if said else "")


def _failures(summary: Summary) -> str:
    """Failed trials, and apart from them the trials stopped early as too slow (a judgement, not a fault)."""
    stopped, failed = summary.stopped, summary.failed

    def rows(items: Sequence[Any]) -> list[str]:
        return [f'<tr><td class="num">{f.trial}</td><td>{e(f.kind)}</td><td><code>{e(f.reason)}</code></td>'
                f'<td><code>{e(f.where) or "—"}</code></td>'
                f"<td>{e(fmt_params(f.params, summary.baseline.params))}</td></tr>" for f in items]

    head = ["trial", "kind", "reason", "where", "changes from your recipe"]
    body = (f'<h2>Failed trials: {_failed_count(summary)}</h2><p>Each ran isolated; the study went on without it. '
            "Where: the last line of your code it passed through, then the line that raised.</p>" + _table(head, rows(failed))
            if failed else "<h2>Failed trials</h2><p>No trial failed.</p>")
    if stopped:
        body += (f'<h3>Stopped early as too slow ({len(stopped)})</h3><p>Each was on course to train slower than an answer '
                 "could, judged after a tenth of its steps; its accuracy was not worth the rest of the run.</p>"
                 + _table(head, rows(stopped)))
    return f'<section id="failures">{body}</section>'


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _mode(study: optuna.Study, meta: Mapping[str, Any]) -> str:
    # `autoaccel report` passes keys whose value is None when the study lacks them: treat None as missing.
    return str(meta.get("mode") or study.user_attrs.get("mode") or "n/a")


# Cores kept busy by other programs during a trial above which its figures are flagged as taken under load.
BUSY_CORES = 0.5


def load_summary(study: optuna.Study, summary: Summary) -> str:
    """Other programs' load while the trials ran, and re-measurement rounds discarded because of it."""
    cores = [p.load["foreign_cores"] for p in summary.points if "foreign_cores" in p.load]
    averages = [p.load["loadavg"] for p in summary.points if "loadavg" in p.load]
    rm = (study.user_attrs.get("remeasure") or {}).get("trials", {})
    discarded = sum(int(r.get("discarded_rounds", 0)) for entry in rm.values() for r in entry.get("objectives", {}).values())
    if not cores and not averages:
        return "not recorded"
    text = (f"other programs kept {statistics.median(cores):.2f} cores busy (median over trials, max {max(cores):.2f})"
            if cores else "other programs' CPU time not available")
    if averages:
        text += f"; 1-minute load average {min(averages):.2f}-{max(averages):.2f}"
    return text + f"; {discarded} re-measurement round(s) discarded because the load differed between the two sides"


def _environment(study: optuna.Study, meta: Mapping[str, Any], summary: Summary) -> str:
    t = study.user_attrs.get("target") or meta.get("target") or {}
    if t:
        cc = t.get("compute_capability")
        libs = " ".join(f'<span class="tag {"yes" if ok else "no"}">{e(n)}{"" if ok else " (missing)"}</span>' for n, ok in (t.get("libraries") or {}).items())
        flags = t.get("cpu_flags") or []
        target = _kv([("device", e(t.get("device", "?"))), ("name", e(t.get("name", "?"))), ("kind", e(t.get("kind", "?"))),
                      ("cores", e(t.get("cores", "?"))), ("memory", f"{float(t.get('memory_gb') or 0):.1f} GB"),
                      ("compute capability", e(".".join(map(str, cc)) if cc else "n/a")),
                      ("precisions", e(", ".join(t.get("precisions") or []) or "n/a")), ("libraries", libs or "n/a"),
                      ("CPU flags", f"<details><summary>{len(flags)} flags</summary><code>{e(' '.join(flags))}</code></details>" if flags else "n/a")])
    else:
        target = "<p>Target not available: the study does not record it.</p>"
    env = study.user_attrs.get("environment") or {}
    versions = _kv([(k, e(v)) for k, v in env.items()]) if env else "<p>Environment not available: the study does not record versions.</p>"
    export = meta.get("export") or {}
    rm = study.user_attrs.get("remeasure") or {}
    run = _kv([("study", e(meta.get("study") or study.study_name)), ("mode", e(_mode(study, meta))),
               ("storage", f"<code>{e(meta.get('storage') or 'n/a')}</code>"), ("objectives", e(", ".join(summary.objectives))),
               ("metric", e(f"{summary.metric.name} ({'higher' if summary.metric.direction == 'maximize' else 'lower'} is better)")),
               (f"max {summary.metric.drop_word}", e(f"{summary.max_accuracy_drop:g}")),
               ("re-measurement", e(f"{rm['rounds']} interleaved rounds" if summary.remeasured and "rounds" in rm else "none")),
               ("machine load", e(load_summary(study, summary))),
               ("exported files", "<br>".join(f"{e(k)}: <code>{e(v)}</code>" for k, v in (export.get("files") or {}).items()) or "none"),
               ("export notes", "<br>".join(e(n) for n in export.get("notes") or []) or "none")])
    return (f'<section id="environment"><h2>Target and environment</h2><div class="grid2"><div><h3>Target</h3>{target}</div>'
            f"<div><h3>Versions</h3>{versions}<h3>Run</h3>{run}</div></div></section>")


def build_report(study: optuna.Study, summary: Summary, meta: dict[str, Any]) -> str:
    """The whole report as one HTML string; any study attribute or meta key may be missing."""
    task = meta.get("task") or study.user_attrs.get("task") or study.study_name
    t = study.user_attrs.get("target") or meta.get("target") or {}
    where = f"target {e(t.get('name', '?'))} [{e(t.get('device', '?'))}]" if t else "target not available"
    sub = (f"study {e(meta.get('study') or study.study_name)} · mode {e(_mode(study, meta))} · "
           f"{where} · generated {datetime.now():%Y-%m-%d %H:%M}")
    rounds = (study.user_attrs.get("remeasure") or {}).get("rounds", "?")
    body = "".join([_answers(summary, rounds), search_section(study, summary), _pareto_table(summary),
                    _ablation(study.user_attrs.get("ablation"), summary.objectives, summary.metric), _warnings(study, summary),
                    _failures(summary), _environment(study, meta, summary)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>autoaccel report: {e(task)}</title><style>{CSS}</style></head><body><main>"
            f'<h1>autoaccel report: {e(task)}</h1><p class="sub">{sub}</p>{body}</main><script>{JS}</script></body></html>\n')


__all__ = ["build_report", "technique_warnings"]
