#!/bin/sh
# Builds llmd and runs it in the foreground on a demo configuration: three generation models and
# a pinned embedding model, as files in a temporary directory. Without a real llama-server
# (LLAMA_SERVER=/path/to/llama-server, or one in $PATH) the project's simulator stands in.
# Ctrl-C stops it.
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
# Quiet when all goes well; the whole output when it does not. A setup that failed half-way
# is done again.
quiet() {
    out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "llmd demo: failed: $*" >&2; exit 1; }
}
if [ ! -f build/build.ninja ]; then
    rm -rf build
    quiet meson setup build
fi
quiet meson compile -C build -j 2

demo=$(mktemp -d /tmp/llmd-demo.XXXXXX)
mkdir -p "$demo/models" "$demo/run" "$demo/state"
for m in qwen gemma devstral nomic; do
    # Sparse files: big enough to look like models, no disk used.
    truncate -s 64M "$demo/models/$m.gguf"
done

server=${LLAMA_SERVER:-$(command -v llama-server || true)}
if [ -n "$server" ]; then
    echo "llmd demo: using the real llama-server at $server; the demo's model files are empty, so"
    echo "llmd demo: expect each model to fail with llama-server's reason. Point --config at your own."
else
    server=$PWD/build/tests/sim/llama-sim
    echo "llmd demo: no llama-server installed: the llama-server SIMULATOR stands in ($server);"
    echo "llmd demo: it loads nothing and answers like llama-server. The demo models are files in $demo/models."
fi

cat >"$demo/llama-generate.conf" <<CONF
[llmd]
default = qwen
llama-server = $server

[*]
ctx-size = 8192
n-gpu-layers = 99

[qwen]
model = $demo/models/qwen.gguf
aliases = qwen3.5
temp = 0.6
top-p = 0.95
env = LLAMA_SIM_LOAD_MS=2000

[gemma]
model = $demo/models/gemma.gguf
temp = 0.0
top-p = 1.0
env = LLAMA_SIM_LOAD_MS=1500

[devstral]
model = $demo/models/devstral.gguf
temp = 0.0
top-p = 1.0

[nomic]
model = $demo/models/nomic.gguf
embeddings = true
pin = true
env = LLAMA_SIM_LOAD_MS=300
CONF

echo "llmd demo: config $demo/llama-generate.conf, runtime directory $demo/run"
echo "llmd demo: Ctrl-C stops it. Try, in another terminal:"
echo "    curl -N localhost:8080/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}'"
echo "    LLMD_SOCKET=$demo/run/control.sock $PWD/build/ctl/llmctl switch gemma"
# The demo's files go when it ends (not exec'd, so that this trap runs).
trap 'rm -rf "$demo"' EXIT
trap 'exit 130' INT TERM
build/daemon/llmd --config "$demo/llama-generate.conf" --runtime-dir "$demo/run" \
    --state-dir "$demo/state" "$@"
