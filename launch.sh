#!/usr/bin/env bash
# launch.sh: bring up Ray and the judge, run a command against them, tidy up.
#
#   ./launch.sh                      start Ray (if none is reachable) and the judge, print
#                                    the status and how to stop, return
#   ./launch.sh CMD ARGS...          same, then run CMD with RAY_ADDRESS set; stop what
#                                    this script started when CMD ends
#   ./launch.sh --keep CMD ARGS...   leave Ray and the judge running after CMD
#   ./launch.sh --stop               stop the judge, and the Ray head launch.sh started
#
# Options (before CMD): --keep, --host IP (default 127.0.0.1: nothing listens beyond this
# machine; pass the node's address for a multi-node cluster: Ray's token authentication
# is then turned on, the token in ~/.ray/auth_token), --port N (GCS, 6379),
# --dashboard-port N (8265). The caller's environment (CLAUDE_CLI_PATH, LLM_JUDGE_*,
# provider keys and bases, LITELLM_*) reaches the judge and its workers.
set -euo pipefail

PYTHON=${PYTHON:-python}
HOST=127.0.0.1
PORT=6379
DASHBOARD_PORT=8265
KEEP=0
STOP=0

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep) KEEP=1; shift ;;
    --stop) STOP=1; shift ;;
    --host) HOST=${2:?--host needs an address}; shift 2 ;;
    --port) PORT=${2:?--port needs a number}; shift 2 ;;
    --dashboard-port) DASHBOARD_PORT=${2:?--dashboard-port needs a number}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "launch.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done

if ! "$PYTHON" -c 'import ray_judge' 2>/dev/null; then
  echo "launch.sh: '$PYTHON' cannot import ray_judge; install it first: pip install -e ." >&2
  exit 2
fi

export RAY_USAGE_STATS_ENABLED=${RAY_USAGE_STATS_ENABLED:-0}
if [[ "$HOST" == 127.* || "$HOST" == localhost ]]; then
  # Ray's own switch for a single-machine cluster: without it Ray replaces 127.0.0.1 with
  # the machine's network address and its processes talk over that interface.
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
fi

ray_judge() { "$PYTHON" -m ray_judge.cli "$@"; }

# A cluster others can reach runs code for whoever connects: any --host but 127.0.0.1 or
# localhost turns on Ray's token authentication (127.0.0.2 too: which addresses other
# machines can reach is not for this script to guess). Every Ray process, CLI and driver
# then needs RAY_AUTH_MODE=token and the token: RAY_AUTH_TOKEN, else the file
# RAY_AUTH_TOKEN_PATH, else Ray's default file ~/.ray/auth_token, made here (mode 600)
# when none exists. Other nodes get a copy of that file (see the README).
token_auth() {
  if [[ "${RAY_AUTH_MODE:-token}" != token ]]; then
    echo "launch.sh: --host $HOST makes the cluster reachable from other machines, where" \
      "RAY_AUTH_MODE=$RAY_AUTH_MODE would let anyone who reaches it run code on it;" \
      "unset RAY_AUTH_MODE (launch.sh then turns on token authentication)" >&2
    exit 2
  fi
  export RAY_AUTH_MODE=token
  if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
    AUTH_WHERE="RAY_AUTH_TOKEN"
  elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
    if [[ ! -s "$RAY_AUTH_TOKEN_PATH" ]]; then
      echo "launch.sh: RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH is not a readable token file" >&2
      exit 2
    fi
    AUTH_WHERE=$RAY_AUTH_TOKEN_PATH
  else
    AUTH_WHERE="$HOME/.ray/auth_token"
    if [[ ! -s "$AUTH_WHERE" ]]; then
      # Ray writes it with the default umask; nobody else on this machine may read it.
      (umask 077 && mkdir -p "$HOME/.ray" && ray get-auth-token --generate >/dev/null 2>&1) || {
        echo "launch.sh: \`ray get-auth-token --generate\` failed" >&2; exit 1; }
      echo "launch.sh: generated a Ray authentication token in $AUTH_WHERE"
    fi
    chmod 600 "$AUTH_WHERE"
  fi
  echo "launch.sh: Ray token authentication is on (RAY_AUTH_MODE=token, token from" \
    "$AUTH_WHERE); other nodes and drivers need both: see the README's launch.sh section"
}
LOCAL_ONLY=0
if [[ "$HOST" == 127.0.0.1 || "$HOST" == localhost ]]; then LOCAL_ONLY=1; fi

# What this script starts it stops, and nothing else: `ray stop` would end every Ray
# process on the machine, other people's clusters included. So `ray start` runs in a
# process group of its own (which its daemons keep), recorded next to Ray's
# ray_current_cluster file for --stop; workers exit with their raylet.
RAY_TEMP_ROOT="${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray"
STATE_FILE="$RAY_TEMP_ROOT/ray_judge_launch_head"

stop_started_ray() {  # PGID ADDRESS
  local pgid=$1 address=$2 which pids
  # In `ray stop`'s order, not all at once (a raylet whose GCS is going away takes many
  # seconds to exit): the raylet, whose workers and agents follow it, the other daemons,
  # the GCS last; each gets 5 s, then whatever is left of the group is killed.
  for which in raylet others gcs_server; do
    pids=$(ps -eo pid=,pgid=,comm= | awk -v g="$pgid" -v w="$which" '$2 == g {
      sub(".*/", "", $3)
      if (w == "others" ? ($3 != "raylet" && $3 != "gcs_server") : $3 == w) print $1 }')
    [[ -z "$pids" ]] && continue
    # shellcheck disable=SC2086  # one pid per word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
      # shellcheck disable=SC2086
      kill -0 $pids 2>/dev/null || break
      sleep 0.1
    done
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$STATE_FILE"
  # As `ray stop` does: forget the address, so `ray status` does not wait for a dead GCS.
  if [[ "$(cat "$RAY_TEMP_ROOT/ray_current_cluster" 2>/dev/null)" == "$address" ]]; then
    rm -f "$RAY_TEMP_ROOT/ray_current_cluster"
  fi
}

if [[ $STOP == 1 ]]; then
  pgid="" address="" auth=""
  if [[ -f "$STATE_FILE" ]]; then read -r pgid address auth < "$STATE_FILE"; fi
  # A head started with token authentication answers only with the token.
  if [[ "$auth" == token ]]; then export RAY_AUTH_MODE=token; fi
  ray_judge stop || true
  if [[ -n "$pgid" ]]; then
    stop_started_ray "$pgid" "$address"
    echo "launch.sh: stopped the Ray head at $address"
  else
    echo "launch.sh: no Ray head started by launch.sh here; Ray keeps running" \
      "(\`ray stop\` ends every Ray process on this machine)"
  fi
  exit 0
fi

if [[ $LOCAL_ONLY == 0 ]]; then token_auth; fi

# The cluster to join: RAY_ADDRESS, else the one `ray start` recorded in this Ray temp
# dir, if its GCS answers. Not `ray status` alone: with nothing recorded it joins any
# cluster it can find among the machine's processes, someone else's included.
reachable() {  # ADDRESS
  "$PYTHON" -c 'import socket, sys; host, _, port = sys.argv[1].rpartition(":")
socket.create_connection((host, int(port)), timeout=2).close()' "$1" 2>/dev/null &&
    ray status --address "$1" >/dev/null 2>&1
}
RECORDED=$(cat "$RAY_TEMP_ROOT/ray_current_cluster" 2>/dev/null || true)

STARTED_RAY=0
if [[ -n "${RAY_ADDRESS:-}" ]]; then
  echo "launch.sh: using the running Ray cluster at $RAY_ADDRESS"
elif [[ -n "$RECORDED" ]] && reachable "$RECORDED"; then
  export RAY_ADDRESS=$RECORDED
  echo "launch.sh: using the running Ray cluster at $RAY_ADDRESS"
else
  echo "launch.sh: starting a Ray head on $HOST:$PORT (dashboard http://$HOST:$DASHBOARD_PORT)"
  "$PYTHON" -c 'import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])' \
    ray start --head --node-ip-address="$HOST" --port="$PORT" \
    --include-dashboard=true --dashboard-host="$HOST" --dashboard-port="$DASHBOARD_PORT" \
    --disable-usage-stats >/dev/null &
  RAY_PGID=$!
  if ! wait "$RAY_PGID"; then
    # A failed `ray start` (a port in use) can leave some of its daemons running.
    stop_started_ray "$RAY_PGID" "$HOST:$PORT"
    echo "launch.sh: could not start Ray on $HOST:$PORT (see the messages above)" >&2
    exit 1
  fi
  mkdir -p "$RAY_TEMP_ROOT" && echo "$RAY_PGID $HOST:$PORT ${RAY_AUTH_MODE:-disabled}" \
    > "$STATE_FILE"
  STARTED_RAY=1
  export RAY_ADDRESS="$HOST:$PORT"
fi

STARTED_JUDGE=0
if ! ray_judge status >/dev/null 2>&1; then
  STARTED_JUDGE=1
fi
cleanup() {
  local code=$?
  if [[ $KEEP == 0 ]]; then
    if [[ $STARTED_JUDGE == 1 ]]; then ray_judge stop >/dev/null 2>&1 || true; fi
    if [[ $STARTED_RAY == 1 ]]; then stop_started_ray "$RAY_PGID" "$HOST:$PORT"; fi
  fi
  exit "$code"
}
if [[ $# -gt 0 ]]; then trap cleanup EXIT INT TERM; fi

ray_judge start

if [[ $# -eq 0 ]]; then
  echo
  echo "Ray and the judge are up. RAY_ADDRESS=$RAY_ADDRESS"
  echo "  status:  python -m ray_judge.cli status   (or: ray-judge status)"
  echo "  switch:  python switch_judge_backend.py litellm MODEL | ccode | show | remove"
  echo "  stop:    ./launch.sh --stop"
  exit 0
fi

# Programs that call ray.init() without a namespace should still find the judge by its
# bare name (ray.get_actor("judge")): Ray honours RAY_NAMESPACE only for ray:// clients,
# so a sitecustomize shipped with ray_judge applies it to plain ray.init() as well.
export RAY_NAMESPACE=${LLM_JUDGE_NAMESPACE:-ray_judge}
SHIM=$("$PYTHON" -c 'import os, ray_judge; print(os.path.join(os.path.dirname(ray_judge.__file__), "_launch"))')
export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"

set +e
"$@"
code=$?
set -e
exit $code
