#!/bin/sh
# SPDX-License-Identifier: MIT
# Stages what bench/gpu/run.sh needs on a GPU machine that reaches nothing, into STAGE (default:
# .gpu/ at the top of the main checkout, which git is told to ignore):
#
#   STAGE/llama.cpp.tar.gz   llama.cpp's source, trimmed to what llama-server and llama-quantize
#                            need, with gguf-py and a BUILD_INFO file (commit, build number)
#   STAGE/llmd/{bin,lib}     llmd and llmctl from a meson build of this tree, with every shared
#                            library they load but the C library's own; RPATH $ORIGIN/../lib on
#                            the programs and $ORIGIN on the libraries (a RUNPATH would not cover
#                            the libraries' own dependencies)
#   STAGE/bench/gpu/, STAGE/tests/models/make-tiny-models.py
#                            a copy of the scripts, so that STAGE alone is enough
#
# Usage: bench/gpu/prepare.sh [--build DIR] [--stage DIR] LLAMA_CPP_GIT_DIR [COMMIT]
#   LLAMA_CPP_GIT_DIR   a llama.cpp git directory (a clone or a bare mirror), COMMIT default HEAD
#   --build DIR         the meson build directory of llmd to stage (default: build-gpu-release,
#                       set up here with --buildtype=release if missing)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
main=$(cd "$(git -C "$src" rev-parse --path-format=absolute --git-common-dir)/.." && pwd)
build=
stage=
while [ $# -gt 0 ]; do
        case $1 in
        --build) build=$2; shift 2 ;;
        --stage) stage=$2; shift 2 ;;
        -*) echo "prepare.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
        esac
done
[ $# -ge 1 ] || { sed -n '2,19p' "$0" >&2; exit 2; }
lgit=$1
commit=${2:-HEAD}
[ -n "$stage" ] || stage=$main/.gpu
[ -n "$build" ] || build=$src/build-gpu-release
for t in patchelf git meson ldd; do
        command -v $t >/dev/null || { echo "prepare.sh: needs $t (apt-get install $t)" >&2; exit 1; }
done

# .gpu/ travels with the device tool's copy of the checkout only as an ignored, carried path.
if [ "$stage" = "$main/.gpu" ]; then
        ex=$(git -C "$main" rev-parse --path-format=absolute --git-path info/exclude)
        mkdir -p "$(dirname "$ex")"
        grep -qx '/.gpu/' "$ex" 2>/dev/null || echo '/.gpu/' >>"$ex"
fi
rm -rf "$stage.new"
mkdir -p "$stage.new/llmd/bin" "$stage.new/llmd/lib" "$stage.new/bench" "$stage.new/tests/models"

# --- llama.cpp, trimmed ---
sha=$(git -C "$lgit" rev-parse "$commit")
number=$(git -C "$lgit" rev-list --count "$sha")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
paths="LICENSE CMakeLists.txt cmake ggml src include common vendor gguf-py tools/server tools/mtmd
tools/quantize scripts/ui-assets.cmake tools/ui/CMakeLists.txt tools/ui/embed.cpp tools/ui/sources.cmake"
# A mirror that lacks some large blobs (test models) makes git archive complain about them even
# though they are outside these paths: what counts is that every path arrived.
# shellcheck disable=SC2086 # $paths is a list
git -C "$lgit" archive --prefix=llama.cpp/ "$sha" $paths 2>"$tmp/archive.err" | tar -x -C "$tmp"
t=$tmp/llama.cpp
for p in $paths; do
        [ -e "$t/$p" ] || { cat "$tmp/archive.err" >&2; echo "prepare.sh: $p missing" >&2; exit 1; }
done
# Only the tools llama-server and llama-quantize need; the backends this build does not use.
cat >"$t/tools/CMakeLists.txt" <<'EOT'
# bench/gpu/prepare.sh: only what llama-server and llama-quantize need
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(quantize)
add_subdirectory(ui)
add_subdirectory(mtmd)
add_subdirectory(server)
EOT
for b in ggml-vulkan ggml-sycl ggml-metal ggml-cann ggml-opencl ggml-musa ggml-hip ggml-kompute \
        ggml-webgpu ggml-zdnn ggml-hexagon ggml-openvino ggml-virtgpu ggml-zendnn; do
        rm -rf "$t/ggml/src/$b"
done
rm -rf "$t/gguf-py/tests" "$t/tools/server/tests" "$t/tools/server/webui" "$t/tools/server/public"*
printf 'commit=%s\nnumber=%s\nsource=%s\n' "$sha" "$number" "$lgit" >"$t/BUILD_INFO"
tar -C "$tmp" -czf "$stage.new/llama.cpp.tar.gz" llama.cpp

# --- llmd ---
[ -d "$build" ] || meson setup "$build" "$src" --buildtype=release >/dev/null
meson compile -C "$build" llmd llmctl >/dev/null
cp "$build/daemon/llmd" "$build/ctl/llmctl" "$stage.new/llmd/bin/"
git -C "$src" describe --always --dirty >"$stage.new/llmd/VERSION"
# Every library the dynamic loader finds for them, but glibc's own (the GPU machine has a newer one).
for b in "$stage.new"/llmd/bin/*; do
        ldd "$b" | awk '$3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
        case $(basename "$lib") in
        libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | ld-linux*.so.* | \
        libresolv.so.* | libutil.so.*) continue ;;
        esac
        cp -L "$lib" "$stage.new/llmd/lib/"
done
# shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader
for b in "$stage.new"/llmd/bin/*; do
        patchelf --force-rpath --set-rpath '$ORIGIN/../lib' "$b"
done
# shellcheck disable=SC2016
for l in "$stage.new"/llmd/lib/*; do
        patchelf --force-rpath --set-rpath '$ORIGIN' "$l"
done

# --- the scripts ---
cp -r "$src/bench/gpu" "$stage.new/bench/"
cp "$src/tests/models/make-tiny-models.py" "$stage.new/tests/models/"

rm -rf "$stage"
mv "$stage.new" "$stage"
echo "staged in $stage: llama.cpp $(echo "$sha" | cut -c1-9) (build $number), llmd $(cat "$stage/llmd/VERSION"), $(du -sh "$stage" | cut -f1)"
