"""Models by name: `build_model("lantm", vocab_size=130, controller_size=100)`.

The named configurations are the paper's models and baselines; every registered Lie group's name also
builds a Lie-access machine moving its heads with that group (inverse-square read), so a group a user adds
by subclassing `LieGroup` is a model at once.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import groups

from .config import ConfigError, replace
from .models.base import SequenceModel
from .models.lantm import LANTMConfig, LieAccessMachine
from .models.lstm import EncoderDecoderLSTM, LSTMConfig
from .models.ntm import NeuralTuringMachine, NTMConfig
from .models.ram import RAMConfig, RandomAccessMachine


class Preset(NamedTuple):
    """A named configuration: the model class, its config class and the fields that differ from defaults."""

    model: type[SequenceModel]
    config: type
    settings: dict


PRESETS = {
    "lantm": Preset(LieAccessMachine, LANTMConfig, {"group": "translation"}),
    "lantm-s": Preset(LieAccessMachine, LANTMConfig, {"group": "translation", "weighting": "softmax"}),
    "slantm": Preset(LieAccessMachine, LANTMConfig, {"group": "so3"}),
    "slantm-s": Preset(LieAccessMachine, LANTMConfig, {"group": "so3", "weighting": "softmax"}),
    "lstm": Preset(EncoderDecoderLSTM, LSTMConfig, {}),
    "ram": Preset(RandomAccessMachine, RAMConfig, {}),
    "ram-tape": Preset(RandomAccessMachine, RAMConfig, {"tape": True}),
    "ntm": Preset(NeuralTuringMachine, NTMConfig, {}),
}


def model_names() -> list[str]:
    """Every name `build_model` accepts: the named configurations, then the registered groups."""
    return list(PRESETS) + [name for name in groups.names() if name not in PRESETS]


def _preset(name: str) -> Preset:
    if not isinstance(name, str):
        raise ConfigError(f"model name must be a string, got {name!r}")
    if name in PRESETS:
        return PRESETS[name]
    if name in groups.names():
        return Preset(LieAccessMachine, LANTMConfig, {"group": name})
    raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(model_names())}")


def model_config(name: str, **overrides):
    """The configuration `build_model(name, ...)` would use: the preset, then `overrides`, validated."""
    preset = _preset(name)
    config = replace(preset.config(**preset.settings), f"model {name!r}", **overrides)
    config.validate()
    return config


def build_model(name: str, vocab_size: int, **overrides) -> SequenceModel:
    """The model `name` (see `model_names()`) for a vocabulary of `vocab_size` symbols.

    `overrides` set fields of the model's configuration (`LANTMConfig`, `RAMConfig`, `LSTMConfig`,
    `NTMConfig`); an unknown model, an unknown field or an invalid value raises `ConfigError` naming it.
    """
    return _preset(name).model(vocab_size, model_config(name, **overrides))


def config_dict(config) -> dict:
    """A configuration as plain data, for checkpoints and logs."""
    return dataclasses.asdict(config)
