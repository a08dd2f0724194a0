"""The cluster's keys and certificates, made with openssl, once.

One CA signs the API server's serving certificate and the client certificates of the admin and
of the control-plane components (the split into server, client and request-header CAs that
hack/local-up-cluster.sh makes buys nothing on one loopback-only machine). The ServiceAccount
signing key is a plain RSA key. Existing files are kept, so a restarted cluster keeps trusting
the tokens and kubeconfigs it handed out.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .layout import FIRST_SERVICE_IP, HOST, NODE_IP, NODE_NAME

DAYS = "3650"

# name -> (common name, organisation or "")
CLIENTS = {
    "admin": ("cssr-e2e-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kube-apiserver-kubelet-client": ("kube-apiserver", ""),
    # Stage C: the Node authorizer and NodeRestriction know a kubelet by this name and group.
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", ""),  # bound to system:node-proxier by the API server
}

# Key identifiers too: strict verifiers (Python 3.13 ssl, Go) want them.
LEAF = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")

SERVING_SANS = ",".join([
    f"IP:{HOST}", f"IP:{NODE_IP}", f"IP:{FIRST_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
])


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-400:]}")


def _key(path: Path) -> None:
    if not path.exists():
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
        path.chmod(0o600)


def _signed(pki: Path, name: str, subject: str, extensions: str) -> None:
    key, crt = pki / f"{name}.key", pki / f"{name}.crt"
    # The extensions are kept next to the certificate: new SANs (the API server moved to NODE_IP)
    # make a new certificate with the same key, so a kept cluster's tokens stay valid.
    ext = pki / f"{name}.ext"
    if crt.exists() and key.exists() and ext.exists() and ext.read_text() == extensions:
        return
    _key(key)
    ext.write_text(extensions)
    csr = pki / f"{name}.csr"
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
             "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext), "-out", str(crt))
    csr.unlink()


def ensure(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _key(pki / "ca.key")
        _openssl("req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", "/CN=cssr-e2e-ca", "-days", DAYS,
                 "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(pki / "ca.crt"))
    _signed(pki, "kube-apiserver", "/CN=kube-apiserver",
            f"{LEAF}extendedKeyUsage=serverAuth\nsubjectAltName={SERVING_SANS}\n")
    for name, (cn, org) in CLIENTS.items():
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        _signed(pki, name, subject,
                f"{LEAF}extendedKeyUsage=clientAuth\n")
    _key(pki / "service-account.key")
    if not (pki / "service-account.pub").exists():
        _openssl("pkey", "-in", str(pki / "service-account.key"), "-pubout", "-out", str(pki / "service-account.pub"))
