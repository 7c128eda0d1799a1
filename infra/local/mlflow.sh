#!/usr/bin/env bash
# An MLflow tracking server on this machine, for a local Ray cluster (infra/local/cluster.sh) or tests.
#
#   infra/local/mlflow.sh up     [--backend sqlite|postgresql] [--auth none|basic] [--port 5000] [--timeout S]
#                                [--artifacts DEST] [--dir DIR]
#   infra/local/mlflow.sh status --dir DIR
#   infra/local/mlflow.sh down   --dir DIR
#
# It listens on 127.0.0.1 only. Runs and models go to DIR/mlflow.db (sqlite), or to the PostgreSQL database
# named by $MLFLOW_BACKEND_STORE_URI (postgresql://user:password@host:5432/db, psycopg2 installed) with
# --backend postgresql. The store URI reaches the server through its environment, never its command line (which
# `ps` shows to every user), and is never printed. Clients upload artifacts through the server
# (--serve-artifacts), which stores them under DIR/artifacts, or at --artifacts DEST (s3://bucket/prefix: the
# server then needs AWS credentials in its environment, and AWS_ENDPOINT_URL for an S3-compatible store; clients
# need none). Point drsta at it with
# `--tracking-uri http://127.0.0.1:PORT`.
# DIR is private: without --dir, `up` makes a new one (mktemp -d) and prints it. A --dir must be a directory of
# yours with mode 700 (a missing one is created so), not a symbolic link, in directories that no one else can
# change. What the script creates is for your user only (umask 077).
# --auth basic runs MLflow's basic-auth app (needs `pip install 'mlflow[auth]'`): every request must then carry
# a user and password. The admin user is `admin`; its password is DIR/admin_password, generated (mode 600) if
# missing, never printed nor put on a command line (bring your own by writing it there first, a file of yours
# with mode 600; any other is refused). Users and permissions live in DIR/basic_auth.db, settings in
# DIR/basic_auth.ini. Clients authenticate with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, never
# with credentials in the tracking URI:
#   export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$(cat DIR/admin_password)"
# The server's job runner (GenAI jobs, seven huey processes) is off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true.
set -euo pipefail
umask 077

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# common.sh runs with our rights: source it only if no one but us or root can change it or its directory.
for path in "$here" "$here/common.sh"; do
  read -r owner mode < <(stat -c '%u %a' -- "$path")
  if [[ -L $path || ($owner != 0 && $owner != "$EUID") ]] || ((8#$mode & 8#022)); then
    echo "${0##*/}: error: $path could be changed by someone else (owner uid $owner, mode $mode): it must be" \
      "yours or root's and not writable by group or others ('chmod go-w $path')" >&2
    exit 1
  fi
done
# shellcheck source=infra/local/common.sh
source "$here/common.sh"

usage() { # MESSAGE: what was wrong with the arguments
  echo "${0##*/}: error: $*" >&2
  cat >&2 <<EOF
usage: $0 up     [--backend sqlite|postgresql] [--auth none|basic] [--port 5000] [--timeout S]
                 [--artifacts DEST] [--dir DIR]
       $0 status --dir DIR
       $0 down   --dir DIR
EOF
  exit 2
}

command=${1:-}
[[ -n $command ]] || usage "missing command: up, status or down"
[[ $command =~ ^(up|status|down)$ ]] || usage "unknown command '$command': use up, status or down"
shift
backend=sqlite auth=none port=5000 timeout=60 dir='' artifacts=''
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage "$1 needs a value"
  case $1 in
    --backend) backend=$2 ;;
    --auth) auth=$2 ;;
    --port) port=$2 ;;
    --timeout) timeout=$2 ;;
    --artifacts) artifacts=$2 ;;
    --dir) dir=$2 ;;
    *) usage "unknown option $1" ;;
  esac
  shift 2
done
need_int --port "$port"
need_int --timeout "$timeout"
[[ $backend =~ ^(sqlite|postgresql)$ ]] || usage "--backend must be sqlite or postgresql, got '$backend'"
[[ $auth =~ ^(none|basic)$ ]] || usage "--auth must be none or basic, got '$auth'"
if [[ -z $dir ]]; then
  [[ $command == up ]] || usage "$command needs --dir DIR, the directory 'up' printed"
  dir=$(mktemp -d "${TMPDIR:-/tmp}/drsta-mlflow.XXXXXX")
elif [[ $command == down && ! -e $dir && ! -L $dir ]]; then
  echo "no MLflow server was started from $dir"
  exit 0
fi
dir=$(private_dir "$dir" "$([[ $command != up ]] || echo create)")
pid_file=$dir/mlflow.pid
password_file=$dir/admin_password
artifacts=${artifacts:-$dir/artifacts}

mlflow_bin=${MLFLOW:-mlflow}
command -v "$mlflow_bin" >/dev/null ||
  die "'$mlflow_bin' not found: activate the virtualenv (source .venv/bin/activate) or set MLFLOW=/path/to/mlflow"
python=$(dirname "$(command -v "$mlflow_bin")")/python
export MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

running() {
  [[ -f $pid_file ]] && alive "$(read_int "$pid_file" PID)"
}

url() {
  echo "http://127.0.0.1:$(read_int "$dir/port" port)"
}

healthy() {
  "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' "$(url)" \
    2>/dev/null
}

# prepare_basic_auth: the admin password file and the settings file that `--app-name basic-auth` reads.
prepare_basic_auth() {
  check_secret "$password_file"
  "$python" -c 'import flask_wtf' 2>/dev/null ||
    die "--auth basic needs Flask-WTF beside mlflow: pip install 'mlflow[auth]'"
  if [[ ! -e $password_file ]]; then
    # The admin user is created once, with the password of that first start.
    [[ ! -e $dir/basic_auth.db ]] ||
      die "$dir/basic_auth.db holds an admin user whose password, $password_file, is gone: delete the database" \
        "to start afresh"
    new_secret "$password_file"
  fi
  # configparser reads "%" as the start of an interpolation: "%%" is a literal one.
  printf '%s\n' '[mlflow]' 'default_permission = READ' "database_uri = sqlite:///${dir//%/%%}/basic_auth.db" \
    'authorization_function = mlflow.server.auth:authenticate_request_basic_auth' >"$dir/basic_auth.ini"
}

# serve: `mlflow server`, in a session of its own; run in a subshell, whose environment alone gets the secrets.
# They travel as environment variables, which only our user (and root) can read: arguments are shown by `ps`.
serve() {
  local secret_key app=()
  export MLFLOW_BACKEND_STORE_URI=$store
  if [[ $auth == basic ]]; then
    app=(--app-name basic-auth)
    MLFLOW_AUTH_ADMIN_PASSWORD=$(<"$password_file")
    # Signs the auth app's CSRF tokens: every worker of this server needs the same one.
    secret_key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini MLFLOW_AUTH_ADMIN_USERNAME=admin MLFLOW_AUTH_ADMIN_PASSWORD \
      MLFLOW_FLASK_SERVER_SECRET_KEY=$secret_key
  fi
  exec setsid "$mlflow_bin" server "${app[@]}" --host 127.0.0.1 --port "$port" --workers 1 --serve-artifacts \
    --artifacts-destination "$artifacts"
}

up() {
  local store pid waited
  running && die "an MLflow server from $dir is already running at $(url): stop it with '$0 down --dir $dir'"
  if [[ $backend == sqlite ]]; then
    store=sqlite:///$dir/mlflow.db
  else
    store=${MLFLOW_BACKEND_STORE_URI:-}
    [[ $store == postgresql* ]] ||
      die "--backend postgresql needs MLFLOW_BACKEND_STORE_URI=postgresql://user:password@host:5432/db"
  fi
  [[ $auth == none ]] || prepare_basic_auth
  need_free_port "$python" "$port" --port
  echo "$port" >"$dir/port"
  echo "$artifacts" >"$dir/artifacts_destination"  # `down` finds the server by it
  (serve) >"$dir/mlflow.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  for ((waited = 0; waited < timeout * 2; waited++)); do
    if healthy; then
      echo "MLflow server up at $(url) (backend $backend, artifacts in $artifacts, log $dir/mlflow.log)"
      if [[ $auth == basic ]]; then
        echo "basic auth: user admin, password in $password_file (mode 600: keep it so, never print it); clients:"
        echo "  export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=\"\$(cat $password_file)\""
      fi
      echo "stop it with: $0 down --dir $dir"
      return 0
    fi
    if ! alive "$pid"; then
      tail_log "$dir/mlflow.log"
      die "mlflow server exited during start-up (is port $port free? log: $dir/mlflow.log)"
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
  local pid
  if [[ ! -f $pid_file ]]; then
    echo "no MLflow server was started from $dir"
    return 0
  fi
  pid=$(read_int "$pid_file" PID) || exit 1
  # Started by an older script without the record: its artifacts were in DIR/artifacts (the default).
  [[ ! -f $dir/artifacts_destination ]] || artifacts=$(<"$dir/artifacts_destination")
  stop_sessions "--artifacts-destination $artifacts" 30 "$pid"
  rm -f "$pid_file"
  echo "MLflow server from $dir stopped"
}

case $command in
  up) up ;;
  status) status ;;
  down) down ;;
esac
