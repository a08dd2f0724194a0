"""The tasks image's Containerfile, read statically (no registry.access.redhat.com here to build it): pinned
base images, pinned runtime dependencies only, one Python version in both stages, a non-root user, and a
build context that leaves the venv, git and the tests out.
"""

from __future__ import annotations

import re
import tomllib

from lintsupport import REPO

CONTAINERFILE = (REPO / "Containerfile").read_text()
INSTRUCTIONS = [line for line in re.sub(r"\\\n", " ", CONTAINERFILE).splitlines()
                if line.strip() and not line.lstrip().startswith("#")]


def instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in INSTRUCTIONS if line.split(None, 1)[0].upper() == keyword]


def stages() -> list[list[str]]:
    found: list[list[str]] = []
    for line in INSTRUCTIONS:
        if line.split(None, 1)[0].upper() == "FROM":
            found.append([])
        if found:  # the ARGs before the first FROM belong to no stage
            found[-1].append(line)
    return found


def test_every_base_image_is_pinned_by_digest():
    bases = instructions("FROM")
    assert len(bases) == 2, "a build stage and a runtime stage"
    # A base named by a build argument (e2e/ builds FROM Debian) must default to a pinned UBI.
    defaults = dict(arg.split("=", 1) for arg in instructions("ARG") if "=" in arg)
    for base in bases:
        image = base.split()[0]
        image = defaults.get(image.removeprefix("${").removesuffix("}"), image)
        assert "ubi9" in image, image
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), image
        assert ":latest" not in image


def test_the_runtime_stage_runs_as_a_non_root_user():
    final = stages()[-1]
    users = [line.split(None, 1)[1].strip() for line in final if line.split(None, 1)[0].upper() == "USER"]
    assert users, "the runtime stage sets no USER"
    assert users[-1] not in ("0", "root") and not users[-1].startswith(("0:", "root:")), users[-1]
    assert instructions("ENTRYPOINT")[-1].strip() == '["cssr-tasks"]'


def test_only_pinned_runtime_dependencies_are_installed():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {line.split("==")[0].strip().lower().replace("_", "-"): line.split("==")[1].strip()
            for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"runtime dependency {name} has no == pin in requirements/constraints.txt"
    installs = [line for line in instructions("RUN") if "pip install" in line]
    assert installs and all("-c /src/requirements/constraints.txt" in line for line in installs)
    assert not any(re.search(r"\.\[|\[sim|\[dev", line) for line in installs), "extras (sim, dev) stay out of the image"


def test_both_stages_use_one_python():
    versions = set(re.findall(r"python-?3\.?(\d+)", CONTAINERFILE))
    assert versions == {"11"}, versions
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required == ">=3.11"


def test_the_build_context_leaves_out_what_the_image_does_not_need():
    ignored = set((REPO / ".containerignore").read_text().split())
    assert {".venv", ".git", "tests"} <= ignored
    for copy in instructions("COPY"):
        if copy.startswith("--from"):
            continue
        for source in copy.split()[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
