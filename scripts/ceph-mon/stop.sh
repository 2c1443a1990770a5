#!/usr/bin/env bash
# Stop the monitor that scripts/ceph-mon/start.sh started from $CEPH_MON_DIR (by its recorded
# PID, and only if that PID is still a ceph-mon).
#   PURGE=1  also delete the folder (the next start creates a new cluster with a new fsid)
set -uo pipefail

dir=${CEPH_MON_DIR:-$PWD/target/ceph-mon}
pidfile=$dir/run/mon.a.pid

if [[ ! -f $pidfile ]]; then
  echo "no monitor recorded in $dir"
else
  pid=$(<"$pidfile")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == ceph-mon ]]; then
    kill -TERM "$pid"
    # up to 5 s to shut down cleanly, then force it
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped ceph-mon PID $pid"
  else
    echo "recorded PID $pid is not a running ceph-mon (already stopped)"
  fi
  rm -f "$pidfile"
fi

if [[ ${PURGE:-0} == 1 ]]; then
  rm -rf "$dir"
  echo "purged $dir"
fi
