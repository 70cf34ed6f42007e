"""neuron-static: fixed-shape bucket graphs, padding, bucket refusal, and the optimum-neuron argument mapping."""

import pytest
import torch

pytest.importorskip("onnxruntime")

from slimserve.errors import UserError  # noqa: E402
from slimserve.onnx.neuron import neuron_export_args  # noqa: E402
from slimserve.onnx.steps import StaticExportConfig  # noqa: E402
from slimserve.steps import StepContext  # noqa: E402
from tests._onnx_helpers import hf_greedy, rel_err, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from slimserve.onnx.steps import apply_static

    d = tmp_path_factory.mktemp("static")
    model = tiny_model()
    ctx = StepContext(base_dir=d, work_dir=d, tokenizer=None, field="variants[0].steps[0].export")
    cfg = StaticExportConfig(batch_sizes=[1, 2], sequence_lengths=[32, 64])
    apply_static(model, cfg, ctx)
    return model, d, ctx


def test_static_graphs_have_no_symbolic_dims(built):
    import onnx

    from slimserve.onnx.graph import symbolic_dims

    _, d, ctx = built
    assert ctx.artifact_format == "onnx-static"
    graphs = sorted((d / "static").glob("*.onnx"))
    assert len(graphs) == 2 * 2 * 3  # batches x sequences x (prefill, decode, score)
    for g in graphs:
        m = onnx.load(str(g), load_external_data=False)
        assert symbolic_dims(m) == [], g.name
    # all graphs share one weights file
    assert [p.name for p in (d / "static").iterdir() if not p.name.endswith((".onnx", ".json"))] == ["weights.data"]


def test_padded_static_generation_matches_hf(built):
    from slimserve.onnx.static import StaticRunner

    model, d, _ = built
    runner = StaticRunner(d, None, threads=1)
    ids = torch.randint(3, 256, (1, 11), generator=torch.Generator().manual_seed(2))
    res = runner.generate(ids, 15)  # 26 tokens: bucket s=32, prompt padded from 11 to 32
    assert runner.last_bucket == {**runner.last_bucket, "batch": 1, "sequence": 32}
    assert torch.equal(res.tokens, hf_greedy(model, ids, 15))
    # batch 1 request in a batch-2 bucket is padded with a copy row; a longer request moves to s=64
    res = runner.generate(ids, 40)
    assert runner.last_bucket["sequence"] == 64
    assert torch.equal(res.tokens, hf_greedy(model, ids, 40))


def test_static_logits_match_pytorch(built):
    from slimserve.onnx.static import StaticRunner

    model, d, _ = built
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = model(ids).logits
    assert rel_err(StaticRunner(d, None, threads=1).logits(ids), ref) < 1e-3


def test_prompt_longer_than_largest_bucket_is_refused(built):
    from slimserve.onnx.static import StaticRunner

    runner = StaticRunner(built[1], None, threads=1)
    with pytest.raises(UserError, match=r"60 \+ .*64|> largest bucket sequence length 64") as e:
        runner.generate(torch.zeros(1, 60, dtype=torch.long), 10)
    assert "onnx-cpu" in str(e.value) and "b2xs64" in str(e.value)
    with pytest.raises(UserError, match="batch 3 > largest bucket batch 2"):
        runner.generate(torch.zeros(3, 4, dtype=torch.long), 2)


def test_bucket_config_validation():
    with pytest.raises(ValueError, match="distinct positive"):
        StaticExportConfig(sequence_lengths=[128, 128])
    with pytest.raises(ValueError, match="int8-dynamic"):
        StaticExportConfig(weights="int8-dynamic")


def test_neuron_argument_mapping_legacy_and_nxd():
    cfg = StaticExportConfig(batch_sizes=[4, 1], sequence_lengths=[2048, 128], auto_cast_type="fp16", num_cores=2)
    legacy = neuron_export_args(cfg, "/m", "/out", style="legacy")
    assert len(legacy) == 4
    assert legacy[0] == [
        "optimum-cli", "export", "neuron", "--model", "/m", "--task", "text-generation", "--batch_size", "1",
        "--sequence_length", "128", "--auto_cast_type", "fp16", "--num_cores", "2", "/out/b1_s128",
    ]  # fmt: skip
    assert legacy[-1][legacy[-1].index("--batch_size") + 1] == "4"
    assert legacy[-1][-1] == "/out/b4_s2048"
    nxd = neuron_export_args(cfg, "/m", "/out", style="nxd")
    assert nxd[0][nxd[0].index("--torch_dtype") + 1] == "float16"
    assert nxd[0][nxd[0].index("--tensor_parallel_size") + 1] == "2"
    assert "--auto_cast_type" not in nxd[0]
    with pytest.raises(UserError, match="style"):
        neuron_export_args(cfg, "/m", "/out", style="v3")


def test_neuron_export_refuses_without_device(tmp_path):
    from slimserve.onnx.neuron import export_neuron, neuron_unavailable

    why = neuron_unavailable()
    if why is None:
        pytest.skip("a Neuron host: the real export is possible here")
    with pytest.raises(UserError, match="cannot compile for Neuron"):
        export_neuron(StaticExportConfig(), tmp_path, tmp_path / "out")
