"""The local Tekton executor on small synthetic Pipelines: order, params, results, when, finally, failures.

Every run goes through `cssr-tasks pipeline run` with bash standing in for the step image, and
asserts what the steps wrote into the workspace, the final table and the exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cssr_tasks.tekton import steps

from .conftest import BASH_IMAGE, RECORD, pipeline, task
from support import require_tool


def record(name: str, *, after: list[str] | None = None, text: str = "", extra: str = "") -> str:
    """A pipeline task running the `record` Task (YAML, indented for `tasks:`)."""
    lines = [f"- name: {name}", "  taskRef: {name: record}", "  workspaces: [{name: ws, workspace: ws}]"]
    if after:
        lines.append(f"  runAfter: [{', '.join(after)}]")
    if text:
        lines.append(f"  params: [{{name: text, value: {json.dumps(text)}}}]")
    if extra:
        lines += ["  " + line for line in extra.strip("\n").splitlines()]
    return "\n".join("  " + line for line in lines)


def spec(*tasks: str, finally_: tuple[str, ...] = (), head: str = "") -> str:
    body = head + "\nworkspaces: [{name: ws}]\ntasks:\n" + "\n".join(tasks)
    if finally_:
        body += "\nfinally:\n" + "\n".join(finally_)
    return pipeline(body)


def test_tasks_run_in_dag_order_from_run_after_and_result_references(run_pipeline):
    run = run_pipeline(spec(
        record("c", text="$(tasks.b.results.out)"),
        record("b", after=["a"]),
        record("a"),
        record("d"),
    ), RECORD)
    assert run.code == 0, run.out + run.err
    # a before b (runAfter), b before c (a result); among ready tasks the declaration order decides,
    # so c, declared first, runs as soon as b is done, and d last
    assert run.lines("order") == ["a", "b", "c", "d"]
    assert run.lines("c.text") == ["from b"]


PARAMS_TASK = task("params", f"""
    params:
      - name: word
      - name: words
        type: array
      - name: where
        type: object
        properties: {{host: {{}}, port: {{}}}}
    workspaces: [{{name: ws}}]
    steps:
      - name: show
        image: {BASH_IMAGE}
        args: ["$(params.words[*])", "second=$(params.words[1])", "host=$(params.where.host)"]
        env:
          - {{name: WORD, value: $(params.word)}}
          - {{name: PORT, value: $(params.where.port)}}
          - {{name: WS, value: $(workspaces.ws.path)}}
        script: |
          printf '%s\\n' "word=$WORD" "port=$PORT" "$@" > "$WS/params"
    """)

PARAMS_PIPELINE = pipeline("""
    params:
      - name: word
        default: hello
      - name: words
        type: array
        default: [one, two]
      - name: where
        type: object
        properties: {host: {}, port: {}}
        default: {host: example.org, port: "443"}
    workspaces: [{name: ws}]
    tasks:
      - name: show
        taskRef: {name: params}
        workspaces: [{name: ws, workspace: ws}]
        params:
          - {name: word, value: $(params.word)}
          - {name: words, value: ["$(params.words[*])", last]}
          - {name: where, value: "$(params.where[*])"}
    """)


@pytest.mark.parametrize(("args", "expected"), [
    ((), ["word=hello", "port=443", "one", "two", "last", "second=two", "host=example.org"]),
    (("--param", "word=hi", "--param", 'words=["x","y z"]', "--param", 'where={"host":"h","port":"80"}'),
     ["word=hi", "port=80", "x", "y z", "last", "second=y z", "host=h"]),
    (("--param", "words=a,b,c", "--param", "where=host:tkn, port:8080"),
     ["word=hello", "port=8080", "a", "b", "c", "last", "second=b", "host=tkn"]),
], ids=["defaults", "json-values", "tkn-forms"])
def test_params_string_array_and_object_with_defaults(run_pipeline, args, expected):
    run = run_pipeline(PARAMS_PIPELINE, PARAMS_TASK, args=args)
    assert run.code == 0, run.out + run.err
    assert run.lines("params") == expected


def test_a_param_of_the_wrong_type_fails_before_the_run(run_pipeline):
    run = run_pipeline(PARAMS_PIPELINE, PARAMS_TASK, args=("--param", 'where={"host":"h"}'))
    assert run.code == 2
    assert "--param: where lacks the key(s) port" in run.err
    assert run.lines("params") == []


def test_results_flow_into_params_and_pipeline_results(run_pipeline):
    doc = spec(record("a"), record("b", text="got $(tasks.a.results.out)"),
               head="results:\n  - {name: first, value: $(tasks.a.results.out)}\n"
                    "  - {name: never, value: $(tasks.a.results.other)}")
    run = run_pipeline(doc, RECORD)
    assert run.code == 0, run.out + run.err
    assert run.lines("b.text") == ["got from a"]
    assert run.results == {"first": "from a"}
    assert "pipeline result never is not emitted" in run.out
    assert "result first: from a" in run.out


WHEN = record("guarded", extra="when:\n  - {input: $(params.build), operator: in, values: [\"yes\"]}")


def test_when_false_skips_only_the_task_and_the_tasks_that_need_its_results(run_pipeline):
    doc = spec(
        WHEN,
        record("after-guard", after=["guarded"]),
        record("needs-result", text="$(tasks.guarded.results.out)"),
        record("after-needs-result", after=["needs-result"]),
        finally_=(record("final", text="$(tasks.status) $(tasks.guarded.status) $(tasks.after-guard.status)"),),
        head="params: [{name: build, default: \"no\"}]",
    )
    run = run_pipeline(doc, RECORD)
    assert run.code == 0, run.out + run.err  # a skipped task does not fail the run: it ends Completed
    assert run.lines("order") == ["after-guard", "final"]
    assert run.lines("final.text") == ["Completed None Succeeded"]
    assert run.row("guarded")[1] == "Skipped"
    assert run.row("needs-result")[1] == "Skipped"
    assert "did not produce result out" in run.out
    assert run.row("after-needs-result")[1] == "Skipped"
    assert "PipelineRun r Completed" in run.out


def test_when_true_runs_the_task(run_pipeline):
    run = run_pipeline(spec(WHEN, head="params: [{name: build, default: \"no\"}]"), RECORD,
                       args=("--param", "build=yes"))
    assert run.code == 0
    assert run.lines("order") == ["guarded"]
    assert "PipelineRun r Succeeded" in run.out


def test_finally_sees_every_status_after_success(run_pipeline):
    doc = spec(record("a"), record("b", after=["a"]),
               finally_=(record("final", text="$(tasks.status) a=$(tasks.a.status) b=$(tasks.b.reason)"),))
    run = run_pipeline(doc, RECORD)
    assert run.code == 0
    assert run.lines("final.text") == ["Succeeded a=Succeeded b=Succeeded"]
    assert run.lines("order")[-1] == "final"


def test_a_failed_task_stops_new_tasks_and_finally_still_runs(run_pipeline):
    doc = spec(
        record("ok"),
        record("broken", after=["ok"], extra="params: [{name: fail, value: \"true\"}]"),
        record("dependent", text="$(tasks.broken.results.out)"),
        record("independent"),
        finally_=(record("final", text="$(tasks.status) broken=$(tasks.broken.status) "
                                       "dependent=$(tasks.dependent.status)"),
                  record("final-with-result", text="$(tasks.broken.results.out)")),
    )
    run = run_pipeline(doc, RECORD)
    assert run.code == 1
    assert run.lines("order") == ["ok", "broken", "final"]
    assert run.lines("final.text") == ["Failed broken=Failed dependent=None"]
    assert run.row("broken")[1] == "Failed"
    assert "step record exited with 3" in run.out
    assert run.row("dependent")[1] == "Skipped"
    assert run.row("independent")[1] == "Skipped"  # Tekton starts nothing new once a task failed
    # a finally task whose result is missing is skipped, not failed
    assert run.row("final-with-result")[1] == "Skipped"
    assert "failing as asked" in run.out
    assert "PipelineRun r Failed" in run.out


def test_a_result_a_succeeded_task_never_wrote_fails_its_consumer(run_pipeline):
    run = run_pipeline(spec(record("a"), record("b", text="$(tasks.a.results.other)")), RECORD)
    assert run.code == 1
    assert run.row("b")[1] == "Failed"
    assert "it succeeded without writing it" in run.out


@pytest.mark.parametrize(("change", "where", "reference"), [
    (lambda d: d.replace("$(tasks.a.results.out)", "$(tasks.a.results.outt)"), "pipeline.yaml:14",
     "$(tasks.a.results.outt): task a (Task record) declares no result outt (known: other, out)"),
    (lambda d: d.replace("$(tasks.a.results.out)", "$(tasks.z.results.out)"), "pipeline.yaml:14",
     "$(tasks.z.results.out): the pipeline test has no task z (known: a, b)"),
    (lambda d: d.replace("$(tasks.a.results.out)", "$(tasks.a.status)"), "pipeline.yaml:14",
     "$(tasks.a.status): $(tasks.a.status) is only available in finally tasks"),
    (lambda d: d.replace("$(tasks.a.results.out)", "$(params.nope)"), "pipeline.yaml:14",
     "$(params.nope): the pipeline test declares no param nope"),
    (lambda d: d.replace("value: $(params.text)", "value: $(params.txt)"), "pipeline.yaml:36",
     "$(params.txt): Task record declares no param txt (known: fail, text)"),
    (lambda d: d.replace("$(results.out.path)", "$(results.output.path)"), "pipeline.yaml:46",
     "$(results.output.path): Task record declares no result output"),
    (lambda d: d.replace("$(workspaces.ws.path)", "$(workspaces.wss.path)"), "pipeline.yaml:40",
     "$(workspaces.wss.path): Task record declares no workspace wss"),
], ids=["misspelled-result", "unknown-task", "status-outside-finally", "unknown-pipeline-param",
        "unknown-task-param", "unknown-result-path", "unknown-workspace"])
def test_an_unresolved_reference_fails_before_anything_runs_naming_file_and_line(run_pipeline, change, where,
                                                                                   reference):
    doc = change(spec(record("a"), record("b", text="$(tasks.a.results.out)")) + "---\n" + RECORD)
    run = run_pipeline(doc)
    assert run.code == 2
    assert f"{where}: {reference}" in run.err
    assert "found before anything ran" in run.err
    assert run.lines("order") == []


def test_every_problem_is_listed_at_once(run_pipeline):
    doc = spec(record("a", after=["ghost"]), record("b", text="$(tasks.a.results.nope) $(params.nope)"))
    run = run_pipeline(doc, RECORD, args=("--param", "unknown=1"))
    assert run.code == 2
    assert "4 problem(s)" in run.err
    assert "runAfter names 'ghost'" in run.err
    assert "$(tasks.a.results.nope)" in run.err
    assert "$(params.nope)" in run.err
    assert "--param: the pipeline declares no param unknown" in run.err


def test_a_cycle_is_named(run_pipeline):
    run = run_pipeline(spec(record("a", after=["b"]), record("b", text="$(tasks.a.results.out)")), RECORD)
    assert run.code == 2
    assert "the tasks form a cycle: a -> b -> a" in run.err or "the tasks form a cycle: b -> a -> b" in run.err


def test_an_image_without_a_local_equivalent_stops_the_run_before_it_starts(run_pipeline):
    other = task("other", """
        steps:
          - name: build
            image: registry.example.com/juniper/kmod-builder:51
            command: [/usr/bin/dpdk_build.sh]
        """)
    doc = spec(record("a"), "  - name: b\n    taskRef: {name: other}")
    run = run_pipeline(doc, RECORD, other)
    assert run.code == 2
    assert "Task other, step build: image registry.example.com/juniper/kmod-builder:51 has no local equivalent; " \
           "pass --image-command registry.example.com/juniper/kmod-builder=LOCAL-COMMAND" in run.err
    assert run.lines("order") == []


def test_image_command_replaces_the_container_and_gets_script_or_command_and_args(run_pipeline, tmp_path):
    out = tmp_path / "launched"
    launcher = tmp_path / "launcher"
    launcher.write_text('#!/bin/bash\nprintf "%s|" "$CSSR_STEP_IMAGE" "$CSSR_STEP_NAME" "$@" >> "$OUT"\n'
                        'echo >> "$OUT"\ncase "$1" in *.sh) bash "$@";; esac\n')
    launcher.chmod(0o755)
    digest = "sha256:" + "0" * 64
    other = task("other", f"""
        params: [{{name: word, default: w}}]
        stepTemplate:
          env: [{{name: OUT, value: {out}}}]
        steps:
          - name: cmd
            image: registry.example.com/tools:2@{digest}
            command: [/usr/bin/tool, --flag]
            args: [$(params.word)]
          - name: script
            image: registry.example.com/tools:2
            args: [a1, a2]
            script: |
              echo "script got $1 $2" >> "$OUT"
        """)
    run = run_pipeline(pipeline("tasks:\n  - {name: t, taskRef: {name: other}}"), other, workspace=False,
                       image_command=False, args=("--image-command", f"registry.example.com/tools={launcher}"))
    assert run.code == 0, run.out + run.err
    lines = out.read_text().splitlines()
    assert lines[0] == f"registry.example.com/tools:2@{digest}|cmd|/usr/bin/tool|--flag|w|"
    assert lines[1].startswith("registry.example.com/tools:2|script|")
    assert lines[1].endswith("/script.sh|a1|a2|")
    assert lines[2] == "script got a1 a2"


def test_workspaces_are_folders_with_sub_paths_and_optional_ones(run_pipeline):
    opt = task("opt", f"""
        workspaces:
          - name: data
          - name: extra
            optional: true
        steps:
          - name: show
            image: {BASH_IMAGE}
            script: |
              echo "bound=$(workspaces.extra.bound) path=[$(workspaces.extra.path)]" > $(workspaces.data.path)/seen
        """)
    doc = pipeline("""
        workspaces: [{name: ws}, {name: spare, optional: true}]
        tasks:
          - name: t
            taskRef: {name: opt}
            workspaces: [{name: data, workspace: ws, subPath: "sub/$(context.pipelineRun.name)"}]
        """)
    run = run_pipeline(doc, opt)
    assert run.code == 0, run.out + run.err
    assert (run.workspace / "sub" / "r" / "seen").read_text() == "bound=false path=[]\n"
    missing = run_pipeline(doc, opt, workspace=False)
    assert missing.code == 2
    assert "workspace ws is not bound; pass --workspace ws=DIR" in missing.err


def test_step_env_wins_over_the_step_template(run_pipeline):
    env_task = task("env", f"""
        workspaces: [{{name: ws}}]
        stepTemplate:
          env:
            - {{name: A, value: template-a}}
            - {{name: B, value: template-b}}
        steps:
          - name: show
            image: {BASH_IMAGE}
            env:
              - {{name: B, value: step-b}}
              - {{name: C, value: step-c}}
            script: |
              echo "$A $B $C ${{HOST_ONLY:-unset}}" > $(workspaces.ws.path)/env
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: env}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, env_task, env={"HOST_ONLY": "leaked"})
    assert run.code == 0, run.out + run.err
    assert run.lines("env") == ["template-a step-b step-c unset"]


def test_retries_run_the_task_again_with_fresh_results(run_pipeline):
    flaky = task("flaky", f"""
        workspaces: [{{name: ws}}]
        results: [{{name: attempt}}, {{name: stale}}]
        steps:
          - name: try
            image: {BASH_IMAGE}
            script: |
              n=$(( $(cat $(workspaces.ws.path)/count 2>/dev/null || echo 0) + 1 ))
              echo $n > $(workspaces.ws.path)/count
              printf '%s' "$n" > $(results.attempt.path)
              [ $n -gt 1 ] || {{ printf old > $(results.stale.path); exit 1; }}
        """)
    doc = pipeline("workspaces: [{name: ws}]\nresults: [{name: attempt, value: $(tasks.t.results.attempt)}, "
                   "{name: stale, value: $(tasks.t.results.stale)}]\ntasks:\n"
                   "  - {name: t, retries: 2, taskRef: {name: flaky}, workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, flaky)
    assert run.code == 0, run.out + run.err
    assert run.lines("count") == ["2"]
    assert run.results == {"attempt": "2"}  # the first attempt's results are gone
    assert "t: attempt 1/3 failed" in run.out
    assert run.row("t")[-2:] == ["2", "attempts"]


def test_retries_give_up_after_the_last_attempt(run_pipeline):
    doc = spec(record("a", extra="retries: 1\nparams: [{name: fail, value: \"true\"}]"))
    run = run_pipeline(doc, RECORD)
    assert run.code == 1
    assert run.lines("order") == ["a", "a"]
    assert "a: Failed after 2 attempts" in run.out


def test_a_step_timeout_stops_the_step(run_pipeline):
    slow = task("slow", f"""
        steps:
          - name: sleep
            image: {BASH_IMAGE}
            timeout: 0.5s
            script: |
              sleep 30
        """)
    run = run_pipeline(pipeline("tasks:\n  - {name: t, taskRef: {name: slow}}"), slow, workspace=False)
    assert run.code == 1
    assert "step sleep was stopped: its timeout ran out" in run.out
    assert float(run.row("t")[2].rstrip("s")) < 10


@pytest.mark.parametrize(("steps", "size", "fails"), [
    (1, 3900, False),  # 1 step + prepare + place-scripts: 12288 / 3 = 4096, room for 3900 bytes and the JSON
    (1, 4100, True),  # above 4096: the entrypoint refuses to write it
    (4, 2000, True),  # 4 steps + 2 init containers: 12288 / 6 = 2048 per step, and the last step carries it all
    (4, 1900, False),
], ids=["one-step-fits", "one-step-too-big", "four-steps-too-big", "four-steps-fit"])
def test_the_results_limit_is_per_step_and_shrinks_with_the_steps(run_pipeline, steps, size, fails):
    rest = "".join(f"""
          - name: more-{i}
            image: {BASH_IMAGE}
            script: "true"
""" for i in range(steps - 1))
    big = task("big", f"""
        results: [{{name: blob}}]
        steps:
          - name: write
            image: {BASH_IMAGE}
            script: |
              head -c {size} /dev/zero | tr '\\0' x > $(results.blob.path)
{rest}        """)
    run = run_pipeline(pipeline("tasks:\n  - {name: t, taskRef: {name: big}}"), big, workspace=False)
    assert run.code == (1 if fails else 0), run.out
    if fails:
        assert "its termination message (the results as JSON) is" in run.out
        assert "Tekton fails the TaskRun" in run.out


def test_the_termination_message_is_measured_as_tektons_entrypoint_writes_it():
    from cssr_tasks.tekton.results import message

    written = message({"a": "<x>"})
    assert written == (b'[{"key":"StartedAt","value":"2006-01-02T15:04:05.000Z","type":3},'
                       b'{"key":"a","value":"\\u003cx\\u003e","type":1}]')
    assert len(message({"a": "x"}, exit_code="1")) == len(message({"a": "x"})) + len(',{"key":"ExitCode","value":"1","type":3}')


def test_shell_command_substitution_in_a_script_is_left_to_the_shell(run_pipeline):
    shell = task("shell", f"""
        workspaces: [{{name: ws}}]
        steps:
          - name: show
            image: {BASH_IMAGE}
            script: |
              echo "$(echo sub) $(( 1 + 2 ))" > $(workspaces.ws.path)/shell
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: shell}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, shell)
    assert run.code == 0, run.out + run.err
    assert run.lines("shell") == ["sub 3"]


def test_dry_run_checks_and_shows_how_each_step_runs(run_pipeline):
    run = run_pipeline(spec(record("a")), RECORD, args=("--dry-run",))
    assert run.code == 0
    assert f"a/record: {BASH_IMAGE} -> --image-command" in run.out
    assert run.lines("order") == []


def test_volume_mounts_land_in_the_tasks_volume_not_on_this_machine(run_pipeline, tmp_path):
    if not steps.can_mount():
        pytest.skip("emulating volumeMounts needs root and unshare")
    target = tmp_path / "mounted"  # a folder of "the machine", where the step believes its volume is
    target.mkdir()
    volume_task = task("vol", f"""
        workspaces: [{{name: ws}}]
        volumes:
          - name: scratch
            emptyDir: {{}}
        steps:
          - name: write
            image: {BASH_IMAGE}
            volumeMounts: [{{name: scratch, mountPath: {target}}}]
            script: |
              echo built > {target}/module.ko
              ls {target} > $(workspaces.ws.path)/seen
          - name: read
            image: {BASH_IMAGE}
            volumeMounts: [{{name: scratch, mountPath: {target}, readOnly: true}}]
            script: |
              cat {target}/module.ko >> $(workspaces.ws.path)/seen
              touch {target}/other 2>/dev/null || echo read-only >> $(workspaces.ws.path)/seen
              echo "at the pod's path" > /workspace/ws/written
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: vol}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, volume_task, args=("--run-dir", str(tmp_path / "rundir")))
    assert run.code == 0, run.out + run.err
    assert run.lines("seen") == ["module.ko", "built", "read-only"]
    assert list(target.iterdir()) == []  # nothing reached the machine's folder
    assert run.lines("written") == ["at the pod's path"]  # the workspace is also at /workspace/<name>
    assert not Path("/workspace/ws").exists()
    assert (tmp_path / "rundir" / "tasks" / "t" / "volumes" / "scratch" / "module.ko").read_text() == "built\n"


def test_a_mount_of_an_undeclared_volume_fails_before_the_run(run_pipeline):
    bad = task("bad", f"""
        steps:
          - name: s
            image: {BASH_IMAGE}
            volumeMounts: [{{name: nowhere, mountPath: /x}}]
            script: "true"
        """)
    run = run_pipeline(pipeline("tasks:\n  - {name: t, taskRef: {name: bad}}"), bad, workspace=False)
    assert run.code == 2
    assert "step s mounts volume nowhere, which Task bad does not declare" in run.err


def test_on_error_continue_runs_the_next_step_which_can_read_the_exit_code(run_pipeline):
    tolerant = task("tolerant", f"""
        workspaces: [{{name: ws}}]
        steps:
          - name: flaky
            image: {BASH_IMAGE}
            onError: continue
            script: |
              exit 7
          - name: after
            image: {BASH_IMAGE}
            script: |
              echo "flaky said $(cat $(steps.step-flaky.exitCode.path))" > $(workspaces.ws.path)/after
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: tolerant}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, tolerant)
    assert run.code == 0, run.out + run.err
    assert run.lines("after") == ["flaky said 7"]
    assert "t: step flaky exited with 7; onError: continue" in run.out


def test_a_pipeline_task_timeout_bounds_all_its_steps(run_pipeline):
    slow = task("slow", f"""
        steps:
          - name: first
            image: {BASH_IMAGE}
            script: sleep 0.2
          - name: second
            image: {BASH_IMAGE}
            script: sleep 30
        """)
    run = run_pipeline(pipeline("tasks:\n  - {name: t, timeout: 1s, taskRef: {name: slow}}"), slow, workspace=False)
    assert run.code == 1
    assert "step second was stopped: the task's timeout ran out" in run.out


@pytest.mark.parametrize(("text", "expected"), [
    ('"words: $(params.words)"', "$(params.words): is an array or object; it can only stand alone"),
    ('"words: $(params.words[*])"', "$(params.words[*]): is an array or object; it can only stand alone"),
    ('"$(params.word[*])"', "$(params.word[*]): is a string; [*] only applies to arrays and objects"),
], ids=["array-without-star", "array-inside-a-string", "star-on-a-string"])
def test_arrays_are_used_whole_or_by_index(run_pipeline, text, expected):
    doc = spec(record("a", extra=f"params: [{{name: text, value: {text}}}]"),
               head="params: [{name: words, type: array, default: [a]}, {name: word, default: w}]")
    run = run_pipeline(doc, RECORD)
    assert run.code == 2
    assert expected in run.err


@pytest.mark.parametrize(("extra", "expected"), [
    ("matrix: {params: [{name: text, value: [a, b]}]}", "pipeline task a: matrix (fanning a pipeline task"
     " out over param combinations) (field matrix) is not supported by the local executor [unsupported: matrix]"),
    ("when: [{cel: \"'a' == 'a'\"}]", "pipeline task a: CEL when expressions is not"
     " supported by the local executor [unsupported: cel-when]"),
    ("when: [{input: a, operator: exists, values: [a]}]", "when operator 'exists' must be in or notin"),
    ("retries: many", "pipeline task a: retries must be a whole number"),
    ("timeout: soon", "pipeline task a: timeout 'soon' is not a Go duration"),
], ids=["matrix", "cel", "operator", "retries", "timeout"])
def test_what_the_executor_does_not_implement_is_refused_before_the_run(run_pipeline, extra, expected):
    run = run_pipeline(spec(record("a", extra=extra)), RECORD)
    assert run.code == 2
    assert expected in run.err


def test_a_resolver_task_ref_is_refused(run_pipeline):
    doc = pipeline("tasks:\n  - name: a\n    taskRef: {resolver: cluster, params: [{name: name, value: buildah}]}")
    run = run_pipeline(doc, workspace=False)
    assert run.code == 2
    assert ": pipeline task a: remote resolution: taskRef/pipelineRef with a resolver" in run.err
    assert "[unsupported: resolvers]" in run.err


def test_an_inline_task_spec_sees_the_pipelines_params(run_pipeline):
    doc = pipeline(f"""
        params: [{{name: greeting, default: hello}}]
        workspaces: [{{name: ws}}]
        tasks:
          - name: inline
            workspaces: [{{name: ws, workspace: ws}}]
            taskSpec:
              workspaces: [{{name: ws}}]
              steps:
                - name: say
                  image: {BASH_IMAGE}
                  env: [{{name: GREETING, value: $(params.greeting)}}]
                  script: echo "$GREETING" > $(workspaces.ws.path)/said
        """)
    run = run_pipeline(doc, args=("--param", "greeting=hi"))
    assert run.code == 0, run.out + run.err
    assert run.lines("said") == ["hi"]


def test_buildah_steps_run_the_local_buildah(run_pipeline):
    require_tool("buildah")
    build = task("build", """
        workspaces: [{name: ws}]
        steps:
          - name: version
            image: registry.access.redhat.com/ubi9/buildah:9.0.0-19
            script: |
              #!/bin/sh
              buildah --version > $(workspaces.ws.path)/buildah
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: build}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, build, image_command=False)
    assert run.code == 0, run.out + run.err
    assert run.lines("buildah")[0].startswith("buildah version ")
    assert "t: step version (buildah: script: buildah --version" in run.out


def test_sim_fixture_needs_simulated(run_pipeline):
    run = run_pipeline(spec(record("a")), RECORD, args=("--sim-fixture", "cssr_tasks.sim.operators:install"))
    assert run.code == 2
    assert "--sim-fixture needs --simulated" in run.err


def test_a_working_dir_in_a_workspace_is_created_one_elsewhere_must_exist(run_pipeline):
    wd = task("wd", f"""
        workspaces: [{{name: ws}}]
        steps:
          - name: where
            image: {BASH_IMAGE}
            workingDir: $(workspaces.ws.path)/src/deep
            script: pwd > $(workspaces.ws.path)/pwd
        """)
    doc = pipeline("workspaces: [{name: ws}]\ntasks:\n  - {name: t, taskRef: {name: wd}, "
                   "workspaces: [{name: ws, workspace: ws}]}")
    run = run_pipeline(doc, wd)
    assert run.code == 0, run.out + run.err
    assert run.lines("pwd") == [str(run.workspace / "src" / "deep")]
    run = run_pipeline(doc, wd.replace("$(workspaces.ws.path)/src/deep", "/nonexistent/cssr-test"))
    assert run.code == 2  # a container runtime would create it; the executor refuses before the run
    assert "step where: a workingDir that does not exist here, outside /workspace" in run.err
    assert "[unsupported: workingdir-outside-workspace]" in run.err
    assert not Path("/nonexistent").exists()


def test_a_refused_task_is_the_one_problem_not_what_follows_from_it(run_pipeline):
    # a matrix would give the param its Task requires, and a consumer reads its (then array) results:
    # the refusal names the matrix; no "does not set param", no "[*] on a string"
    doc = pipeline(f"""
        workspaces: [{{name: ws}}]
        tasks:
          - name: fan
            matrix: {{params: [{{name: word, value: [a, b]}}]}}
            taskSpec:
              params: [{{name: word}}]
              results: [{{name: out}}]
              steps: [{{name: s, image: {BASH_IMAGE}, script: 'echo $(params.word)'}}]
          - name: use
            params: [{{name: all, value: "$(tasks.fan.results.out[*])"}}]
            taskSpec:
              params: [{{name: all, type: array}}]
              steps: [{{name: s, image: {BASH_IMAGE}, args: ["$(params.all[*])"], script: 'echo "$@"'}}]
        """)
    run = run_pipeline(doc)
    assert run.code == 2
    assert "1 problem(s) found before anything ran" in run.err, run.err
    assert "[unsupported: matrix]" in run.err


def test_tekton_substitutions_an_inline_task_relies_on(run_pipeline):
    # - an object value is merged key by key over the propagated object (docs/pipelineruns.md "Object Parameters")
    #   and over a declared param's default (getTaskParameters);
    # - $(workspaces.<the task's>.path) in a pipeline task's param is the task's workspace;
    # - $(context.<unknown>) is left as written, as Tekton neither validates nor substitutes it
    doc = pipeline(f"""
        params:
          - {{name: repo, type: object, properties: {{url: {{}}, commit: {{}}}}, default: {{url: a.com, commit: c1}}}}
        workspaces: [{{name: ws}}]
        tasks:
          - name: show
            workspaces: [{{name: out, workspace: ws}}]
            params:
              - {{name: repo, value: {{url: b.com}}}}
              - {{name: target, value: $(workspaces.out.path)/said}}
              - {{name: conf, value: {{port: "80"}}}}
            taskSpec:
              workspaces: [{{name: out}}]
              params:
                - {{name: target}}
                - {{name: conf, type: object, properties: {{host: {{}}, port: {{}}}}, default: {{host: h}}}}
              steps:
                - name: s
                  image: {BASH_IMAGE}
                  script: |
                    printf '%s\\n' "$(params.repo.url) $(params.repo.commit)" "$(params.conf.host):$(params.conf.port)" \\
                      '$(context.other.name)' > $(params.target)
        """)
    run = run_pipeline(doc)
    assert run.code == 0, run.out + run.err
    assert run.lines("said") == ["b.com c1", "h:80", "$(context.other.name)"]


@pytest.mark.parametrize(("mount", "refused"), [("/workspace/key", False), ("/elsewhere", True)])
def test_a_step_workspace_mount_path_other_than_the_tasks_is_refused(run_pipeline, mount, refused):
    doc = pipeline(f"""
        workspaces: [{{name: ws}}]
        tasks:
          - name: t
            workspaces: [{{name: key, workspace: ws}}]
            taskSpec:
              workspaces: [{{name: key}}]
              steps:
                - name: s
                  image: {BASH_IMAGE}
                  workspaces: [{{name: key, mountPath: {mount}}}]
                  script: echo ok > $(workspaces.key.path)/said
        """)
    run = run_pipeline(doc)
    if refused:
        assert run.code == 2 and "[unsupported: step-workspaces]" in run.err, run.err
    else:
        assert run.code == 0, run.out + run.err
        assert run.lines("said") == ["ok"]
