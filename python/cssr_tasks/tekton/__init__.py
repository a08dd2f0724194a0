"""A local executor of the Tekton v1 semantics the cssr-deploy suite uses.

    model.py  Pipeline and Task declarations, loaded and checked
    documents.py Pipeline and Task YAML, with the line of every value, and the problems found
    fields.py the fields the executor reads, per object; any other is refused
    values.py param values: type checks, normalization, --param text, durations
    refs.py   `$(...)` variables: parsing, scopes, substitution, and errors that name file and line
    dag.py    the order of pipeline tasks, from runAfter and result references
    steps.py  how one step runs on this machine (tasks image, buildah, --image-command)
    run.py    the executor: check everything first, then run tasks, skip, retry, finally
    state.py  a run's options, the PipelineRun, each task's state, the outcome
    scopes.py what `$(...)` resolves to, for the pipeline and for a task
    binding.py params, workspaces and when expressions of each pipeline task
    stepspecs.py a task's steps as they will run: stepTemplate, env, volumes
    results.py task results as Tekton carries them (termination messages and their limits)
    unsupported.py the features the executor refuses, by id
    record.py PipelineRun and TaskRun objects written into the simulated cluster
    summary.py durations and the "changed" column, shared with the report task

`cssr-tasks pipeline run` (python/cssr_tasks/pipeline.py) is the command over it.
"""
