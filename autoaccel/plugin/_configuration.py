"""A configuration: the settings of one trial that change its plan, which factor they belong to (training or
serving), and how Optuna is asked for them (define-by-run: a parameter is suggested only where it applies).

Two spellings of one plan are one configuration: the search identifies a configuration by its plan's
fingerprint, and recipes and reports list only the settings that changed the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autoaccel.plugin._pipeline import Pipeline
from autoaccel.plugin._space import Param, active
from autoaccel.plugin._strategy import Phase, Strategy, apply_all, ordered, split_params, strategy_of
from autoaccel.vocab import FACTORS

# What the user can change independently: how they train, and how they serve what they trained.
TRAINING_PHASES = frozenset({Phase.DATA, Phase.MODEL, Phase.TRAIN})


def factor_of(strategy: Strategy[Any], mode: str) -> str:
    """The factor a strategy changes. Model-phase techniques (compile, channels_last) shape training too, so in
    --mode both they belong to the training recipe; in --mode inference everything is serving."""
    if mode == "train":
        return "train"
    if mode == "inference":
        return "serve"
    return "train" if strategy.phase in TRAINING_PHASES else "serve"


def goal_of(config: Mapping[str, Any], strategies: Sequence[Strategy[Any]], mode: str) -> str:
    """'baseline' (nothing changed), 'train', 'serve', or 'combined' (both factors changed)."""
    by_name = {s.name: s for s in strategies}
    factors = {factor_of(by_name[name], mode) for name in split_params(config) if name in by_name}
    if not factors:
        return "baseline"
    return factors.pop() if len(factors) == 1 else "combined"


def local_space(strategy: Strategy[Any], space: Mapping[str, Param]) -> dict[str, Param]:
    prefix = f"{strategy.name}."
    return {k[len(prefix):]: p for k, p in space.items() if k.startswith(prefix)}


def suggest(trial: Any, strategies: Sequence[Strategy[Any]], space: Mapping[str, Param], mode: str,
            factors: Iterable[str] = FACTORS) -> dict[str, Any]:
    """Ask ``trial`` for the parameters of the strategies in ``factors``, each only where its conditions hold.

    Parameters of other factors, and inactive ones, are not suggested at all: they stay at their off value and
    are not part of the trial, so the sampler never spends effort on a setting that changes nothing.
    """
    wanted = set(factors)
    params: dict[str, Any] = {}
    for strategy in ordered(strategies):
        if factor_of(strategy, mode) not in wanted:
            continue
        local = local_space(strategy, space)
        chosen: dict[str, Any] = {}
        for name, param in local.items():
            if active(local, name, chosen):
                chosen[name] = param.suggest(trial, f"{strategy.name}.{name}")
        params.update({f"{strategy.name}.{k}": v for k, v in chosen.items()})
    return params


def configuration(strategies: Sequence[Strategy[Any]], base: Pipeline, params: Mapping[str, Any],
                  defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``params`` that change the plan: off values dropped, then every setting whose removal
    leaves the plan's fingerprint unchanged (e.g. an ONNX Runtime engine that an int8 choice already implies)."""
    target = apply_all(strategies, base, params).fingerprint()
    config = {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}
    for key in list(config):
        trimmed = {k: v for k, v in config.items() if k != key}
        if apply_all(strategies, base, trimmed).fingerprint() == target:
            config = trimmed
    return config


def culprits(strategies: Sequence[Strategy[Any]], base: Pipeline, config: Mapping[str, Any], stage: str) -> str:
    """The settings a failure at ``stage`` can be blamed on, as ``quantization.method=static_int8_ort``.

    A stage named ``<hook>:<strategy>`` (``transform:pruning``, ``serve:runtime``) blames that strategy; the
    training loop ("training") blames the training settings; anything else, or nothing found, all changed ones.
    """
    by_name = {s.name: s for s in strategies}
    names: set[str] = set()
    owner = stage.partition(":")[2]
    if owner:
        names = {owner}
    elif stage == "training":
        names = {n for n in split_params(config) if n in by_name and factor_of(by_name[n], "both") == "train"}
    settings = [f"{k}={v}" for k, v in config.items() if strategy_of(k) in names]
    if not settings:
        settings = [f"{k}={v}" for k, v in config.items()]
    return ", ".join(settings) or "your recipe"
