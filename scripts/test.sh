#!/usr/bin/env bash
# The whole test suite on a fresh machine: Rust lint gates, Rust unit/integration tests,
# then the Python conformance suite driving `cairn server` with the real mlflow client,
# once on SQLite and once on PostgreSQL.
# Installs what it needs (a venv with the pinned mlflow) on first use. The PostgreSQL
# session stores artifacts on a local S3-compatible server (moto, on loopback), so the same
# artifact tests run against local disk and S3 (there with presigned multipart transfers);
# the artifact and model-flow tests run once more on Azure Blob Storage (Azurite, from npm).
#
# PostgreSQL is required, never skipped: CAIRN_TEST_PG_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) is an admin URL; the Rust PostgreSQL tests
# and this script create (and drop) their own databases through it. If the server there is
# down, the script tries to start the local cluster and fails if it cannot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${CAIRN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
export CAIRN_TEST_PG_URL="${CAIRN_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_START_TIMEOUT_S=30

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\n!!! %s\n' "$*" >&2
    exit 1
}

# The admin URL without any password, for messages.
pg_url_redacted() { printf '%s' "$CAIRN_TEST_PG_URL" | sed -E 's#^([a-z]+://[^:/@]*):[^@]*@#\1:***@#'; }

# psql against the admin database: no .psqlrc, stop on the first error, unaligned output.
pg_admin() { psql "$CAIRN_TEST_PG_URL" -X -v ON_ERROR_STOP=1 -q -A -t "$@"; }

# The admin URL with its database replaced by $1 (any ?query is kept).
pg_url_for_db() {
    local url="$CAIRN_TEST_PG_URL" query="" rest
    if [[ "$url" == *\?* ]]; then
        query="?${url#*\?}"
        url="${url%%\?*}"
    fi
    rest="${url#*://}"
    if [[ "$rest" == */* ]]; then
        url="${url%/*}"
    fi
    printf '%s/%s%s' "$url" "$1" "$query"
}

# Makes sure PostgreSQL answers at CAIRN_TEST_PG_URL, starting the local cluster if needed.
ensure_postgres() {
    if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
        die "PostgreSQL client tools (pg_isready, psql) are not installed; the test suite needs PostgreSQL 15 (apt-get install postgresql)"
    fi
    if pg_isready -q -d "$CAIRN_TEST_PG_URL"; then
        return
    fi
    echo "PostgreSQL at $(pg_url_redacted) is not accepting connections; trying to start it"
    local started=0 conf version
    if command -v pg_ctlcluster >/dev/null; then
        for conf in /etc/postgresql/*/main; do
            [ -d "$conf" ] || continue
            version="$(basename "$(dirname "$conf")")"
            if pg_ctlcluster --skip-systemctl-redirect "$version" main start; then
                started=1
            else
                echo "pg_ctlcluster $version main start failed" >&2
            fi
        done
    fi
    if [ "$started" = 0 ] && command -v service >/dev/null; then
        service postgresql start || echo "service postgresql start failed" >&2
    fi
    local waited=0
    until pg_isready -q -d "$CAIRN_TEST_PG_URL"; do
        if [ "$waited" -ge "$PG_START_TIMEOUT_S" ]; then
            pg_isready -d "$CAIRN_TEST_PG_URL" >&2 || true
            die "PostgreSQL is DOWN at $(pg_url_redacted) and could not be started within ${PG_START_TIMEOUT_S}s. The PostgreSQL tests are required, not optional: start it (pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start) or point CAIRN_TEST_PG_URL at a reachable server."
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "PostgreSQL is up after ${waited}s"
}

# Drops databases that earlier, interrupted runs left behind: those named like ours that
# nobody is connected to and that are older than a few minutes (a concurrent run's fresh
# database is left alone).
drop_stale_databases() {
    local stale db
    # pg_stat_file needs a superuser (or pg_read_server_files): without one, skip cleaning.
    if ! stale="$(pg_admin -c "
        SELECT d.datname FROM pg_database d
        WHERE (d.datname LIKE 'cairn\_test\_%' OR d.datname LIKE 'cairn\_conformance\_%')
          AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
          AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification
              < now() - interval '5 minutes'")"; then
        echo "warning: could not list stale test databases; leaving them" >&2
        return 0
    fi
    for db in $stale; do
        echo "dropping stale database $db"
        pg_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" ||
            echo "warning: could not drop stale database $db" >&2
    done
}

step "PostgreSQL at $(pg_url_redacted)"
ensure_postgres
drop_stale_databases

step "Python venv with the pinned mlflow client ($VENV), installing in the background"
# pip is mostly download and unpacking, so it runs while cargo compiles; the Python
# suites wait for it (and the script fails with pip's output if it failed).
VENV_LOG="$(mktemp -t cairn-venv.XXXXXX)"
(
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    # pip is quick when everything is already installed at the pinned versions.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r tests/conformance/requirements.txt -r tests/serving/requirements.txt \
        -r tests/security/requirements.txt
    "$VENV/bin/python" -c "import mlflow; assert mlflow.__version__ == '3.17.2', mlflow.__version__"
) >"$VENV_LOG" 2>&1 &
VENV_PID=$!
wait_for_venv() {
    if ! wait "$VENV_PID"; then
        cat "$VENV_LOG" >&2
        die "could not create the Python venv at $VENV (pip output above)"
    fi
    echo "venv ready: $("$VENV/bin/python" -c 'import mlflow, tritonclient, sys; print("mlflow", mlflow.__version__, "python", sys.version.split()[0])')"
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --workspace

step "build the server binary for the conformance suite"
cargo build -p cairn --bin cairn

step "Python venv (waiting for the background install)"
wait_for_venv

step "Python conformance suite on SQLite (real mlflow==3.17.2 client)"
CAIRN_BIN="$ROOT/target/debug/cairn" \
    "$VENV/bin/python" -m pytest tests/conformance -q -p no:cacheprovider

step "Serving suite: cairn serve with tritonclient (HTTP, gRPC), requests and mlflow"
CAIRN_BIN="$ROOT/target/debug/cairn" \
    "$VENV/bin/python" -m pytest tests/serving -q -p no:cacheprovider

step "Security suite: cairn server --auth with the real mlflow client"
CAIRN_BIN="$ROOT/target/debug/cairn" \
    "$VENV/bin/python" -m pytest tests/security -q -p no:cacheprovider

CONFORMANCE_DB="cairn_conformance_$$"
S3_PID=""
S3_LOG="$(mktemp -t cairn-s3.XXXXXX)"
AZ_PID=""
AZ_DIR="$(mktemp -d -t cairn-azurite.XXXXXX)"
cleanup() {
    pg_admin -c "DROP DATABASE IF EXISTS \"$CONFORMANCE_DB\" WITH (FORCE)" ||
        echo "could not drop database $CONFORMANCE_DB" >&2
    # Stop the storage servers (Azurite may linger on SIGTERM: 5 s, then SIGKILL) and
    # wait for them, so nothing writes into what is removed.
    local pid i
    for pid in $S3_PID $AZ_PID; do
        kill "$pid" 2>/dev/null || continue
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$S3_LOG" || true
    rm -rf "$AZ_DIR" || true
    # Cleaning up never changes the suite's verdict.
    return 0
}

# Starts moto's S3 server on a free loopback port with one bucket and exports what the
# object_store S3 client reads (AWS_ENDPOINT, AWS_ALLOW_HTTP, test credentials).
start_s3() {
    local port waited=0
    port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$S3_LOG" 2>&1 &
    S3_PID=$!
    export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=cairn-test AWS_SECRET_ACCESS_KEY=cairn-test
    until "$VENV/bin/python" -c "import requests, sys; sys.exit(requests.put('$AWS_ENDPOINT/cairn-artifacts', timeout=2).status_code != 200)" 2>/dev/null; do
        if [ "$waited" -ge 30 ] || ! kill -0 "$S3_PID" 2>/dev/null; then
            cat "$S3_LOG" >&2
            die "the local S3 server (moto) did not start on port $port"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "S3 (moto) on $AWS_ENDPOINT, bucket cairn-artifacts"
}

step "Python conformance suite on PostgreSQL (database $CONFORMANCE_DB), artifacts on S3"
ensure_postgres
trap cleanup EXIT
start_s3
trap 'exit 130' INT
trap 'exit 143' TERM
pg_admin -c "CREATE DATABASE \"$CONFORMANCE_DB\""
CAIRN_BIN="$ROOT/target/debug/cairn" \
    CONFORMANCE_BACKEND_STORE_URI="$(pg_url_for_db "$CONFORMANCE_DB")" \
    CONFORMANCE_ARTIFACTS_DESTINATION="s3://cairn-artifacts/conformance" \
    CONFORMANCE_ARTIFACTS_PRESIGNED=1 \
    "$VENV/bin/python" -m pytest tests/conformance -q -p no:cacheprovider

# Starts Azurite's blob service on a free loopback port with one container and exports what
# object_store's Azure client reads for the emulator.
AZURITE_VERSION=3.37.0
start_azurite() {
    local tools="$ROOT/.tools/azurite" port waited=0
    command -v npm >/dev/null || die "npm is required for the Azure Blob Storage tests (Azurite); install Node.js"
    if [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
        npm install --silent --no-audit --no-fund --prefix "$tools" "azurite@$AZURITE_VERSION" ||
            die "could not install azurite@$AZURITE_VERSION from npm"
    fi
    port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$tools/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
        --location "$AZ_DIR" --silent --skipApiVersionCheck >"$AZ_DIR/log" 2>&1 &
    AZ_PID=$!
    export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$port"
    # Azurite's documented development account and key.
    local conn="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=$AZURITE_BLOB_STORAGE_URL/devstoreaccount1;"
    until "$VENV/bin/python" -c "from azure.storage.blob import BlobServiceClient as C; C.from_connection_string('$conn').create_container('cairn-artifacts')" 2>/dev/null; do
        if [ "$waited" -ge 30 ] || ! kill -0 "$AZ_PID" 2>/dev/null; then
            cat "$AZ_DIR/log" >&2
            die "Azurite did not start on port $port"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "Azure Blob Storage (Azurite $AZURITE_VERSION) on $AZURITE_BLOB_STORAGE_URL, container cairn-artifacts"
}

step "Artifact and model-flow tests with artifacts on Azure Blob Storage (Azurite)"
start_azurite
CAIRN_BIN="$ROOT/target/debug/cairn" \
    CONFORMANCE_ARTIFACTS_DESTINATION="az://cairn-artifacts/conformance" \
    "$VENV/bin/python" -m pytest tests/conformance/test_artifacts.py \
    tests/conformance/test_model_flow.py -q -p no:cacheprovider

step "Fuzzing the untrusted-input parsers (cargo-fuzz, ${CAIRN_FUZZ_SECONDS:-15}s per target)"
# A short run on every commit keeps the targets building and catches shallow crashes;
# scripts/fuzz.sh with a longer budget digs deeper.
"$ROOT/scripts/fuzz.sh" "${CAIRN_FUZZ_SECONDS:-15}"
