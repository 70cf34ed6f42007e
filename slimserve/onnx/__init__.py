"""ONNX Runtime artifacts and targets.

Modules: ``graph`` builds the fused decoder of Llama, Mistral and Gemma 3 (GroupQueryAttention with an in-place KV
cache, SkipSimplifiedLayerNormalization, MatMulNBits / GatherBlockQuantized int4/int8) from ``layers`` (each family's
differences as data, one layer body per family) and ``nodes`` (the weight-carrying nodes), ``packing`` is the pure
MatMulNBits bit packing, ``quantize`` decides per projection how it is stored, ``export`` writes the directory (fused
graph or stock optimum-onnx), ``runtime`` is the IO-binding decode loop (OrtRunner), ``static`` the Inferentia-style
bucket graphs and their runner, ``neuron`` the optimum-neuron argument mapping, ``steps`` the recipe steps,
``targets`` the benchmark targets (onnx-cpu, onnx-cuda, neuron-static) and ``loader`` the artifact loaders.

Not verified on this project's machines: onnx-cuda (no GPU; the fused graph is float32 and ONNX Runtime's CUDA
GroupQueryAttention takes float16/bfloat16 only, so that target refuses fused float32 graphs), and the real Neuron
compile (``neuron.export_neuron``; no optimum-neuron or Inferentia device) - only its argument mapping is tested.
"""
