"""hadeploy's tests: unit/ (the pure core, fast) and lab/ (end to end in the network-namespace
lab, as root)."""
