"""The one description of the settings: the command's flags are made from it, its ranges are enforced."""

import argparse

import pytest

from bpr.cli import build_parser
from bpr.config import PseudoLabels, Rebalancing, TrainConfig, from_flat, options


def subparser(*names) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def flags(parser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions}


def test_bpr_train_has_every_option_with_the_descriptions_default_choices_and_help():
    actions = flags(subparser("train"))
    for o in options(TrainConfig):
        action = actions[o.name]
        assert o.cli_flag in action.option_strings
        assert (o.flag_help or o.help) in action.help
        if o.kind is bool:
            assert action.default is o.default and action.const is (not o.default)
        elif o.name != "extra":
            assert action.default == o.default, o.name
        assert (tuple(action.choices) if action.choices else None) == o.choices, o.name
    # and the settings the flags give, left alone, are the described defaults
    args = build_parser().parse_args(["train", "project"])
    from bpr.cli import _settings

    assert _settings(TrainConfig, args) == TrainConfig()


def test_the_experiment_takes_its_own_defaults_and_the_rest_from_the_description():
    from bpr.experiment import EXPERIMENT_DEFAULTS, EXPERIMENT_TRAIN_OPTIONS, ExperimentSpec

    actions = flags(subparser("experiment"))
    spec = ExperimentSpec(data="x", out="y")
    for o in options(TrainConfig):
        if o.name in EXPERIMENT_TRAIN_OPTIONS and o.name != "extra":
            expected = EXPERIMENT_DEFAULTS.get(o.name, o.default)
            assert actions[o.name].default == getattr(spec, o.name) == expected, o.name
    assert (spec.epochs, spec.imgsz) == (100, 320) != (TrainConfig().epochs, TrainConfig().imgsz)


def test_values_out_of_range_or_choices_are_refused_naming_the_option():
    with pytest.raises(ValueError, match=r"p_obj must be within 0..1, not 1.5"):
        Rebalancing(p_obj=1.5)
    with pytest.raises(ValueError, match=r"epochs must be within 1..10000, not 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"protocol 'loose': use dusia or all-labeled"):
        TrainConfig(protocol="loose")
    with pytest.raises(ValueError, match=r"hide_fraction and keep_per_image both hide training boxes"):
        TrainConfig(hide_fraction=0.5, keep_per_image=1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "p", "--teacher", "mean"])
    with pytest.raises(ValueError, match="without pseudo-boxes and without an ignore band teaches nothing"):
        PseudoLabels(pseudo_boxes=False, ignore_band=False)


def test_flat_values_fill_the_nested_settings():
    config = from_flat(TrainConfig, {"p_obj": 0.25, "epochs": 3, "seed": 7, "partial_only": False, "nope": 1})
    assert (config.epochs, config.seed) == (3, 7)
    assert config.rebalancing == Rebalancing(p_obj=0.25, partial_only=False, seed=7)  # the drops follow the seed
