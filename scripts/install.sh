#!/usr/bin/env bash
# Create .venv and install lerenet with everything it needs, offline-safe and idempotent.
# torch goes in first and alone (LERENET_TORCH, default the CPU wheel torch==2.13.0) so that pip
# never resolves an unpinned torch to a multi-GB CUDA build; GPU users set LERENET_TORCH to their
# CUDA build (e.g. "torch==2.13.0 --index-url ...") or to "skip" to keep the torch they have.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv="${LERENET_VENV:-.venv}"
torch_spec="${LERENET_TORCH:-torch==2.13.0}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp="$venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing lerenet into $venv (first time: about 4 minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  if [ "$torch_spec" != "skip" ]; then
    # shellcheck disable=SC2086  # the spec may carry pip options
    "$venv/bin/python" -m pip install -q $torch_spec
  fi
  "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[dev,pretrained,export,postgres]"
  rm -f "$venv"/.installed-* && touch "$stamp"
fi
