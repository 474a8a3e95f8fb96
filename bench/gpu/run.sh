#!/bin/bash
# SPDX-License-Identifier: MIT
# On a machine with an NVIDIA GPU and nothing reachable (CUDA, cmake, python3 with numpy):
# builds llama-server and llama-quantize with CUDA from STAGE/llama.cpp.tar.gz, writes the
# 7B-shaped random-weight models (F16, and Q4_K_M quantized from it), and runs gpubench.py
# with llmd and llmctl from STAGE/llmd/bin. STAGE is what bench/gpu/prepare.sh made.
#
# Usage: bench/gpu/run.sh STAGE [GPUBENCH ARGS...]
#   GPUBENCH_WORK   where to build and write models (default /tmp/gpubench; 30 GB free);
#                   a build or a model already there from the same source is used again
#   OUT             where the results go (default $GPUBENCH_WORK/out): env.txt, build.log,
#                   bench.log, results.md, llmd-logs.tar.gz
#   LLAMA_SERVER, LLAMA_QUANTIZE   use these instead of building (a CPU try-out)
#   GPUBENCH_SHAPE  7b (default) or tiny
#   GPUBENCH_LIMIT  seconds from the start by which the measuring must end (default 560): a
#                   part that would not end in time is not begun (the device tool's calls end
#                   at 600 s)
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
stage=$(cd "$1" && pwd)
shift
here=$(cd "$(dirname "$0")" && pwd)
work=${GPUBENCH_WORK:-/tmp/gpubench}
out=${OUT:-$work/out}
shape=${GPUBENCH_SHAPE:-7b}
jobs=$(nproc)
mkdir -p "$work/models" "$out"
t_start=$(date +%s)
stamp() { echo "[$(($(date +%s) - t_start)) s] $*"; }

{
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "host: $(uname -r), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
        nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1 || true
        echo "nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [^,]*' || echo none)"
        echo "cmake: $(cmake --version 2>/dev/null | head -n 1)"
        echo "llmd: $(cat "$stage/llmd/VERSION")"
        tar -xzOf "$stage/llama.cpp.tar.gz" llama.cpp/BUILD_INFO | sed 's/^/llama.cpp /'
} | tee "$out/env.txt"

# --- llama-server and llama-quantize ---
if [ -z "${LLAMA_SERVER:-}" ]; then
        src=$work/llama.cpp
        if ! cmp -s <(tar -xzOf "$stage/llama.cpp.tar.gz" llama.cpp/BUILD_INFO) "$src/BUILD_INFO" 2>/dev/null; then
                rm -rf "$src" "$work/build"
                tar -xzf "$stage/llama.cpp.tar.gz" -C "$work"
        fi
        commit=$(sed -n 's/^commit=//p' "$src/BUILD_INFO")
        number=$(sed -n 's/^number=//p' "$src/BUILD_INFO")
        gen=()
        command -v ninja >/dev/null && gen=(-G Ninja)
        stamp "building llama.cpp $number (${commit:0:9}) with CUDA, $jobs jobs"
        # The F16 model is written meanwhile: python and the disk, beside the compilers.
        if [ ! -s "$work/models/f16-$shape.gguf" ]; then
                (PYTHONPATH=$src/gguf-py python3 "$here/make-models.py" --shape "$shape" \
                        "$work/models/f16-$shape.gguf.tmp" >"$out/models.log" 2>&1 &&
                 mv "$work/models/f16-$shape.gguf.tmp" "$work/models/f16-$shape.gguf") &
                models_pid=$!
        fi
        {
                cmake -S "$src" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
                        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF \
                        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
                        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
                        -DLLAMA_BUILD_NUMBER="$number" -DLLAMA_BUILD_COMMIT="${commit:0:9}"
                cmake --build "$work/build" --target llama-server llama-quantize -j "$jobs"
        } >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
        stamp "built"
        LLAMA_SERVER=$work/build/bin/llama-server
        LLAMA_QUANTIZE=$work/build/bin/llama-quantize
fi
"$LLAMA_SERVER" --version 2>&1 | grep -i -E 'version|built' | tee -a "$out/env.txt" || true

# --- the models ---
f16=$work/models/f16-$shape.gguf
q4=$work/models/q4km-$shape.gguf
if [ -n "${models_pid:-}" ]; then
        wait "$models_pid" || { cat "$out/models.log"; exit 1; }
elif [ ! -s "$f16" ]; then
        PYTHONPATH=${GGUF_PY:-$work/llama.cpp/gguf-py} python3 "$here/make-models.py" --shape "$shape" "$f16.tmp"
        mv "$f16.tmp" "$f16"
fi
if [ ! -s "$q4" ]; then
        "$LLAMA_QUANTIZE" "$f16" "$q4.tmp" Q4_K_M "$jobs" >"$out/quantize.log" 2>&1 ||
                { tail -n 20 "$out/quantize.log"; exit 1; }
        mv "$q4.tmp" "$q4"
fi
stamp "models: $(stat -c '%n %s' "$f16" "$q4" | awk '{ printf "%s %.2f GB  ", $1, $2 / 1e9 }')"

# --- the benchmark ---
rc=0
python3 -u "$here/gpubench.py" --bin "$stage/llmd/bin" --llama-server "$LLAMA_SERVER" \
        --f16 "$f16" --q4 "$q4" --work "$work/bench" --out "$out/results.md" \
        --deadline $((t_start + ${GPUBENCH_LIMIT:-560})) "$@" \
        2>&1 | tee "$out/bench.log" || rc=$?
tar -czf "$out/llmd-logs.tar.gz" -C "$work/bench" --wildcards '*/llmd.log' 2>/dev/null || true
stamp "done (exit $rc)"
exit $rc
