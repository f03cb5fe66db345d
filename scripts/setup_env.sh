#!/usr/bin/env bash
# Builds .venv with a CPython nnabla 1.39.0 supports (3.8-3.10) and the pinned requirements.
# Usage: scripts/setup_env.sh [cuda-variant], e.g. scripts/setup_env.sh 120
set -euo pipefail
cd "$(dirname "$0")/.."
cuda="${1:-}"
venv=.venv
stamp="$venv/.requirements.stamp"

say() { echo "setup: $*" >&2; }

find_uv() {
    if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
    if [ -x "$HOME/.local/bin/uv" ]; then echo "$HOME/.local/bin/uv"; return; fi
    say "installing uv with pip (user install)"
    python3 -m pip install --user --quiet uv >&2 \
        || python3 -m pip install --user --quiet --break-system-packages uv >&2 \
        || { say "could not install uv; install it: https://docs.astral.sh/uv/"; exit 1; }
    echo "$HOME/.local/bin/uv"
}

# A candidate counts only if it really runs: pyenv shims exist for versions that are not selected.
usable() { "$1" -c 'import sys; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 10) else 1)' >/dev/null 2>&1; }

find_python() {
    local p
    for p in python3.10 python3.9 python3.8; do
        if command -v "$p" >/dev/null 2>&1 && usable "$p"; then command -v "$p"; return; fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in 3.10 3.9 3.8; do
            p="$(pyenv prefix "$(pyenv versions --bare 2>/dev/null | grep -E "^$v(\.[0-9]+)?$" | sort -V | tail -1)" 2>/dev/null)/bin/python$v" || true
            if [ -x "$p" ] && usable "$p"; then echo "$p"; return; fi
        done
    fi
    for v in 3.10 3.9 3.8; do
        p="$("$UV" python find "$v" 2>/dev/null)" || true
        if [ -n "$p" ] && usable "$p"; then echo "$p"; return; fi
    done
    say "no CPython 3.8-3.10 found; fetching 3.10 with uv"
    "$UV" python install 3.10 >&2
    "$UV" python find 3.10
}

UV="$(find_uv)"
want="$(cat requirements.txt requirements-dev.txt ${cuda:+requirements-cuda$cuda.txt} | sha1sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ] || ! usable "$venv/bin/python"; then
    py="$(find_python)"
    say "creating $venv with $py"
    "$UV" venv --quiet --clear --python "$py" "$venv"
fi
say "installing requirements"
VIRTUAL_ENV="$PWD/$venv" "$UV" pip install --quiet -r requirements-dev.txt ${cuda:+-r requirements-cuda$cuda.txt}

# Graphviz's dot renders the cell diagrams; without it the .dot source is written instead.
if ! command -v dot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing graphviz (dot) with apt-get"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz) >/dev/null 2>&1 \
            || say "apt-get could not install graphviz; cell diagrams will be written as .dot source"
    else
        say "graphviz's dot is missing: install it (e.g. 'sudo apt-get install graphviz' or 'brew install graphviz'); until then cell diagrams are written as .dot source"
    fi
fi
echo "$want" > "$stamp"
say "ready: $venv ($("$venv/bin/python" --version))"
