#!/usr/bin/env bash
# Start a one-monitor Ceph cluster (Debian's ceph-mon) bound to 127.0.0.1, for msgr1 interop tests.
#
#   scripts/ceph-mon/start.sh          prints PID=..., ADDRS=..., CEPH_CONF=...
#
# Environment:
#   CEPH_MON_DIR  state folder (default: target/ceph-mon below the current folder)
#   V1_PORT       msgr1 port, banner "ceph v027" (default 16789)
#   V2_PORT       msgr2 port (default 13300); 0 = no msgr2 listener
#   AUTH          none | cephx (default none)
#   DEBUG_MS      the monitor's debug_ms level (default 1; 20 logs every protocol step)
#
# Safe to run twice: a monitor already running from this folder is reported, not restarted.
# The store is created once and re-created only when the addresses or AUTH change (the monmap
# inside it records the addresses). Stop it with scripts/ceph-mon/stop.sh.
set -euo pipefail

dir=${CEPH_MON_DIR:-$PWD/target/ceph-mon}
v1=${V1_PORT:-16789}
v2=${V2_PORT:-13300}
auth=${AUTH:-none}
debug_ms=${DEBUG_MS:-1}
id=a

say() { echo "ceph-mon/start.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

case $auth in none | cephx) ;; *) die "AUTH must be none or cephx, not '$auth'" ;; esac

ensure_packages() {
  local tool missing=0
  for tool in ceph-mon ceph monmaptool ceph-authtool uuidgen ss; do
    command -v "$tool" >/dev/null || missing=1
  done
  [[ $missing == 0 ]] && return 0
  local pkgs=(ceph-mon ceph-common uuid-runtime iproute2)
  if [[ $(id -u) != 0 ]]; then
    die "Ceph is not installed; as root run: apt-get install -y --no-install-recommends ${pkgs[*]}"
  fi
  say "installing ${pkgs[*]} (a real Ceph monitor for the interop tests)"
  apt-cache show ceph-mon >/dev/null 2>&1 || apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
    --no-install-recommends "${pkgs[@]}" >&2
}

# The monitor addresses in Ceph's addrvec syntax.
addrvec() {
  if [[ $v2 != 0 ]]; then
    echo "[v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]"
  else
    echo "[v1:127.0.0.1:$v1]"
  fi
}

listening() { ss -Hltn "sport = :$1" | grep -q .; }

# PID of a monitor already running from this folder, if any.
running_pid() {
  local pidfile=$dir/run/mon.$id.pid pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == ceph-mon ]] &&
    echo "$pid"
}

write_conf() {
  local fsid=$1 addrs=$2 msgr2=false
  [[ $v2 != 0 ]] && msgr2=true
  cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = $addrs
mon_initial_members = $id
auth_cluster_required = $auth
auth_service_required = $auth
auth_client_required = $auth
ms_bind_msgr1 = true
ms_bind_msgr2 = $msgr2
ms_bind_ipv4 = true
ms_bind_ipv6 = false
run_dir = $dir/run
crash_dir = $dir/crash
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
mon_cluster_log_file = $dir/log/cluster.log
keyring = $dir/keyring
mon_data = $dir/mon/\$cluster-\$id
mon_allow_pool_size_one = true
mon_data_avail_crit = 1
mon_warn_on_insecure_global_id_reclaim_allowed = false

[mon]
debug_ms = $debug_ms
debug_mon = 10
debug_auth = 10

[mon.$id]
public_addrv = $addrs

[client]
log_file = /dev/null
CONF
}

# Creates the monitor store, unless one exists for the same addresses and auth mode.
make_store() {
  local fsid=$1 addrs=$2 stamp="$2 $auth"
  if [[ -d $dir/mon/ceph-$id/store.db && $(cat "$dir/addrv" 2>/dev/null) == "$stamp" ]]; then
    return 0
  fi
  rm -rf "$dir/mon/ceph-$id"
  # Keys are unused with AUTH=none but cost nothing, and cephx needs them.
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  monmaptool --create --clobber --fsid "$fsid" --addv "$id" "$addrs" "$dir/monmap" >/dev/null
  ceph-mon -c "$dir/ceph.conf" --mkfs -i "$id" --monmap "$dir/monmap" --keyring "$dir/keyring"
  echo "$stamp" >"$dir/addrv"
}

main() {
  ensure_packages
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  export CEPH_CONF=$dir/ceph.conf
  local addrs pid port
  addrs=$(addrvec)

  if pid=$(running_pid); then
    say "already running from $dir"
    echo "PID=$pid"
    echo "ADDRS=$(sed -n 's/^mon_host = //p' "$CEPH_CONF")"
    echo "CEPH_CONF=$CEPH_CONF"
    return 0
  fi

  mkdir -p "$dir"/{run,log,crash,mon}
  [[ -s $dir/fsid ]] || uuidgen >"$dir/fsid"
  write_conf "$(<"$dir/fsid")" "$addrs"
  make_store "$(<"$dir/fsid")" "$addrs"

  for port in "$v1" "$v2"; do
    [[ $port == 0 ]] && continue
    listening "$port" && die "port $port is already in use (another monitor? set V1_PORT / V2_PORT)"
  done

  # -f keeps it in the foreground, so the PID we record is the monitor itself.
  nohup ceph-mon -c "$CEPH_CONF" -i "$id" -f >"$dir/log/mon.$id.stdout" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/run/mon.$id.pid"
  local tries=0
  until listening "$v1"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "ceph-mon exited during start-up; its output:"
      tail -n 20 "$dir/log/mon.$id.stdout" >&2
      exit 1
    fi
    ((++tries > 150)) && die "ceph-mon (PID $pid) did not listen on port $v1 within 15 s; see $dir/log/"
    sleep 0.1
  done
  # Listening is not serving: until the monitor has won its (one-member) election it resets
  # clients that authenticate (seen on a starved machine). Wait for both ports and for the
  # leader state on its admin socket.
  tries=0
  until { [[ $v2 == 0 ]] || listening "$v2"; } &&
    ceph --admin-daemon "$dir/run/mon.$id.asok" mon_status 2>/dev/null | grep -q '"state": "leader"'; do
    ((++tries > 300)) && die "ceph-mon (PID $pid) listens but did not become leader within 30 s; see $dir/log/"
    sleep 0.1
  done
  echo "PID=$pid"
  echo "ADDRS=$addrs"
  echo "CEPH_CONF=$CEPH_CONF"
}

main "$@"
