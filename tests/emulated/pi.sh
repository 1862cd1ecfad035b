#!/usr/bin/env bash
# An emulated Raspberry Pi: an arm64 Debian userland run by qemu-user, its own sshd on a loopback port.
#
#   pi.sh binfmt        register qemu-aarch64 with binfmt_misc (root; mounts binfmt_misc if needed)
#   pi.sh build         build the arm64 rootfs once (cached per recipe); prints its path
#   pi.sh start DIR     start its sshd on a free loopback port; DIR gets the keys, known_hosts and devices.toml
#   pi.sh stop DIR      stop every process in it and unmount what start mounted
#
# Needs root, qemu-user-static, binfmt-support, mmdebstrap, openssh-client (ssh-keygen) and network access once.
# The rootfs is cached in $LUTNAS_EMULATED_PI_CACHE (default ~/.cache/lutnas/emulated-pi)/<recipe hash>; each
# start mounts a throwaway overlay on it, so sessions never write into the cache. Exit status: 0 ok, 2 usage,
# 3 cannot emulate here (not root, no binfmt_misc, no qemu), 4 build failed, 5 sshd did not start.
set -euo pipefail

SUITE=bookworm
INCLUDE=python3,python3-numpy,python3-venv,python3-pip,openssh-server
PIP_PACKAGES="ai-edge-litert onnxruntime"
VENV=/opt/lutnas-venv
RECIPE="1 arm64 minbase $SUITE $INCLUDE | $VENV --system-site-packages | $PIP_PACKAGES"
CACHE=${LUTNAS_EMULATED_PI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lutnas/emulated-pi}
ROOT=$CACHE/$(printf %s "$RECIPE" | sha256sum | cut -c1-12)
NAME=${LUTNAS_EMULATED_PI_NAME:-pi4emu}

die() { local code=$1; shift; echo "pi.sh: $*" >&2; exit "$code"; }

binfmt() {
    [ "$(id -u)" = 0 ] || die 3 "registering qemu-aarch64 with binfmt_misc needs root"
    command -v update-binfmts >/dev/null && [ -x /usr/bin/qemu-aarch64-static ] ||
        die 3 "qemu-user-static and binfmt-support are missing: apt-get install -y qemu-user-static binfmt-support"
    local fs=/proc/sys/fs/binfmt_misc
    [ -d $fs ] || die 3 "this kernel has no binfmt_misc ($fs is missing)"
    [ -e $fs/register ] || mount -t binfmt_misc binfmt_misc $fs 2>/dev/null ||
        die 3 "cannot mount binfmt_misc on $fs (a container without the privilege?)"
    [ -e $fs/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 ||
        die 3 "update-binfmts --enable qemu-aarch64 failed"
    grep -qx enabled $fs/qemu-aarch64 || echo 1 >$fs/qemu-aarch64 || die 3 "cannot enable $fs/qemu-aarch64"
}

# mount proc and dev into a root (python, pip and sshd read /proc, /dev/null, /dev/urandom). Not /sys: with the
# host's CPU topology there, TFLite's XNNPACK crashes under qemu (SIGSEGV on every model); without it the runtimes
# only print "Error in cpuinfo: failed to parse ..." and run.
mount_api() { mount -t proc proc "$1/proc" && mount --bind /dev "$1/dev"; }
umount_api() {
    local m
    for m in "$1/dev" "$1/proc"; do mountpoint -q "$m" && umount "$m" || umount -l "$m" 2>/dev/null || true; done
}

build() {
    if [ -e "$ROOT/.lutnas-recipe" ]; then echo "$ROOT"; return; fi
    binfmt
    command -v mmdebstrap >/dev/null || die 3 "mmdebstrap is missing: apt-get install -y mmdebstrap"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9  # one build at a time; a second caller waits, then finds it built
    if [ -e "$ROOT/.lutnas-recipe" ]; then echo "$ROOT"; return; fi
    local tmp=$ROOT.tmp-$$ t0 t1 t2
    rm -rf "$ROOT".tmp-*
    trap 'umount_api "'"$tmp"'"; rm -rf "'"$tmp"'"' EXIT
    t0=$(date +%s)
    mmdebstrap --arch=arm64 --variant=minbase --include="$INCLUDE" \
        "$SUITE" "$tmp" ${LUTNAS_DEBIAN_MIRROR:-} >&2 || die 4 "mmdebstrap failed"
    t1=$(date +%s)
    mkdir -p "$tmp/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/ca-certificates.crt"
    cp -L /etc/resolv.conf "$tmp/etc/resolv.conf"
    mount_api "$tmp"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 ${https_proxy:+https_proxy=$https_proxy} \
        chroot "$tmp" sh -ec "python3 -m venv --system-site-packages $VENV
            $VENV/bin/python -m pip install -q $PIP_PACKAGES
            rm -rf /root/.cache/pip" >&2 || die 4 "pip install $PIP_PACKAGES in the arm64 rootfs failed"
    t2=$(date +%s)
    umount_api "$tmp"
    rm -f "$tmp/etc/ssh"/ssh_host_*  # each start makes its own host key
    printf '%s\nmmdebstrap_s %s\npip_s %s\n' "$RECIPE" $((t1 - t0)) $((t2 - t1)) >"$tmp/.lutnas-recipe"
    mv -T "$tmp" "$ROOT"
    trap - EXIT
    echo "$ROOT"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
    local dir=$1 port
    build >/dev/null
    binfmt
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    local r=$dir/root
    mkdir -p "$dir/upper" "$dir/work" "$r"
    mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$dir/upper,workdir=$dir/work" "$r" ||
        die 5 "cannot mount an overlay on $ROOT at $r"
    mount_api "$r"
    port=${PORT:-$(free_port)}
    mkdir -p "$r/etc/lutnas-ssh" "$r/run/sshd" "$r/root/lutnas"
    rm -f "$dir/user_ed25519" "$dir/user_ed25519.pub" "$r/etc/lutnas-ssh/host_ed25519"
    ssh-keygen -q -t ed25519 -N "" -C lutnas-emulated-pi -f "$r/etc/lutnas-ssh/host_ed25519"
    ssh-keygen -q -t ed25519 -N "" -C lutnas-test -f "$dir/user_ed25519"
    cp "$dir/user_ed25519.pub" "$r/etc/lutnas-ssh/authorized_keys"
    cp "$r/etc/lutnas-ssh/host_ed25519.pub" "$dir/host_ed25519.pub"
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >"$dir/known_hosts"
    cat >"$r/etc/lutnas-ssh/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey /etc/lutnas-ssh/host_ed25519
PidFile /run/lutnas-sshd.pid
AuthorizedKeysFile /etc/lutnas-ssh/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
LogLevel ERROR
EOF
    setsid chroot "$r" /usr/sbin/sshd -D -e -f /etc/lutnas-ssh/sshd_config </dev/null >>"$dir/sshd.log" 2>&1 &
    echo $! >"$dir/sshd.pid"
    echo "$port" >"$dir/port"
    local i
    for i in $(seq 600); do  # sshd under qemu takes a few seconds to listen
        kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null || { tail -5 "$dir/sshd.log" >&2; stop "$dir"; die 5 "sshd exited"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    [ "$i" -lt 600 ] || { stop "$dir"; die 5 "sshd did not listen on 127.0.0.1:$port within 60 s"; }
    : >"$dir/no-ssh-config"
    cat >"$dir/devices.toml" <<EOF
# an emulated Raspberry Pi 4 (arm64 Debian under qemu-user); timings are not a real Pi's
[devices.$NAME]
host = "127.0.0.1"
port = $port
user = "root"
key = "$dir/user_ed25519"
known_hosts = "$dir/known_hosts"
ssh_config = "$dir/no-ssh-config"
python = "$VENV/bin/python"
workdir = "/root/lutnas"
preset = "pi4"
entry_timeout = 900
EOF
    echo "$dir/devices.toml"
}

# pids of every process whose root directory is $1 (all that runs in the chroot, however it was started)
chroot_pids() {
    local p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
    done
    return 0
}

stop() {
    local dir r pids i
    dir=$(cd "$1" && pwd -P)
    r=$dir/root
    pids=$(chroot_pids "$r")
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
    for i in $(seq 50); do
        pids=$(chroot_pids "$r")
        [ -n "$pids" ] || break
        [ "$i" -lt 30 ] || kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    umount_api "$r"
    if mountpoint -q "$r"; then umount "$r" || umount -l "$r"; fi
    rm -rf "$dir/upper" "$dir/work" "$dir/sshd.pid"
    [ -z "$(chroot_pids "$r")" ] || die 5 "processes left in $r: $(chroot_pids "$r" | tr '\n' ' ')"
}

case "${1:-}" in
    binfmt) binfmt ;;
    build) build ;;
    root) echo "$ROOT" ;;
    start) [ $# = 2 ] || die 2 "usage: pi.sh start DIR"; start "$2" ;;
    stop) [ $# = 2 ] || die 2 "usage: pi.sh stop DIR"; stop "$2" ;;
    *) die 2 "usage: pi.sh binfmt | build | root | start DIR | stop DIR" ;;
esac
