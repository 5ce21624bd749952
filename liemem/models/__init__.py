"""The models: Lie-access machines (LANTM, SLANTM and any group) and the baselines (LSTM, RAM, RAM/tape, NTM)."""

from .base import SequenceModel
from .lantm import LANTMConfig, LieAccessMachine, LieAccessTrace
from .lstm import EncoderDecoderLSTM, LSTMConfig
from .ntm import NeuralTuringMachine, NTMConfig
from .ram import RAMConfig, RandomAccessMachine
from .trace import AccessTrace

__all__ = [
    "AccessTrace",
    "EncoderDecoderLSTM",
    "LANTMConfig",
    "LSTMConfig",
    "LieAccessMachine",
    "LieAccessTrace",
    "NTMConfig",
    "NeuralTuringMachine",
    "RAMConfig",
    "RandomAccessMachine",
    "SequenceModel",
]
