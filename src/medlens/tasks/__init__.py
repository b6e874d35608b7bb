"""One package per task. Importing this module registers every built-in task: the one list of them.

Adding a task is a new package under ``medlens/tasks/`` implementing :class:`medlens.tasks.base.Task`, and one
line here.
"""

from medlens.tasks import classification, detection, regression, segmentation, sequence  # noqa: F401
from medlens.tasks.base import Task, get_task, list_tasks, load_bundle, register_task

__all__ = ["Task", "get_task", "list_tasks", "load_bundle", "register_task"]
