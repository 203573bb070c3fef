# shellcheck shell=bash
# Shared code for scripts/up, scripts/down, scripts/status and scripts/reset.
# Sourced, never executed. See docs/local-infrastructure.md.
#
# Everything listens on loopback only (127.0.0.1). The scripts own two processes (the Kafka
# broker and the MongoDB-compatible server): only those get PID files in $RUN_DIR. PostgreSQL
# and Redis are system services; the scripts install and start them when missing, and record
# in $RUN_DIR only the fact that they started them (so `down` stops nothing it did not start).

set -euo pipefail

# --- locations ---------------------------------------------------------------------------------

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO="$(cd "$SCRIPTS_DIR/.." && pwd -P)"
# Both made absolute: processes are started from other working directories.
TOOLS="$(realpath -m -- "${LEDGERLINE_TOOLS_DIR:-$HOME/.local/share/ledgerline/tools}")"
DATA="$(realpath -m -- "${LEDGERLINE_DATA_DIR:-$REPO/.local}")"
KAFKA_DATA="$DATA/kafka"
MONGO_DATA="$DATA/mongo"
RUN_DIR="$DATA/run"
LOG_DIR="$DATA/log"

# --- pinned tools ------------------------------------------------------------------------------

NISSHI_VERSION="0.8.1"
# libsql is the storage the local broker runs on; postgres is the storage engine the benchmarks
# can switch to (LEDGERLINE_KAFKA_STORAGE=postgres, see docs/benchmarks.md). The features are part
# of the install root, so a build with another feature set is never mistaken for this one.
NISSHI_FEATURES="libsql,postgres"
NISSHI_ROOT="$TOOLS/nisshi-$NISSHI_VERSION-${NISSHI_FEATURES//,/-}"
NISSHI_BIN="$NISSHI_ROOT/bin/nisshi"
NISSHI_BUILD_DIR="${LEDGERLINE_NISSHI_BUILD_DIR:-$HOME/.cache/ledgerline-nisshi-build}"

SECANTUS_VERSION="0.7.0b3"
SECANTUS_VENV="$TOOLS/secantusdb-$SECANTUS_VERSION"
SECANTUS_BIN="$SECANTUS_VENV/bin/secantusd-py"
SECANTUS_PY="$SECANTUS_VENV/bin/python"

# Debian packages the workspace build and the tests need (rdkafka's cmake-build feature needs
# cmake and libcurl headers; wrk drives the HTTP load tests; the integration guide's bash client,
# which ingress's tests run, needs curl and openssl).
BUILD_PACKAGES=(build-essential pkg-config cmake libcurl4-openssl-dev python3-venv wrk curl openssl)

# --- addresses (loopback only; ports can be overridden, the host cannot) -----------------------

HOST="127.0.0.1"

port_var() { # name default -> validated port number
    local value="$2"
    if [[ ! "$value" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$1 must be a TCP port number, got '$value'"
    fi
    printf '%s' "$value"
}

# --- output ------------------------------------------------------------------------------------

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
    C_BOLD=$'\e[1m' C_DIM=$'\e[2m' C_RED=$'\e[31m' C_GREEN=$'\e[32m' C_YELLOW=$'\e[33m' C_OFF=$'\e[0m'
else
    C_BOLD="" C_DIM="" C_RED="" C_GREEN="" C_YELLOW="" C_OFF=""
fi

say() { printf '%s==>%s %s\n' "$C_BOLD" "$C_OFF" "$*"; }
info() { printf '    %s\n' "$*"; }
ok() { printf '    %s✓%s %s\n' "$C_GREEN" "$C_OFF" "$*"; }
warn() { printf '%swarning:%s %s\n' "$C_YELLOW" "$C_OFF" "$*" >&2; }
die() {
    printf '%serror:%s %s\n' "$C_RED" "$C_OFF" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

KAFKA_PORT="$(port_var LEDGERLINE_KAFKA_PORT "${LEDGERLINE_KAFKA_PORT:-9092}")"
MONGO_PORT="$(port_var LEDGERLINE_MONGO_PORT "${LEDGERLINE_MONGO_PORT:-27017}")"
PG_PORT="$(port_var LEDGERLINE_PG_PORT "${LEDGERLINE_PG_PORT:-5432}")"
REDIS_PORT="$(port_var LEDGERLINE_REDIS_PORT "${LEDGERLINE_REDIS_PORT:-6379}")"

KAFKA_URL="tcp://$HOST:$KAFKA_PORT"
KAFKA_PARTITIONS="${LEDGERLINE_KAFKA_PARTITIONS:-12}"
[[ "$KAFKA_PARTITIONS" =~ ^[1-9][0-9]*$ ]] || die "LEDGERLINE_KAFKA_PARTITIONS must be a positive integer"
# Kafka's group.initial.rebalance.delay.ms; nisshi defaults to 3s, which makes every test that
# starts a fresh consumer group wait ~3.5 s for its first message.
KAFKA_REBALANCE_DELAY="${LEDGERLINE_KAFKA_GROUP_INITIAL_REBALANCE_DELAY:-250ms}"
# How long the sqlite engine waits for the database's write lock before it fails the request.
# While the test suite ran four tests at a time on two cores, a produce waited out nisshi's
# default of 5 s and the broker answered UNKNOWN_SERVER_ERROR, which a producer does not retry.
# What held the lock is not known: each produce holds it briefly, and sqlite's busy handler
# polls rather than queues, so one writer can keep losing it to others; the broker's 10-minute
# retention sweep, which reads the whole record table under the lock, took 0.35 s over 836k
# records when measured. Clients stay bounded by their own timeouts (request 5 s, message 10 s;
# ingress's produce timeout answers 503). Keep in step with testkit's broker.rs
# (SQLITE_BUSY_TIMEOUT).
KAFKA_SQLITE_BUSY_TIMEOUT="${LEDGERLINE_KAFKA_SQLITE_BUSY_TIMEOUT:-30s}"
[[ "$KAFKA_SQLITE_BUSY_TIMEOUT" =~ ^[1-9][0-9]*(ms|s)$ ]] ||
    die "LEDGERLINE_KAFKA_SQLITE_BUSY_TIMEOUT must be a duration such as 30s or 500ms"
# Where the broker keeps its log: `sqlite` (a file under $KAFKA_DATA; the default, and what the
# tests run on) or `postgres` (the database $KAFKA_PG_DATABASE on the local PostgreSQL). nisshi's
# sqlite engine re-reads the whole backlog behind a fetch offset on every fetch and one header row
# per query; its postgres engine bounds a fetch to 10000 rows, reads headers by range and produces
# with COPY (docs/benchmarks.md, "What the postgres storage changes").
KAFKA_STORAGE="${LEDGERLINE_KAFKA_STORAGE:-sqlite}"
case "$KAFKA_STORAGE" in
sqlite | postgres) ;;
*) die "LEDGERLINE_KAFKA_STORAGE must be 'sqlite' or 'postgres', got '$KAFKA_STORAGE'" ;;
esac
KAFKA_PG_DATABASE="${LEDGERLINE_KAFKA_PG_DATABASE:-ledgerline_kafka}"
[[ "$KAFKA_PG_DATABASE" =~ ^[a-z_][a-z0-9_]*$ ]] ||
    die "LEDGERLINE_KAFKA_PG_DATABASE must match [a-z_][a-z0-9_]*, got '$KAFKA_PG_DATABASE'"
KAFKA_TOPICS=(txn.requests txn.outcomes txn.postings txn.requests.dlq txn.outcomes.dlq txn.postings.dlq)

PG_DATABASE="${LEDGERLINE_PG_DATABASE:-ledgerline}"
PG_USER="postgres"
# The Debian cluster the scripts start when PostgreSQL is not answering (version: newest
# installed).
PG_CLUSTER="${LEDGERLINE_PG_CLUSTER:-main}"

KAFKA_START_TIMEOUT="${LEDGERLINE_KAFKA_START_TIMEOUT:-60}"
MONGO_START_TIMEOUT="${LEDGERLINE_MONGO_START_TIMEOUT:-90}"
PG_START_TIMEOUT="${LEDGERLINE_PG_START_TIMEOUT:-60}"
REDIS_START_TIMEOUT="${LEDGERLINE_REDIS_START_TIMEOUT:-30}"
STOP_TIMEOUT="${LEDGERLINE_STOP_TIMEOUT:-15}"

if [[ $EUID -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi

ensure_dirs() { mkdir -p "$KAFKA_DATA" "$MONGO_DATA" "$RUN_DIR" "$LOG_DIR"; }

# Serialise up/down/reset (two concurrent `up`s would otherwise race to start the same broker).
take_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    if ! flock -n 9; then
        say "waiting for another scripts/up|down|reset to finish (lock $RUN_DIR/.lock)"
        flock 9
    fi
}

# --- PID files (only for processes these scripts started) --------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# pid_of NAME MATCH: print the PID recorded for NAME if that process is alive and its command line
# contains MATCH (guards against PID reuse); remove a stale PID file. Returns 1 when not running.
pid_of() {
    local name="$1" match="$2" file pid cmdline
    file="$(pid_file "$name")"
    [[ -f "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        if [[ "$cmdline" == *"$match"* ]]; then
            printf '%s' "$pid"
            return 0
        fi
    fi
    info "removing stale PID file $file (pid ${pid:-?} is not $name)" >&2
    rm -f "$file"
    return 1
}

# start_detached NAME LOGFILE WORKDIR CMD...: start CMD in its own session, immune to hangups,
# stdin from /dev/null, output appended to LOGFILE; write NAME's PID file.
start_detached() {
    local name="$1" log="$2" workdir="$3" pid
    shift 3
    printf '\n===== %s: starting %s: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$log"
    # fds 8/9 hold the scripts' locks: the daemon must not inherit them.
    (cd "$workdir" && exec setsid nohup "$@" >>"$log" 2>&1 </dev/null 8>&- 9>&-) &
    pid=$!
    printf '%s\n' "$pid" >"$(pid_file "$name")"
    info "started $name (pid $pid, log $log)"
}

# stop_pid NAME MATCH: SIGTERM the recorded process, wait up to $STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
    local name="$1" match="$2" pid i
    if ! pid="$(pid_of "$name" "$match")"; then
        info "$name: not running (no live PID file)"
        return 0
    fi
    info "$name: SIGTERM to pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        local j
        for ((j = 0; j < 50; j++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
            i=$((i + 1))
        done
    fi
    rm -f "$(pid_file "$name")"
    ok "$name stopped (was pid $pid, after $((i / 10)).$((i % 10))s)"
}

# wait_until DESCRIPTION TIMEOUT LOGFILE PID PROBE...: run PROBE until it succeeds; fail loudly
# with the log tail when the deadline passes or PID (if given) dies.
wait_until() {
    local what="$1" timeout="$2" log="$3" pid="$4" start now
    shift 4
    start=$SECONDS
    while true; do
        if "$@" >/dev/null 2>&1; then
            ok "$what ready after $((SECONDS - start))s"
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$log"
            die "$what exited during start-up (pid $pid); see $log"
        fi
        now=$SECONDS
        if ((now - start >= timeout)); then
            show_log_tail "$log"
            die "$what not ready after ${timeout}s; see $log"
        fi
        sleep 0.25
    done
}

show_log_tail() {
    [[ -n "$1" && -f "$1" ]] || return 0
    printf '%s----- last 30 lines of %s -----%s\n' "$C_DIM" "$1" "$C_OFF" >&2
    tail -n 30 "$1" >&2 || true
    printf '%s-----%s\n' "$C_DIM" "$C_OFF" >&2
}

# --- probes (real protocol requests, not port checks) ------------------------------------------

probe_pg() { pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2; }

probe_redis() { [[ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

# MongoDB `hello` + `buildInfo` through pymongo (a dependency of secantusdb, so always in its
# venv). Prints one line: the replica set name, whether it is primary, the wire version.
probe_mongo() {
    [[ -x "$SECANTUS_PY" ]] || return 1
    timeout 10 "$SECANTUS_PY" - "$HOST" "$MONGO_PORT" <<'PY'
import sys
import pymongo
try:
    client = pymongo.MongoClient(sys.argv[1], int(sys.argv[2]), directConnection=True,
                                 serverSelectionTimeoutMS=2000, connectTimeoutMS=2000)
    hello = client.admin.command("hello")
    build = client.admin.command("buildInfo")
except Exception as e:
    print(f"hello failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
    sys.exit(1)
print(f"hello ok, replica set {hello.get('setName', '-')!s}, "
      f"primary={hello.get('isWritablePrimary')}, wire version {build.get('version')}")
PY
}

# Kafka ApiVersions v0 over a plain socket (stdlib only). Prints the number of API keys offered.
probe_kafka() {
    local py
    py="$(command -v python3 || true)"
    [[ -n "$py" ]] || py="$SECANTUS_PY"
    timeout 10 "$py" - "$HOST" "$KAFKA_PORT" <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
client_id = b"ledgerline-probe"
def fail(msg):
    print(msg)
    sys.exit(1)
body = struct.pack(">hhih", 18, 0, 0x4C4C, len(client_id)) + client_id  # ApiVersions v0
try:
  with socket.create_connection((host, port), timeout=3) as s:
    s.settimeout(3)
    s.sendall(struct.pack(">i", len(body)) + body)
    def read(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise OSError("connection closed by the broker")
            buf += chunk
        return buf
    (size,) = struct.unpack(">i", read(4))
    resp = read(size)
except OSError as e:
    fail(f"ApiVersions failed: {e}")
correlation, error, count = struct.unpack(">ihi", resp[:10])
if correlation != 0x4C4C or error != 0 or count <= 0:
    fail(f"bad ApiVersions response: correlation={correlation} error={error}")
print(f"ApiVersions ok, {count} API keys")
PY
}

# --- versions ----------------------------------------------------------------------------------

nisshi_installed_version() {
    [[ -x "$NISSHI_BIN" ]] || return 1
    "$NISSHI_BIN" --version 2>/dev/null | awk '{print $NF; exit}'
}

secantus_installed_version() {
    [[ -x "$SECANTUS_PY" ]] || return 1
    "$SECANTUS_PY" -c 'import importlib.metadata as m; print(m.version("secantusdb"))' 2>/dev/null
}

pg_server_version() {
    psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres -tAc 'show server_version' 2>/dev/null |
        awk '{print $1; exit}'
}

redis_info() { # field
    timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" info server 2>/dev/null |
        tr -d '\r' | awk -F: -v f="$1" '$1 == f {print $2; exit}'
}

# --- installation ------------------------------------------------------------------------------

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

APT_UPDATED=0
apt_install() { # packages...
    ((${#@})) || return 0
    have apt-get || die "apt-get not found: install $* by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)); then
        say "apt-get update"
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# Installs, in one apt transaction, the build packages plus PostgreSQL/Redis when their binaries
# are missing. A machine that has everything does no apt work at all.
ensure_packages() {
    local missing=() pkg
    for pkg in "${BUILD_PACKAGES[@]}"; do
        pkg_installed "$pkg" || missing+=("$pkg")
    done
    if ! have pg_ctlcluster || ! have pg_isready || ! have psql || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        missing+=(postgresql)
    fi
    if ! have redis-server || ! have redis-cli; then
        missing+=(redis-server)
    fi
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    else
        ok "Debian packages present (${BUILD_PACKAGES[*]}, postgresql, redis-server)"
    fi
}

ensure_nisshi() {
    local version
    version="$(nisshi_installed_version || true)"
    if [[ "$version" == "$NISSHI_VERSION" ]]; then
        ok "nisshi $NISSHI_VERSION present ($NISSHI_BIN)"
        return 0
    fi
    have cargo || die "cargo not found; install Rust (rustup) to build nisshi $NISSHI_VERSION"
    mkdir -p "$TOOLS" "$LOG_DIR"
    # Another `up` (from another clone) may be building into the same root: wait for it.
    exec 8>"$TOOLS/.nisshi-$NISSHI_VERSION.lock"
    if ! flock -n 8; then
        say "another process is installing nisshi $NISSHI_VERSION; waiting for it"
        flock 8
        version="$(nisshi_installed_version || true)"
        if [[ "$version" == "$NISSHI_VERSION" ]]; then
            ok "nisshi $NISSHI_VERSION present ($NISSHI_BIN)"
            exec 8>&-
            return 0
        fi
    fi
    local log="$LOG_DIR/nisshi-build.log" pid rc=0 start=$SECONDS last
    say "building nisshi $NISSHI_VERSION with cargo install (found: ${version:-none})"
    info "a cold build takes ~30 min on 2 cores and ~1.7 GB of memory; it happens once per machine"
    info "root $NISSHI_ROOT, target dir $NISSHI_BUILD_DIR, log $log"
    CARGO_TARGET_DIR="$NISSHI_BUILD_DIR" cargo install nisshi --version "$NISSHI_VERSION" \
        --locked --ignore-rust-version --no-default-features --features "$NISSHI_FEATURES" \
        --root "$NISSHI_ROOT" >"$log" 2>&1 </dev/null &
    pid=$!
    local next_report=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 2
        if ((SECONDS >= next_report)); then
            next_report=$((SECONDS + 60))
            last="$(grep -E '^ *(Compiling|Downloaded|Installing|Finished)' "$log" | tail -n 1 | sed 's/^ *//')"
            info "$(((SECONDS - start) / 60)) min: ${last:-…}"
        fi
    done
    wait "$pid" || rc=$?
    exec 8>&-
    if ((rc != 0)); then
        show_log_tail "$log"
        die "cargo install nisshi failed (exit $rc); see $log"
    fi
    version="$(nisshi_installed_version || true)"
    [[ "$version" == "$NISSHI_VERSION" ]] || die "nisshi built but reports version '${version:-?}'"
    ok "nisshi $NISSHI_VERSION installed in $(((SECONDS - start) / 60)) min"
}

ensure_secantus() {
    local version
    version="$(secantus_installed_version || true)"
    if [[ "$version" == "$SECANTUS_VERSION" && -x "$SECANTUS_BIN" ]]; then
        ok "secantusdb $SECANTUS_VERSION present ($SECANTUS_VENV)"
        return 0
    fi
    mkdir -p "$TOOLS"
    if [[ -d "$SECANTUS_VENV" ]] && ! "$SECANTUS_PY" -c 'pass' 2>/dev/null; then
        warn "the venv $SECANTUS_VENV is broken (its python does not run); recreating it"
        rm -rf -- "$SECANTUS_VENV"
    fi
    if [[ ! -x "$SECANTUS_PY" ]]; then
        say "creating venv $SECANTUS_VENV"
        python3 -m venv "$SECANTUS_VENV"
    fi
    say "pip install secantusdb==$SECANTUS_VERSION (found: ${version:-none})"
    "$SECANTUS_VENV/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$SECANTUS_VERSION"
    version="$(secantus_installed_version || true)"
    [[ "$version" == "$SECANTUS_VERSION" ]] || die "secantusdb install reports version '${version:-?}'"
    ok "secantusdb $SECANTUS_VERSION installed"
}

started_by_label() { # postgresql|redis
    if [[ -f "$RUN_DIR/$1.started-by-scripts" ]]; then
        printf 'started earlier by scripts/up'
    else
        printf 'system service, not managed by these scripts'
    fi
}

# --- PostgreSQL (system service) ---------------------------------------------------------------

pg_version() { # newest installed major version, or $LEDGERLINE_PG_VERSION
    if [[ -n "${LEDGERLINE_PG_VERSION:-}" ]]; then
        printf '%s' "$LEDGERLINE_PG_VERSION"
        return
    fi
    local v
    # shellcheck disable=SC2012 # version directory names are plain numbers
    v="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    # shellcheck disable=SC2012
    [[ -n "$v" ]] || v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
    printf '%s' "$v"
}

pg_postmaster_pid() { # version cluster
    local datadir
    datadir="$(pg_lsclusters -h 2>/dev/null | awk -v v="$1" -v c="$2" '$1 == v && $2 == c {print $6}')"
    [[ -n "$datadir" ]] || return 1
    "${SUDO[@]}" head -n 1 "$datadir/postmaster.pid" 2>/dev/null
}

ensure_postgres() {
    if probe_pg; then
        ok "PostgreSQL answering on $HOST:$PG_PORT ($(started_by_label postgresql))"
    else
        local ver
        ver="$(pg_version)"
        [[ -n "$ver" ]] || die "no PostgreSQL installation found under /etc/postgresql or /usr/lib/postgresql"
        if [[ ! -d "/etc/postgresql/$ver/$PG_CLUSTER" ]]; then
            say "creating PostgreSQL cluster $ver/$PG_CLUSTER (port $PG_PORT)"
            "${SUDO[@]}" pg_createcluster "$ver" "$PG_CLUSTER" --port "$PG_PORT"
        fi
        say "starting PostgreSQL $ver/$PG_CLUSTER"
        "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start 8>&- 9>&- ||
            warn "pg_ctlcluster start returned non-zero (it may already be starting)"
        wait_until "PostgreSQL on $HOST:$PG_PORT" "$PG_START_TIMEOUT" \
            "/var/log/postgresql/postgresql-$ver-$PG_CLUSTER.log" "" probe_pg
        printf '%s %s %s\n' "$ver" "$PG_CLUSTER" "$(pg_postmaster_pid "$ver" "$PG_CLUSTER" || echo '?')" \
            >"$RUN_DIR/postgresql.started-by-scripts"
        info "recorded in $RUN_DIR/postgresql.started-by-scripts (scripts/down will stop it)"
    fi
    ensure_pg_trust
    ensure_pg_database
}

# The project connects as postgres without a password on 127.0.0.1. Debian's default pg_hba.conf
# asks TCP clients for a password (scram-sha-256); when a password-less login fails for that
# reason, add loopback `trust` rules at the top of pg_hba.conf (a backup is kept) and reload.
ensure_pg_trust() {
    local out
    if out="$(psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres -tAc 'select 1' 2>&1)"; then
        return 0
    fi
    if [[ "$out" != *password* ]]; then
        die "cannot connect to PostgreSQL as $PG_USER on $HOST:$PG_PORT: $out"
    fi
    local ver hba
    ver="$(pg_version)"
    hba="/etc/postgresql/$ver/$PG_CLUSTER/pg_hba.conf"
    [[ -f "$hba" ]] || die "PostgreSQL asks for a password and $hba does not exist; set PGPASSWORD or configure trust by hand"
    say "PostgreSQL asks for a password on $HOST: adding loopback trust rules to $hba"
    "${SUDO[@]}" cp -p "$hba" "$hba.ledgerline-backup"
    {
        printf '# Added by ledgerline scripts/up: password-less local development over loopback TCP.\n'
        printf 'host    all    all    127.0.0.1/32    trust\n'
        printf 'host    all    all    ::1/128         trust\n'
        "${SUDO[@]}" cat "$hba.ledgerline-backup"
    } | "${SUDO[@]}" tee "$hba.new" >/dev/null
    "${SUDO[@]}" chown --reference="$hba.ledgerline-backup" "$hba.new"
    "${SUDO[@]}" chmod --reference="$hba.ledgerline-backup" "$hba.new"
    "${SUDO[@]}" mv "$hba.new" "$hba"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" reload 8>&- 9>&-
    info "backup: $hba.ledgerline-backup"
    local i
    for ((i = 0; i < 20; i++)); do
        psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres -tAc 'select 1' >/dev/null 2>&1 && break
        sleep 0.25
    done
    psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres -tAc 'select 1' >/dev/null ||
        die "PostgreSQL still refuses a password-less login after the pg_hba.conf change"
    ok "PostgreSQL trusts $PG_USER on loopback"
}

pg_admin() { psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres "$@"; }

pg_database_exists() { [[ "$(pg_admin -tAc "select 1 from pg_database where datname = '$1'")" == "1" ]]; }

ensure_pg_database() { # [name], default $PG_DATABASE
    local name="${1:-$PG_DATABASE}"
    if pg_database_exists "$name"; then
        ok "database $name exists"
    else
        # A concurrent `up` may create it between the check and here; that is success too.
        pg_admin -q -c "create database \"$name\"" || pg_database_exists "$name" ||
            die "could not create database $name"
        ok "database $name created"
    fi
}

# --- Redis (system service) --------------------------------------------------------------------

ensure_redis() {
    if probe_redis; then
        ok "Redis answering on $HOST:$REDIS_PORT ($(started_by_label redis))"
        return 0
    fi
    say "starting Redis on $HOST:$REDIS_PORT (no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$RUN_DIR" --logfile "$LOG_DIR/redis.log" 8>&- 9>&-
    wait_until "Redis on $HOST:$REDIS_PORT" "$REDIS_START_TIMEOUT" "$LOG_DIR/redis.log" "" probe_redis
    printf '%s %s\n' "$REDIS_PORT" "$(redis_info process_id)" >"$RUN_DIR/redis.started-by-scripts"
    info "recorded in $RUN_DIR/redis.started-by-scripts (scripts/down will stop it)"
}

# Stops PostgreSQL/Redis only if these scripts started them and they are still that same process.
stop_system_services() {
    local marker="$RUN_DIR/redis.started-by-scripts" port pid now i
    if [[ -f "$marker" ]]; then
        read -r port pid <"$marker" || true
        now="$(REDIS_PORT="$port" redis_info process_id || true)"
        if [[ -n "$now" && "$now" == "$pid" ]]; then
            info "redis: started by scripts/up (pid $pid); SHUTDOWN NOSAVE"
            timeout 5 redis-cli -h "$HOST" -p "$port" shutdown nosave >/dev/null 2>&1 || true
            for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            ok "redis stopped"
        else
            info "redis: the server scripts/up started (pid ${pid:-?}) is gone; leaving Redis alone"
        fi
        rm -f "$marker"
    fi
    marker="$RUN_DIR/postgresql.started-by-scripts"
    if [[ -f "$marker" ]]; then
        local ver cluster
        read -r ver cluster pid <"$marker" || true
        now="$(pg_postmaster_pid "$ver" "$cluster" || true)"
        if [[ -n "$now" && "$now" == "$pid" ]]; then
            info "postgresql: started by scripts/up (pid $pid); pg_ctlcluster $ver $cluster stop"
            "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" stop || true
            ok "postgresql stopped"
        else
            info "postgresql: the server scripts/up started (pid ${pid:-?}) is gone; leaving PostgreSQL alone"
        fi
        rm -f "$marker"
    fi
}

# --- Kafka broker (ours) -----------------------------------------------------------------------

kafka_pid() { pid_of kafka "$NISSHI_BIN"; }

# The storage the broker these scripts started was given (sqlite for a broker started before the
# choice existed).
kafka_running_storage() { cat "$RUN_DIR/kafka.storage" 2>/dev/null || echo sqlite; }

start_kafka() {
    local pid
    if pid="$(kafka_pid)"; then
        local running
        running="$(kafka_running_storage)"
        # An explicit request for the other storage is refused; without one, the running broker
        # is used as it is (its storage shows in the table).
        if [[ "$running" != "$KAFKA_STORAGE" && -n "${LEDGERLINE_KAFKA_STORAGE:-}" ]]; then
            die "the broker (pid $pid) runs on $running storage, not $KAFKA_STORAGE; stop it first with scripts/down"
        fi
        ok "Kafka broker already running (pid $pid, $running storage)"
        KAFKA_WAIT_PID="$pid"
        return 0
    fi
    if probe_kafka >/dev/null 2>&1; then
        warn "a Kafka broker that these scripts did not start answers on $HOST:$KAFKA_PORT; using it as is"
        KAFKA_WAIT_PID=""
        return 0
    fi
    [[ -x "$NISSHI_BIN" ]] || die "nisshi not installed at $NISSHI_BIN"
    # The path goes into a URL unescaped (nisshi does not percent-decode it).
    [[ "$KAFKA_DATA" =~ ^/[A-Za-z0-9._/+-]+$ ]] ||
        die "the Kafka data path '$KAFKA_DATA' must be absolute and contain only [A-Za-z0-9._/+-]"
    local storage_url="sqlite://$KAFKA_DATA/broker.db?busy_timeout=$KAFKA_SQLITE_BUSY_TIMEOUT"
    if [[ "$KAFKA_STORAGE" == "postgres" ]]; then
        ensure_pg_database "$KAFKA_PG_DATABASE"
        # Loopback only: no TLS (Debian's cluster offers a certificate for "localhost", which the
        # client rejects for 127.0.0.1).
        storage_url="postgres://$PG_USER@$HOST:$PG_PORT/$KAFKA_PG_DATABASE?sslmode=disable"
    fi
    # `up` (when a broker is already running) and `status` read this; `reset` removes it.
    printf '%s\n' "$KAFKA_STORAGE" >"$RUN_DIR/kafka.storage"
    say "starting Kafka broker (nisshi $NISSHI_VERSION, $KAFKA_STORAGE storage) on $KAFKA_URL"
    # The sqlite engine resolves its file against the working directory even for an absolute
    # path (sqlite:///a/b is ./a/b), so the broker runs in / and gets an absolute path. Running in
    # / also keeps nisshi's dotenv lookup away from any .env file in the repository.
    # Settings nisshi would otherwise take from the caller's environment are cleared, so the
    # broker is the same for everyone; RUST_LOG only through LEDGERLINE_KAFKA_RUST_LOG.
    local -a envargs=(env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE -u CLUSTER_ID
        -u GROUP_POLL_INTERVAL -u RUST_LOG)
    [[ -z "${LEDGERLINE_KAFKA_RUST_LOG:-}" ]] || envargs+=("RUST_LOG=$LEDGERLINE_KAFKA_RUST_LOG")
    start_detached kafka "$LOG_DIR/kafka.log" / \
        "${envargs[@]}" \
        "$NISSHI_BIN" broker \
        --listener-url "$KAFKA_URL" \
        --advertised-listener-url "$KAFKA_URL" \
        --storage-engine "$storage_url" \
        --group-initial-rebalance-delay "$KAFKA_REBALANCE_DELAY"
    KAFKA_WAIT_PID="$(tr -dc '0-9' <"$(pid_file kafka)")"
}

wait_kafka() {
    wait_until "Kafka on $HOST:$KAFKA_PORT" "$KAFKA_START_TIMEOUT" "$LOG_DIR/kafka.log" \
        "${KAFKA_WAIT_PID:-}" probe_kafka
}

# The nisshi CLI (topic list/create), run like the broker: from / and without the caller's
# SCHEMA_REGISTRY/RUST_LOG (nisshi reads both, and a .env file, from its environment).
nisshi_cli() { (cd / && exec timeout 60 env -u SCHEMA_REGISTRY -u RUST_LOG "$NISSHI_BIN" "$@"); }

# kafka_topic_table: print "name partitions replicas" for every topic the broker knows.
kafka_topic_table() {
    local json
    json="$(nisshi_cli topic list --broker "$KAFKA_URL" 2>/dev/null)" || return 1
    printf '%s' "$json" | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    parts = t.get("partitions") or []
    replicas = max((len(p.get("replica_nodes") or []) for p in parts), default=0)
    print(t.get("name"), len(parts), replicas)
'
}

ensure_topics() {
    local table topic line have_parts out
    table="$(kafka_topic_table)" || die "nisshi topic list failed against $KAFKA_URL"
    for topic in "${KAFKA_TOPICS[@]}"; do
        line="$(awk -v t="$topic" '$1 == t' <<<"$table")"
        if [[ -n "$line" ]]; then
            have_parts="$(awk '{print $2}' <<<"$line")"
            if [[ "$have_parts" != "$KAFKA_PARTITIONS" ]]; then
                warn "topic $topic has $have_parts partitions, not $KAFKA_PARTITIONS (scripts/reset recreates it)"
            else
                ok "topic $topic exists ($have_parts partitions)"
            fi
            continue
        fi
        if out="$(nisshi_cli topic create "$topic" --broker "$KAFKA_URL" \
            --partitions "$KAFKA_PARTITIONS" --silent 2>&1)"; then
            ok "topic $topic created ($KAFKA_PARTITIONS partitions, replication 1)"
        elif kafka_topic_table | awk -v t="$topic" '$1 == t {f=1} END {exit !f}'; then
            ok "topic $topic exists (created concurrently)"
        else
            printf '%s\n' "$out" >&2
            die "could not create topic $topic"
        fi
    done
}

# --- MongoDB-compatible server (ours) ----------------------------------------------------------

mongo_pid() { pid_of mongo "$SECANTUS_BIN"; }

start_mongo() {
    local pid conf="$RUN_DIR/secantusd.toml"
    if pid="$(mongo_pid)"; then
        ok "MongoDB (secantusdb) already running (pid $pid)"
        MONGO_WAIT_PID="$pid"
        return 0
    fi
    if probe_mongo >/dev/null 2>&1; then
        warn "a MongoDB server that these scripts did not start answers on $HOST:$MONGO_PORT; using it as is"
        MONGO_WAIT_PID=""
        return 0
    fi
    [[ -x "$SECANTUS_BIN" ]] || die "secantusdb not installed at $SECANTUS_BIN"
    # An explicit (empty) --config turns off secantusd's auto-discovery of ./secantusd.toml,
    # ~/.secantus/secantusd.toml and /etc/secantus/secantusd.toml: the command line is the
    # whole configuration.
    printf '# Written by scripts/up. Empty on purpose: all settings are on the command line.\n' >"$conf"
    say "starting MongoDB-compatible server (secantusdb $SECANTUS_VERSION) on $HOST:$MONGO_PORT"
    start_detached mongo "$LOG_DIR/mongo.log" "$MONGO_DATA" \
        "$SECANTUS_BIN" --config "$conf" --host "$HOST" --port "$MONGO_PORT" --storage-path "$MONGO_DATA"
    MONGO_WAIT_PID="$(tr -dc '0-9' <"$(pid_file mongo)")"
}

wait_mongo() {
    wait_until "MongoDB on $HOST:$MONGO_PORT" "$MONGO_START_TIMEOUT" "$LOG_DIR/mongo.log" \
        "${MONGO_WAIT_PID:-}" probe_mongo
}

# --- reporting ---------------------------------------------------------------------------------

# service_row NAME -> "name|state|address|pid|version|probe" for the status table.
service_row() {
    local pid="" state="stopped" version="-" probe="" addr
    case "$1" in
    kafka)
        addr="$HOST:$KAFKA_PORT"
        pid="$(kafka_pid 2>/dev/null || true)"
        if probe="$(probe_kafka 2>&1)"; then state="running"; [[ -n "$pid" ]] || pid="external"; fi
        version="nisshi $(nisshi_installed_version 2>/dev/null || echo '(not installed)')"
        [[ -z "$pid" || "$pid" == "external" ]] || version+=" ($(kafka_running_storage))"
        ;;
    mongo)
        addr="$HOST:$MONGO_PORT"
        pid="$(mongo_pid 2>/dev/null || true)"
        if probe="$(probe_mongo 2>&1)"; then state="running"; [[ -n "$pid" ]] || pid="external"; fi
        version="secantusdb $(secantus_installed_version 2>/dev/null || echo '(not installed)')"
        ;;
    postgresql)
        addr="$HOST:$PG_PORT"
        if probe_pg 2>/dev/null; then
            state="running" pid="system"
            probe="pg_isready ok, db $PG_DATABASE: $(psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -w -d postgres -tAc \
                "select case when exists (select 1 from pg_database where datname = '$PG_DATABASE') then 'present' else 'missing' end" 2>&1 | head -n 1)"
            version="PostgreSQL $(pg_server_version || echo '?')"
        else
            probe="pg_isready: no response"
        fi
        ;;
    redis)
        addr="$HOST:$REDIS_PORT"
        if probe_redis; then
            state="running" pid="system" probe="PING -> PONG"
            version="Redis $(redis_info redis_version)"
        else
            probe="PING: no response"
        fi
        ;;
    esac
    # "system" services the scripts started are marked so.
    if [[ "$pid" == "system" && -f "$RUN_DIR/$1.started-by-scripts" ]]; then pid="system*"; fi
    [[ -n "$pid" ]] || pid="-"
    probe="$(tail -n 1 <<<"$probe")"
    printf '%s|%s|%s|%s|%s|%s\n' "$1" "$state" "$addr" "$pid" "$version" "${probe:0:90}"
}

print_table() { # rows on stdin, "|" separated; first row is the header
    awk -F'|' -v bold="$C_BOLD" -v off="$C_OFF" '
        { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
          if (NF > nf) nf = NF; n = NR }
        END {
            for (r = 1; r <= n; r++) {
                line = ""
                for (i = 1; i <= nf; i++) line = line sprintf(i < nf ? "%-" w[i] "s  " : "%s", cell[r, i])
                print (r == 1 ? bold line off : line)
            }
        }'
}

SERVICES=(kafka mongo postgresql redis)

# status_table: prints the table; returns 1 if any service is down.
status_table() {
    local svc rows
    rows="SERVICE|STATE|ADDRESS|PID|VERSION|PROBE"
    for svc in "${SERVICES[@]}"; do
        rows+=$'\n'"$(service_row "$svc")"
    done
    printf '%s\n' "$rows" | print_table
    ! grep -q '|stopped|' <<<"$rows"
}
