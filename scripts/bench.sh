#!/usr/bin/env bash
# Side-by-side benchmark: Cairn vs stock MLflow, on SQLite and on PostgreSQL.
#
# Usage: scripts/bench.sh [--backend sqlite|postgres|both] [--cairn-only | --mlflow-only]
#                         [--quick] [--docs | --no-docs] [-- <cairn-bench flags>]
#
# For each backend (SQLite, then PostgreSQL) it starts `cairn server` and then
# `mlflow server` (mlflow==3.17.2 from its own venv, .venv-bench), each on a fresh
# database, and drives both with crates/cairn-bench: the same workload and the same
# HTTP client. Results go to bench-results/<server>-<backend>.json; at the end
# scripts/bench_report.py prints the Cairn/MLflow ratio table and, on a full run of
# both servers on both backends, rewrites docs/benchmarks.md and docs/benchmarks.png.
#
#   --backend B     sqlite, postgres or both (default: both)
#   --cairn-only    bench only Cairn          --mlflow-only   bench only MLflow
#   --quick         smoke-test counts (a few minutes in all, not ~25)
#   --docs          write the docs even for a partial or --quick run
#   --no-docs       never write the docs (just print the table)
#   -- ARGS         passed to every cairn-bench run, e.g. -- --workloads search
#
# PostgreSQL: 127.0.0.1:5432, user postgres, trust auth. It is started with
# pg_ctlcluster if it is down; each server gets its own database
# cairn_bench_<server>_<pid>, dropped afterwards (also on failure or Ctrl-C).
#
# Environment:
#   BENCH_OUT_DIR     where JSON results go (default: bench-results, bench-results/quick)
#   BENCH_VENV        the benchmark venv (default: .venv-bench)
#   CAIRN_SERVER_CMD  override the Cairn command line ({port} and {data} are substituted)
#   MLFLOW_WORKERS    uvicorn workers for mlflow (default 4, MLflow's own default)
#   PGHOST PGPORT PGUSER  where PostgreSQL is (default 127.0.0.1, 5432, postgres)
#
# Exit status: 0 if every run completed and Cairn answered every request, else 1
# (errors from stock MLflow are reported, not fatal).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MLFLOW_VERSION=3.17.2
OUT_DIR="${BENCH_OUT_DIR:-}"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-4}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER

die() {
  echo "bench.sh: error: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

backends=(sqlite postgres)
servers=(cairn mlflow)
quick=0
docs=auto
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --backend)
      [[ $# -ge 2 ]] || die "--backend needs a value"
      case "$2" in
        sqlite) backends=(sqlite) ;;
        postgres | postgresql | pg) backends=(postgres) ;;
        both) backends=(sqlite postgres) ;;
        *) die "--backend must be sqlite, postgres or both, not '$2'" ;;
      esac
      shift
      ;;
    --cairn-only) servers=(cairn) ;;
    --mlflow-only) servers=(mlflow) ;;
    --mlflow) ;; # the old "also MLflow" flag: both servers are the default now
    --quick) quick=1; bench_args+=(--quick) ;;
    --docs) docs=yes ;;
    --no-docs) docs=no ;;
    -h | --help) usage; exit 0 ;;
    --) shift; bench_args+=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

wants_server() {
  local s
  for s in "${servers[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}
wants_backend() {
  local b
  for b in "${backends[@]}"; do [[ $b == "$1" ]] && return 0; done
  return 1
}

command -v cargo >/dev/null || die "cargo not found on PATH"
# Smoke runs never overwrite the full results the docs are generated from.
if [[ -z "$OUT_DIR" ]]; then
  OUT_DIR="$ROOT/bench-results"
  if [[ $quick == 1 ]]; then OUT_DIR="$ROOT/bench-results/quick"; fi
fi

# --- build ------------------------------------------------------------------
packages=(-p cairn-bench)
wants_server cairn && packages+=(-p cairn)
echo "==> cargo build --release ${packages[*]}"
cargo build --release "${packages[@]}" || die "cargo build failed"
[[ -x "$TARGET_DIR/release/cairn-bench" ]] || die "$TARGET_DIR/release/cairn-bench was not built"
# Private copies: a concurrent cargo build must not swap the binary mid-run.
mkdir -p "$OUT_DIR/bin"
BENCH="$OUT_DIR/bin/cairn-bench"
CAIRN_BIN="$OUT_DIR/bin/cairn"
cp "$TARGET_DIR/release/cairn-bench" "$BENCH"
if wants_server cairn; then
  cp "$TARGET_DIR/release/cairn" "$CAIRN_BIN" || die "$TARGET_DIR/release/cairn was not built"
fi

# --- the benchmark venv: mlflow, its PostgreSQL drivers, matplotlib ----------
# SQLAlchemy 2.1 (what mlflow 3.17.2 pulls in) maps postgresql:// to psycopg 3,
# so that is the driver MLflow uses here; psycopg2 serves postgresql+psycopg2://.
pip_pkgs=("mlflow==$MLFLOW_VERSION" "psycopg[binary]" psycopg2-binary matplotlib)
ensure_venv() {
  local py="$VENV/bin/python"
  if [[ ! -x "$py" ]]; then
    command -v python3 >/dev/null || die "python3 is needed to create $VENV"
    echo "==> creating $VENV (one-off, takes a few minutes)"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  if ! "$py" - "$MLFLOW_VERSION" <<'PY' 2>/dev/null; then
import sys
import matplotlib, mlflow, psycopg, psycopg2  # noqa: F401
sys.exit(mlflow.__version__ != sys.argv[1])
PY
    echo "==> installing ${pip_pkgs[*]} into $VENV"
    "$VENV/bin/pip" install --quiet "${pip_pkgs[@]}" || die "pip install into $VENV failed"
  fi
  "$py" -c 'import matplotlib, mlflow, psycopg, psycopg2' || die "$VENV is broken; delete it and re-run"
}
ensure_venv
PY="$VENV/bin/python"

# --- PostgreSQL ---------------------------------------------------------------
ensure_postgres() {
  command -v pg_isready >/dev/null || die "pg_isready not found (apt-get install postgresql-client)"
  pg_isready -q -h "$PGHOST" -p "$PGPORT" && return 0
  echo "==> PostgreSQL at $PGHOST:$PGPORT is down; starting it"
  local version
  # shellcheck disable=SC2012 # version directory names are plain numbers
  version="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)"
  [[ -n "$version" ]] || die "PostgreSQL is down and no cluster is configured in /etc/postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start \
    || die "pg_ctlcluster $version main start failed"
  local i
  for i in $(seq 30); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" && return 0
    sleep 1
  done
  die "PostgreSQL did not become ready on $PGHOST:$PGPORT within 30 s (after $i tries)"
}

created_dbs=()
drop_db() {
  dropdb --if-exists --force "$1" || echo "bench.sh: warning: could not drop database $1" >&2
  local keep=() d
  for d in ${created_dbs[@]+"${created_dbs[@]}"}; do [[ $d == "$1" ]] || keep+=("$d"); done
  created_dbs=(${keep[@]+"${keep[@]}"})
}
cleanup() {
  local db
  for db in ${created_dbs[@]+"${created_dbs[@]}"}; do drop_db "$db"; done
  created_dbs=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if wants_backend postgres; then
  ensure_postgres
fi

# --- versions and machine, recorded before the run ------------------------------------
meta_args=(--out "$OUT_DIR/meta.json" --root "$ROOT")
[[ -x "$CAIRN_BIN" ]] && meta_args+=(--cairn-bin "$CAIRN_BIN")
wants_backend postgres && meta_args+=(--postgres)
"$PY" "$ROOT/scripts/bench_report.py" meta "${meta_args[@]}" || die "collecting versions failed"

# --- run --------------------------------------------------------------------------
failed=()

# bench LABEL COMMAND [cairn-bench args...]: runs cairn-bench against one server;
# records failure instead of exiting so the other servers still get benchmarked.
# MLflow's own request errors (e.g. "database is locked" under 16 SQLite writers)
# are findings, listed in the report, not failures of the benchmark.
warnings=()
bench() {
  local label="$1" cmd="$2" rc=0
  shift 2
  echo
  echo "==> benchmarking $label: $cmd"
  rm -f "$OUT_DIR/$label.json" # never compare against a stale result
  # --idle-s 5: MLflow forks its job-runner workers a few seconds after /health
  # turns 200; 1 s of idle would catch it half-started. Overridable via `--`.
  "$BENCH" --label "$label" --server-cmd "$cmd" --json "$OUT_DIR/$label.json" --idle-s 5 \
    "$@" ${bench_args[@]+"${bench_args[@]}"} || rc=$?
  case $rc in
    0) ;;
    1)
      if [[ $label == mlflow-* ]]; then
        warnings+=("$label answered some requests with errors (see its ERRORS section)")
      else
        failed+=("$label (workload errors; see its ERRORS section)")
      fi
      ;;
    *) failed+=("$label (bench aborted with status $rc; server failed to start?)") ;;
  esac
}

# Stock settings, except the SQLAlchemy pool: its default (5 + 10 overflow) is
# smaller than the 16 concurrent clients, which makes requests wait 30 s for a
# connection and fail. A real deployment would raise it, so we do too.
export MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW="${MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW:-30}"

for backend in "${backends[@]}"; do
  for server in "${servers[@]}"; do
    label="$server-$backend"
    extra=()
    if [[ $backend == sqlite ]]; then
      cairn_uri="sqlite:///{data}/cairn.db"
      mlflow_uri="sqlite:///{data}/mlflow.db"
      # Planner statistics after each data load, for both servers. MLflow never
      # runs ANALYZE itself, and without it SQLite picks a plan that takes
      # minutes per search over 100k runs; we compare against the tuned case.
      analyze="import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=60)"
      analyze+="; c.execute('ANALYZE'); c.commit(); c.close()"
      extra+=(--after-populate-cmd "$PY -c \"$analyze\" {data}/$server.db")
    else
      db="cairn_bench_${server}_$$"
      createdb "$db" || die "createdb $db failed"
      created_dbs+=("$db")
      cairn_uri="postgresql://$PGUSER@$PGHOST:$PGPORT/$db"
      mlflow_uri="$cairn_uri"
      # Statistics and the visibility map after each data load, as autovacuum
      # would within a minute (it may be off on a bench machine: without the
      # visibility map, index-only scans still read the table); done the same
      # way for both servers.
      extra+=(--after-populate-cmd "psql -qX -d $db -c 'VACUUM (ANALYZE)'")
    fi
    if [[ $server == cairn ]]; then
      [[ -x "$CAIRN_BIN" ]] || die "$CAIRN_BIN was not built"
      # (Not a ${VAR:-default}: the braces in {port} would end the expansion early.)
      cmd="$CAIRN_BIN server --host 127.0.0.1 --port {port} --backend-store-uri $cairn_uri"
      bench "$label" "${CAIRN_SERVER_CMD:-$cmd}" ${extra[@]+"${extra[@]}"}
    else
      # Loading 100k runs through MLflow's REST API would take hours; the same
      # runs go straight into its tables instead (see bench_populate_mlflow.py).
      populate="$PY $ROOT/scripts/bench_populate_mlflow.py --db-uri $mlflow_uri"
      populate+=" --experiment-id {experiment_id} --start {start} --end {end}"
      bench "$label" \
        "$VENV/bin/mlflow server --backend-store-uri $mlflow_uri --host 127.0.0.1 --port {port} --workers $MLFLOW_WORKERS" \
        --search-populate-cmd "$populate" ${extra[@]+"${extra[@]}"}
    fi
    if [[ $backend == postgres ]]; then drop_db "$db"; fi
  done
done

# --- ratio table, docs and chart ---------------------------------------------------
backend_list="$(IFS=,; echo "${backends[*]}")"
report_args=(report --results "$OUT_DIR" --backends "$backend_list")
full_run=0
[[ $quick == 0 && ${#servers[@]} == 2 && ${#backends[@]} == 2 ]] && full_run=1
if [[ $docs == yes || ($docs == auto && $full_run == 1) ]]; then
  report_args+=(--docs "$ROOT/docs/benchmarks.md" --chart "$ROOT/docs/benchmarks.png")
fi
"$PY" "$ROOT/scripts/bench_report.py" "${report_args[@]}" || failed+=("bench_report.py")

echo
for w in ${warnings[@]+"${warnings[@]}"}; do echo "bench.sh: note: $w" >&2; done
if [[ ${#failed[@]} -gt 0 ]]; then
  for f in "${failed[@]}"; do echo "bench.sh: FAILED: $f" >&2; done
  exit 1
fi
echo "bench.sh: done; results in $OUT_DIR"
