#!/usr/bin/env bash
# Benchmarks Cairn (and optionally stock MLflow) with crates/cairn-bench.
#
# Usage: scripts/bench.sh [--mlflow | --mlflow-only] [--quick] [-- <cairn-bench flags>]
#
#   (no flag)       build cairn + cairn-bench, bench Cairn  -> bench-results/cairn.json
#   --mlflow        also bench stock mlflow from .venv      -> bench-results/mlflow.json,
#                   then print a Cairn/MLflow ratio table
#   --mlflow-only   bench only stock mlflow (no Cairn build)
#   --quick         smoke-test counts (seconds per server, not minutes)
#   -- ARGS         passed to cairn-bench, e.g. -- --workloads search --search-runs 2000
#
# Environment:
#   BENCH_OUT_DIR     where JSON results go (default: bench-results)
#   CAIRN_SERVER_CMD  override the Cairn command line ({port} and {data} are substituted)
#   MLFLOW_WORKERS    uvicorn workers for mlflow (default 4, MLflow's own default)
#
# Exit status: 0 if every server ran every workload without errors, else 1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MLFLOW_VERSION=3.17.2
OUT_DIR="${BENCH_OUT_DIR:-$ROOT/bench-results}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-4}"

die() {
  echo "bench.sh: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

run_cairn=1
run_mlflow=0
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mlflow) run_mlflow=1 ;;
    --mlflow-only) run_mlflow=1; run_cairn=0 ;;
    --quick) bench_args+=(--quick) ;;
    -h | --help) usage; exit 0 ;;
    --) shift; bench_args+=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

command -v cargo >/dev/null || die "cargo not found on PATH"

# --- build ------------------------------------------------------------------
packages=(-p cairn-bench)
[[ $run_cairn == 1 ]] && packages+=(-p cairn)
echo "==> cargo build --release ${packages[*]}"
cargo build --release "${packages[@]}" || die "cargo build failed"
BENCH="$TARGET_DIR/release/cairn-bench"
[[ -x "$BENCH" ]] || die "$BENCH was not built"

# --- stock MLflow venv -----------------------------------------------------------
ensure_mlflow() {
  local venv="$ROOT/.venv"
  if [[ ! -x "$venv/bin/mlflow" ]]; then
    command -v python3 >/dev/null || die "python3 is needed to create $venv"
    echo "==> creating $venv with mlflow==$MLFLOW_VERSION (one-off, takes a few minutes)"
    python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet "mlflow==$MLFLOW_VERSION" || die "pip install mlflow==$MLFLOW_VERSION failed"
  fi
  local have
  have="$("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)')" \
    || die "$venv exists but 'import mlflow' fails; delete .venv and re-run"
  if [[ "$have" != "$MLFLOW_VERSION" ]]; then
    echo "bench.sh: warning: .venv has mlflow $have, expected $MLFLOW_VERSION" >&2
  fi
}

# --- run --------------------------------------------------------------------------
mkdir -p "$OUT_DIR"
failed=()

# bench LABEL COMMAND: runs cairn-bench against one server; records failure
# instead of exiting so the other server still gets benchmarked.
bench() {
  local label="$1" cmd="$2" rc=0
  echo
  echo "==> benchmarking $label: $cmd"
  rm -f "$OUT_DIR/$label.json" # never compare against a stale result
  # --idle-s 5: MLflow forks its job-runner workers a few seconds after /health
  # turns 200; 1 s of idle would catch it half-started. Overridable via `--`.
  "$BENCH" --label "$label" --server-cmd "$cmd" --json "$OUT_DIR/$label.json" --idle-s 5 \
    ${bench_args[@]+"${bench_args[@]}"} || rc=$?
  case $rc in
    0) ;;
    1) failed+=("$label (workload errors; see its ERRORS section)") ;;
    *) failed+=("$label (bench aborted with status $rc; server failed to start?)") ;;
  esac
}

if [[ $run_cairn == 1 ]]; then
  CAIRN_BIN="$TARGET_DIR/release/cairn"
  [[ -x "$CAIRN_BIN" ]] || die "$CAIRN_BIN was not built"
  # (Not a ${VAR:-default}: the braces in {port} would end the expansion early.)
  cairn_cmd="$CAIRN_BIN server --host 127.0.0.1 --port {port} --backend-store-uri sqlite:///{data}/db.sqlite"
  bench cairn "${CAIRN_SERVER_CMD:-$cairn_cmd}"
fi

if [[ $run_mlflow == 1 ]]; then
  ensure_mlflow
  # Stock settings, except the SQLAlchemy pool: its default (5 + 10 overflow)
  # is smaller than the 16 concurrent clients, which makes requests wait 30 s
  # for a connection and fail. A real deployment would raise it, so we do too.
  export MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW="${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-30}"
  bench mlflow "$ROOT/.venv/bin/mlflow server --backend-store-uri sqlite:///{data}/mlflow.db --host 127.0.0.1 --port {port} --workers $MLFLOW_WORKERS"
fi

# --- ratio table when both ran ---------------------------------------------------------
if [[ $run_cairn == 1 && $run_mlflow == 1 && -f "$OUT_DIR/cairn.json" && -f "$OUT_DIR/mlflow.json" ]] \
  && command -v python3 >/dev/null; then
  python3 - "$OUT_DIR/cairn.json" "$OUT_DIR/mlflow.json" <<'PY'
import json, sys
cairn, mlflow = (json.load(open(p)) for p in sys.argv[1:3])
def workloads(doc):
    return {w["name"]: w for w in doc["workloads"] if not w["setup"]}
c, m = workloads(cairn), workloads(mlflow)
print("\nCairn vs MLflow (speed-up = how many times better Cairn is)")
print(f"{'workload':<20} {'cairn p50':>10} {'mlflow p50':>11} {'speed-up':>9} {'cairn req/s':>12} {'mlflow req/s':>13}")
for name, cw in c.items():
    mw = m.get(name)
    if not mw or not cw.get("latency_ms") or not mw.get("latency_ms"):
        continue
    cp, mp = cw["latency_ms"]["p50"], mw["latency_ms"]["p50"]
    print(f"{name:<20} {cp:>10.2f} {mp:>11.2f} {mp / cp:>8.1f}x {cw['req_per_s']:>12.1f} {mw['req_per_s']:>13.1f}")
cs, ms = cairn.get("server"), mlflow.get("server")
if cs and ms:
    print(f"{'start-to-healthy ms':<20} {cs['start_to_healthy_ms']:>10.1f} {ms['start_to_healthy_ms']:>11.1f} "
          f"{ms['start_to_healthy_ms'] / max(cs['start_to_healthy_ms'], 1e-9):>8.1f}x")
    for key in ("idle", "peak_sampled"):
        cr, mr = cs[key]["pss_kib"] / 1024, ms[key]["pss_kib"] / 1024
        print(f"{key + ' PSS MiB':<20} {cr:>10.1f} {mr:>11.1f} {mr / max(cr, 1e-9):>8.1f}x")
PY
fi

echo
if [[ ${#failed[@]} -gt 0 ]]; then
  for f in "${failed[@]}"; do echo "bench.sh: FAILED: $f" >&2; done
  exit 1
fi
echo "bench.sh: done; results in $OUT_DIR"
