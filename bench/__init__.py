"""hadeploy's benchmark (`python bench/run.py`): `deploy-lb` in the lab against the SSH floor
and ansible-core, and the offline plan of a large inventory, with the recorded results."""
