"""A local executor of the Tekton v1 semantics the cssr-deploy suite uses.

    model.py  Pipeline and Task YAML, loaded with the line of every value
    refs.py   `$(...)` variables: parsing, scopes, substitution, and errors that name file and line
    dag.py    the order of pipeline tasks, from runAfter and result references
    steps.py  how one step runs on this machine (tasks image, buildah, --image-command)
    run.py    the executor: check everything first, then run tasks, skip, retry, finally
    record.py PipelineRun and TaskRun objects written into the simulated cluster
    summary.py durations and the "changed" column, shared with the report task

`cssr-tasks pipeline run` (python/cssr_tasks/pipeline.py) is the command over it.
"""
