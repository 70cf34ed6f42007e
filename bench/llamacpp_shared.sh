#!/usr/bin/env bash
# One llama.cpp build for everything slimserve uses it for: llama-bench and llama-quantize (bench scripts, K-quant
# GGUF exports) and the shared libraries that llama-cpp-python loads (the llamacpp-cpu target). The Python package is
# installed without its own compile (LLAMA_BUILD=OFF) and pointed at these libraries, so the target and llama-bench
# run the very same build and their speeds can be compared. ~7 min on 2 cores (llama-cpp-python's own build: ~25).
#
# usage: bash bench/llamacpp_shared.sh [DIR]     (run inside the venv that has slimserve; DIR default
#                                                  ~/.cache/llamacpp-shared)
# then:  export LLAMA_CPP_LIB_PATH=DIR/build/bin SLIMSERVE_LLAMACPP_BIN=DIR/build/bin
# env:   LLAMACPP_CMAKE_ARGS  extra cmake flags, e.g. "-DCMAKE_C_FLAGS=-mno-amx-tile -DCMAKE_CXX_FLAGS=-mno-amx-tile"
#                             on a VM whose CPU advertises AMX but faults on its tile instructions
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac
DIR=${1:-$HOME/.cache/llamacpp-shared}
VER=0.3.36  # llama-cpp-python's pin in pyproject.toml / constraints.txt
HERE=$(cd "$(dirname "$0")/.." && pwd)
command -v cmake >/dev/null || { echo "error: cmake is needed (apt-get install cmake)" >&2; exit 2; }
python -c "import slimserve" 2>/dev/null || { echo "error: run inside the venv that has slimserve installed" >&2; exit 2; }
mkdir -p "$DIR" && cd "$DIR"
if [ ! -d "llama_cpp_python-$VER" ]; then
  pip download -q --no-deps --no-binary :all: -d . "llama-cpp-python==$VER"
  tar xzf "llama_cpp_python-$VER.tar.gz"
fi
SRC=$DIR/llama_cpp_python-$VER/vendor/llama.cpp
# shellcheck disable=SC2086  # LLAMACPP_CMAKE_ARGS is a list of flags
cmake -S "$SRC" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF ${LLAMACPP_CMAKE_ARGS:-} >build.log 2>&1
echo "building llama.cpp in $DIR/build (log: $DIR/build.log) ..."
cmake --build build -j "$(nproc)" --target llama llama-bench llama-quantize >>build.log 2>&1
CMAKE_ARGS="-DLLAMA_BUILD=OFF" pip install -q -c "$HERE/constraints.txt" "llama_cpp_python-$VER.tar.gz"
LLAMA_CPP_LIB_PATH=$DIR/build/bin python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
echo "export LLAMA_CPP_LIB_PATH=$DIR/build/bin SLIMSERVE_LLAMACPP_BIN=$DIR/build/bin"
