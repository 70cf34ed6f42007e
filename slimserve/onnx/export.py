"""Write an ONNX decoder directory: the fused slimserve graph (default) or optimum-onnx's stock export.

Both leave ``model.onnx`` (+ ``model.onnx_data``), ``config.json`` and ``generation_config.json`` so the directory
also loads with ``optimum.onnxruntime.ORTModelForCausalLM.from_pretrained(dir)`` without slimserve.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DependencyError, UserError

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"


def save_model(model_proto, out_dir: Path, name: str = MODEL_FILE, data: str | None = None) -> Path:
    """Save with all weights in one external data file next to the graph."""
    import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    (out_dir / (data or name + "_data")).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save(
        model_proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data or (name + "_data"),
        size_threshold=1024,
    )
    return path


def write_hf_sidecars(model, out_dir: Path) -> None:
    """config.json / generation_config.json so optimum (and humans) know what the graph is."""
    model.config.save_pretrained(out_dir)
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out_dir)


def export_fused(model, out_dir: Path, plan, *, accuracy_level: int = 4) -> Path:
    """The fused GQA/MatMulNBits graph of `model` (weights as they are) into out_dir/model.onnx."""
    from .graph import build_decoder

    path = save_model(build_decoder(model, plan, accuracy_level=accuracy_level), out_dir, MODEL_FILE, DATA_FILE)
    write_hf_sidecars(model, out_dir)
    return path


OPTIMUM_TASK = "text-generation-with-past"


def optimum_model_types() -> list[str]:
    """The model types optimum-onnx (as installed) exports for `text-generation-with-past`."""
    import optimum.exporters.onnx.model_configs  # noqa: F401 (registers the configs with the TasksManager)
    from optimum.exporters.tasks import TasksManager

    return sorted(TasksManager.get_supported_model_type_for_task(OPTIMUM_TASK, exporter="onnx"))


def export_optimum(model, out_dir: Path, *, opset: int = 18) -> Path:
    """optimum-onnx's `text-generation-with-past` export of the in-memory model (so earlier steps are kept)."""
    try:
        from optimum.exporters.onnx import onnx_export_from_model
    except ImportError as e:
        raise DependencyError("optimum-onnx", "the optimum ONNX export") from e
    from .layers import SUPPORTED_MODEL_TYPES

    mt = getattr(model.config, "model_type", "?")
    supported = optimum_model_types()
    if mt not in supported and mt.replace("_", "-") not in supported:
        raise UserError(
            f"optimum-onnx does not export model_type '{mt}' for {OPTIMUM_TASK}",
            field="export.graph",
            allowed=supported,
            hint=f"graph: fused covers {', '.join(SUPPORTED_MODEL_TYPES)}; others need a newer optimum-onnx",
        )
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        try:
            onnx_export_from_model(model, Path(tmp), task=OPTIMUM_TASK, opset=opset, do_validation=False)
        except (ValueError, KeyError) as e:
            raise UserError(f"optimum-onnx cannot export this model: {e}", field="export.graph") from e
        out_dir.mkdir(parents=True, exist_ok=True)
        for f in Path(tmp).iterdir():
            shutil.move(str(f), out_dir / f.name)
    return out_dir / MODEL_FILE


def untie_lm_head(model_proto) -> str | None:
    """Give a MatMul whose weight is Transpose(initializer) (tied lm_head) its own transposed initializer.

    The stock MatMulNBits quantizer only handles a constant B input; returns the new initializer's name or None.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model_proto.graph.initializer}
    producers = {o: n for n in model_proto.graph.node for o in n.output}
    for node in model_proto.graph.node:
        if node.op_type != "MatMul":
            continue
        src = producers.get(node.input[1])
        if src is None or src.op_type != "Transpose" or src.input[0] not in inits:
            continue
        w = numpy_helper.to_array(inits[src.input[0]])
        perm = next((list(a.ints) for a in src.attribute if a.name == "perm"), None)
        wt = np.ascontiguousarray(w.transpose(perm) if perm else w.T)
        name = "lm_head.weight.untied"
        model_proto.graph.initializer.append(numpy_helper.from_array(wt, name))
        node.input[1] = name
        return name
    return None


def lm_head_node(model_proto) -> str | None:
    """Name of the MatMul that writes the graph's `logits` output (optimum's lm_head), if there is one."""
    return next((n.name for n in model_proto.graph.node if n.op_type == "MatMul" and "logits" in n.output), None)


def _nbits_pass(model_proto, *, bits: int, block_size: int, symmetric: bool, accuracy_level: int, **select):
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ImportError as e:
        raise DependencyError("onnx-ir", "ONNX Runtime's MatMulNBits quantizer") from e
    qcfg = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=symmetric, accuracy_level=accuracy_level, bits=bits
    )
    q = MatMulNBitsQuantizer(model_proto, algo_config=qcfg, **select)
    q.process()
    return q.model.model


def quantize_optimum_nbits(
    path: Path, *, bits: int, block_size: int, symmetric: bool, accuracy_level: int, head_bits: int | None = None
) -> dict[str, dict]:
    """MatMulNBits over a stock optimum graph: every MatMul at `bits`, the lm_head (untied first) at head_bits
    (symmetric when 8, like the fused graph's), or kept float when head_bits is None; {node name: its grid}."""
    import onnx

    model = onnx.load(str(path))
    untie_lm_head(model)
    head = lm_head_node(model)
    grid = {"block_size": block_size, "grid": "rtn"}
    out = _nbits_pass(model, bits=bits, block_size=block_size, symmetric=symmetric, accuracy_level=accuracy_level,
                      nodes_to_exclude=[head] if head else [])  # fmt: skip
    layers = {
        n.name: {"bits": bits, "symmetric": symmetric, **grid} for n in out.graph.node if n.op_type == "MatMulNBits"
    }
    if head and head_bits is not None:
        sym = symmetric or head_bits == 8
        out = _nbits_pass(out, bits=head_bits, block_size=block_size, symmetric=sym, accuracy_level=accuracy_level,
                          nodes_to_include=[head])  # fmt: skip
        layers.update({n.name: {"bits": head_bits, "symmetric": sym, **grid} for n in out.graph.node
                       if n.op_type == "MatMulNBits" and n.name not in layers})  # fmt: skip
    data = path.with_name(path.name + "_data")
    if data.exists():
        data.unlink()
    save_model(out, path.parent, path.name, data.name)
    return layers
