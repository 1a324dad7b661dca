#!/usr/bin/env bash
# Create .venv with Python 3.10 (Lava's requirement) and install neurocxr into it.
# Idempotent: re-installs only when pyproject.toml is newer than the stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.neurocxr-installed"

find_python310() {
    # 1. an explicit choice, 2. a python3.10 on PATH, 3. pyenv's 3.10 (pyenv's global may be 3.11).
    if [ -n "${PYTHON310:-}" ] && "$PYTHON310" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        echo "$PYTHON310"; return 0
    fi
    if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys' 2>/dev/null; then
        command -v python3.10; return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local prefix
        prefix=$(pyenv prefix 3.10 2>/dev/null || true)
        if [ -z "$prefix" ]; then
            local v
            v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -V | tail -n 1 || true)
            [ -n "$v" ] && prefix=$(pyenv root)/versions/$v
        fi
        if [ -n "$prefix" ] && [ -x "$prefix/bin/python3.10" ]; then
            echo "$prefix/bin/python3.10"; return 0
        fi
    fi
    for p in "$HOME"/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do
        [ -x "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! PY=$(find_python310); then
        cat >&2 <<'MSG'
error: Python 3.10 not found.
  neurocxr needs Python 3.10 exactly: lava-nc 0.10 and lava-dl 0.6 support >=3.10,<3.11.
  Get it with one of:
    pyenv install 3.10.13            (then re-run; pyenv's global version may stay 3.11)
    apt-get install python3.10 python3.10-venv   (where your distribution ships it)
  or point PYTHON310=/path/to/python3.10 at an existing interpreter.
MSG
        exit 1
    fi
    echo "neurocxr: creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi

if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ setup.py -nt "$STAMP" ]; then
    echo "neurocxr: installing dependencies into $VENV (torch 2.3.1 from PyPI is a ~3 GB CUDA build that also runs on CPU; a few minutes the first time)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    # NeuroBench 2.3.0 pins numpy/torch versions that clash with Lava's; its counting code needs
    # neither pin, so it goes in without dependencies (used to cross-check our op counts).
    "$VENV/bin/python" -m pip install --quiet --no-deps "neurobench==2.3.0"
    # zeus-ml requires amdsmi, whose PyPI wheel ships without AMD's native library: importing it
    # raises KeyError, which Ray's GPU probe does not catch (`import ray` fails). Zeus itself falls
    # back to a stand-in when amdsmi is absent, so the broken wheel is removed.
    if "$VENV/bin/python" -m pip show amdsmi >/dev/null 2>&1 && ! "$VENV/bin/python" -c 'import amdsmi' >/dev/null 2>&1; then
        "$VENV/bin/python" -m pip uninstall --quiet -y amdsmi
    fi
    touch "$STAMP"
fi
