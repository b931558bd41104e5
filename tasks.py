"""invoke's entry point in the repository: the operator's tasks (hadeploy/tasks.py) plus the
development tasks that drive the lab (lab/tasks.py: demo, lab-up, lab-down)."""

from hadeploy.tasks import operator_collection
from lab.tasks import DEV_TASKS

ns = operator_collection()
for dev_task in DEV_TASKS:
    ns.add_task(dev_task)

__all__ = ["ns"]
