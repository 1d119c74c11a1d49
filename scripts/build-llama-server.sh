#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` once, from the llama.cpp sources inside llama-cpp-python's source
# distribution (LLAMA_CPP_PYTHON_VERSION, which the Makefile pins; else the installed llama-cpp-python's version,
# so both run the same kernels), and put the binary at OUT. generator.backend = "llama_server" starts it;
# `make llama-server` runs this script.
#
# Usage: scripts/build-llama-server.sh PYTHON OUT
#   PYTHON  the venv's python (its pip downloads the sdist; its llama-cpp-python version is used)
#   OUT     where the binary goes, e.g. .venv/bin/llama-server
#
# GGML_NATIVE=OFF: the native build segfaults on this CPU (AMX kernel); OFF still enables AVX2/FMA/F16C.
# Static libraries, no web UI, no TLS, no curl: one self-contained binary that needs no network to build.
set -euo pipefail

PYTHON=$(realpath -s "$1")   # -s: a venv python is a symlink; resolving it leaves the venv
OUT=$(realpath -m "$2")
VERSION=${LLAMA_CPP_PYTHON_VERSION:-$("$PYTHON" -c 'from importlib.metadata import version; print(version("llama_cpp_python"))' 2>/dev/null || true)}
if [ -z "$VERSION" ]; then
    echo "llama-cpp-python is not installed in $PYTHON's environment and LLAMA_CPP_PYTHON_VERSION is unset (the Makefile sets it)" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "building llama-server from llama-cpp-python==$VERSION's llama.cpp sources in $WORK (a few minutes, once)"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
if ! command -v cmake >/dev/null; then   # no system cmake: a throwaway one from PyPI, not into the venv
    python3 -m venv "$WORK/tools" && "$WORK/tools/bin/pip" install -q cmake ninja
    PATH="$WORK/tools/bin:$PATH"
fi
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$WORK/cmake.log" \
    || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server -j "$(nproc)"
mkdir -p "$(dirname "$OUT")"
cp "$WORK/build/bin/llama-server" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"   # atomic: an interrupted build never leaves a half-written binary at OUT
"$OUT" --version 2>&1 | head -2
echo "llama-server: $OUT"
