"""MatMulNBits packing: exact round trips and agreement with ONNX Runtime's kernel."""

import numpy as np
import pytest
import torch

from slimserve.onnx.packing import pack_nbits, rtn_qparams, unpack_nbits, unpack_nibbles
from slimserve.quant.math import fake_quantize, sqnr_db


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("k,block", [(64, 32), (96, 64), (576 // 4, 128)])
def test_pack_roundtrip_is_exact(bits, symmetric, k, block):
    torch.manual_seed(0)
    w = torch.randn(24, k)
    qp = rtn_qparams(w, bits, block, symmetric)
    packed = pack_nbits(w, qp)
    n_blocks = -(-k // block)
    assert packed.b.shape == (24, n_blocks, block * bits // 8)
    assert packed.scales.shape == (24 * n_blocks,)
    assert (packed.zero_points is None) == symmetric
    # the unpacked weight is exactly the fake-quantized (padded) weight
    pad = torch.nn.functional.pad(w, (0, n_blocks * block - k))
    expected = fake_quantize(pad, qp)[:, :k]
    assert torch.equal(unpack_nbits(packed), expected)
    assert sqnr_db(w, unpack_nbits(packed)) > (15 if bits == 4 else 35)


def test_nibble_order_low_first():
    from slimserve.onnx.packing import _pack_nibbles

    u = np.array([[1, 2, 3, 4, 5]], np.uint8)
    p = _pack_nibbles(u)
    assert p.tolist() == [[0x21, 0x43, 0x05]]
    assert unpack_nibbles(p, 5).tolist() == u.tolist()


@pytest.mark.parametrize("symmetric", [True, False])
def test_matmulnbits_kernel_matches_dequantized_weight(symmetric, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(1)
    n, k, block = 40, 80, 32  # k not a multiple of the block: the last block is padded
    w = torch.randn(n, k)
    packed = pack_nbits(w, rtn_qparams(w, 4, block, symmetric))
    inits = [numpy_helper.from_array(packed.b, "B"), numpy_helper.from_array(packed.scales, "S")]
    ins = ["A", "B", "S"]
    if packed.zero_points is not None:
        inits.append(numpy_helper.from_array(packed.zero_points, "Z"))
        ins.append("Z")
    node = helper.make_node("MatMulNBits", ins, ["Y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block,
                            accuracy_level=0)  # fmt: skip
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [3, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, n])], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(3, k)
    y = sess.run(None, {"A": x.numpy()})[0]
    ref = x @ unpack_nbits(packed).T
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_float_zero_point_recovers_a_q4_1_grid():
    """Weights dequantized from llama.cpp Q4_1 (w = d * q + m, codes 0 and 15 present per block) pack exactly."""
    from slimserve.onnx.packing import pack_nbits_float_zero

    torch.manual_seed(0)
    n, k, bs = 16, 96, 32
    q = torch.randint(0, 16, (n, k // bs, bs)).float()
    q[..., 0], q[..., 1] = 0, 15
    w = (torch.rand(n, k // bs, 1) * 0.1 + 0.01) * q - torch.rand(n, k // bs, 1)
    w = w.reshape(n, k)
    packed = pack_nbits_float_zero(w, 4, bs)
    assert packed.zero_points.dtype == np.float32
    torch.testing.assert_close(unpack_nbits(packed), w, rtol=0, atol=1e-6)
