#!/bin/sh
# Records what a real llama-server answers on its Anthropic Messages and OpenAI Responses
# endpoints into this directory, one file per case: the status line, the headers and the body as
# `curl -sS -i -N` shows them. Run as root from the repository root (the real server's wrapper
# chroots):  tests/sim/samples/record.sh
#
# Two servers, with the flags test_conformance.py gives them: the chat model on 127.0.0.1:18190,
# the reasoning model (--reasoning-format deepseek) on 127.0.0.1:18191. Each starts fresh, so the
# prompt cache counts in the usage objects are those of this sequence of requests.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
real=${LLMD_REAL_LLAMA_SERVER:-$(tools/real-llama-server.sh)}
models=${LLMD_REAL_MODELS:-$(tools/real-llama-server.sh --models)}
pids=
trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done' EXIT

start() { # PORT MODEL ARGS...
    port=$1 model=$2
    shift 2
    "$real" --model "$models/$model.gguf" --alias "$model" --host 127.0.0.1 --port "$port" \
        --ctx-size 4096 "$@" >"/tmp/llmd-record-$port.log" 2>&1 &
    pids="$pids $!"
    i=0
    until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 300 ] || { echo "record: the server on $port did not start" >&2; exit 1; }
        sleep 0.1
    done
}

rec() { # FILE PORT PATH BODY: POST BODY to PATH, the answer into FILE
    curl -sS -i -N "http://127.0.0.1:$2$3" -H 'Content-Type: application/json' \
        --data-binary "$4" >"$here/$1"
}

big=$(python3 -c 'print("hello world " * 4096, end="")')
user='[{"role":"user","content":"hello world"}]'
tools_a='[{"name":"get_weather","description":"Get the weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]'
tools_r='[{"type":"function","name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]'
turns='[{"role":"user","content":"hello world"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hi"}]},{"role":"user","content":[{"type":"input_text","text":"again"}]}]'

start 18190 chat
c=18190
rec POST-messages-nonstream.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"messages\":$user}"
rec POST-messages-stream.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"stream\":true,\"messages\":$user}"
rec POST-messages-system-tools.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"system\":\"You are terse.\",\"tools\":$tools_a,\"messages\":[{\"role\":\"user\",\"content\":\"weather in Paris?\"}]}"
rec POST-messages-system-tools-stream.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"stream\":true,\"system\":[{\"type\":\"text\",\"text\":\"You are terse.\"}],\"tools\":$tools_a,\"tool_choice\":{\"type\":\"auto\"},\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"weather in Paris?\"}]}]}"
rec POST-messages-max-tokens.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":1,\"messages\":$user}"
rec POST-messages-stop-sequence.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":50,\"stop_sequences\":[\"e\",\"o\",\"a\"],\"messages\":$user}"
rec POST-messages-stop-sequence-stream.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":50,\"stream\":true,\"stop_sequences\":[\"e\",\"o\",\"a\"],\"messages\":$user}"
rec POST-messages-count-tokens.txt $c /v1/messages/count_tokens "{\"model\":\"chat\",\"messages\":$user}"
rec POST-messages-count-tokens-system-tools.txt $c /v1/messages/count_tokens "{\"model\":\"chat\",\"system\":\"You are terse.\",\"tools\":$tools_a,\"messages\":$user}"
rec POST-responses-string-input.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":"hello world"}'
rec POST-responses-messages-instructions.txt $c /v1/responses "{\"model\":\"chat\",\"max_output_tokens\":4,\"instructions\":\"You are terse.\",\"input\":$turns}"
rec POST-responses-stream.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"stream":true,"input":"hello world"}'
rec POST-responses-tools.txt $c /v1/responses "{\"model\":\"chat\",\"max_output_tokens\":4,\"tools\":$tools_r,\"input\":\"weather in Paris?\"}"
rec POST-responses-tools-stream.txt $c /v1/responses "{\"model\":\"chat\",\"max_output_tokens\":4,\"stream\":true,\"tools\":$tools_r,\"tool_choice\":\"auto\",\"input\":\"weather in Paris?\"}"
rec POST-responses-no-v1.txt $c /responses '{"model":"chat","max_output_tokens":4,"input":"hello world"}'
rec ERR-messages-no-v1.txt $c /messages "{\"model\":\"chat\",\"max_tokens\":4,\"messages\":$user}"
rec ERR-messages-count-tokens-no-v1.txt $c /messages/count_tokens "{\"model\":\"chat\",\"messages\":$user}"
rec ERR-messages-bad-json.txt $c /v1/messages '{not json'
rec ERR-messages-no-messages.txt $c /v1/messages '{"model":"chat","max_tokens":4}'
rec ERR-messages-max-tokens-not-number.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":\"4\",\"messages\":$user}"
rec ERR-messages-exceeds-context.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"$big\"}]}"
rec ERR-messages-exceeds-context-stream.txt $c /v1/messages "{\"model\":\"chat\",\"max_tokens\":4,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$big\"}]}"
rec ERR-messages-count-tokens-bad-json.txt $c /v1/messages/count_tokens '{not json'
rec ERR-messages-count-tokens-no-messages.txt $c /v1/messages/count_tokens '{"model":"chat"}'
rec POST-messages-count-tokens-exceeds-context.txt $c /v1/messages/count_tokens "{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"$big\"}]}"
rec ERR-responses-bad-json.txt $c /v1/responses '{not json'
rec ERR-responses-no-input.txt $c /v1/responses '{"model":"chat","max_output_tokens":4}'
rec ERR-responses-input-not-string-or-array.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":5}'
rec ERR-responses-untyped-item.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":[{"role":"assistant","content":"hi"}]}'
rec ERR-responses-bad-content-part.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":[{"role":"user","content":[{"type":"bogus"}]}]}'
rec ERR-responses-previous-response-id.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":"hi","previous_response_id":"resp_x"}'
rec ERR-responses-tools-not-array.txt $c /v1/responses '{"model":"chat","max_output_tokens":4,"input":"hi","tools":5}'
rec ERR-responses-exceeds-context.txt $c /v1/responses "{\"model\":\"chat\",\"max_output_tokens\":4,\"input\":\"$big\"}"
rec ERR-responses-exceeds-context-stream.txt $c /v1/responses "{\"model\":\"chat\",\"max_output_tokens\":4,\"stream\":true,\"input\":\"$big\"}"

start 18191 reasoning --reasoning-format deepseek
r=18191
rec POST-messages-reasoning.txt $r /v1/messages "{\"model\":\"reasoning\",\"max_tokens\":4,\"messages\":$user}"
rec POST-messages-reasoning-stream.txt $r /v1/messages "{\"model\":\"reasoning\",\"max_tokens\":4,\"stream\":true,\"messages\":$user}"
rec POST-responses-reasoning.txt $r /v1/responses '{"model":"reasoning","max_output_tokens":4,"input":"hello world"}'
rec POST-responses-reasoning-stream.txt $r /v1/responses '{"model":"reasoning","max_output_tokens":4,"stream":true,"input":"hello world"}'

"$real" --version 2>&1 | grep -i "^version"
echo "record: $(ls "$here" | grep -c '\.txt$') files in $here"
