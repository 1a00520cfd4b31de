"""Screening: every technique alone against the user's recipe, before any combination is searched.

A flat search over thirty parameters spends the user's budget on combinations of techniques that do nothing
here. Screening first tries each technique, with the settings its strategy names most promising
(``Strategy.probes``): serving techniques first (they reuse the trained model, so each costs one evaluation),
then the training techniques that relieve the largest share of the baseline's profile, so a cheap clear win
appears early. A probe runs alone, or added to the best configuration so far (stages.py says when); either
way it is judged against what it was added to. A technique survives when one of its probes is faster beyond noise (even over the accuracy budget:
a scaled learning rate or a schedule may bring it back in combination) or more accurate beyond noise (accuracy
the others can spend). It leaves the search after its first failure that is the technique's own (unsupported
model, export failure), or when MAX_PROBES probes show no gain; the report says why. The model-based search then
combines the survivors.

Verdicts are read from the study's trials, so a resumed study keeps its screening, and a sampled trial that
happened to change one technique alone counts as evidence too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from autoaccel.plugin._configuration import factor_of, local_space
from autoaccel.plugin._space import Param
from autoaccel.plugin._strategy import Strategy, ordered, split_params, strategy_of
from autoaccel.trial import TrialRecord, relief
from autoaccel.vocab import METRICS, FailureKind

# A technique none of whose three most promising settings helps on its own is not worth combining.
MAX_PROBES = 3
# A speed measured once (training time has no interval) must beat the baseline's by this margin: a shared
# machine drifts by about that much between two runs of the same recipe.
SINGLE_RUN_NOISE = 0.10
# Failures that are the technique's own on this task, whatever its setting: it is not retried.
FATAL = frozenset({"unsupported", "error", "crash", "infeasible"})
SURVIVING = frozenset({"helps", "more accurate", "not screened"})
# The failure kind of a training run the search stopped early, on course to be slower than it could win with.
STOPPED = FailureKind.TOO_SLOW.value


@dataclass(frozen=True)
class Tried:
    """One configuration that tried a technique: alone (``against`` the user's recipe), or added to another."""

    record: TrialRecord
    against: TrialRecord | None  # what it is judged against; None: the user's recipe
    own: dict[str, Any]  # the technique's own settings in it

    @property
    def alone(self) -> bool:
        return self.against is None or self.against.role == "baseline"

    @property
    def failed_in_combination(self) -> bool:
        """Failed added to another configuration: the pair's failure, not yet the technique's own (it is tried
        alone before anything says it failed on this task)."""
        return not self.alone and not self.record.measured and self.record.failure_kind in FATAL

    @property
    def on_top(self) -> str:
        """How the verdict's reason says what it was judged against."""
        return "" if self.against is None or self.against.role == "baseline" else f" on top of trial {self.against.number}"


@dataclass(frozen=True)
class Verdict:
    """What screening concluded about one technique."""

    strategy: str
    status: str  # pending, helps, more accurate, no gain, failed, not screened
    reason: str
    trial: int | None = None  # the probe the verdict rests on
    speedup: float | None = None  # that probe's speedup on its goal's metrics (conservative, beyond noise)

    @property
    def survives(self) -> bool:
        return self.status in SURVIVING

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def speedup(probe: TrialRecord, base: TrialRecord, metrics: Sequence[str]) -> float:
    """The probe's conservative speedup over the baseline on ``metrics`` (geometric mean): from the ends of both
    intervals where both were timed repeatedly, else the single ratio shrunk by SINGLE_RUN_NOISE."""
    ratios = []
    for metric in metrics:
        mine, theirs = probe.metrics.get(metric, 0.0), base.metrics.get(metric, 0.0)
        if mine <= 0 or theirs <= 0:
            return 0.0
        higher = METRICS[metric]
        lo_hi = probe.ci95.get(metric), base.ci95.get(metric)
        if all(lo_hi):
            (p_lo, p_hi), (b_lo, b_hi) = lo_hi  # type: ignore[misc]
            ratio = p_lo / b_hi if higher else b_lo / p_hi
        else:
            ratio = (mine / theirs if higher else theirs / mine) / (1 + SINGLE_RUN_NOISE)
        ratios.append(max(ratio, 1e-12))
    product = 1.0
    for r in ratios:
        product *= r
    return product ** (1 / len(ratios)) if ratios else 1.0


def more_accurate(probe: TrialRecord, base: TrialRecord) -> bool:
    """Whether the probe's accuracy interval lies wholly above the baseline's."""
    mine, theirs = probe.ci95.get("accuracy"), base.ci95.get("accuracy")
    return bool(mine and theirs and mine[0] > theirs[1])


class Screening:
    """The probes of each technique, the order they are tried in, and the verdicts the trials support."""

    def __init__(self, strategies: Sequence[Strategy], space: Mapping[str, Param], mode: str,
                 judging: Mapping[str, Sequence[str]]) -> None:
        self.strategies = ordered(strategies)
        self.mode = mode
        self.judging = judging  # goal -> the requested metrics that judge it
        # Techniques that combine other trained models (an ensemble) cannot be tried alone: searched jointly.
        self.probes: dict[str, list[dict[str, Any]]] = {
            s.name: [{f"{s.name}.{k}": v for k, v in p.items()} for p in s.probes(local_space(s, space))]
            for s in self.strategies if not s.needs_training
        }
        # Probes handed out by this process: one whose trial turned out to change nothing (a no-op setting, reused
        # as the baseline) leaves no evidence, and must not be handed out again.
        self.proposed: set[str] = set()
        # Probes handed out again alone after failing added to another configuration (failed_in_combination).
        self.proposed_alone: set[str] = set()

    def order(self, profile: Mapping[str, float]) -> list[Strategy]:
        """Serving techniques first (an evaluation each), then training techniques by the share of the baseline's
        training time they could remove, largest first; among equals, those without a one-off cost first (a
        compilation), then the declared order."""
        def key(item: tuple[int, Strategy]) -> tuple[int, float, bool, int]:
            index, strategy = item
            if factor_of(strategy, self.mode) == "serve":
                return (0, 0.0, False, index)
            return (1, -relief(profile, strategy.relieves), strategy.one_off_cost, index)

        return [s for _, s in sorted(enumerate(self.strategies), key=key)]

    def screened(self, records: Iterable[TrialRecord]) -> dict[str, int]:
        """Per factor, how many screening trials ran (measured or failed)."""
        counts: dict[str, int] = {}
        evidence = self.evidence(records)
        for strategy in self.strategies:
            factor = factor_of(strategy, self.mode)
            counts[factor] = counts.get(factor, 0) + len(evidence[strategy.name])
        return counts

    @property
    def size(self) -> int:
        """Probes in all: what screening every technique alone could take."""
        return sum(len(p) for p in self.probes.values())

    def evidence(self, records: Iterable[TrialRecord], base: TrialRecord | None = None) -> dict[str, list[Tried]]:
        """Per technique, the distinct configurations that tried it (measured or failed), oldest first: alone
        against the user's recipe (``base``), or, in a short run, added to another configuration (a screen with
        ``over``) against that one."""
        done = sorted(records, key=lambda r: r.number)
        by_number = {r.number: r for r in done}
        seen: set[str | None] = set()
        out: dict[str, list[Tried]] = {s.name: [] for s in self.strategies}
        for r in done:
            if r.not_run or r.duplicate_of is not None or r.role == "baseline" or r.fingerprint in seen:
                continue
            if not (r.measured or r.failure_kind):
                continue
            touched = split_params(r.settings)
            own = {name: {k: v for k, v in r.settings.items() if strategy_of(k) == name} for name in touched}
            reference = by_number.get(r.over) if r.role == "screen" and r.over is not None else None
            if reference is not None:
                # The technique it added: what it changed that the configuration it was added to did not have so.
                added = {name for name, local in touched.items() if split_params(reference.settings).get(name) != local}
                if len(added) == 1 and (name := next(iter(added))) in out and reference.measured:
                    seen.add(r.fingerprint)
                    out[name].append(Tried(r, reference, own[name]))
            elif len(touched) == 1 and (name := next(iter(touched))) in out:
                seen.add(r.fingerprint)
                out[name].append(Tried(r, base, own[name]))
        return out

    def verdicts(self, records: Sequence[TrialRecord], base: TrialRecord) -> dict[str, Verdict]:
        evidence = self.evidence(records, base)
        return {s.name: self._judge(s, evidence[s.name], base) for s in self.strategies}

    def _judge(self, strategy: Strategy, tried: list[Tried], base: TrialRecord) -> Verdict:
        """A technique's verdict from its probes so far. It helps as soon as one probe is faster beyond noise than
        what it was tried against, but stays pending while each helping probe beats the one before within the
        accuracy budget (a larger batch that keeps paying: the next probe follows the gain), so the screening ends
        on the best of a run of wins, not the first."""
        name = strategy.name
        if name not in self.probes:
            return Verdict(name, "not screened", "combines other trained models; searched in combination only")
        metrics = self.judging.get(factor_of(strategy, self.mode), ())
        best: tuple[float, Tried] | None = None
        helped: tuple[float, Tried] | None = None
        improving = False
        again = self.again_alone(name, tried)
        combined = [t for t in tried if t.failed_in_combination]
        # A failure in combination counts as a setting tried only once that setting has been tried alone too.
        tried = [t for t in tried if not t.failed_in_combination]
        for t in tried:
            r, against = t.record, t.against or base
            if not r.measured:
                if r.failure_kind in FATAL:
                    alone = "" if t.alone else t.on_top  # (a failure on top stands once the setting failed alone too)
                    return Verdict(name, "failed", f"failed on this task{alone}: {r.reason or r.failure_kind}", r.number)
                improving = False
                continue
            gain = speedup(r, against, metrics) if metrics else 0.0
            if gain > 1.0:
                better = helped is None or gain > helped[0]
                if better:
                    helped = (gain, t)
                # A win over the accuracy budget is kept (to combine) but not followed: the next setting the same
                # way (a still larger batch) would cost more accuracy.
                improving = better and r.feasible
            elif more_accurate(r, against) and helped is None:
                return Verdict(name, "more accurate", "more accurate beyond noise (accuracy others can spend)"
                               + t.on_top, r.number, gain)
            else:
                improving = False
            if best is None or gain > best[0]:
                best = (gain, t)
        untried = again + [p for p in self.probes[name] if _key(p) not in self.proposed and not any(_same(p, t.own) for t in tried)]
        if again:
            first = combined[-1]
            return Verdict(name, "pending", f"failed{first.on_top} ({first.record.reason or first.record.failure_kind}): "
                           "to be tried alone")
        if helped is not None and not (improving and untried):
            gain, t = helped
            over = "" if t.record.feasible else ", though over the accuracy budget alone (kept to combine)"
            pair = f"; it failed{combined[-1].on_top} (that pair does not work together)" if combined else ""
            return Verdict(name, "helps", f"{gain:.2f}x faster beyond noise{t.on_top}{over}{pair}", t.record.number, gain)
        if helped is None and (len(tried) >= MAX_PROBES or not untried):
            if not self.probes[name]:
                return Verdict(name, "no gain", "nothing to try: every setting left in its space is your recipe's")
            if not tried:
                return Verdict(name, "no gain", "its settings changed nothing here (each made your recipe's plan)")
            if best is None:
                last = tried[-1].record
                if all(t.record.failure_kind == STOPPED for t in tried):
                    # Stopped by the search, not failed: on course to be slower than what it had to beat.
                    return Verdict(name, "no gain", f"every setting tried was on course to train slower than the best "
                                   f"recipe so far{tried[-1].on_top}, and stopped early ({last.reason})", last.number)
                return Verdict(name, "no gain", f"every setting tried failed ({last.reason or last.failure_kind})", last.number)
            gain, t = best
            return Verdict(name, "no gain", f"no speedup beyond noise on this target{t.on_top} (best {gain:.2f}x, noise "
                           "allowed for)", t.record.number, gain)
        return Verdict(name, "pending", f"{len(tried)} of its settings tried so far")

    def again_alone(self, name: str, tried: Sequence[Tried]) -> list[dict[str, Any]]:
        """The probes of ``name`` that failed added to another configuration and are not yet tried alone."""
        failed = [t.own for t in tried if t.failed_in_combination]
        alone = [t.own for t in tried if t.alone]
        return [p for p in self.probes.get(name, []) if _key(p) not in self.proposed_alone
                and any(_same(p, f) for f in failed) and not any(_same(p, a) for a in alone)]

    def next_probe(self, records: Sequence[TrialRecord], base: TrialRecord, profile: Mapping[str, float],
                   factor: str | None = None) -> tuple[Strategy, dict[str, Any], bool] | None:
        """The next technique (of ``factor``, or any) to try and its setting, and whether it must be tried alone (it
        failed added to another configuration); None when that is screened."""
        evidence = self.evidence(records, base)
        pending = [s for s in self.order(profile) if (factor is None or factor_of(s, self.mode) == factor)
                   and self._judge(s, evidence[s.name], base).status == "pending"]
        for strategy in pending:
            if again := self.again_alone(strategy.name, evidence[strategy.name]):
                self.proposed_alone.add(_key(again[0]))
                return strategy, again[0], True
        # Every technique's first (most promising) setting before any technique's second: a short run tries
        # each technique once rather than one technique thoroughly.
        for strategy in sorted(pending, key=lambda s: bool(evidence[s.name])):
            tried = [t.own for t in evidence[strategy.name] if not t.failed_in_combination]
            for probe in self.probes[strategy.name]:
                if _key(probe) not in self.proposed and not any(_same(probe, t) for t in tried):
                    self.proposed.add(_key(probe))
                    return strategy, probe, False
        return None


def _key(probe: Mapping[str, Any]) -> str:
    return repr(sorted(probe.items()))


def _same(probe: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
    """Whether a trial's settings are the probe's (settings drop off values and no-ops, so compare on those)."""
    return all(settings.get(k, v) == v for k, v in probe.items()) and set(settings) <= set(probe)


def incumbent(records: Iterable[TrialRecord], base: TrialRecord, names: set[str],
              metrics: Sequence[str], feasible: bool = True) -> TrialRecord | None:
    """The fastest measured configuration that changes only the techniques ``names`` (one factor's): among the
    feasible ones, or among all (a fast one over the accuracy budget, which another technique may bring back)."""
    mine = [r for r in records if r.measured and (r.feasible or not feasible) and r.duplicate_of is None
            and r.role != "baseline" and r.settings and set(split_params(r.settings)) <= names]
    return max(mine, key=lambda r: speedup(r, base, metrics), default=None)


def stacked(strategy: Strategy, probes: Sequence[Mapping[str, Any]], best: TrialRecord) -> list[dict[str, Any]]:
    """A left-out technique's probes on top of the best configuration so far: the interactions screening alone
    misses (reduced precision that loses alone at a small batch and wins at a large one)."""
    kept = {k: v for k, v in best.settings.items() if not k.startswith(f"{strategy.name}.")}
    return [{**kept, **p} for p in probes[:MAX_PROBES]]
