"""Install the upstream CRDs the suite uses, from the pinned modules that `make crds` fetches.

They are the same files the lint tests validate against (crds/go.mod pins them), so the API
server enforces exactly the structural schemas, defaults and pruning of the real operators.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from .layout import ROOT, Layout
from .log import say


class CrdError(RuntimeError):
    pass


def source_dir() -> Path:
    path = Path(os.environ.get("CSSR_CRD_DIR", ROOT / ".cache" / "crds"))
    if not any(path.glob("*/*.yaml")):
        raise CrdError(f"no CRD files under {path}; run `make crds` (or set CSSR_CRD_DIR)")
    return path


# libyaml when present: the pure-Python loader takes seconds per Tekton CRD.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def files(path: Path) -> dict[Path, list[str]]:
    """Every YAML file of the cache that holds CustomResourceDefinitions only, with their names."""
    found = {}
    for file in sorted(path.glob("*/*.yaml")):
        docs = [d for d in yaml.load_all(file.read_text(), Loader=LOADER) if d]
        if docs and all(d.get("kind") == "CustomResourceDefinition" for d in docs):
            found[file] = [d["metadata"]["name"] for d in docs]
    return found


def kubectl(layout: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(layout.binary("kubectl")), f"--kubeconfig={layout.admin_kubeconfig}", *args],
                          capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise CrdError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-600:]}")
    return proc


def install(layout: Layout) -> dict[str, object]:
    began = time.monotonic()
    source = source_dir()
    chosen = files(source)
    wanted = {name for names in chosen.values() for name in names}
    key = hashlib.sha256(b"".join(f.read_bytes() for f in chosen)).hexdigest()
    stamp = layout.state / "crds.key"
    if stamp.exists() and stamp.read_text() == key and not wait_established(layout, wanted, timeout=0):
        say(f"the {len(wanted)} CRDs of {source} are installed and established; nothing to apply")
        return {"source": str(source), "files": len(chosen), "crds": len(wanted), "applied": False}
    stamp.unlink(missing_ok=True)
    args = ["apply", "--server-side", "--field-manager=cssr-e2e", "--force-conflicts"]
    for file in chosen:
        args += ["-f", str(file)]
    out = kubectl(layout, *args).stdout
    changed = [line for line in out.splitlines() if not line.endswith("serverside-applied")]
    waiting = wait_established(layout, wanted, timeout=120.0)
    if waiting:
        raise CrdError(f"CRDs not Established after 120 s: {', '.join(sorted(waiting))}; see `kubectl get crd -o yaml`")
    stamp.write_text(key)
    seconds = time.monotonic() - began
    say(f"{len(wanted)} CRDs established from {len(chosen)} files under {source} in {seconds:.1f} s")
    return {"source": str(source), "files": len(chosen), "crds": len(wanted), "applied": True,
            "other_output": changed}


def wait_established(layout: Layout, names: set[str], timeout: float) -> set[str]:
    """The CRDs of `names` not Established within `timeout` (kubectl wait fails on a CRD the API
    server has not given conditions yet, so this polls)."""
    began = time.monotonic()
    while True:
        served = json.loads(kubectl(layout, "get", "crd", "-o", "json").stdout)["items"]
        established = {c["metadata"]["name"] for c in served
                       if any(k.get("type") == "Established" and k.get("status") == "True"
                              for k in (c.get("status") or {}).get("conditions") or [])}
        waiting = names - established
        if not waiting or time.monotonic() - began > timeout:
            return waiting
        time.sleep(0.5)
