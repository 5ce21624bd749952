"""How the recurrence of an append-only memory model runs: the whole execution, below the models.

A model describes one time step (`LieAccessMachine._run` is that description, and the reference); the engine
runs whole sequences fast and differentiates them by hand. The layers, top to bottom:

- `plan`: `plan_for` decides, for a model, device, dtype and mode, which backend runs, which move the heads
  take and what is compiled; the switch `LIEMEM_ENGINE` forces a plan. The only place that decides.
- `recurrence`: the sequence as one autograd node, calling the backend the plan names.
- `tensor_ops` and `kernels`: the two hand-differentiated backends, with the same algorithm; they share their
  named buffers and epilogue (`buffers`) and the heads' Jacobians (`replay`).
- `cells`: the hand-written formulas of one step's LSTM cell and chordal read, also used one step at a time.
- `compiling` (torch.compile where it pays) and `native` (the C++ kernels, built once per machine).
"""

from __future__ import annotations

from .plan import SWITCH, EngineError, Plan, PlannedModel, compile_steps, forced, plan_for, plan_of
from .recurrence import run

__all__ = ["SWITCH", "EngineError", "Plan", "PlannedModel", "compile_steps", "forced", "plan_for", "plan_of", "run"]
