#!/usr/bin/env bash
# The whole test suite on a fresh machine: Rust lint gates, Rust unit/integration tests,
# then the Python conformance suite driving `cairn server` with the real mlflow client.
# Installs what it needs (a venv with the pinned mlflow) on first use.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${CAIRN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

step() { printf '\n==> %s\n' "$*"; }

step "Python venv with the pinned mlflow client ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# pip is quick when everything is already installed at the pinned versions.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/conformance/requirements.txt
"$VENV/bin/python" -c "import mlflow; assert mlflow.__version__ == '3.17.2', mlflow.__version__"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace

step "build the server binary for the conformance suite"
cargo build -p cairn --bin cairn

step "Python conformance suite (real mlflow==3.17.2 client)"
CAIRN_BIN="$ROOT/target/debug/cairn" "$VENV/bin/python" -m pytest tests/conformance -q -p no:cacheprovider
