#!/usr/bin/env bash
# An MLflow tracking server on this machine, for a local Ray cluster (infra/local/cluster.sh) or tests.
#
#   infra/local/mlflow.sh up     [--backend sqlite|postgresql] [--port 5000] [--timeout S] [--dir DIR]
#   infra/local/mlflow.sh status [--dir DIR]
#   infra/local/mlflow.sh down   [--dir DIR]
#
# It listens on 127.0.0.1 only. Runs and models go to DIR/mlflow.db (sqlite), or to the PostgreSQL database
# named by $MLFLOW_BACKEND_STORE_URI (postgresql://user:password@host:5432/db, psycopg2 installed) with
# --backend postgresql. Clients upload artifacts through the server (--serve-artifacts), which stores them under
# DIR/artifacts. Point drsta at it with `--tracking-uri http://127.0.0.1:PORT`.
# The server's job runner (GenAI jobs, seven huey processes) is off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/local/common.sh
source "$here/common.sh"

usage() { # MESSAGE: what was wrong with the arguments
  echo "${0##*/}: error: $*" >&2
  cat >&2 <<EOF
usage: $0 up     [--backend sqlite|postgresql] [--port 5000] [--timeout S] [--dir DIR]
       $0 status [--dir DIR]
       $0 down   [--dir DIR]
EOF
  exit 2
}

command=${1:-}
[[ -n $command ]] || usage "missing command: up, status or down"
shift
backend=sqlite port=5000 timeout=60 dir=${TMPDIR:-/tmp}/drsta-mlflow
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage "$1 needs a value"
  case $1 in
    --backend) backend=$2 ;;
    --port) port=$2 ;;
    --timeout) timeout=$2 ;;
    --dir) dir=$2 ;;
    *) usage "unknown option $1" ;;
  esac
  shift 2
done
need_int --port "$port"
need_int --timeout "$timeout"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pid_file=$dir/mlflow.pid

mlflow_bin=${MLFLOW:-mlflow}
command -v "$mlflow_bin" >/dev/null ||
  die "'$mlflow_bin' not found: activate the virtualenv (source .venv/bin/activate) or set MLFLOW=/path/to/mlflow"
python=$(dirname "$(command -v "$mlflow_bin")")/python
export MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

running() {
  [[ -f $pid_file ]] && alive "$(cat "$pid_file")"
}

url() {
  echo "http://127.0.0.1:$(cat "$dir/port")"
}

healthy() {
  "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' "$(url)" \
    2>/dev/null
}

up() {
  local store pid waited
  running && die "an MLflow server from $dir is already running at $(url): stop it with '$0 down --dir $dir'"
  case $backend in
    sqlite) store=sqlite:///$dir/mlflow.db ;;
    postgresql)
      store=${MLFLOW_BACKEND_STORE_URI:-}
      [[ $store == postgresql* ]] ||
        die "--backend postgresql needs MLFLOW_BACKEND_STORE_URI=postgresql://user:password@host:5432/db"
      ;;
    *) usage "--backend must be sqlite or postgresql, got '$backend'" ;;
  esac
  need_free_port "$python" "$port" --port
  echo "$port" >"$dir/port"
  # The store URI may hold a password: it goes to mlflow's arguments, never to the output.
  setsid "$mlflow_bin" server --host 127.0.0.1 --port "$port" --workers 1 --backend-store-uri "$store" \
    --serve-artifacts --artifacts-destination "$dir/artifacts" >"$dir/mlflow.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  for ((waited = 0; waited < timeout * 2; waited++)); do
    if healthy; then
      echo "MLflow server up at $(url) (backend $backend, artifacts in $dir/artifacts, log $dir/mlflow.log)"
      echo "stop it with: $0 down --dir $dir"
      return 0
    fi
    if ! alive "$pid"; then
      tail_log "$dir/mlflow.log"
      die "mlflow server exited during start-up (is port $port free?)"
    fi
    sleep 0.5
  done
  tail_log "$dir/mlflow.log"
  down >&2
  die "mlflow server did not answer $(url)/health within ${timeout}s (raise --timeout on a busy machine)"
}

status() {
  running || die "no MLflow server is running from $dir: start one with '$0 up --dir $dir'"
  healthy || die "the MLflow server from $dir (PID $(cat "$pid_file")) does not answer $(url)/health"
  echo "MLflow server at $(url) is healthy (PID $(cat "$pid_file"))"
}

down() {
  if [[ ! -f $pid_file ]]; then
    echo "no MLflow server was started from $dir"
    return 0
  fi
  stop_sessions "--artifacts-destination $dir/artifacts" 30 "$(cat "$pid_file")"
  rm -f "$pid_file"
  echo "MLflow server from $dir stopped"
}

case $command in
  up) up ;;
  status) status ;;
  down) down ;;
  *) usage "unknown command '$command': use up, status or down" ;;
esac
