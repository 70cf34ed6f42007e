"""Graph-assembly primitives for the fused decoder: unique names, initializers, and the weight-carrying nodes.

No architecture knowledge here: a projection is MatMul or MatMulNBits and the embedding Gather or
GatherBlockQuantized, whichever the weight plan returns; layers.py and graph.py compose them into a decoder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from .packing import NBitsWeight

MS = "com.microsoft"
EMBED = "model.embed_tokens"
TIED = object()  # plan result: reuse the float embedding table for a tied lm_head

# A weight plan decides per projection (name, weight, source nn.Linear modules) how to store it:
# None keeps a float MatMul, else the packed MatMulNBits weight.
WeightFn = Callable[[str, torch.Tensor, list], NBitsWeight | None]


class G:
    """Tiny graph-assembly helper: unique names, initializers, nodes."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(self, arr, dtype=np.int64) -> str:
        self._n += 1
        return self.init(f"const_{self._n}", np.asarray(arr, dtype=dtype))

    def op(self, op: str, inputs: list[str], n_out: int = 1, *, name: str, domain: str = "", **attrs) -> list[str]:
        outs = [f"{name}/out{i}" if n_out > 1 else f"{name}/out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs

    def op1(self, op: str, inputs: list[str], *, name: str, domain: str = "", **attrs) -> str:
        return self.op(op, inputs, 1, name=name, domain=domain, **attrs)[0]


def as_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def linear(g: G, x: str, name: str, w: torch.Tensor, sources: list, plan: WeightFn, accuracy_level: int) -> str:
    """x @ W.T as MatMul (float) or MatMulNBits (packed), chosen by the plan."""
    packed = plan(name, w.detach(), sources)
    if packed is TIED:  # tied and both float: one table on disk, transposed once at load (ORT folds it)
        wt = g.op1("Transpose", [f"{EMBED}.weight"], name=f"{name}/Transpose", perm=[1, 0])
        return g.op1("MatMul", [x, wt], name=f"{name}/MatMul")
    if packed is None:
        return g.op1("MatMul", [x, g.init(f"{name}.weight", as_np(w).T)], name=f"{name}/MatMul")
    ins = [x, g.init(f"{name}.qweight", packed.b), g.init(f"{name}.scales", packed.scales)]
    if packed.zero_points is not None:
        ins.append(g.init(f"{name}.qzeros", packed.zero_points))
    return g.op1(
        "MatMulNBits",
        ins,
        name=f"{name}/MatMulNBits",
        domain=MS,
        K=packed.k,
        N=packed.n,
        bits=packed.bits,
        block_size=packed.block_size,
        accuracy_level=accuracy_level,
    )


def embedding(g: G, embed, plan: WeightFn) -> str:
    """Gather (float) or GatherBlockQuantized (the plan packed the table; blocks must divide the hidden size)."""
    w = embed.weight.detach()
    packed = plan(EMBED, w, [embed])
    if packed is None:
        return g.op1("Gather", [g.init(f"{EMBED}.weight", as_np(w)), "input_ids"], name="embed/Gather")
    if packed.k % packed.block_size:
        raise ValueError("an embedding block size must divide the hidden size")
    v = packed.n
    ins = [g.init(f"{EMBED}.qweight", packed.b.reshape(v, -1)), "input_ids",
           g.init(f"{EMBED}.scales", packed.scales.reshape(v, -1))]  # fmt: skip
    if packed.zero_points is not None:
        ins.append(g.init(f"{EMBED}.qzeros", packed.zero_points.reshape(v, -1)))
    return g.op1(
        "GatherBlockQuantized", ins, name="embed/GatherBlockQuantized", domain=MS, bits=packed.bits,
        block_size=packed.block_size, gather_axis=0, quantize_axis=1,
    )  # fmt: skip
