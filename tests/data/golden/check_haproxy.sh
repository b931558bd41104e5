#!/bin/sh
# Managed by hadeploy: keepalived's vrrp_script for haproxy. Exits 0 while haproxy runs on
# this host. Reads haproxy's pid file and /proc only, so it needs neither psmisc (killall)
# nor procps (pidof), and a stale pid that now belongs to another program does not count.
for pidfile in /run/haproxy.pid /var/run/haproxy.pid; do
    [ -r "$pidfile" ] || continue
    for pid in $(cat "$pidfile"); do
        [ -r "/proc/$pid/stat" ] || continue
        read -r _ name state _ < "/proc/$pid/stat" || continue
        [ "$name" = "(haproxy)" ] && [ "$state" != "Z" ] && exit 0
    done
done
exit 1
