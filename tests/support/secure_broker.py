"""The shipped, secured Mosquitto configuration (``docker/mosquitto/``) run on a loopback port for tests.

``SecureMosquittoServer`` builds its config from ``docker/mosquitto/mosquitto.conf`` line by line and changes
only what cannot be the same outside the container: the listener's port and host, the password file's path,
the persistence folder and the log destination (plus a ``user`` line, which keeps a broker started by root
running as that user). Every other line — ``allow_anonymous false``, the ACL file (the shipped
``docker/mosquitto/acl`` itself), ``set_tcp_nodelay``, queue limits — is used as shipped, so the tests prove
the file the docker stack runs. Its password file is made by ``docker/mosquitto/make-passwd.sh``.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import MosquittoServer, ServerError

__all__ = ["DOCKER_MOSQUITTO", "SecureMosquittoServer", "make_password_file", "secure_config"]

DOCKER_MOSQUITTO = Path(__file__).resolve().parents[2] / "docker" / "mosquitto"
SHIPPED_CONFIG = DOCKER_MOSQUITTO / "mosquitto.conf"
SHIPPED_ACL = DOCKER_MOSQUITTO / "acl"
MAKE_PASSWD = DOCKER_MOSQUITTO / "make-passwd.sh"
USERS = ("twin", "controller", "recorder", "dashboard")
_REQUIRED = ("allow_anonymous false", "password_file", "acl_file")
# Options that name a file on the container's disk; this helper cannot give them a local meaning.
_UNSUPPORTED = ("cafile", "capath", "certfile", "keyfile", "crlfile", "dhparamfile", "plugin", "auth_plugin",
                "include_dir", "psk_file")


def make_password_file(path: Path, passwords: dict[str, str]) -> None:
    """Run ``make-passwd.sh`` to write ``path``: the four service users through their environment variables,
    every other user (devices) through ``MQTT_DEVICE_PASSWORDS``.

    Raises:
        ServerError: the script failed; the message has its output.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("MQTT_")}
    devices = []
    for user, password in passwords.items():
        if user in USERS:
            env[f"MQTT_{user.upper()}_PASSWORD"] = password
        else:
            devices.append(f"{user}:{password}")
    env["MQTT_DEVICE_PASSWORDS"] = " ".join(devices)
    done = subprocess.run([str(MAKE_PASSWD), "-f", str(path)], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise ServerError(f"{MAKE_PASSWD} exited with {done.returncode}: {done.stderr.strip()}")


def secure_config(shipped: str, *, port: int, host: str, workdir: Path, password_file: Path, log_path: Path,
                  acl_file: Path = SHIPPED_ACL) -> str:
    """``shipped`` (the text of ``docker/mosquitto/mosquitto.conf``) with its listener, file paths,
    persistence folder and log destination made local.

    Raises:
        ServerError: the shipped config lacks a security line, has more than one active listener, or names a
            file this helper cannot relocate (TLS certificates, plugins).
    """
    user = pwd.getpwuid(os.getuid()).pw_name
    lines = [f"user {user}"]
    listeners = 0
    logged = False
    for line in shipped.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key == "user":
            continue  # replaced by the first line
        if key == "listener":
            listeners += 1
            lines.append(f"listener {port} {host}")
        elif key == "password_file":
            lines.append(f"password_file {password_file}")
        elif key == "acl_file":
            lines.append(f"acl_file {acl_file}")
        elif key == "persistence_location":
            lines.append(f"persistence_location {workdir}/")
        elif key == "log_dest":
            # Not stdout: mosquitto 2.0.11 block-buffers it when it is not a terminal.
            if not logged:
                lines.append(f"log_dest file {log_path}")
            logged = True
        elif key in _UNSUPPORTED:
            raise ServerError(f"{SHIPPED_CONFIG}: {key!r} names a file in the container; the test broker cannot "
                              "run it (comment it out, as shipped)")
        else:
            lines.append(line)
    active = {" ".join(line.split()) for line in lines if not line.lstrip().startswith("#")}
    missing = [r for r in _REQUIRED if not any(a == r or a.startswith(f"{r} ") for a in active)]
    if missing:
        raise ServerError(f"{SHIPPED_CONFIG} lacks the security line(s) {missing}")
    if listeners != 1:
        raise ServerError(f"{SHIPPED_CONFIG} has {listeners} active listeners; the test broker runs exactly one")
    if not logged:
        lines.append(f"log_dest file {log_path}")
    return "\n".join([*lines, ""])


class SecureMosquittoServer(MosquittoServer):
    """A Mosquitto broker on 127.0.0.1 run from the shipped ``docker/mosquitto`` config, ACL and password script.

    Attributes:
        passwords: user name -> password of every user it knows: ``twin``, ``controller``, ``recorder``,
            ``dashboard`` and each of ``devices`` (a device's user name is its device id).
    """

    name = "mosquitto-secure"

    def __init__(self, *, workdir: Path, port: int | None = None, devices: tuple[str, ...] = ("psd-1", "psd-2")
                 ) -> None:
        self.passwords = {user: secrets.token_urlsafe(12) for user in (*USERS, *devices)}
        self.password_file = workdir / "passwd"
        make_password_file(self.password_file, self.passwords)
        super().__init__(workdir=workdir, port=port)

    def _config(self) -> str:
        return secure_config(SHIPPED_CONFIG.read_text(), port=self.port, host=self.host, workdir=self.workdir,
                             password_file=self.password_file, log_path=self.log_path)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureMosquittoServer]:
    """Mosquitto started from the shipped secured configuration (TLS, users, ACL), for one test module."""
    server = SecureMosquittoServer(workdir=tmp_path_factory.mktemp("mosquitto-secure"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
