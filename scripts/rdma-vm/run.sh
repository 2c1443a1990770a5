#!/usr/bin/env bash
# scripts/rdma-vm/run.sh CMD [ARGS...]
#
# Runs CMD as root inside a throw-away qemu VM that has a working Soft-RoCE device `rxe0`, then
# powers the VM off and exits with CMD's exit status. For machines without RDMA hardware (or a
# kernel without RDMA): the msgr-rdma tests and the RDMA half of `cargo xtask bench` use it.
#
#   scripts/rdma-vm/run.sh ibv_devinfo
#   scripts/rdma-vm/run.sh target/debug/deps/rdma-<hash> --test-threads 1
#   RXE_VM_RW="$PWD/target" scripts/rdma-vm/run.sh cargo test -p msgr-rdma --offline
#
# The VM
#   kernel   Debian's generic linux-image-*-amd64 (the -cloud flavour lacks rdma_rxe and 9p),
#            downloaded with `apt-get download` and unpacked into the cache, never installed.
#   root     this machine's / shared read-only over virtio-9p under a tmpfs overlay: every host
#            path (binaries, ~/.cargo, target/) is there; guest writes vanish at power-off except
#            in folders named in RXE_VM_RW, which are shared read-write.
#   network  rdma_rxe on a netdev with address $RXE_VM_IP/24 (dummy0 by default); nothing leaves.
#            The netdev also gets the IPv6 address $RXE_VM_IP6/64 (rxe adds a RoCE v2 GID for every
#            address of its netdev, so rdma_cm works over IPv6 too), and a second netdev with no
#            RDMA device, norxe0, gets fd00:6d73:6773::15/64 for "no device there" checks.
#   CMD      runs as root in the host's current folder with the host's environment, ulimit -l
#            unlimited, plus RDMA_DEV=rxe0, RDMA_IP=<ip>, RDMA_NETDEV=<netdev>, and with IPv6
#            RDMA_IP6=<ip6> and NO_RDMA_IP6=<the norxe0 address>. Its stdout and stderr come back
#            here through virtio-serial ports. Stdin is not forwarded.
#
# Knobs (environment)
#   RXE_VM_DIR=~/.cache/msgr-rdma-vm   cache: kernel, initramfs, per-run folders
#   RXE_VM_ACCEL=auto|tcg|kvm          auto: kvm if the CPU has vmx/svm and /dev/kvm is writable
#   RXE_VM_MEM=2048 RXE_VM_SMP=2       guest memory (MiB) and CPUs
#   RXE_VM_TIMEOUT=900                 seconds for the whole VM run
#   RXE_VM_NET=dummy|virtio            virtio: eth0 on qemu user-net with restrict=on instead
#   RXE_VM_IP=10.0.2.15                address of the netdev under rxe0 (inside the VM only)
#   RXE_VM_IP6=fd00:6d73:6772::15      its IPv6 address (ULA, no DAD); empty: no IPv6 addresses,
#                                      no norxe0, RDMA_IP6 and NO_RDMA_IP6 unset
#   RXE_VM_MTU=1500                    netdev MTU (9000 gives rxe an active MTU of 4096)
#   RXE_VM_RW="dir ..."                host folders shared read-write (no spaces in names)
#   RXE_VM_SETUP='shell commands'      run in the guest as root before CMD
#   RXE_VM_KPKG=linux-image-...        kernel package (default: what linux-image-amd64 pulls)
#   RXE_VM_DEBUG=1                     kernel console and guest trace on stderr
#   RXE_VM_KEEP=1                      keep the per-run folder (console.log, ...)
#   RXE_VM_NO_INSTALL=1                never call apt-get; fail if something is missing
#   RXE_VM_PVH=0                       boot the compressed bzImage, not the extracted vmlinux
#
# Exit status: CMD's; 125 when the VM could not be set up, died, or timed out (the tail of the
# kernel console is printed then).
set -euo pipefail

cache=${RXE_VM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msgr-rdma-vm}
accel=${RXE_VM_ACCEL:-auto}
mem=${RXE_VM_MEM:-2048}
smp=${RXE_VM_SMP:-2}
limit=${RXE_VM_TIMEOUT:-900}
net=${RXE_VM_NET:-dummy}
ip=${RXE_VM_IP:-10.0.2.15}
ip6=${RXE_VM_IP6-fd00:6d73:6772::15}
mtu=${RXE_VM_MTU:-1500}
debug=${RXE_VM_DEBUG:-0}

trace() { if [[ $debug == 1 ]]; then echo "[rdma-vm] $*" >&2; fi; }
fail() { echo "[rdma-vm] error: $*" >&2; exit 125; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

# ----------------------------------------------------------------------------- host packages
ensure_host_packages() {
  local want=(qemu-system-x86 busybox-static kmod cpio xz-utils iproute2
              rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest qperf iperf3)
  local p missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ ${RXE_VM_NO_INSTALL:-0} == 1 ]] && fail "missing packages (RXE_VM_NO_INSTALL=1): ${missing[*]}"
  echo "[rdma-vm] installing ${missing[*]} (qemu, busybox initramfs, rxe provider, perftest)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >&2
}

# ----------------------------------------------------------------------------- guest kernel
# Sets KPKG, KVER, KROOT, KIMG. The package is unpacked (not installed) and trimmed to the
# module subtrees the VM can use, which saves about 300 MB.
prepare_kernel() {
  KPKG=${RXE_VM_KPKG:-}
  if [[ -z $KPKG ]]; then
    local marker
    marker=$(compgen -G "$cache/kernel/.pkg-*" | head -n 1 || true)
    KPKG=${marker##*/.pkg-}
  fi
  if [[ -z $KPKG ]]; then
    local dep='/Depends: linux-image-[0-9]/{print $2; exit}'
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk "$dep" || true)
    if [[ -z $KPKG ]]; then
      apt-get update -qq >&2
      KPKG=$(apt-cache depends linux-image-amd64 | awk "$dep" || true)
    fi
  fi
  [[ -n $KPKG ]] || fail "cannot tell which kernel package to use (set RXE_VM_KPKG)"
  KVER=${KPKG#linux-image-}
  KROOT=$cache/kernel

  if [[ ! -e $KROOT/.pkg-$KPKG ]]; then
    echo "[rdma-vm] fetching guest kernel $KPKG (once, about 140 MB)" >&2
    local stage=$KROOT.tmp debs=$cache/debs
    rm -rf "$KROOT" "$stage" "$debs"
    mkdir -p "$debs"
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2)
    dpkg-deb -x "$debs/${KPKG}"_*.deb "$stage"
    local mods=$stage/lib/modules/$KVER/kernel
    (cd "$mods" && find . -type f -name '*.ko' |
      grep -v -E '^\./(drivers/(virtio|char|net|infiniband|block)|fs|net|lib|crypto|arch)/' |
      xargs -r rm -f) || true
    rm -rf "$mods"/drivers/net/{wireless,ethernet} "$mods/drivers/infiniband/hw" \
           "$mods"/net/{bluetooth,mac80211,wireless} "$mods"/drivers/char/{drm,ipmi}
    find "$mods" -type d -empty -delete
    depmod -b "$stage" "$KVER"
    touch "$stage/.pkg-$KPKG"
    mv "$stage" "$KROOT"
    rm -rf "$debs"
  fi
  KIMG=$KROOT/boot/vmlinuz-$KVER
  [[ -f $KIMG ]] || fail "kernel image $KIMG is missing (delete $KROOT to fetch again)"

  # Under TCG the guest's own xz decompressor is slow; the uncompressed ELF vmlinux, booted
  # through its PVH entry point, starts about 2.5 s sooner. Extract it once.
  [[ ${RXE_VM_PVH:-1} == 1 ]] || return 0
  local elf=$KROOT/boot/vmlinux-$KVER
  if [[ ! -s $elf ]]; then
    local at
    at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KIMG" | head -n 1 | cut -d: -f1 || true)
    if [[ -n $at ]]; then
      tail -c +$((at + 1)) "$KIMG" | xz -dc >"$elf.tmp" 2>/dev/null || true
      if [[ $(head -c 4 "$elf.tmp" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
        mv "$elf.tmp" "$elf"
      fi
      rm -f "$elf.tmp"
    fi
  fi
  if [[ -s $elf ]]; then KIMG=$elf; fi
}

# ----------------------------------------------------------------------------- initramfs
# busybox, plus the modules needed to reach the 9p root and to create rxe0, loaded in
# dependency order. Sets INITRD. Rebuilt when this script is newer than it.
prepare_initramfs() {
  INITRD=$cache/initramfs-$KVER.msgr.cpio.gz
  [[ -s $INITRD && ! $INITRD -ot $0 ]] && return 0
  trace "building $INITRD"
  local tree
  tree=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$tree"/{bin,proc,sys,dev,lower,rw,newroot,mods}
  cp /bin/busybox "$tree/bin/busybox"
  : >"$tree/mods/order"
  local m ko f siglen
  # crc32 implementations are preloaded: rdma_rxe needs the "crc32" hash and cannot load
  # modules on demand this early.
  for m in virtio_pci virtio_console 9pnet_virtio 9p overlay virtio_net dummy \
           crc32_generic crc32-pclmul rdma_rxe ib_uverbs rdma_ucm; do
    modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++' | while read -r ko; do
    f=$tree/mods/${ko##*/}
    cp "$ko" "$f"
    echo "${ko##*/}" >>"$tree/mods/order"
    # Checking the appended module signature (RSA) is slow when emulated; an unsigned module
    # only taints the kernel. Layout: ... sig, 12-byte info (sig length is its last be32), magic.
    if [[ $(tail -c 28 "$f") == "~Module signature appended~" ]]; then
      siglen=$(tail -c 32 "$f" | head -c 4 | od -An -tu4 --endian=big | tr -d ' ')
      truncate -s $(($(stat -c %s "$f") - 28 - 12 - siglen)) "$f"
    fi
  done
  cat >"$tree/init" <<'INIT'
#!/bin/busybox sh
# initramfs: load modules, mount the host root (9p, read-only) under a tmpfs overlay, switch to it.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for a in $(cat /proc/cmdline); do
  case $a in msgr_pid1=*) PID1=${a#msgr_pid1=};; msgr_dbg=1) set -x;; esac
done
for m in $(cat /mods/order); do
  if [ "$m" = dummy.ko ]; then insmod /mods/$m numdummies=0; else insmod /mods/$m; fi 2>/dev/null
done
die() { echo "initramfs: $*"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || die "cannot mount the host root over 9p"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work,xino=off overlay /newroot ||
  { echo "initramfs: no overlay, the root stays read-only"; mount --bind /lower /newroot; }
for d in proc sys dev; do mount --move /$d /newroot/$d; done
cd /newroot
mkdir -p dev/pts dev/shm
mount -t devpts devpts dev/pts; mount -t tmpfs shm dev/shm; mount -t tmpfs run run; mount -t tmpfs tmp var/tmp
ln -s /proc/self/fd dev/fd; ln -s fd/0 dev/stdin; ln -s fd/1 dev/stdout; ln -s fd/2 dev/stderr
exec switch_root /newroot /bin/bash "$PID1"
INIT
  chmod +x "$tree/init"
  (cd "$tree" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$tree"
}

# ----------------------------------------------------------------------------- guest PID 1
# Runs from the host's root inside the VM: sets up the network and rxe0, then runs CMD with the
# host's environment and hands back its output and exit status.
write_guest_pid1() {
  PID1=$cache/pid1.msgr.sh
  cat >"$PID1.tmp" <<'PID1'
#!/bin/bash
[ $$ = 1 ] || { echo "pid1.msgr.sh only runs as PID 1 inside the rdma VM" >&2; exit 1; }
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for a in $(</proc/cmdline); do
  case $a in
    msgr_run=*) RUN=${a#msgr_run=};;    msgr_kroot=*) KROOT=${a#msgr_kroot=};;
    msgr_net=*) NET=${a#msgr_net=};;    msgr_ip=*) IP=${a#msgr_ip=};;
    msgr_mtu=*) MTU=${a#msgr_mtu=};;    msgr_rw=*) RW=${a#msgr_rw=};;
    msgr_ip6=*) IP6=${a#msgr_ip6=};;
    msgr_dbg=1) PS4='+ [$(</proc/uptime)] '; set -x;;
  esac
done
halt_vm() { sync; busybox poweroff -f 2>/dev/null; echo o >/proc/sysrq-trigger; sleep 10; }
# virtio-serial ports by name: out, err, rc
for p in /sys/class/virtio-ports/*; do read -r name <"$p/name"; printf -v "port_$name" %s "/dev/${p##*/}"; done
OUT=${port_out:-/dev/console} ERR=${port_err:-/dev/console} RC=${port_rc:-/dev/null}
abort() { echo "rdma-vm guest: $*" >"$ERR"; echo 125 >"$RC"; halt_vm; }
echo rdma-vm >/proc/sys/kernel/hostname
n=0
for d in ${RW//,/ }; do
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 "rw$n" "$d" || abort "cannot mount $d read-write"
  n=$((n + 1))
done
# Modules came from the initramfs; later autoloads use modprobe, which wants /lib/modules.
KV=$(</proc/sys/kernel/osrelease)
[ -e "/lib/modules/$KV" ] || { mkdir -p /lib/modules && ln -s "$KROOT/lib/modules/$KV" /lib/modules/; }
if [ "$NET" = dummy ]; then
  DEV=dummy0; ip link add dummy0 type dummy || abort "cannot create dummy0"
else
  DEV=
  for d in /sys/class/net/*; do case ${d##*/} in lo | dummy* | bonding_masters) ;; *) DEV=${d##*/}; break;; esac; done
  [ -n "$DEV" ] || abort "no network device"
fi
# No router advertisements (qemu's user-net sends them): no default IPv6 route, so an address
# off the local subnets stays unroutable, as with dummy0.
if [ -w "/proc/sys/net/ipv6/conf/$DEV/accept_ra" ]; then echo 0 >"/proc/sys/net/ipv6/conf/$DEV/accept_ra"; fi
ip link set lo up && ip addr add "$IP/24" dev "$DEV" && ip link set "$DEV" mtu "${MTU:-1500}" up || abort "network setup"
# IPv6: nodad, so the addresses are usable at once; norxe0 has no RDMA device on purpose.
NO_RDMA_IP6=
if [ -n "$IP6" ]; then
  NO_RDMA_IP6=fd00:6d73:6773::15
  ip -6 addr add "$IP6/64" dev "$DEV" nodad && ip link add norxe0 type dummy &&
    ip -6 addr add "$NO_RDMA_IP6/64" dev norxe0 nodad && ip link set norxe0 up ||
    abort "IPv6 setup ($IP6 on $DEV, $NO_RDMA_IP6 on norxe0; RXE_VM_IP6= turns it off)"
fi
rdma link add rxe0 type rxe netdev "$DEV" || abort "rdma link add rxe0 type rxe netdev $DEV"
for _ in $(seq 100); do
  read -r state </sys/class/infiniband/rxe0/ports/1/state
  [[ $state == *ACTIVE* ]] && break
  sleep 0.05
done
ulimit -l unlimited; ulimit -n 65536
while IFS= read -r -d '' kv; do
  case ${kv%%=*} in PWD | OLDPWD | SHLVL | _ | TERM | HOSTNAME) ;; *) export "$kv" 2>/dev/null;; esac
done <"$RUN/env"
export RDMA_IP=$IP RDMA_DEV=rxe0 RDMA_NETDEV=$DEV TERM=dumb
if [ -n "$IP6" ]; then export RDMA_IP6=$IP6 NO_RDMA_IP6; else unset RDMA_IP6 NO_RDMA_IP6; fi
if [ -s "$RUN/setup.sh" ]; then bash "$RUN/setup.sh" >"$OUT" 2>"$ERR" </dev/null || abort "RXE_VM_SETUP failed"; fi
cd "$(<"$RUN/cwd")" 2>/dev/null || cd /
# A virtio port can be open only once, and programs reopen /dev/stdout: relay through pipes.
mkfifo /run/out.pipe /run/err.pipe
cat /run/out.pipe >"$OUT" & relay_out=$!
cat /run/err.pipe >"$ERR" & relay_err=$!
bash "$RUN/cmd.sh" >/run/out.pipe 2>/run/err.pipe </dev/null
status=$?
# Daemons CMD left behind may hold the pipes open: give the relays 2 s to drain, then stop them.
for _ in $(seq 40); do
  kill -0 $relay_out 2>/dev/null || kill -0 $relay_err 2>/dev/null || break
  sleep 0.05
done
kill $relay_out $relay_err 2>/dev/null; wait $relay_out $relay_err 2>/dev/null
echo $status >"$RC"
halt_vm
PID1
  mv "$PID1.tmp" "$PID1"
}

# ----------------------------------------------------------------------------- one run
run_dir=
qemu_pid=
relays=()
cleanup() {
  if [[ -n $qemu_pid ]]; then kill "$qemu_pid" 2>/dev/null || true; fi
  local p
  for p in "${relays[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n $run_dir ]] || return 0
  if [[ ${RXE_VM_KEEP:-0} == 1 ]]; then echo "[rdma-vm] kept $run_dir" >&2; else rm -rf "$run_dir"; fi
}

boot_and_run() {
  run_dir=$(mktemp -d "$cache/run.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  { printf 'exec'; printf ' %q' "$@"; printf '\n'; } >"$run_dir/cmd.sh"
  if [[ -n ${RXE_VM_SETUP:-} ]]; then printf '%s\n' "$RXE_VM_SETUP" >"$run_dir/setup.sh"; fi
  pwd >"$run_dir/cwd"
  env -0 >"$run_dir/env"
  mkfifo "$run_dir/out" "$run_dir/err"
  cat "$run_dir/out" & relays+=($!)
  cat "$run_dir/err" >&2 & relays+=($!)

  if [[ $accel == auto ]]; then
    if grep -qw -E 'vmx|svm' /proc/cpuinfo && [[ -w /dev/kvm ]]; then accel=kvm; else accel=tcg; fi
  fi
  local cpu
  case $accel in
    kvm) cpu=(-accel kvm -cpu host) ;;
    tcg) cpu=(-accel tcg,thread=multi,tb-size=256 -cpu max) ;;
    *) fail "RXE_VM_ACCEL must be auto, tcg or kvm (not '$accel')" ;;
  esac
  local firmware=() nic=() shares=() rw_list= i=0 d
  # qboot starts faster than SeaBIOS
  if [[ -f /usr/share/qemu/qboot.rom ]]; then firmware=(-bios /usr/share/qemu/qboot.rom); fi
  if [[ $net != dummy ]]; then
    nic=(-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0)
  fi
  for d in ${RXE_VM_RW:-}; do
    d=$(realpath "$d")
    [[ -d $d ]] || fail "RXE_VM_RW: $d is not a folder"
    shares+=(-fsdev "local,id=rw$i,path=$d,security_model=none,multidevs=remap"
             -device "virtio-9p-pci,fsdev=rw$i,mount_tag=rw$i")
    rw_list=${rw_list:+$rw_list,}$d
    i=$((i + 1))
  done
  local console=(-serial "file:$run_dir/console.log") quiet="quiet loglevel=1"
  if [[ $debug == 1 ]]; then
    console=(-chardev "file,id=con,path=/dev/fd/2,append=on" -serial chardev:con)
    quiet="loglevel=6 msgr_dbg=1"
  fi
  local cmdline="console=ttyS0 $quiet panic=-1 mitigations=off tsc=reliable no_timer_check rdinit=/init"
  cmdline+=" msgr_pid1=$PID1 msgr_run=$run_dir msgr_kroot=$KROOT msgr_net=$net msgr_ip=$ip msgr_mtu=$mtu"
  cmdline+=${ip6:+ msgr_ip6=$ip6}
  cmdline+=${rw_list:+ msgr_rw=$rw_list}
  trace "accel=$accel mem=$mem smp=$smp kernel=$KVER run=$run_dir"

  set +e
  timeout -k 5 "$limit" qemu-system-x86_64 "${cpu[@]}" -m "$mem" -smp "$smp" \
    -nodefaults -no-user-config -display none -no-reboot "${firmware[@]}" \
    -kernel "$KIMG" -initrd "$INITRD" -append "$cmdline" "${console[@]}" \
    -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=hostroot "${shares[@]}" \
    -device virtio-serial-pci \
    -chardev "file,id=out,path=$run_dir/out" -device virtserialport,chardev=out,name=out \
    -chardev "file,id=err,path=$run_dir/err" -device virtserialport,chardev=err,name=err \
    -chardev "file,id=rc,path=$run_dir/rc" -device virtserialport,chardev=rc,name=rc \
    "${nic[@]}" </dev/null &
  qemu_pid=$!
  wait "$qemu_pid"
  local qemu_status=$?
  qemu_pid=
  set -e
  # If qemu died before opening the fifos, the relays still block in open(): unblock them.
  exec 3<>"$run_dir/out" 4<>"$run_dir/err"
  exec 3>&- 4>&-
  local p
  for p in "${relays[@]}"; do wait "$p" 2>/dev/null || true; done
  relays=()
  local status
  status=$({ tr -dc '0-9' <"$run_dir/rc"; } 2>/dev/null || true)
  if [[ -z $status ]]; then
    if [[ $qemu_status == 124 ]]; then echo "[rdma-vm] timed out after ${limit}s (RXE_VM_TIMEOUT)" >&2; fi
    echo "[rdma-vm] the VM ended without an exit status (qemu exit $qemu_status); console tail:" >&2
    tail -n 30 "$run_dir/console.log" >&2 2>/dev/null || true
    exit 125
  fi
  exit "$status"
}

(($# >= 1)) || usage
[[ $(id -u) == 0 ]] || fail "must run as root (it exports / over 9p with security_model=none, and may call apt-get)"
ensure_host_packages
mkdir -p "$cache"
prepare_kernel
prepare_initramfs
write_guest_pid1
boot_and_run "$@"
