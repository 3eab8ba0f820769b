"""Two "hosts" on this machine for multi-node tests: two network namespaces joined by a veth pair, each
with its own address (``ip netns`` + veth, iproute2; root needed). Commands run inside one with
:meth:`Hosts.command`; everything is removed on exit.

    with two_hosts() as hosts:            # pytest.skip with the reason where namespaces cannot be made
        hosts.address(0), hosts.address(1)
        subprocess.Popen(hosts.command(1, ["python", "-m", "torch.distributed.run", ...]))
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Hosts:
    names: tuple[str, str]
    links: tuple[str, str]
    subnet: str

    def address(self, host: int) -> str:
        return f"{self.subnet}.{host + 1}"

    def command(self, host: int, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``host``'s namespace, gloo bound to its link."""
        return ["ip", "netns", "exec", self.names[host], "env", f"GLOO_SOCKET_IFNAME={self.links[host]}", *argv]


def cannot_make_namespaces() -> str | None:
    """Why two namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"dcae-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"ip netns add is not allowed here ({done.stderr.strip()})"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def two_hosts() -> Iterator[Hosts]:
    tag = f"{os.getpid() % 100000}"
    names = (f"dcae{tag}a", f"dcae{tag}b")
    links = (f"dv{tag}a", f"dv{tag}b")
    hosts = Hosts(names, links, f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}")
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for host, (name, link) in enumerate(zip(names, links)):
            _ip("link", "set", link, "netns", name)
            _ip("-n", name, "addr", "add", f"{hosts.address(host)}/24", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
        yield hosts
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
