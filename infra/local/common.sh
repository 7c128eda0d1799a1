# shellcheck shell=bash
# Helpers shared by cluster.sh and mlflow.sh (sourced, not run).
#
# Every long-running process is started with `setsid`, so it leads a session of its own and everything it
# spawns (raylets, dashboard, Ray workers, uvicorn...) stays in that session: stopping "exactly what this
# script started" means stopping the members of those sessions and nothing else. Linux does not reuse a PID
# while a process still uses it as its session id, so a session's members are ours whenever its leader is gone;
# while the leader lives, it must be the command we recorded.

die() {
  echo "${0##*/}: error: $*" >&2
  exit 1
}

# need_int NAME VALUE: VALUE must be a non-negative integer.
need_int() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

# tail_log FILE: the end of a log, for error messages.
tail_log() {
  if [[ -s $1 ]]; then
    echo "--- last lines of $1:" >&2
    tail -n 25 "$1" >&2
  fi
}

# alive PID: whether the process exists and is not a zombie (dead, waiting for its parent or init to reap it).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $stat != Z* ]]
}

# cmdline PID: the command line of a process, spaces between the arguments.
cmdline() {
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# session_members LEADER_PID MARKER: the PIDs in LEADER_PID's session, if that session is ours (the leader
# is gone, or its command line contains MARKER).
session_members() {
  local leader=$1 marker=$2
  if alive "$leader" && [[ $(cmdline "$leader") != *"$marker"* ]]; then
    return 0 # the PID now belongs to someone else's process
  fi
  ps -e -o pid=,sid=,stat= | awk -v sid="$leader" '$2 == sid && $3 !~ /^Z/ { print $1 }'
}

# stop_sessions MARKER TIMEOUT_S LEADER_PID...: SIGTERM each leader, wait up to TIMEOUT_S for all of their
# sessions to end, then SIGKILL what is left. Fails if anything survives. What a dead leader left behind has no
# one to stop it in order (Ray's agents outlive a SIGTERM once their raylet is gone): it is killed at once.
stop_sessions() {
  local marker=$1 timeout=$2 leader pid left
  shift 2
  for leader in "$@"; do
    if alive "$leader"; then
      if [[ $(cmdline "$leader") == *"$marker"* ]]; then
        kill -TERM "$leader" 2>/dev/null || true
      fi
    else
      for pid in $(session_members "$leader" "$marker"); do
        kill -KILL "$pid" 2>/dev/null || true
      done
    fi
  done
  for ((waited = 0; waited < timeout * 2; waited++)); do
    left=$(for leader in "$@"; do session_members "$leader" "$marker"; done)
    [[ -z $left ]] && return 0
    sleep 0.5
  done
  echo "still running after ${timeout}s, killing: $(echo "$left" | tr '\n' ' ')" >&2
  for pid in $left; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 1
  left=$(for leader in "$@"; do session_members "$leader" "$marker"; done)
  [[ -z $left ]] || die "processes survived SIGKILL: $(echo "$left" | tr '\n' ' ')"
}

# free_port PYTHON: a TCP port that nothing listens on right now.
free_port() {
  "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# need_free_port PYTHON PORT OPTION: fail unless nothing listens on PORT (OPTION names the flag that chose it).
need_free_port() {
  "$1" -c 'import socket, sys; socket.create_server(("127.0.0.1", int(sys.argv[1])))' "$2" 2>/dev/null ||
    die "port $2 is in use: pass another $3"
}

# wait_for_line FILE PATTERN PID TIMEOUT_S WHAT: wait until FILE has a line matching PATTERN, failing early
# (with the log's tail) if PID exits.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3 timeout=$4 what=$5 waited
  for ((waited = 0; waited < timeout * 2; waited++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    if ! alive "$pid"; then
      tail_log "$file"
      echo "${0##*/}: error: $what exited during start-up" >&2
      return 1
    fi
    sleep 0.5
  done
  tail_log "$file"
  echo "${0##*/}: error: $what did not start within ${timeout}s (raise --timeout on a busy machine)" >&2
  return 1
}
