"""The order of a search: which trial comes next, in stages that put cheap, likely wins first.

1. screening: each technique against the user's recipe (see screening.py), one factor at a time, the cheap
   one first (serving variants reuse the trained model: an evaluation each, each technique alone); a training
   technique is tried on top of the best training configuration so far once one beats the recipe (each
   training screen is a training run: what helps accumulates, and the later ones train faster); in a short
   run (a trial count too small to screen everything) the factors take turns, and serving techniques are
   tried on top too;
2. stacking: as soon as a factor is screened, each technique it left out, and each that helped alone (with
   the setting that helped), is added to that factor's best configuration so far, so techniques that pay off
   only together (structured pruning under ONNX Runtime, reduced precision at a larger batch) are not lost and
   the likeliest win, the best two together, comes before any sampling;
3. combining: the sampler (TPE by default) combines the techniques that survived or helped on top, every other
   trial being a local move one setting away from the best configurations so far;
4. once those combinations are exhausted, stacking again on the new best (restacking), then
5. combining again (recombining), and
6. widened: every technique, for whatever budget is left.

The Search runs what this proposes and reports back each finished trial; the stages keep no state that the
study's trials could not rebuild, except where in this order the run is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autoaccel.plugin._configuration import factor_of
from autoaccel.plugin._space import Param
from autoaccel.plugin._strategy import Strategy, split_params, strategy_of
from autoaccel.search._screening import Screening, Verdict, incumbent, speedup, stacked
from autoaccel.trial import TrialRecord, describe

# Proposals in a row that repeat measured configurations before the combinations of the searched techniques
# count as exhausted and the search moves to its next stage.
WIDEN_AFTER = 8


@dataclass
class Proposal:
    """What to run next: fixed settings (a screen or a stack), or a sampled trial (``config`` None)."""

    role: str
    config: dict[str, Any] | None = None
    strategy: Strategy | None = None  # the technique a screen or stack tries
    over: int | None = None  # a stack: the trial it adds the technique to
    messages: list[str] = field(default_factory=list)  # what to tell the user before it runs


class Stages:
    def __init__(self, strategies: Sequence[Strategy], space: dict[str, Param], mode: str,
                 judging: dict[str, list[str]], factors: Sequence[str]) -> None:
        self.strategies = list(strategies)
        self.mode = mode
        self.judging = judging
        self.factors = tuple(factors)  # cheapest first
        self.screening = Screening(strategies, space, mode, judging)
        self.stage = ""
        self.searched: list[Strategy] = list(strategies)  # what sampled trials may change
        self.helpers: list[Strategy] = []  # left out by screening, helped on top of a best configuration
        self.stacked: set[str] = set()  # factors whose left-out techniques were stacked in this round
        self.stacks: list[Proposal] = []
        self.repeats = 0  # proposals in a row that repeated a measured configuration
        self.proposals = 0  # combining proposals so far: every other one is a local move
        self.announced: set[str] = set()  # stages already announced (screening resumes after a factor's stacking)
        # A run of a fixed number of trials too small to screen every technique alone (a GPU user's --trials 8):
        # the factors take turns, and once a technique helps, the next ones are screened on top of the best
        # configuration so far rather than alone, so what helps accumulates within the trials there are (the
        # stacking that would follow screening may never come).
        self.short = False

    def factor(self, strategy: Strategy) -> str:
        return factor_of(strategy, self.mode)

    def techniques(self, factor: str) -> set[str]:
        """The names of the techniques that change ``factor``."""
        return {s.name for s in self.strategies if self.factor(s) == factor}

    def next(self, records: Sequence[TrialRecord], base: TrialRecord) -> Proposal:
        notes: list[str] = []
        profile = base.details.get("profile") or {}
        if not self.stage and profile:
            notes.append(f"your recipe's training time: {describe(profile)}")
        if self.stage in ("", "screening", "stacking"):
            factors = self.factors
            if self.short:
                # Too few trials to screen everything: each factor in turn (the least screened first), so a
                # short run tries a training technique too, not only the cheap serving ones.
                done = self.screening.screened(records)
                factors = tuple(sorted(self.factors, key=lambda f: (done.get(f, 0), self.factors.index(f))))
            for factor in factors:
                probe = self.screening.next_probe(records, base, profile, factor)
                if probe is not None:
                    self._enter("screening", notes, "stage 1: each technique against your recipe, serving first "
                                "(an evaluation each), then training techniques by the share of your training time "
                                "they could remove, each on top of the best training recipe so far")
                    if probe[2]:  # it failed added to another configuration: now alone, before any verdict
                        return Proposal("screen", probe[1], probe[0], messages=notes)
                    return self._screen(probe[0], probe[1], factor, records, base, notes)
                if factor not in self.stacked:
                    self.stacked.add(factor)
                    self.stacks += self._stacks(factor, records, base)
                if self.stacks:
                    self._enter("stacking", notes, "stage 2: adding each technique left out, and each that helped "
                                "alone, to the best configuration so far (some only pay off together)")
                    return self._pop(notes)
            verdicts = self.screening.verdicts(records, base)
            kept = [s for s in self.strategies if verdicts[s.name].survives or s in self.helpers]
            self.searched = kept or list(self.strategies)
            self._enter("combining", notes, f"stage 3: combining {', '.join(s.name for s in kept) or 'every technique'}")
            notes += [f"  left out {v.strategy}: {v.reason}" + (f" (trial {v.trial})" if v.trial is not None else "")
                      for v in verdicts.values() if not v.survives and v.strategy not in {s.name for s in kept}]
            self.repeats = 0
        if self.stage == "combining" and self.repeats >= WIDEN_AFTER:
            self.stacks = [p for f in self.factors for p in self._stacks(f, records, base)]
            self._enter("restacking", notes, "stage 4: those combinations are measured; adding the techniques still "
                        "left out to the new best")
        if self.stage == "restacking":
            if self.stacks:
                return self._pop(notes)
            self.searched = [s for s in self.strategies if s in self.searched or s in self.helpers]
            self._enter("recombining", notes, f"stage 5: combining {', '.join(s.name for s in self.searched)}")
            self.repeats = 0
        if self.stage == "recombining" and self.repeats >= WIDEN_AFTER:
            self.searched = list(self.strategies)
            self._enter("widened", notes, "stage 6: those combinations are measured too; searching every technique")
        # The sampler models the whole space; a local move refines the best configurations found (the two
        # alternate, so neither a misled model nor a local optimum holds the search).
        self.proposals += 1
        return Proposal("local" if self.proposals % 2 == 0 else "candidate", messages=notes)

    def observed(self, proposal: Proposal, trial: TrialRecord, done: TrialRecord, over: TrialRecord | None) -> list[str]:
        """Take note of a finished ``trial`` (``done``: its measurement, or the earlier one it reused); a stack that
        beats the configuration it was added to brings its technique into the combining."""
        self.repeats = self.repeats + 1 if trial.duplicate_of is not None or trial.not_run else 0
        strategy = proposal.strategy
        if proposal.role != "stack" or strategy is None or over is None or strategy in self.helpers:
            return []
        if done.measured and done.feasible and speedup(done, over, self.judging[self.factor(strategy)]) > 1.0:
            self.helpers.append(strategy)
            self.stacks = [p for p in self.stacks if p.strategy is not strategy]
            return [f"  {strategy.name} helps on top of trial {over.number}: kept for combining"]
        return []

    def verdicts(self, records: Sequence[TrialRecord], base: TrialRecord) -> dict[str, Verdict]:
        return self.screening.verdicts(records, base)

    def _stacks(self, factor: str, records: Sequence[TrialRecord], base: TrialRecord) -> list[Proposal]:
        names = self.techniques(factor)
        best = incumbent(records, base, names, self.judging[factor])
        # Also on the fastest configuration over the accuracy budget, if faster: what it needs may be one more
        # technique (a larger batch that loses accuracy alone can keep it at reduced precision's other rounding).
        fastest = incumbent(records, base, names, self.judging[factor], feasible=False)
        tops = list({t.number: t for t in (best, fastest) if t is not None}.values())
        verdicts = self.screening.verdicts(records, base)
        left_out = [s for s in self.strategies if s.name in names and verdicts[s.name].status == "no gain"
                    and s not in self.helpers]
        # The techniques that helped alone are added too, each with the setting that helped: the best two
        # together are the likeliest win of all, and a serving one costs an evaluation.
        by_number = {r.number: r for r in records}
        helped = [(s, by_number[v.trial]) for s in self.strategies
                  if s.name in names and (v := verdicts[s.name]).status == "helps" and v.trial in by_number]
        # A stack must beat the best feasible configuration (the user's recipe when there is none yet).
        bar = best.number if best is not None else base.number
        proposals: dict[str, Proposal] = {}
        for top in tops:
            mine = split_params(top.settings)
            for s, probe in helped:
                if s.name not in mine:
                    own = {k: v for k, v in probe.settings.items() if strategy_of(k) == s.name}
                    config = stacked(s, [own], top)[0]
                    proposals.setdefault(repr(sorted(config.items())), Proposal("stack", config, s, bar))
            for s in left_out:
                for config in stacked(s, self.screening.probes[s.name], top):
                    proposals.setdefault(repr(sorted(config.items())), Proposal("stack", config, s, bar))
        return list(proposals.values())

    def _screen(self, strategy: Strategy, probe: dict[str, Any], factor: str, records: Sequence[TrialRecord],
                base: TrialRecord, notes: list[str]) -> Proposal:
        """A screening trial: the probe alone, or on top of the factor's best configuration so far when one beats
        the user's recipe (the screening then judges the probe against that configuration). On top for the
        training factor always, and for every factor in a short run: where each screen costs a training run, what
        helps accumulates (greedy, as DeepSpeed's autotuner tunes in stages), and every later screen trains on the
        faster configuration, so costs less. A serving screen costs an evaluation: alone, its verdict is clean."""
        if self.short or factor == "train":
            names = self.techniques(factor)
            best = incumbent(records, base, names, self.judging[factor])
            # A technique already in the best configuration tries its next setting alone, as usual: added to
            # itself, it would only be compared with its own other setting.
            if (best is not None and speedup(best, base, self.judging[factor]) > 1.0
                    and strategy.name not in split_params(best.settings)):
                return Proposal("screen", stacked(strategy, [probe], best)[0], strategy, best.number, messages=notes)
        return Proposal("screen", probe, strategy, messages=notes)

    def _pop(self, notes: list[str]) -> Proposal:
        proposal = self.stacks.pop(0)
        proposal.messages = notes
        return proposal

    def _enter(self, stage: str, notes: list[str], text: str) -> None:
        self.stage = stage
        if stage not in self.announced:
            self.announced.add(stage)
            notes.append(text)

