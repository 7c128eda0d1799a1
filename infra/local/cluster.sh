#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, with token authentication: a head and N worker nodes, each
# its own `ray start --block` process, for job-submission tests and for trying multi-node runs locally.
#
#   infra/local/cluster.sh up     [--workers N] [--cpus-per-node C] [--head-cpus H] [--port P]
#                                 [--dashboard-port D] [--object-store-mb M] [--timeout S] [--dir STATE_DIR]
#   infra/local/cluster.sh status --dir STATE_DIR
#   infra/local/cluster.sh down   --dir STATE_DIR
#
# Defaults fit a 2-core machine: a 1-CPU head and one 2-CPU worker (logical CPUs may exceed the cores); nodes
# get no GPUs. --port / --dashboard-port 0 (the default) pick free ports. `source STATE_DIR/env` then points
# `ray job`, `ray.init()` and drsta at the cluster (job drivers run on the head: give them absolute paths, or
# the names of the built-in configs):
#   ray job submit -- drsta train --config synthetic_cpu --manifest "$PWD/data/synth-ingest"
#
# Needs `ray` on PATH (activate .venv) or RAY=/path/to/ray; its environment's python is used too.
# STATE_DIR (PID files, logs, the token, `env`) is private: without --dir, `up` makes a new one (mktemp -d) and
# prints it. A --dir must be a directory of yours with mode 700 (a missing one is created so), not a symbolic
# link, in directories that no one else can change. What the script creates is for your user only (umask 077).
# The token is a file, STATE_DIR/auth_token, generated (mode 600) if missing and never printed. To reuse a token,
# put it there before `up` as a file of yours with mode 600; any other (someone may have planted it to get in,
# or can read it) is refused. The dashboard and Jobs API listen on 127.0.0.1 only. The GCS port listens on every
# interface (Ray binds it so): the token is what guards it.
# Several raylets on one host need their own dashboard-agent port (default 52365 would clash) and random
# worker ports (the default 10002-19999 range would be handed out twice); each cluster gets its own short
# --temp-dir, /tmp/drsta-ray-XXXXXX (Unix socket paths must stay under 108 bytes), so it never touches /tmp/ray
# or another cluster; `down` deletes it only while its real path is still the directory mktemp made for us.
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
usage: $0 up     [--workers N] [--cpus-per-node C] [--head-cpus H] [--port P] [--dashboard-port D]
                 [--object-store-mb M] [--timeout S] [--dir STATE_DIR]
       $0 status --dir STATE_DIR
       $0 down   --dir STATE_DIR
EOF
  exit 2
}

command=${1:-}
[[ -n $command ]] || usage "missing command: up, status or down"
[[ $command =~ ^(up|status|down)$ ]] || usage "unknown command '$command': use up, status or down"
shift
workers=1 cpus_per_node=2 head_cpus=1 port=0 dashboard_port=0 object_store_mb=512 timeout=120 state_dir=
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || usage "$1 needs a value"
  case $1 in
    --workers) workers=$2 ;;
    --cpus-per-node) cpus_per_node=$2 ;;
    --head-cpus) head_cpus=$2 ;;
    --port) port=$2 ;;
    --dashboard-port) dashboard_port=$2 ;;
    --object-store-mb) object_store_mb=$2 ;;
    --timeout) timeout=$2 ;;
    --dir) state_dir=$2 ;;
    *) usage "unknown option $1" ;;
  esac
  shift 2
done
for option in workers cpus_per_node head_cpus port dashboard_port object_store_mb timeout; do
  need_int "--${option//_/-}" "${!option}"
done
if [[ -z $state_dir ]]; then
  [[ $command == up ]] || usage "$command needs --dir STATE_DIR, the directory 'up' printed"
  state_dir=$(mktemp -d "${TMPDIR:-/tmp}/drsta-ray-cluster.XXXXXX")
elif [[ $command == down && ! -e $state_dir && ! -L $state_dir ]]; then
  echo "no cluster was started from $state_dir"
  exit 0
fi
state_dir=$(private_dir "$state_dir" "$([[ $command != up ]] || echo create)")

ray_bin=${RAY:-ray}
command -v "$ray_bin" >/dev/null ||
  die "'$ray_bin' not found: activate the virtualenv (source .venv/bin/activate) or set RAY=/path/to/ray"
python=$(dirname "$(command -v "$ray_bin")")/python
[[ -x $python ]] || die "no python beside $ray_bin; set RAY to the ray of a virtualenv"

token_path=$state_dir/auth_token
# The token comes from this file only: RAY_AUTH_TOKEN would take precedence over it.
unset RAY_AUTH_TOKEN RAY_ADDRESS RAY_API_SERVER_ADDRESS
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_path RAY_USAGE_STATS_ENABLED=0
# As drsta's own local Ray (pipelines/ray_runtime.py, LOCAL_RAY_ENV): idle worker processes live a minute, so
# each epoch's decode tasks reuse the last epoch's, and Ray Train's controller takes reports every 0.5 s.
export RAY_idle_worker_killing_time_threshold_ms=${RAY_idle_worker_killing_time_threshold_ms:-60000}
export RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=${RAY_TRAIN_HEALTH_CHECK_INTERVAL_S:-0.5}

# The `ray start --block` PIDs, from head.pid, worker-1.pid, ...
leaders() {
  local file
  for file in "$state_dir"/head.pid "$state_dir"/worker-*.pid; do
    [[ -f $file ]] && read_int "$file" PID
  done
  return 0
}

running() {
  [[ -f $state_dir/head.pid ]] && alive "$(read_int "$state_dir/head.pid" PID)"
}

# state_value KEY: KEY's value in STATE_DIR/state, read as data (the file is never sourced).
state_value() {
  sed -n "s/^$1=//p" "$state_dir/state" 2>/dev/null | head -n 1
}

# recorded_temp_dir: the Ray temp dir `up` recorded, which must look exactly like what
# `mktemp -d /tmp/drsta-ray-XXXXXX` makes (no "..", no "/" after the prefix).
recorded_temp_dir() {
  local dir
  dir=$(state_value temp_dir)
  [[ $dir =~ ^/tmp/drsta-ray-[A-Za-z0-9]{6}$ ]] ||
    die "$state_dir/state is missing or damaged (temp_dir='$dir'): stop the nodes by hand (PIDs in $state_dir/*.pid)"
  echo "$dir"
}

start_node() { # NAME ARGS...: start one `ray start --block` in a session of its own
  local name=$1
  shift
  setsid "$ray_bin" start --block --temp-dir "$temp_dir" --num-gpus 0 --min-worker-port 0 --max-worker-port 0 \
    --dashboard-agent-listen-port "$(free_port "$python")" --object-store-memory $((object_store_mb << 20)) \
    --disable-usage-stats "$@" >"$state_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$state_dir/$name.pid"
}

fail_up() {
  echo "stopping what was started..." >&2
  down >&2 || true
  exit 1
}

# Wait until every node is alive and the Jobs API answers an authenticated request.
wait_ready() {
  timeout "$timeout" "$python" - "127.0.0.1:$port" "http://127.0.0.1:$dashboard_port" $((workers + 1)) <<'EOF'
import sys, time, urllib.request

import ray
from ray._raylet import AuthenticationTokenLoader

address, dashboard, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
while sum(node["Alive"] for node in ray.nodes()) < expected:
    time.sleep(0.5)
ray.shutdown()
headers = AuthenticationTokenLoader.instance().get_token_for_http_header()
while True:
    try:
        urllib.request.urlopen(urllib.request.Request(f"{dashboard}/api/jobs/", headers=headers), timeout=5)
        break
    except OSError:
        time.sleep(0.5)
EOF
}

up() {
  local pids
  if running; then
    die "a cluster from $state_dir is already running: stop it with '$0 down --dir $state_dir'"
  fi
  pids=$(leaders) || exit 1
  [[ -z $pids ]] || down # what is left of a cluster whose head died
  check_secret "$token_path"
  [[ -e $token_path ]] || new_secret "$token_path"
  [[ $port -ne 0 ]] || port=$(free_port "$python")
  [[ $dashboard_port -ne 0 ]] || dashboard_port=$(free_port "$python")
  need_free_port "$python" "$port" --port
  need_free_port "$python" "$dashboard_port" --dashboard-port
  rm -f "$state_dir"/*.pid "$state_dir"/*.log
  temp_dir=$(mktemp -d /tmp/drsta-ray-XXXXXX)
  printf '%s\n' "port=$port" "dashboard_port=$dashboard_port" "temp_dir=$temp_dir" >"$state_dir/state"
  # For `source STATE_DIR/env` in the user's shell (a file only they can write), every value quoted.
  printf 'export %s=%q\n' RAY_AUTH_MODE token RAY_AUTH_TOKEN_PATH "$token_path" RAY_ADDRESS "127.0.0.1:$port" \
    RAY_API_SERVER_ADDRESS "http://127.0.0.1:$dashboard_port" >"$state_dir/env"

  # Every process of this cluster asks its own dashboard: the State API would otherwise resolve the newest Ray on
  # this host, and Ray Train's PlacementGroupCleaner, finding no such job there, removes live runs' groups.
  export RAY_API_SERVER_ADDRESS="http://127.0.0.1:$dashboard_port"
  start_node head --head --port "$port" --num-cpus "$head_cpus" --dashboard-host 127.0.0.1 \
    --dashboard-port "$dashboard_port" --ray-client-server-port "$(free_port "$python")"
  wait_for_line "$state_dir/head.log" "Ray runtime started" "$(cat "$state_dir/head.pid")" "$timeout" "the head node" ||
    fail_up
  # One at a time: raylets that register concurrently on one host can race (ray-project/ray#10154).
  for ((i = 1; i <= workers; i++)); do
    start_node "worker-$i" --address "127.0.0.1:$port" --num-cpus "$cpus_per_node"
    wait_for_line "$state_dir/worker-$i.log" "Ray runtime started" "$(cat "$state_dir/worker-$i.pid")" "$timeout" \
      "worker node $i" || fail_up
  done
  if ! wait_ready >"$state_dir/ready.log" 2>&1; then
    tail_log "$state_dir/ready.log"
    echo "${0##*/}: error: the nodes or the Jobs API were not ready within ${timeout}s" >&2
    fail_up
  fi

  cat <<EOF
Ray cluster up: a head ($head_cpus CPU) and $workers worker node(s) ($cpus_per_node CPUs each), state in $state_dir
  GCS address       127.0.0.1:$port   (ray.init(address=...), drsta --address)
  dashboard / jobs  http://127.0.0.1:$dashboard_port   (127.0.0.1 only)
  token file        $token_path   (mode 600: keep it so, never print it)
  client settings   source $state_dir/env
  logs              $state_dir/*.log, $temp_dir/session_latest/logs
  stop              $0 down --dir $state_dir
EOF
}

status() {
  running || die "no cluster is running from $state_dir: start one with '$0 up --dir $state_dir'"
  port=$(state_value port) dashboard_port=$(state_value dashboard_port)
  need_int "port in $state_dir/state" "$port"
  need_int "dashboard_port in $state_dir/state" "$dashboard_port"
  echo "GCS 127.0.0.1:$port, dashboard / jobs http://127.0.0.1:$dashboard_port, token file $token_path"
  # From the GCS: `ray status` shows the autoscaler's view, which lags seconds behind a node's start.
  "$python" - "127.0.0.1:$port" <<'EOF'
import sys

import ray

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
for node in sorted(ray.nodes(), key=lambda node: "node:__internal_head__" not in node["Resources"]):
    role = "head" if "node:__internal_head__" in node["Resources"] else "worker"
    state = "alive" if node["Alive"] else "dead"
    cpus, store = node["Resources"].get("CPU", 0), node["Resources"].get("object_store_memory", 0) / 2**20
    print(f"node_{node['NodeID']}  {role:6}  {state:5}  {cpus:g} CPU  {store:.0f} MiB object store")
EOF
}

down() {
  local pids temp_dir owner mode
  pids=$(leaders) || exit 1
  if [[ -z $pids ]]; then
    echo "no cluster was started from $state_dir"
    return 0
  fi
  temp_dir=$(recorded_temp_dir) || exit 1
  # A node drains for up to 30 s on SIGTERM before it stops its processes.
  # shellcheck disable=SC2086  # one PID per word
  stop_sessions "--temp-dir $temp_dir" 45 $pids
  rm -f "$state_dir"/*.pid
  # Only the directory mktemp made: not a link, not a path that resolves elsewhere, not someone else's.
  if [[ -d $temp_dir && ! -L $temp_dir ]]; then
    read -r owner mode < <(owner_and_mode "$temp_dir")
    if [[ $(realpath -e -- "$temp_dir") == "$temp_dir" && $owner == "$EUID" ]]; then
      rm -rf -- "$temp_dir"
    else
      echo "left $temp_dir in place: it is not the directory 'up' made (owner uid $owner, mode $mode)" >&2
    fi
  fi
  echo "Ray cluster from $state_dir stopped"
}

case $command in
  up) up ;;
  status) status ;;
  down) down ;;
esac
