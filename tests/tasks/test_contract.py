"""The task contract: every registered task fulfils every hook, hooks point at real functions, and finding a task
imports no heavy library until a hook is used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from medlens.tasks.base import Task, get_task, implemented_in, list_tasks

HOOKS = [name for name, value in vars(Task).items() if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize("name", ["classification", "segmentation", "detection", "regression"])
def test_every_hook_resolves_to_something_callable(name: str) -> None:
    task = get_task(name)
    assert not getattr(type(task), "__abstractmethods__", None)
    delegated = {k: v for k, v in vars(type(task)).items() if isinstance(v, implemented_in)}
    assert delegated, "the task delegates its hooks to its own modules"
    for hook, target in delegated.items():
        assert hook in HOOKS, f"{hook} is not a hook of the Task contract"
        assert target.module.startswith(f"medlens.tasks.{name}."), target  # a task's code lives in its package
        assert callable(getattr(task, hook)), target  # a typo in the target fails here, not in a user's run


def test_a_hook_read_from_the_class_is_the_hook_itself() -> None:
    task = get_task("segmentation")
    assert isinstance(vars(type(task))["build_network"], implemented_in)
    assert type(task).build_network is vars(type(task))["build_network"]  # nothing imported by reading the class
    assert task.build_network.__module__ == "medlens.tasks.segmentation.module"


def test_finding_every_task_imports_no_torch() -> None:
    code = (
        "import sys; from medlens.tasks.base import get_task, list_tasks; "
        "[get_task(n) for n in list_tasks()]; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert set(list_tasks()) >= {"classification", "multilabel", "segmentation", "detection", "regression"}
