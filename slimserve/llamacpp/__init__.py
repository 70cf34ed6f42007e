"""GGUF artifacts and llama.cpp: the `export: {format: gguf}` step and the `llamacpp-cpu` bench target.

- config.py: the step's config and the GGUF types it knows (torch-free, so validating a recipe imports no torch);
- writer.py: a Hugging Face Llama state dict -> GGUF tensors and metadata (numpy + the `gguf` package);
- tools.py: finding llama.cpp's binaries (llama-quantize for the types gguf-py cannot round);
- steps.py: the export step (orchestration);
- runtime.py / targets.py: a Runner on llama-cpp-python and the `llamacpp-cpu` target.
"""
