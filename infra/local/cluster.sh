#!/usr/bin/env bash
# A multi-node Ray cluster on this one machine, with token authentication: a head and N worker nodes, each
# its own `ray start --block` process, for job-submission tests and for trying multi-node runs locally.
#
#   infra/local/cluster.sh up     [--workers N] [--cpus-per-node C] [--head-cpus H] [--port P]
#                                 [--dashboard-port D] [--object-store-mb M] [--timeout S] [--dir STATE_DIR]
#   infra/local/cluster.sh status [--dir STATE_DIR]
#   infra/local/cluster.sh down   [--dir STATE_DIR]
#
# Defaults fit a 2-core machine: a 1-CPU head and one 2-CPU worker (logical CPUs may exceed the cores); nodes
# get no GPUs. --port / --dashboard-port 0 (the default) pick free ports. `source STATE_DIR/env` then points
# `ray job`, `ray.init()` and drsta at the cluster (job drivers run on the head: give them absolute paths):
#   ray job submit -- drsta train --config "$PWD/configs/synthetic_cpu.yaml" --manifest "$PWD/data/synth-ingest"
#
# Needs `ray` on PATH (activate .venv) or RAY=/path/to/ray; its environment's python is used too.
# The token is a file, STATE_DIR/auth_token (generated if missing; put your own there to reuse one), never
# printed. The dashboard and Jobs API listen on 127.0.0.1 only. The GCS port listens on every interface (Ray
# binds it so): the token is what guards it.
# Several raylets on one host need their own dashboard-agent port (default 52365 would clash) and random
# worker ports (the default 10002-19999 range would be handed out twice); each cluster gets its own short
# --temp-dir (Unix socket paths must stay under 108 bytes), so it never touches /tmp/ray or another cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/local/common.sh
source "$here/common.sh"

usage() { # MESSAGE: what was wrong with the arguments
  echo "${0##*/}: error: $*" >&2
  cat >&2 <<EOF
usage: $0 up     [--workers N] [--cpus-per-node C] [--head-cpus H] [--port P] [--dashboard-port D]
                 [--object-store-mb M] [--timeout S] [--dir STATE_DIR]
       $0 status [--dir STATE_DIR]
       $0 down   [--dir STATE_DIR]
EOF
  exit 2
}

command=${1:-}
[[ -n $command ]] || usage "missing command: up, status or down"
shift
workers=1 cpus_per_node=2 head_cpus=1 port=0 dashboard_port=0 object_store_mb=512 timeout=120
state_dir=${TMPDIR:-/tmp}/drsta-ray-cluster
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
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)

ray_bin=${RAY:-ray}
command -v "$ray_bin" >/dev/null ||
  die "'$ray_bin' not found: activate the virtualenv (source .venv/bin/activate) or set RAY=/path/to/ray"
python=$(dirname "$(command -v "$ray_bin")")/python
[[ -x $python ]] || die "no python beside $ray_bin; set RAY to the ray of a virtualenv"

token_path=$state_dir/auth_token
# The token comes from this file only: RAY_AUTH_TOKEN would take precedence over it.
unset RAY_AUTH_TOKEN RAY_ADDRESS RAY_API_SERVER_ADDRESS
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$token_path RAY_USAGE_STATS_ENABLED=0

# The `ray start --block` PID files: head.pid, worker-1.pid, ...
leaders() {
  local file
  for file in "$state_dir"/head.pid "$state_dir"/worker-*.pid; do
    [[ -f $file ]] && cat "$file"
  done
  return 0
}

running() {
  [[ -f $state_dir/head.pid ]] && alive "$(cat "$state_dir/head.pid")"
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
  if running; then
    die "a cluster from $state_dir is already running: stop it with '$0 down --dir $state_dir'"
  fi
  [[ -z $(leaders) ]] || down # what is left of a cluster whose head died
  if [[ ! -s $token_path ]]; then
    (umask 077 && "$python" -c 'import secrets; print(secrets.token_hex(32))' >"$token_path")
  fi
  [[ $port -ne 0 ]] || port=$(free_port "$python")
  [[ $dashboard_port -ne 0 ]] || dashboard_port=$(free_port "$python")
  need_free_port "$python" "$port" --port
  need_free_port "$python" "$dashboard_port" --dashboard-port
  rm -f "$state_dir"/*.pid "$state_dir"/*.log
  temp_dir=$(mktemp -d /tmp/drsta-ray-XXXXXX)
  cat >"$state_dir/state" <<EOF
port=$port
dashboard_port=$dashboard_port
temp_dir=$temp_dir
EOF
  cat >"$state_dir/env" <<EOF
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$token_path
export RAY_ADDRESS=127.0.0.1:$port
export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$dashboard_port
EOF

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
  token file        $token_path
  client settings   source $state_dir/env
  logs              $state_dir/*.log, $temp_dir/session_latest/logs
  stop              $0 down --dir $state_dir
EOF
}

status() {
  running || die "no cluster is running from $state_dir: start one with '$0 up --dir $state_dir'"
  # shellcheck source=/dev/null
  source "$state_dir/state"
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
  local pids
  pids=$(leaders)
  if [[ -z $pids ]]; then
    echo "no cluster was started from $state_dir"
    return 0
  fi
  # shellcheck source=/dev/null
  source "$state_dir/state"
  # A node drains for up to 30 s on SIGTERM before it stops its processes.
  # shellcheck disable=SC2086  # one PID per word
  stop_sessions "--temp-dir $temp_dir" 45 $pids
  rm -f "$state_dir"/*.pid
  [[ $temp_dir == /tmp/drsta-ray-* ]] && rm -rf "$temp_dir"
  echo "Ray cluster from $state_dir stopped"
}

case $command in
  up) up ;;
  status) status ;;
  down) down ;;
  *) usage "unknown command '$command': use up, status or down" ;;
esac
