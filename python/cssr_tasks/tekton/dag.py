"""The order of pipeline tasks: edges from runAfter and from result references, as Tekton builds its DAG.

Tasks run one at a time, in a topological order that keeps the declaration order among
tasks that are free to run, so that a run is the same every time. Tekton would run
independent tasks in parallel; the suite's pipeline is a chain, so nothing is lost.
"""

from __future__ import annotations

from .model import Pipeline, PipelineTask, Problems
from .refs import references


def result_producers(task: PipelineTask) -> dict[str, int]:
    """Tasks whose results this task consumes (params and when), with the line of the first use."""
    found: dict[str, int] = {}
    values = list(task.params.values()) + [dict(w) for w in task.when]
    for tokens, line in references(values):
        if len(tokens) >= 4 and tokens[0] == "tasks" and tokens[2] == "results":
            found.setdefault(str(tokens[1]), line)
    return found


def dependencies(task: PipelineTask) -> list[str]:
    return list(dict.fromkeys([str(t) for t in task.run_after] + list(result_producers(task))))


def order(pipeline: Pipeline, problems: Problems) -> list[PipelineTask]:
    """The tasks (not finally) in run order; unknown names and cycles are problems."""
    by_name = {t.name: t for t in pipeline.tasks}
    finally_names = {t.name for t in pipeline.finally_tasks}
    deps: dict[str, list[str]] = {}
    for task in pipeline.tasks:
        deps[task.name] = []
        for after in task.run_after:
            if after not in by_name:
                problems.add(pipeline.file, after.line or task.line,
                             f"pipeline task {task.name}: runAfter names {after!r}, which is not a task of the "
                             "pipeline")
            else:
                deps[task.name].append(after)
        for name, line in result_producers(task).items():
            if name in finally_names:
                problems.add(pipeline.file, line, f"pipeline task {task.name} uses a result of finally task "
                             f"{name}; finally tasks run last")
            elif name in by_name and name not in deps[task.name]:
                deps[task.name].append(name)
    ordered: list[PipelineTask] = []
    done: set[str] = set()
    pending = [t.name for t in pipeline.tasks]
    while pending:
        ready = next((n for n in pending if all(d in done for d in deps[n])), None)
        if ready is None:
            cycle = _cycle(pending, deps)
            problems.add(pipeline.file, by_name[cycle[0]].line,
                         f"the tasks form a cycle: {' -> '.join(cycle + [cycle[0]])}")
            return ordered
        ordered.append(by_name[ready])
        done.add(ready)
        pending.remove(ready)
    return ordered


def _cycle(pending: list[str], deps: dict[str, list[str]]) -> list[str]:
    path = [pending[0]]
    while True:
        following = next(d for d in deps[path[-1]] if d in pending)
        if following in path:
            return path[path.index(following):]
        path.append(following)
