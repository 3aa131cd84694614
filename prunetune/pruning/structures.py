"""Structures that are pruned whole: attention heads, MLP neurons, blocks, conv channels.

A :class:`StructureUnit` is one thing an allocation gives a fraction to (one block's
attention, one block's MLP, all blocks, one conv layer's channels). It owns ``count``
equal structures and the parameter slices each structure occupies, in the *stored*
layout of every tensor, so masking (zeroing) and export (cutting) read the same map.

Why each slice is there:

- heads: a structure is one key/value group (the kv head plus the query heads that share
  it; with plain multi-head attention, one head). Its q/k/v rows and biases produce it,
  its columns of the output projection read it. Cutting whole kv groups keeps every
  block's query-per-kv ratio, so grouped-query attention still lines up.
- neurons: the row (and bias) in up and gate, the column in down.
- channels: a conv's output filter and bias, its BatchNorm entries (running statistics
  are cut on export but never zeroed), and the input slice of the next conv or of the
  Linear after a channel-major flatten.
- blocks: a whole transformer block, skipped through its residual: masked by a forward
  hook that hands the block's input through, removed from the ModuleList on export.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from prunetune.pruning.layers import discover_layers
from prunetune.spaces.space import PrunableLayer

STRUCTURE_KINDS = ("heads", "neurons", "blocks", "channels")


@dataclass(frozen=True)
class Slice:
    """Entries of one tensor that belong to structures: structure ``j`` occupies
    ``[offset + j * width, offset + (j + 1) * width)`` along ``dim`` of ``tensor``.

    ``zero`` is False for tensors cut on export but left alone when masking (BatchNorm
    running statistics: with γ = β = 0 the channel's output is zero whatever they hold).
    """

    tensor: str
    dim: int
    offset: int
    width: int
    zero: bool = True

    def index(self, structures: list[int]) -> list[int]:
        return [self.offset + j * self.width + i for j in structures for i in range(self.width)]


@dataclass(frozen=True)
class StructureUnit:
    """One allocation entry over ``count`` interchangeable structures.

    Attributes:
        name: a module name (the attention/MLP parent, the conv, or the block list).
        kind: heads, neurons, blocks or channels.
        count: structures in the unit (kv groups for heads).
        slices: where each structure lives (empty for blocks).
        params_per_structure: parameters one structure holds (biases and BN included).
        block: transformer block index, or -1.
        heads_per_structure: query heads per kv group (heads only).
        attrs: ``(module, attribute, per_structure)`` integer attributes that scale
            with the kept count and must be rewritten on export (e.g. BERT's
            ``num_attention_heads``).
        blocks: for kind "blocks", the names of the block modules in order.
    """

    name: str
    kind: str
    count: int
    slices: tuple[Slice, ...]
    params_per_structure: int
    block: int = -1
    heads_per_structure: int = 1
    attrs: tuple[tuple[str, str, int], ...] = ()
    blocks: tuple[str, ...] = field(default=())

    def as_layer(self) -> PrunableLayer:
        """The unit as a search-space entry: ``rows`` structures of ``cols`` parameters,
        so its ``numel`` is the parameters a sparsity of 1 would remove."""
        return PrunableLayer(self.name, self.count, self.params_per_structure, False, self.block, self.kind)


def _param_count(model: nn.Module, slices: tuple[Slice, ...]) -> int:
    params = dict(model.named_parameters())
    total = 0
    for s in slices:
        if s.tensor in params:
            t = params[s.tensor]
            total += t.numel() // t.shape[s.dim] * s.width
    return total


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _linear_slices(model: nn.Module, layer: PrunableLayer, axis: str, offset: int, width: int) -> list[Slice]:
    """Slices of a Linear/Conv1D along its output (``axis="out"``) or input features.

    A Linear stores ``(out, in)``; a Conv1D stores ``(in, out)``; a bias runs along out.
    """
    module = model.get_submodule(layer.name)
    if axis == "out":
        out = [Slice(f"{layer.name}.weight", 1 if layer.transposed else 0, offset, width)]
        if getattr(module, "bias", None) is not None:
            out.append(Slice(f"{layer.name}.bias", 0, offset, width))
        return out
    return [Slice(f"{layer.name}.weight", 0 if layer.transposed else 1, offset, width)]


def _by_block(layers: list[PrunableLayer]) -> dict[int, dict[str, list[PrunableLayer]]]:
    blocks: dict[int, dict[str, list[PrunableLayer]]] = {}
    for layer in layers:
        if layer.block >= 0:
            blocks.setdefault(layer.block, {}).setdefault(layer.kind, []).append(layer)
    return blocks


def _head_dim(model: nn.Module, layer_name: str, block: int) -> int:
    module = model.get_submodule(_parent(layer_name))
    for attr in ("head_dim", "attention_head_size"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        f"granularity 'heads': cannot find the head size of the attention in block {block} "
        f"({_parent(layer_name)!r} has no head_dim/attention_head_size)"
    )


def head_units(model: nn.Module, layers: list[PrunableLayer]) -> list[StructureUnit]:
    units = []
    for block, kinds in sorted(_by_block(layers).items()):
        if "o" not in kinds or not ({"q", "k", "v"} <= kinds.keys() or "qkv" in kinds):
            continue
        o = kinds["o"][0]
        if "qkv" in kinds:  # GPT-2 style fused c_attn: q, k, v side by side along out
            qkv = kinds["qkv"][0]
            d = _head_dim(model, qkv.name, block)
            hidden = qkv.rows // 3
            nh = nkv = hidden // d
            slices = [s for i in range(3) for s in _linear_slices(model, qkv, "out", i * hidden, d)]
            attn = _parent(qkv.name)
            attrs: tuple[tuple[str, str, int], ...] = ((attn, "num_heads", 1), (attn, "split_size", d))
        else:
            q, k, v = kinds["q"][0], kinds["k"][0], kinds["v"][0]
            d = _head_dim(model, q.name, block)
            nh, nkv = q.rows // d, k.rows // d
            if nkv == 0 or nh % nkv or v.rows != k.rows:
                raise ValueError(
                    f"granularity 'heads': block {block} has {nh} query heads and {nkv} key/value "
                    "heads; query heads must be a multiple of key/value heads"
                )
            g = nh // nkv
            slices = _linear_slices(model, q, "out", 0, g * d)
            slices += _linear_slices(model, k, "out", 0, d) + _linear_slices(model, v, "out", 0, d)
            attn = _parent(q.name)
            attrs = ((attn, "num_attention_heads", g), (attn, "all_head_size", g * d))
        g = nh // nkv
        slices += _linear_slices(model, o, "in", 0, g * d)
        sl = tuple(slices)
        name = _parent(o.name) if "qkv" in kinds else _common_prefix(o.name, attn)
        units.append(StructureUnit(name, "heads", nkv, sl, _param_count(model, sl), block, g, attrs))
    if not units:
        raise ValueError("granularity 'heads': found no attention (q/k/v or fused qkv with an output projection)")
    return units


def neuron_units(model: nn.Module, layers: list[PrunableLayer]) -> list[StructureUnit]:
    units = []
    for block, kinds in sorted(_by_block(layers).items()):
        if "up" not in kinds or "down" not in kinds:
            continue
        up, down = kinds["up"][0], kinds["down"][0]
        slices = _linear_slices(model, up, "out", 0, 1)
        if "gate" in kinds:
            slices += _linear_slices(model, kinds["gate"][0], "out", 0, 1)
        slices += _linear_slices(model, down, "in", 0, 1)
        sl = tuple(slices)
        name = _parent(up.name)  # BERT: "...intermediate"; Llama/GPT-2: "...mlp"
        units.append(StructureUnit(name, "neurons", up.rows, sl, _param_count(model, sl), block))
    if not units:
        raise ValueError("granularity 'neurons': found no MLP (an up projection with its down projection)")
    return units


_BLOCK_LIST = re.compile(r"(^|\.)(layer|layers|h|blocks|block)$")


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList that holds the transformer blocks."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and _BLOCK_LIST.search(name) and len(module) > 0:
            return name, module
    raise ValueError("granularity 'blocks': found no ModuleList of blocks (named layer/layers/h/blocks)")


def block_units(model: nn.Module) -> list[StructureUnit]:
    name, blocks = block_list(model)
    sizes = {sum(p.numel() for p in b.parameters()) for b in blocks}
    names = tuple(f"{name}.{i}" for i in range(len(blocks)))
    return [StructureUnit(name, "blocks", len(blocks), (), max(sizes), -1, blocks=names)]


def channel_units(model: nn.Module) -> list[StructureUnit]:
    """Conv2d output channels with their BatchNorm and the next layer's input slice.

    Assumes a sequential network (each conv feeds the next conv, the last conv feeds the
    first Linear after it through a channel-major flatten or a global pool), which is
    what we can check from module order; depthwise/grouped convs are not handled.
    """
    mods = list(model.named_modules())
    convs = [(i, n, m) for i, (n, m) in enumerate(mods) if isinstance(m, nn.Conv2d)]
    units = []
    for c, (i, name, conv) in enumerate(convs):
        if conv.groups != 1:
            raise ValueError(f"granularity 'channels': conv {name!r} is grouped (groups={conv.groups}); not supported")
        slices = [Slice(f"{name}.weight", 0, 0, 1)]
        if conv.bias is not None:
            slices.append(Slice(f"{name}.bias", 0, 0, 1))
        nxt = convs[c + 1][0] if c + 1 < len(convs) else len(mods)
        for n, m in mods[i + 1 : nxt]:
            if isinstance(m, nn.BatchNorm2d) and m.num_features == conv.out_channels:
                slices += [Slice(f"{n}.weight", 0, 0, 1), Slice(f"{n}.bias", 0, 0, 1)]
                slices += [Slice(f"{n}.running_mean", 0, 0, 1, False), Slice(f"{n}.running_var", 0, 0, 1, False)]
                break
        consumer = None
        if c + 1 < len(convs):
            n2, m2 = convs[c + 1][1], convs[c + 1][2]
            if m2.in_channels == conv.out_channels and m2.groups == 1:
                consumer = Slice(f"{n2}.weight", 1, 0, 1)
        else:
            for n2, m2 in mods[i + 1 :]:
                if isinstance(m2, nn.Linear):
                    if m2.in_features % conv.out_channels == 0:
                        consumer = Slice(f"{n2}.weight", 1, 0, m2.in_features // conv.out_channels)
                    break
        if consumer is None:
            raise ValueError(
                f"granularity 'channels': cannot tell which layer reads the channels of conv {name!r}; "
                "only sequential conv stacks (conv -> [BatchNorm] -> ... -> conv or Linear) are supported"
            )
        sl = (*slices, consumer)
        units.append(StructureUnit(name, "channels", conv.out_channels, sl, _param_count(model, sl)))
    if not units:
        raise ValueError("granularity 'channels': the model has no Conv2d")
    return units


def _common_prefix(a: str, b: str) -> str:
    pa, pb = a.split("."), b.split(".")
    out = []
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        out.append(x)
    return ".".join(out)


def find_units(
    model: nn.Module, kinds: tuple[str, ...], layers: list[PrunableLayer] | None = None
) -> list[StructureUnit]:
    """Structure units of ``kinds`` (a subset of :data:`STRUCTURE_KINDS`), in model order."""
    for kind in kinds:
        if kind not in STRUCTURE_KINDS:
            raise ValueError(f"structure kind {kind!r} is unknown; allowed: {', '.join(STRUCTURE_KINDS)}")
    units: list[StructureUnit] = []
    if "heads" in kinds or "neurons" in kinds:
        found = layers if layers is not None else discover_layers(model)
        if "heads" in kinds:
            units += head_units(model, found)
        if "neurons" in kinds:
            units += neuron_units(model, found)
        units.sort(key=lambda u: (u.block, STRUCTURE_KINDS.index(u.kind)))
    if "blocks" in kinds:
        units += block_units(model)
    if "channels" in kinds:
        units += channel_units(model)
    return units
