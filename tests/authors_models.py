"""The authors' models (LANTM, SLANTM, RAM, RAM/tape, the LSTM baseline), transliterated into plain PyTorch.

This is the oracle that `test_authors_graph.py` holds liemem's whole models against: one training example's
logits, loss and gradients, from the first input step to the end symbol. Sources, in harvardnlp/lie-access-memory:
`models/lantm.lua`, `models/slantm.lua`, `models/ram.lua` and `models/lstm.lua` (`_model`, `mix_keys`, `mem_step`,
`_get_read_weights`, `learnable_init_states`), `layers/lstm.lua`, the layers those call (`Normalize`,
`InvNormalize`, `PowSum`, `VAddTable`, `InnerProduct`, `CMulList`, `MixtureTable`, `Narrow`, `NarrowTable`), and
the loop of `fb.lua` (`fb.forward`, with their defaults
`blank_input_during_response` and `no_write_during_response`), with the options of their kept runs (`bound_act`
on, `act_interp` off, one read head, one memory). Every piece is written the way their module computes it, with
their constants; nothing here comes from liemem.

Parameters are kept in their layout: the LSTM layer's two linear maps with the gates ordered (forget, in, out,
transform), the controller's one output layer with its rows in the order of their transfer table, and the
learned initial state as the bias of their one-input linear layer (fed a zero, so its weight plays no part).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class Options:
    """The options of `options.lua` that shape the graph, at the values of their kept runs."""

    model: str  # "lantm", "slantm", "ram" or "lstm"
    weight_method: str  # "InvNormalize" or "SoftMax" (the Lie-access models)
    vocab_size: int
    key_dim: int = 2  # set to 3 for SLANTM, as `options.get_opt` does
    tape: bool = False  # RAM/tape
    wt_sharpening: bool = False  # RAM's sharpened read
    init_mem_length: int = 1  # raised to 2 for RAM/tape, as `options.get_opt` does
    num_lstm_layers: int = 1  # the LSTM baseline's depth (the memory models have one layer)
    rnn_size: int = 50
    embedding_size: int = 14
    mem_width: int = 20
    bias_gate_write: float = -10.0
    bias_gate_read: float = 0.0
    bias_gate_act_write: float = -10.0
    bias_init_mem_strength: float = -10.0
    angle_bound_bias: float = -5.0
    bound_act: bool = True  # SLANTM: the angle bound is learned (LANTM's kept runs all bound the translation)
    epsilon_read_weight: float = 1e-9
    # Where the read's epsilons go. Theirs: the kernel is L1-normalised, times the strengths, plus the 1e-9
    # floor, then `Normalize(1)` with its 1e-10. liemem's (docs/fidelity.md, L12 and L13): the kernel relative to
    # the nearest key, times the strengths, plus the floor, divided by the sum. The same weights but for where
    # those two constants act.
    epsilons: str = "theirs"

    def __post_init__(self):
        if self.model == "slantm":
            object.__setattr__(self, "key_dim", 3)
        if self.model == "ram" and self.tape and self.init_mem_length < 2:
            object.__setattr__(self, "init_mem_length", 2)

    @property
    def softmax(self) -> bool:
        return self.weight_method == "SoftMax"


def output_layout(opt: Options) -> list[tuple[str, int, str]]:
    """(name, rows, transfer) of the controller's output layer, in the order of their transfer table."""
    k, lantm = opt.key_dim, opt.model == "lantm"
    if opt.model == "lstm":
        return [("pred", opt.vocab_size, "linear")]
    if opt.model == "ram":
        linear = [("key_read", k), ("key_write", k)] + [("gate_link", 3)] * opt.tape + [("pred", opt.vocab_size)]
        layout = [(n, s, "linear") for n, s in linear] + [("write_vec", opt.mem_width, "tanh")]
        return layout + [("write_strength", 1, "sigmoid")] + [("sharpen_coef", 1, "softplus")] * opt.wt_sharpening
    moves = [("act_read", k), ("act_write", k)] if lantm else [("rot_axis_preread", 3), ("rot_axis_prewrite", 3)]
    linear = [("key_preread", k), ("key_prewrite", k), *moves, ("gate_read", 1), ("gate_write", 1)]
    linear += [("temperature", 1)] * opt.softmax + [("gate_act_write", 1), ("pred", opt.vocab_size)]
    tanh = ([] if lantm else [("rot_ang_preread", 1), ("rot_ang_prewrite", 1)]) + [("write_vec", opt.mem_width)]
    sigmoid = [("write_strength", 1), ("gate_act_read", 1), ("read_val2pred_coef", 1)]
    return (
        [(n, s, "linear") for n, s in linear]
        + [(n, s, "tanh") for n, s in tanh]
        + [(n, s, "sigmoid") for n, s in sigmoid]
    )


def initial_state_layout(opt: Options) -> list[tuple[str, int]]:
    """(name, entries) of the learned initial state (`learnable_init_states`), in their order."""
    k, w, r = opt.key_dim, opt.mem_width, opt.rnn_size
    layers = [(f"{name}.{layer}", r) for layer in range(1, opt.num_lstm_layers + 1) for name in ("lstm_c", "lstm_h")]
    if opt.model == "lstm":
        return layers
    slots = range(1, opt.init_mem_length + 1)
    layout = [("lstm_c.1", r), ("lstm_h.1", r), ("read_val", w)]
    layout += [(f"mem.{i}", w) for i in slots] + [(f"keys_.{i}", k) for i in slots]
    layout += [(f"mem_strength.{i}", 1) for i in slots]
    if opt.model == "ram":
        return layout + [("forward_keys", k), ("backward_keys", k)] * opt.tape
    layout += [("key_read", k), ("key_write", k)]
    if opt.model == "lantm":
        return [*layout, ("act_read", k), ("act_write", k)]
    layout += [("rot_axis_read", 3), ("rot_axis_write", 3)]
    if not opt.bound_act:
        return [*layout, ("rot_trig_read", 2), ("rot_trig_write", 2)]
    return [*layout, ("rot_ang_read", 1), ("rot_ang_write", 1), ("angle_bound_read", 1), ("angle_bound_write", 1)]


def parameter_shapes(opt: Options) -> dict[str, tuple[int, ...]]:
    """Every parameter the loss depends on, by name, with its shape."""
    e, w, r, v = opt.embedding_size, opt.mem_width, opt.rnn_size, opt.vocab_size
    total = sum(size for _, size, _ in output_layout(opt))
    first_input = e if opt.model == "lstm" else e + w
    layers = {}
    for layer in range(1, opt.num_lstm_layers + 1):
        layers[f"i2h.{layer}.weight"] = (4 * r, first_input if layer == 1 else r)
        layers |= {f"i2h.{layer}.bias": (4 * r,), f"h2h.{layer}.weight": (4 * r, r), f"h2h.{layer}.bias": (4 * r,)}
    if opt.model == "lstm":
        initial = sum(size for _, size in initial_state_layout(opt))
        return {"embedding": (v, e), **layers, "out.weight": (total, r), "out.bias": (total,), "init.bias": (initial,)}
    return {
        "embedding": (v, e),
        **layers,
        "out.weight": (total, r),
        "out.bias": (total,),
        "read2pred.weight": (v, w),
        "read2pred.bias": (v,),
        "init.bias": (sum(size for _, size in initial_state_layout(opt)),),
    }


# --- their layers --------------------------------------------------------------------------------------------


def normalize(x: torch.Tensor, p: float, eps: float = 1e-10) -> torch.Tensor:
    """`nn.Normalize(p, eps)` of their `layers/Normalize.lua`: x / (eps + sum_i |x_i|^p)^(1/p), per row."""
    return x / (x.abs().pow(p).sum(-1, keepdim=True) + eps).pow(1.0 / p)


def inv_normalize(d: torch.Tensor, p: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """`nn.InvNormalize(p)`: ((min_j d_j + eps) / (d_i + eps))^p, L1-normalised per row."""
    ratios = ((d.min(dim=-1, keepdim=True).values + eps) / (d + eps)).pow(p)
    return ratios / ratios.sum(-1, keepdim=True)


def lstm(params, opt: Options, x, prev_h, prev_c, layer: int = 1):
    """`LSTM` of `layers/lstm.lua`: two `LSTMGatesX` linear maps, gates (forget, in, out, transform)."""
    i2h, h2h = f"i2h.{layer}", f"h2h.{layer}"
    sums = F.linear(x, params[f"{i2h}.weight"], params[f"{i2h}.bias"]) + F.linear(
        prev_h, params[f"{h2h}.weight"], params[f"{h2h}.bias"]
    )
    n1, n2, n3, n4 = sums.view(-1, 4, opt.rnn_size).unbind(1)
    forget_gate, in_gate, out_gate = torch.sigmoid(n1), torch.sigmoid(n2), torch.sigmoid(n3)
    next_c = forget_gate * prev_c + in_gate * torch.tanh(n4)
    return out_gate * torch.tanh(next_c), next_c


def split_transfer(opt: Options, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """`split_transfer`: the output layer's columns by name, each through its transfer function."""
    transfers = {"linear": lambda t: t, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus}
    parts, start = {}, 0
    for name, size, transfer in output_layout(opt):
        parts[name] = transfers[transfer](outputs[:, start : start + size])
        start += size
    return parts


def mix(gate, key_t, key_tm1):
    """`_mix`: `MixtureTable` of (gate, 1 - gate) over (key_t, key_tm1)."""
    return gate * key_t + (1 - gate) * key_tm1


def read_weights(opt: Options, keys, strengths, query, temperature):
    """`_get_read_weights`: distances by `VAddTable(true)` and `PowSum(2, 3)`, then `InvNormalize(1)` or
    `SoftMax(-d / softplus(T))`, times the strengths (`CMulList`), plus 1e-9, `Normalize(1)`."""
    ds = (keys - query.unsqueeze(1)).pow(2).sum(-1)
    if opt.epsilons == "liemem":
        nearest = ds.min(dim=-1, keepdim=True).values
        kernel = (
            torch.exp(-(ds - nearest) / F.softplus(temperature)) if opt.softmax else (nearest + 1e-10) / (ds + 1e-10)
        )
        weights = strengths * kernel + opt.epsilon_read_weight
        return weights / weights.sum(-1, keepdim=True)
    if opt.softmax:
        weights = torch.softmax(-(ds / F.softplus(temperature)), dim=-1)
    else:
        weights = inv_normalize(ds)
    return normalize(strengths * weights + opt.epsilon_read_weight, p=1)


def ram_read_weights(opt: Options, keys, strengths, query, sharpen_coef):
    """`ram._get_read_weights`: `SoftMax` of the scores `InnerProduct(q, k_i)` (times gamma = 1 + softplus with
    `wt_sharpening`), times the strengths, plus 1e-9, `Normalize(1)`."""
    scores = (keys * query.unsqueeze(1)).sum(-1)
    if sharpen_coef is not None:
        scores = (sharpen_coef + 1) * scores
    if opt.epsilons == "liemem":
        weights = strengths * torch.exp(scores - scores.max(dim=-1, keepdim=True).values) + opt.epsilon_read_weight
        return weights / weights.sum(-1, keepdim=True)
    return normalize(strengths * torch.softmax(scores, dim=-1) + opt.epsilon_read_weight, p=1)


# --- one step of the graph (`_model`) ------------------------------------------------------------------------


class State(NamedTuple):
    """What one clone of their graph passes to the next: controller state, memory as lists, heads."""

    c: list[torch.Tensor]  # per layer
    h: list[torch.Tensor]
    read_val: torch.Tensor | None
    mem: list[torch.Tensor]
    keys: list[torch.Tensor]
    strengths: list[torch.Tensor]  # each [B, 1]
    key_read: torch.Tensor | None  # the Lie-access heads' positions
    key_write: torch.Tensor | None
    # previous actions (LANTM) or rotations (SLANTM), SLANTM's angle bounds, RAM/tape's neighbour keys
    moves: dict[str, torch.Tensor]


def initial_state(params, opt: Options, batch: int) -> State:
    """`learnable_init_states` run on their zero input: the bias of `nn.Linear(1, N)`, split and transferred."""
    parts, start = {}, 0
    for name, size in initial_state_layout(opt):
        parts[name] = params["init.bias"][start : start + size].expand(batch, size)
        start += size
    if opt.model == "lstm":
        layers = range(1, opt.num_lstm_layers + 1)
        c, h = [parts[f"lstm_c.{i}"] for i in layers], [parts[f"lstm_h.{i}"] for i in layers]
        return State(c, h, None, [], [], [], None, None, {})
    slots = range(1, opt.init_mem_length + 1)
    if opt.model == "ram":
        key_read = key_write = None
        moves = {name: parts[name] for name in ("forward_keys", "backward_keys") if name in parts}
    elif opt.model == "lantm":
        key_read, key_write = parts["key_read"], parts["key_write"]
        moves = {"act_read": normalize(parts["act_read"], 2, 1.0), "act_write": normalize(parts["act_write"], 2, 1.0)}
    else:
        key_read, key_write = normalize(parts["key_read"], 2), normalize(parts["key_write"], 2)
        moves = {}
        for head in ("read", "write"):
            moves[f"rot_axis_{head}"] = normalize(parts[f"rot_axis_{head}"], 2)
            if not opt.bound_act:
                moves[f"rot_trig_{head}"] = normalize(parts[f"rot_trig_{head}"], 2)
                continue
            bound = math.pi * torch.sigmoid(parts[f"angle_bound_{head}"] + opt.angle_bound_bias)
            angle = bound * torch.tanh(parts[f"rot_ang_{head}"])
            moves[f"rot_trig_{head}"] = torch.cat((torch.cos(angle), torch.sin(angle)), dim=1)
            moves[f"angle_bound_{head}"] = bound
    return State(
        c=[parts["lstm_c.1"]],
        h=[parts["lstm_h.1"]],
        read_val=torch.tanh(parts["read_val"]),
        mem=[torch.tanh(parts[f"mem.{i}"]) for i in slots],
        keys=[parts[f"keys_.{i}"] for i in slots],
        strengths=[torch.sigmoid(parts[f"mem_strength.{i}"] + opt.bias_init_mem_strength) for i in slots],
        key_read=key_read,
        key_write=key_write,
        moves=moves,
    )


def lantm_move(opt: Options, sp, state: State, head: str):
    """`lantm.mix_keys` for one head, with `bound_act` (`Normalize(2, 1)`) and `act_interp` off."""
    action = normalize(sp[f"act_{head}"], 2, 1.0)
    action = mix(sp[f"gate_act_{head}"], action, state.moves[f"act_{head}"])
    position = mix(sp[f"gate_{head}"], sp[f"key_pre{head}"], getattr(state, f"key_{head}")) + action
    return position, {f"act_{head}": action}


def slantm_move(opt: Options, sp, state: State, head: str):
    """`slantm.mix_keys` for one head: keys and axes through `Normalize(2)`, the angle tanh(z) (times the learned
    bound with `bound_act`), Rodrigues' formula on the mixed key."""
    axis = normalize(sp[f"rot_axis_pre{head}"], 2)
    angle = sp[f"rot_ang_pre{head}"]
    if opt.bound_act:
        angle = angle * state.moves[f"angle_bound_{head}"]
    trig = torch.cat((torch.cos(angle), torch.sin(angle)), dim=1)
    key = normalize(mix(sp[f"gate_{head}"], normalize(sp[f"key_pre{head}"], 2), getattr(state, f"key_{head}")), 2)
    gate_act = sp[f"gate_act_{head}"]
    axis = normalize(mix(gate_act, axis, state.moves[f"rot_axis_{head}"]), 2)
    trig = normalize(mix(gate_act, trig, state.moves[f"rot_trig_{head}"]), 2)
    cos, sin = trig[:, :1], trig[:, 1:]
    dot = (axis * key).sum(-1, keepdim=True)
    position = key * cos + torch.linalg.cross(axis, key, dim=-1) * sin + axis * (dot * (1 - cos))
    moves = {f"rot_axis_{head}": axis, f"rot_trig_{head}": trig}
    if opt.bound_act:
        moves[f"angle_bound_{head}"] = state.moves[f"angle_bound_{head}"]
    return position, moves


def ram_step(params, opt: Options, sp, state: State):
    """`ram._model` after the controller: the read key (with the tape, a `SoftMax(gate_link)` mix of it and the
    previous step's neighbour keys), the read, the write, the ungated prediction and, with the tape, the keys
    one slot after and before the read (`mem_step`: `Narrow` of the weights against `NarrowTable` of the keys)."""
    query = sp["key_read"]
    if opt.tape:
        links = torch.stack((query, state.moves["forward_keys"], state.moves["backward_keys"]), dim=1)
        query = (torch.softmax(sp["gate_link"], dim=-1).unsqueeze(-1) * links).sum(1)
    keys = torch.stack(state.keys, 1)
    weights = ram_read_weights(opt, keys, torch.cat(state.strengths, 1), query, sp.get("sharpen_coef"))
    read = (weights.unsqueeze(-1) * torch.stack(state.mem, 1)).sum(1)
    moves = {}
    if opt.tape:
        moves["forward_keys"] = (weights[:, :-1].unsqueeze(-1) * keys[:, 1:]).sum(1)
        moves["backward_keys"] = (weights[:, 1:].unsqueeze(-1) * keys[:, :-1]).sum(1)
    pred = sp["pred"] + F.linear(read, params["read2pred.weight"], params["read2pred.bias"])
    return read, sp["key_write"], None, None, moves, pred


def step(params, opt: Options, inp: torch.Tensor, state: State) -> tuple[State, torch.Tensor]:
    """One clone of their graph: controller, heads, read (before the write), write, prediction."""
    if opt.model == "lstm":  # `lstm._model`: the layers, then the output layer on the top one
        x, hs, cs = params["embedding"][inp], [], []
        for layer in range(opt.num_lstm_layers):
            x, c = lstm(params, opt, x, state.h[layer], state.c[layer], layer + 1)
            hs.append(x)
            cs.append(c)
        return state._replace(c=cs, h=hs), F.linear(x, params["out.weight"], params["out.bias"])
    x = torch.cat((params["embedding"][inp], state.read_val), dim=1)
    h, c = lstm(params, opt, x, state.h[0], state.c[0])
    sp = split_transfer(opt, F.linear(h, params["out.weight"], params["out.bias"]))
    if opt.model == "ram":
        read, key_written, key_read, key_write, moves, pred = ram_step(params, opt, sp, state)
    else:
        read, key_written, key_read, key_write, moves, pred = lie_access_step(params, opt, sp, state)
    new_state = State(
        c=[c],
        h=[h],
        read_val=read,
        mem=[*state.mem, sp["write_vec"]],
        keys=[*state.keys, key_written],
        strengths=[*state.strengths, sp["write_strength"]],
        key_read=key_read,
        key_write=key_write,
        moves=moves,
    )
    return new_state, pred


def lie_access_step(params, opt: Options, sp, state: State):
    """`lantm._model` and `slantm._model` after the controller: gates, both heads' moves, the read, the gated
    prediction."""
    sp["gate_write"] = torch.sigmoid(sp["gate_write"] + opt.bias_gate_write)
    sp["gate_read"] = torch.sigmoid(sp["gate_read"] + opt.bias_gate_read)
    # Without act_interp their code replaces the action gates by 0 * gate + 1.
    sp["gate_act_write"] = torch.sigmoid(sp["gate_act_write"] + opt.bias_gate_act_write) * 0 + 1
    sp["gate_act_read"] = torch.sigmoid(sp["gate_act_read"]) * 0 + 1
    move = lantm_move if opt.model == "lantm" else slantm_move
    key_read, read_moves = move(opt, sp, state, "read")
    key_write, write_moves = move(opt, sp, state, "write")
    weights = read_weights(
        opt, torch.stack(state.keys, 1), torch.cat(state.strengths, 1), key_read, sp.get("temperature")
    )
    read = (weights.unsqueeze(-1) * torch.stack(state.mem, 1)).sum(1)  # MixtureTable over the slot list
    pred = sp["pred"] + F.linear(read, params["read2pred.weight"], params["read2pred.bias"]) * sp["read_val2pred_coef"]
    return read, key_write, key_read, key_write, {**read_moves, **write_moves}, pred


# --- the loop of `fb.forward` --------------------------------------------------------------------------------


def forward(params, opt: Options, data: torch.Tensor, separator: int, end: int):
    """Run `data` `[time, batch]` (`^ x1 .. xk # y1 .. ym $`, one length for the batch) as `fb.forward` does.

    The step whose input is `#` begins the answer phase; every later answer step is fed `#` again; what an
    answer step writes is popped. The loss is `CrossEntropyCriterion` (a batch mean) summed over the answer
    steps, divided by their number as `train.feval` divides the gradient. Returns the answer steps' predictions
    `[batch, steps, vocab]` and the loss.
    """
    state = initial_state(params, opt, data.shape[1])
    predictions, losses = [], []
    answerphase, pos = False, 0
    while int(data[pos, 0]) != end:
        inp = torch.full_like(data[pos], separator) if answerphase else data[pos]
        if not answerphase:
            answerphase = int(data[pos, 0]) == separator
        state, pred = step(params, opt, inp, state)
        if answerphase:
            state = state._replace(mem=state.mem[:-1], keys=state.keys[:-1], strengths=state.strengths[:-1])
            predictions.append(pred)
            losses.append(F.cross_entropy(pred, data[pos + 1]))
        pos += 1
    return torch.stack(predictions, 1), torch.stack(losses).sum() / len(losses)
