# shellcheck shell=bash
# Helpers shared by cluster.sh and mlflow.sh (sourced, not run; each script first checks that no one else can
# change this file or its directory).
#
# Every long-running process is started with `setsid`, so it leads a session of its own and everything it
# spawns (raylets, dashboard, Ray workers, uvicorn...) stays in that session: stopping "exactly what this
# script started" means stopping the members of those sessions and nothing else. Linux does not reuse a PID
# while a process still uses it as its session id, so a session's members are ours whenever its leader is gone;
# while the leader lives, it must be the command we recorded.
#
# The state directory holds secrets (the Ray token, the MLflow admin password), PID files that say what to kill,
# and logs: it must be a directory that only we can use, reached through directories that only we or root can
# change. Its files are read as data (never `source`d), and a secret found there is used only if it is a
# regular file of ours that no one else can read.

die() {
  echo "${0##*/}: error: $*" >&2
  exit 1
}

# need_int NAME VALUE: VALUE must be a non-negative integer.
need_int() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

# owner_and_mode PATH: "UID OCTAL_MODE" of PATH itself (a symbolic link is not followed).
owner_and_mode() {
  stat -c '%u %a' -- "$1"
}

# private_dir DIR [create]: DIR's real path, once checked to be a directory of ours with no access for group or
# others, below directories that only we or root can change (sticky ones such as /tmp aside: there no one can
# rename what is ours). With `create`, a missing DIR is made (mode 700). A DIR that is itself a symbolic link is
# refused: it would point the state, and what `down` deletes, somewhere else.
private_dir() {
  local dir=$1 path owner mode
  [[ ! -L $dir ]] || die "--dir $dir is a symbolic link: pass the directory itself"
  if [[ ! -e $dir && ${2:-} == create ]]; then
    mkdir -p -- "$(dirname -- "$dir")"
    mkdir -m 700 -- "$dir" || die "could not create --dir $dir"
  fi
  [[ -d $dir && ! -L $dir ]] || die "--dir $dir is not a directory"
  dir=$(realpath -e -- "$dir")
  read -r owner mode < <(owner_and_mode "$dir")
  [[ $owner == "$EUID" ]] ||
    die "--dir $dir belongs to uid $owner, not to you (uid $EUID): pass a directory of your own, or no --dir"
  (((8#$mode & 8#077) == 0)) ||
    die "--dir $dir is open to group or others (mode $mode): run 'chmod 700 $dir', or pass a new --dir"
  path=$dir
  while [[ $path != / ]]; do
    path=$(dirname -- "$path")
    read -r owner mode < <(owner_and_mode "$path")
    if [[ $owner != 0 && $owner != "$EUID" ]] || ((8#$mode & 8#022 && !(8#$mode & 8#1000))); then
      die "--dir $dir lies in $path, which someone else can change (owner uid $owner, mode $mode): pass a --dir" \
        "in a directory of your own"
    fi
  done
  echo "$dir"
}

# check_secret FILE: fail unless FILE (if it exists) is a non-empty regular file of ours that only we can read.
# In a private directory only we (or root) can have put it there; anything else may be a secret someone planted
# to get in, or one they could read.
check_secret() {
  local file=$1 owner mode
  [[ -e $file || -L $file ]] || return 0
  read -r owner mode < <(owner_and_mode "$file")
  if [[ -L $file || ! -f $file || ! -s $file || $owner != "$EUID" ]] || ((8#$mode & 8#077)); then
    die "$file is not a secret this script can trust (owner uid $owner, mode $mode, $(stat -c %F -- "$file")):" \
      "someone else may have planted it or can read it. Delete it to have a new one generated; if you put it" \
      "there yourself, make it a non-empty file of yours with 'chmod 600 $file'"
  fi
}

# new_secret FILE: write 32 random bytes, hex, to a new FILE of mode 600 (never through an existing file or link).
new_secret() {
  (umask 077 && set -o noclobber && { od -An -tx1 -N32 /dev/urandom | tr -d ' \n' && echo; } >"$1")
}

# read_int FILE WHAT: the integer FILE holds (a PID, a port), checked.
read_int() {
  local value
  value=$(<"$1")
  need_int "$2 in $1" "$value"
  echo "$value"
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
