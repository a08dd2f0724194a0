"""Build the DPDK kernel modules for every kernel of the set that lacks verified ones.

Per kernel without verified `<modules-dir>/<kver>/dpdk/<module>.ko`: run the builder (Juniper's
kmod-builder by default) with KERNEL_VERSION and a `uname -r` shim naming the kernel, let it
write into a staging directory, verify what it wrote (ELF, vermagic), sign it when a key is
given, verify again, and rename it into place. The whole run holds the volume's build lock, so
that concurrent builders (another PipelineRun, a developer) never build the same kernel twice
nor see each other's half-written files.

`cssr-tasks build-kmods` does it all in one process (the builder must then run in the same
container). The Task splits it around its kmod-builder step, whose image has no Python:
`build-kmods prepare` takes the lock, plans and stages; the kmod-builder step runs the plan
with kmod-build.sh; `build-kmods commit` verifies, signs, renames into place and releases.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import FrameType

from . import builder_params, depmod
from .build_lock import LOCK_FILE, STAGING, BuildLock, host
from .deploy_params import MODULES_STORAGE
from .durable import fsync
from .elf import strip_signature
from .errors import ConfigError, CssrError
from .kmod_checks import (
    Check,
    dep_problems,
    read_folder,
    read_kernels,
    read_modules,
    read_modules_dep,
    read_modules_dir,
    verify_dir,
    verify_tree,
)
from .log import Log
from .params import Reader, shown

__all__ = ["LOCK_FILE", "STAGING", "Params", "Result", "commit", "main", "prepare", "run"]

NEEDS_CLUSTER = False
SIGN_HASH = "sha256"
KEY_FILES = ("key.pem", "key")
CERT_FILES = ("cert.der", "cert.pem", "cert")
END_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when the builder's process group is ended


@dataclass(frozen=True)
class Params:
    modules_dir: str = "/usr/lib/modules"
    kernels: tuple[str, ...] = ()
    modules: tuple[str, ...] = ("igb_uio", "rte_kni")
    builder_command: tuple[str, ...] = tuple(shlex.split(builder_params.DEFAULT_BUILDER))
    builder_root: str = "/"
    builder_output: str = "{builder_root}/usr/lib/modules/{kernel}/dpdk"
    kernel_tree_dir: str = ""
    lock_timeout: int = 1800
    stale_after: int = 600
    signing_secret_dir: str = ""
    signing_key_bound: bool = False  # the Task's prepare step: the key is bound but mounted only in commit
    modules_storage: str = "pvc"  # hostpath: this pod builds nothing; build-kmods-nodes builds on each node

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            modules_dir=read_modules_dir(read, cls.modules_dir),
            kernels=read_kernels(read),
            modules=read_modules(read),
            builder_command=builder_params.read_command(read),
            builder_root=read_folder(read, "builder-root", "/"),
            builder_output=read.string("builder-output", cls.builder_output),
            kernel_tree_dir=read_folder(read, "kernel-tree-dir", ""),
            lock_timeout=read.integer("lock-timeout", cls.lock_timeout, minimum=0),
            stale_after=read.integer("stale-after", cls.stale_after, minimum=1),
            signing_secret_dir=read_folder(read, "signing-secret-dir", ""),
            signing_key_bound=read.boolean("signing-key-bound", False),
            modules_storage=read.choice("modules-storage", cls.modules_storage, MODULES_STORAGE),
        )
        if params.modules_storage == "hostpath" and params.signing_key_bound:
            read.fail("the signing-key workspace cannot be used with modules-storage=hostpath yet: the nodes' pods "
                      "do not mount the key; use modules-storage=pvc to sign, or unbind signing-key")
        problem = builder_params.output_problem(params.builder_output, params.builder_root, params.modules_dir)
        if problem:
            read.fail(f"param builder-output={shown(params.builder_output)} {problem}")
        read.done()
        return params

    def output_for(self, kernel: str, *, normalize: bool = True) -> str:
        """Where the builder leaves its modules for `kernel`, as the builder sees it."""
        return builder_params.output_for(self.builder_output, kernel, self.builder_root, self.modules_dir,
                                         normalize=normalize)


@dataclass(frozen=True)
class Result:
    built_kernels: list[str] | None  # None: not written (modules-storage=hostpath: build-kmods-nodes writes it)


def _on_nodes(params: Params, log: Log) -> bool:
    """modules-storage=hostpath: nothing to do in this pod, whose modules workspace is not the router's."""
    if params.modules_storage == "hostpath":
        log.info("modules-storage=hostpath: nothing built here; the last step builds on every target node")
    return params.modules_storage == "hostpath"


def run(params: Params, *, cluster: None = None, log: Log) -> Result:
    """Plan, build and commit in one process, holding the lock throughout."""
    if _on_nodes(params, log):
        return Result(built_kernels=None)
    with _filesystem_errors(params):
        build = Build(params, log, owner=f"{host()}-{os.getpid()}", span="process")
        build.lock.acquire()
        try:
            plan = build.plan()
            if plan:
                build.run_builder()
            built, failures = build.commit(plan)
        finally:
            build.lock.release()
    return build.result(built, failures)


def prepare(params: Params, *, cluster: None = None, log: Log) -> Result:
    """The Task's first half: take the lock as a lease that outlives this step, plan, stage the script."""
    if _on_nodes(params, log):
        return Result(built_kernels=None)
    with _filesystem_errors(params):
        build = Build(params, log, owner=host(), span="task", keys=False)
        build.lock.acquire()
        try:
            plan = build.plan()
        except BaseException:
            build.lock.release()
            raise
        build.lock.detach()
    state = f"{len(plan)} kernel(s) to build" if plan else "nothing to build"
    log.info(f"plan in {build.plan_dir}: {state}; the build lease stays held until `build-kmods commit`")
    return Result(built_kernels=[])


def commit(params: Params, *, cluster: None = None, log: Log) -> Result:
    """The Task's second half: verify and sign what the kmod-builder step staged, rename it into place, unlock."""
    if _on_nodes(params, log):
        return Result(built_kernels=None)
    with _filesystem_errors(params):
        build = Build(params, log, owner=host(), span="task")
        build.lock.acquire(resume=True)
        try:
            plan = build.read_plan()
            built, failures = build.commit(plan)
        finally:
            build.lock.release()
    return build.result(built, failures)


@contextmanager
def _filesystem_errors(params: Params) -> Iterator[None]:
    """A volume that is full, read-only or owned by another user is the user's to fix: say so in one line."""
    try:
        yield
    except OSError as e:
        where = e.filename or params.modules_dir
        raise CssrError(f"could not build modules in {params.modules_dir}: {where}: {e.strerror or e}; the modules "
                        "volume must be mounted, writable by this step's user, and have free space") from None


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """`build-kmods [prepare|commit] [--param value ...]`: the sub-command picks the phase."""
    from . import cli

    phases = {"prepare": prepare, "commit": commit}
    phase = argv[0] if argv and argv[0] in phases else ""
    return cli.run_task(f"build-kmods {phase}".strip(), sys.modules[__name__], list(argv[1:] if phase else argv),
                        environ, run=phases.get(phase, run))


class Build:
    """One build's paths and steps; the lock is held by the caller around them."""

    def __init__(self, params: Params, log: Log, *, owner: str, span: str, keys: bool = True) -> None:
        self.params, self.log, self.owner = params, log, owner
        self.modules_dir = Path(params.modules_dir).absolute()
        self.staging = self.modules_dir / STAGING
        self.plan_dir = self.staging / owner
        self.lock = BuildLock(self.modules_dir, owner, span, timeout=params.lock_timeout,
                              stale_after=params.stale_after, log=log)
        # The Task's prepare step never sees the key (it is mounted in the commit step only): it plans
        # for signing when the workspace is bound.
        self.signing = signing_keys(params.signing_secret_dir, log) if keys else None
        self.signed = self.signing is not None or (not keys and params.signing_key_bound)

    def plan(self) -> list[str]:
        """The kernels without verified modules; writes the plan, argv and kmod-build.sh into the plan dir."""
        self._clean_leftovers()
        todo = []
        for kernel in self.params.kernels:
            checks = verify_tree(self.modules_dir, kernel, self.params.modules,
                                 require_signature=self.signed)
            if all(c.ok for c in checks):
                self.log.info(f"kernel {kernel}: modules verified ({_summary(checks)}); no build")
            else:
                self.log.info(f"kernel {kernel}: needs a build: " + "; ".join(
                    f"{c.path.name} {'; '.join(c.problems)}" for c in checks if not c.ok))
                todo.append(kernel)
        self.plan_dir.mkdir(parents=True)
        script = self.plan_dir / "kmod-build.sh"
        script.write_bytes(resources.files("cssr_tasks").joinpath("files/kmod-build.sh").read_bytes())
        script.chmod(0o755)
        (self.plan_dir / "argv").write_text("".join(f"{a}\n" for a in self.params.builder_command))
        lines = [f"root {self.params.builder_root}", f"trees {self.params.kernel_tree_dir}"]
        lines += [f"kernel {k} {self.params.output_for(k)}" for k in todo]
        (self.plan_dir / "plan").write_text("\n".join(lines) + "\n")
        if todo and not self.params.kernel_tree_dir and any(
                Path(self.params.output_for(k)) == self.modules_dir / k / "dpdk" for k in todo):
            self.log.info("the builder writes into the live tree (no kernel-tree-dir: the PoC's mounts); its "
                          "output is moved to staging as soon as it exits, verified, and moved back")
        return todo

    def read_plan(self) -> list[str]:
        plan = self.plan_dir / "plan"
        if not plan.is_file():
            raise CssrError(f"could not commit the module build: no plan at {plan}; "
                            "run `cssr-tasks build-kmods prepare` first, in the same pod")
        return [line.split()[1] for line in plan.read_text().splitlines() if line.startswith("kernel ")]

    def run_builder(self) -> None:
        """kmod-build.sh in its own process group, ended with this process (SIGTERM included)."""
        command = ["sh", str(self.plan_dir / "kmod-build.sh"), str(self.plan_dir)]
        self.log.info(f"running the builder: {shlex.join(self.params.builder_command)}")
        output = self.plan_dir / "build.log"
        with self.log.timed("the builder"), _ended_by_sigterm():
            # Output to a file, not a pipe: should this process die, the builder neither dies of
            # SIGPIPE halfway nor blocks, and its heartbeat keeps telling the next run to wait.
            with output.open("wb") as sink:
                try:
                    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                except OSError as e:
                    raise CssrError(f"could not start {command[0]}: {e.strerror}; the step needs a POSIX sh") from None
            try:
                self._follow(proc, output)
            finally:
                _end_group(proc)

    def _follow(self, proc: subprocess.Popen[bytes], output: Path) -> None:
        pending = b""
        with output.open("rb") as source:
            while True:
                running = proc.poll() is None
                pending += source.read()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log.info(f"  | {line.decode(errors='replace').rstrip()}")
                if not running:
                    break
                time.sleep(0.1)
        if pending.strip():
            self.log.info(f"  | {pending.decode(errors='replace').rstrip()}")

    def commit(self, kernels: Sequence[str]) -> tuple[list[str], list[str]]:
        """Verify, sign and rename each staged kernel into place, then depmod; returns (built, failure messages)."""
        built, failures = [], []
        for kernel in kernels:
            try:
                self._commit_kernel(kernel)
                built.append(kernel)
            except CssrError as e:
                self.log.info(f"kernel {kernel}: {e}")
                failures.append(f"kernel {kernel}: {e}")
        for kernel in self.params.kernels:
            if kernel in built or (kernel not in kernels and self._indexed(kernel)):
                try:
                    self._depmod(kernel)
                except CssrError as e:
                    self.log.info(f"kernel {kernel}: {e}")
                    failures.append(f"kernel {kernel}: {e}")
                    if kernel in built:
                        built.remove(kernel)
        shutil.rmtree(self.plan_dir, ignore_errors=True)
        return built, failures

    def _indexed(self, kernel: str) -> bool:
        """True when the kernel's modules verify on the volume but its modules.dep lacks them (depmod due)."""
        if not all(c.ok for c in verify_tree(self.modules_dir, kernel, self.params.modules)):
            return False
        problems = dep_problems(read_modules_dep(self.modules_dir / kernel), self.params.modules, kernel)
        return bool(problems)

    def _depmod(self, kernel: str) -> None:
        system_map = self.kernel_tree(kernel) / "System.map"
        depmod.update(self.modules_dir, kernel, self.params.modules, scratch=self.plan_dir / f"depmod-{kernel}",
                      system_map=system_map if system_map.is_file() else None, log=self.log)

    def result(self, built: list[str], failures: list[str]) -> Result:
        if failures:
            raise CssrError(f"could not build modules for {len(failures)} kernel(s): " + " | ".join(failures)
                            + (f" (built: {', '.join(built)})" if built else "")
                            + "; see the builder's output above")
        self.log.info(f"built modules for {len(built)} kernel(s): {', '.join(built)}" if built
                      else "built nothing: every kernel's modules were verified")
        return Result(built_kernels=built)

    def _commit_kernel(self, kernel: str) -> None:
        stage = self.plan_dir / kernel
        failed = self.plan_dir / f"{kernel}.failed"
        if failed.exists():
            raise CssrError(failed.read_text().strip() or "the builder failed")
        if not stage.is_dir():
            raise CssrError(f"the builder step staged nothing at {stage} (did the kmod-builder step run?)")
        checks = verify_dir(stage, kernel, self.params.modules)
        _fail_unless_ok(checks, f"the builder's output ({self.params.output_for(kernel)})")
        if self.signing is not None:
            for check in checks:
                sign(check.path, self.sign_file(kernel), *self.signing)
            checks = verify_dir(stage, kernel, self.params.modules, require_signature=True)
            _fail_unless_ok(checks, "the signed modules")
        for path in stage.iterdir():
            fsync(path)
        live = self.modules_dir / kernel / "dpdk"
        live.parent.mkdir(parents=True, exist_ok=True)
        old = self.plan_dir / f"{kernel}.old"
        if live.exists() or live.is_symlink():
            os.rename(live, old)
        os.rename(stage, live)
        fsync(live.parent)
        shutil.rmtree(old, ignore_errors=True)
        self.log.info(f"kernel {kernel}: {_summary(checks)} verified{' and signed' if self.signing else ''}; "
                      f"renamed into {live}")

    def kernel_tree(self, kernel: str) -> Path:
        """The kernel-devel tree of `kernel` (scripts/sign-file, System.map)."""
        if self.params.kernel_tree_dir:
            return Path(self.params.kernel_tree_dir) / "kernels" / kernel
        return Path(self.params.builder_root) / "usr/src/kernels" / kernel

    def sign_file(self, kernel: str) -> Path:
        return self.kernel_tree(kernel) / "scripts" / "sign-file"

    def _clean_leftovers(self) -> None:
        """Staging left by builders that died: safe to remove, since we hold the lock."""
        if self.staging.is_dir():
            for entry in sorted(self.staging.iterdir()):
                self.log.info(f"removing leftover staging {entry}" if entry != self.plan_dir
                              else f"starting over in {entry}")
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def signing_keys(directory: str, log: Log) -> tuple[Path, Path] | None:
    """(key, certificate) from the signing Secret's folder; None (no signing) when no folder or an empty one."""
    if not directory:
        return None
    folder = Path(directory)
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    if not names:
        log.info(f"no signing key in {directory} (the signing-key workspace is not bound): modules are not signed")
        return None
    key = next((folder / n for n in KEY_FILES if (folder / n).is_file()), None)
    cert = next((folder / n for n in CERT_FILES if (folder / n).is_file()), None)
    if key is None or cert is None:
        raise ConfigError(f"could not use the signing key in {directory}: it holds {', '.join(names)}; it needs a "
                          f"private key ({' or '.join(KEY_FILES)}) and a certificate ({' or '.join(CERT_FILES)})")
    log.info(f"signing modules with {key.name} and {cert.name} from {directory}")
    return key, cert


def sign(module: Path, sign_file: Path, key: Path, cert: Path) -> None:
    """Sign with the kernel tree's scripts/sign-file, replacing any signature the module had."""
    if module.name.endswith(".xz"):
        raise CssrError(f"could not sign {module}: it is compressed; have the builder write plain .ko files")
    if not os.access(sign_file, os.X_OK):
        raise CssrError(f"could not sign {module}: no executable {sign_file}; the kernel tree must hold "
                        "scripts/sign-file (kernel-devel does)")
    data = module.read_bytes()
    stripped = strip_signature(data, str(module))
    if len(stripped) != len(data):
        module.write_bytes(stripped)
    command = [str(sign_file), SIGN_HASH, str(key), str(cert), str(module)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    except OSError as e:
        raise CssrError(f"could not run {sign_file}: {e.strerror}; it must run in this step's image "
                        "(RHEL 9 kernels' sign-file needs libcrypto.so.3)") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise CssrError(f"could not sign {module}: sign-file exited with {done.returncode}"
                        f"{': ' + detail[-1] if detail else ''}; check the key and certificate")


@contextmanager
def _ended_by_sigterm() -> Iterator[None]:
    """SIGTERM (a step's timeout, a deleted pod) unwinds like an error, so the builder's group is ended."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise CssrError("could not finish the build: this step was told to stop (SIGTERM); the builder was ended")
    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals to it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End kmod-build.sh's process group: whatever the builder left running goes with it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(END_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM and proc.returncode is not None:
            # the leader is gone; one SIGKILL for any member that ignored SIGTERM
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            break
    proc.wait()


def _fail_unless_ok(checks: Sequence[Check], what: str) -> None:
    failed = [c for c in checks if not c.ok]
    if failed:
        raise CssrError(f"{what} failed verification: " + " | ".join(c.describe() for c in failed))


def _summary(checks: Sequence[Check]) -> str:
    return ", ".join(c.path.name for c in checks)
