"""End-to-end tests in the network-namespace lab: real sshd, apt, haproxy and keepalived (root)."""
