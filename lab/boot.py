"""A host's boot: the mounts, identity, network and daemons that make a fresh set of
namespaces look like a small Debian server. Runs as root inside the host, after its init.

Order matters: everything read from the workstation's state and cache directories (the
host's disk, its host keys, the apt repository) is grabbed under a private /run first,
because once the overlays are mounted those directories are hidden from the host.
"""

from __future__ import annotations

import struct
import time

from lab.sshd import START_SSHD


def runlevel_utmp() -> bytes:
    """A utmp file saying "runlevel 2" (glibc x86-64 `struct utmp`, type RUN_LVL).

    Debian's invoke-rc.d asks `runlevel` before starting a service from a package's
    postinst; without a runlevel it skips the start. A real server is in runlevel 2, so
    `apt-get install haproxy` starts haproxy, as it does there.
    """
    run_lvl, previous, current = 1, ord("N"), ord("2")
    return struct.pack(
        "<h2xi32s4s32s256s2hi2i4i20x",
        run_lvl, current + 256 * previous, b"~", b"~~", b"runlevel", b"", 0, 0, 0,
        int(time.time()), 0, 0, 0, 0, 0,
    )

# $1 name  $2 address/prefix  $3 disk dir (upper/ and work/)  $4 host keys dir
# $5 repository dir  $6 repository mount point  $7 mount point of the staged base layer
# $8 machine id  $9 utmp file to start with  $10... DIR=LOWERDIRS for each overlaid directory
BOOT_SCRIPT = r"""
set -eu
name=$1 cidr=$2 disk=$3 keys=$4 repo=$5 repo_mnt=$6 stage=$7 machine_id=$8 utmp=$9
shift 9
b=/run/hadeploy-boot

# Private /run; grab what the overlays will hide.
mount -t tmpfs -o mode=0755,nosuid,nodev hadeploy-run /run
mkdir -p "$b/disk" "$b/repo" "$b/keys"
mount --bind "$disk" "$b/disk"
mount --bind "$repo" "$b/repo"
cp -p "$keys"/ssh_host_* "$b/keys/"
cp "$utmp" /run/utmp

# The host's disk: base layer and its own upper over the real directories.
for spec in "$@"; do
    d=${spec%%=*}
    mount -t overlay overlay \
        -o "lowerdir=${spec#*=},upperdir=$b/disk/upper/$d,workdir=$b/disk/work/$d" "/$d"
done
umount "$b/disk"
mount --move "$b/repo" "$repo_mnt"
mount -o remount,bind,ro "$repo_mnt"
umount "$stage"
if [ ! -e /etc/ssh/ssh_host_ed25519_key ]; then
    cp -p "$b/keys"/ssh_host_* /etc/ssh/
fi
rm -rf "$b"

# Identity.
hostname "$name"
printf '%s\n' "$name" >/etc/hostname
printf '%s\n' "$machine_id" >/etc/machine-id
mkdir -p /run/lock /run/sshd
chmod 1777 /run/lock
chgrp utmp /run/utmp 2>/dev/null || true
chmod 0664 /run/utmp

# Private /tmp, /dev (own ptys, own /dev/log), read-only kernel knobs except the network's.
mount -t tmpfs -o mode=1777,nosuid,nodev hadeploy-tmp /tmp
mount -t tmpfs -o mode=0755,nosuid,noexec,size=1m hadeploy-dev /dev
mknod -m 0666 /dev/null c 1 3
mknod -m 0666 /dev/zero c 1 5
mknod -m 0666 /dev/full c 1 7
mknod -m 0666 /dev/random c 1 8
mknod -m 0666 /dev/urandom c 1 9
mknod -m 0666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev hadeploy-shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
if [ -e /proc/sysrq-trigger ]; then
    mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
    mount -o remount,bind,ro /proc/sysrq-trigger
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys

# Network: the lab address on eth0, no IPv6 on it, no default route.
echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6
ip link set lo up
ip addr add "$cidr" dev eth0
ip link set eth0 up

# Daemons: a syslog (keepalived logs only there) and sshd.
if command -v busybox >/dev/null 2>&1; then
    busybox syslogd -O /var/log/syslog
fi
""" + START_SSHD
