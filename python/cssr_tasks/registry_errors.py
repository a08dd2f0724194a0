"""What a registry's refusal or a broken transfer tells the user: one line naming the registry,
the login it refused and the fix. No network: the client in registry.py passes what it received.
"""

from __future__ import annotations

import re

from .registry_refs import Credentials


def who(login: Credentials | None) -> str:
    if login:
        return f"the login {login.username or '(token)'} from {login.source}"
    return "an anonymous client (the docker config has no login for it)"


def login_fix(host: str) -> str:
    return (f"check the docker config for a login to {host} with push rights: the dockerconfig workspace "
            "or docker-config param, else the ServiceAccount's registry secret that Tekton writes to "
            "$HOME/.docker/config.json")


def refusal(what: str, host: str, status: int, *, reason: str, detail: str, login: Credentials | None) -> str:
    """The message for an HTTP error status `status` (>= 400) that registry `host` answered."""
    if status == 401:
        return f"could not {what}: registry {host} answered 401 Unauthorized to {who(login)}; {login_fix(host)}"
    if status == 403:
        return (f"could not {what}: registry {host} denied {who(login)} ({detail or '403 Forbidden'}); "
                "check that this login may pull and push the repository")
    if status == 429 or status >= 500:
        return (f"could not {what}: registry {host} answered {status} {reason}"
                f"{': ' + detail if detail else ''}; retry later, or check the registry's health")
    return f"could not {what}: registry {host} answered {status} {reason}" + (f": {detail}" if detail else "")


def short(error: BaseException) -> str:
    """The reason inside a requests/urllib3 error chain, such as `[Errno 111] Connection refused`."""
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    for marker in ("Caused by ", "Max retries exceeded"):
        if marker in text:
            text = text.split(marker, 1)[-1]
    return text.strip(" ()'\"")[:200]
