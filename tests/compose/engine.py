"""A Docker engine for the compose test: the one that runs already, or a
dockerd started here and stopped afterwards, with what it changed on the host
(iptables rules and policies, forwarding sysctls, its bridges) put back."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.processes import wait_until

STOP_TIMEOUT = 30
SYSCTLS = [
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
]
# Network links a dockerd makes: its default bridge, compose networks' bridges
# and the containers' veth ends.
DOCKER_LINK = re.compile(r"^(docker0|br-[0-9a-f]{12}|veth[0-9a-f]+)$")


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def uplink_mtu() -> int | None:
    """The MTU of the interface the default route leaves by: containers must
    not send bigger packets than that (a smaller MTU here hangs downloads)."""
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            interface, destination = line.split()[:2]
            if destination == "00000000":
                return int(Path(f"/sys/class/net/{interface}/mtu").read_text())
    except (OSError, ValueError):
        pass
    return None


def iptables(tool: str, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [tool, *args], input=stdin, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def nft_table_deleted(tool: str, table: str) -> bool:
    """Remove an iptables-nft table outright (iptables itself can only empty it)."""
    if not shutil.which("nft") or "nf_tables" not in iptables(tool, "-V"):
        return False
    family = "ip6" if tool == "ip6tables" else "ip"
    result = subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
    return result.returncode == 0


def comparable_rules(saved: str) -> dict[str, list[str]]:
    """`iptables-save` output as {table: its chain and rule lines}, without
    what differs between two saves of the same rules (the comments with their
    timestamps, the packet counters) and without tables that hold nothing
    (built-in chains accepting, no rules): iptables can empty a table that
    a dockerd made, but not always remove it."""
    tables: dict[str, list[str]] = {}
    for section in re.split(r"^\*", saved, flags=re.M)[1:]:
        name, _, body = section.partition("\n")
        lines = [
            re.sub(r" \[\d+:\d+\]$", "", line)
            for line in body.splitlines()
            if line and not line.startswith("#") and line != "COMMIT"
        ]
        if not all(re.fullmatch(r":\S+ ACCEPT", line) for line in lines):
            tables[name.strip()] = lines
    return tables


@dataclass
class HostState:
    """What a dockerd changes on the host, as it was before."""

    sysctls: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)  # tool -> `*-save` output
    links: set[str] = field(default_factory=set)

    @classmethod
    def capture(cls) -> HostState:
        state = cls(links=links())
        for name in SYSCTLS:
            with contextlib.suppress(OSError):
                state.sysctls[name] = sysctl_path(name).read_text().strip()
        for tool in ("iptables", "ip6tables"):
            if shutil.which(f"{tool}-save"):
                state.rules[tool] = iptables(f"{tool}-save")
        return state

    def restore(self) -> list[str]:
        """Put everything back; returns what was changed back, for the log."""
        done = []
        for tool, saved in self.rules.items():
            now = iptables(f"{tool}-save")
            if now == saved:
                continue
            # Empty every table that exists now, chains deleted and policies
            # ACCEPT (or, on nf_tables, drop a table that did not exist), then
            # load the saved rules over that.
            before = set(re.findall(r"^\*(\w+)", saved, re.M))
            for table in re.findall(r"^\*(\w+)", now, re.M):
                if table not in before and nft_table_deleted(tool, table):
                    continue
                iptables(tool, "-t", table, "-F")
                iptables(tool, "-t", table, "-X")
                section = now.split(f"*{table}", 1)[1].split("COMMIT", 1)[0]
                for chain, policy in re.findall(r"^:(\S+) (\S+)", section, re.M):
                    if policy != "-":
                        iptables(tool, "-t", table, "-P", chain, "ACCEPT")
            if saved.strip():
                iptables(f"{tool}-restore", stdin=saved)
            done.append(f"{tool} rules")
        for name, value in self.sysctls.items():
            path = sysctl_path(name)
            with contextlib.suppress(OSError):
                if path.read_text().strip() != value:
                    path.write_text(value)
                    done.append(f"{name}={value}")
        for link in sorted(links() - self.links):
            if DOCKER_LINK.match(link):
                subprocess.run(["ip", "link", "delete", link], capture_output=True, timeout=30)
                done.append(f"link {link} removed")
        return done

    def differences(self, now: HostState) -> list[str]:
        """What `now` (captured after a restore) has otherwise than this state:
        the rules, the sysctls that could be read both times, and links of
        the kind a dockerd makes."""
        found = []
        for tool, saved in self.rules.items():
            if comparable_rules(now.rules.get(tool, "")) != comparable_rules(saved):
                found.append(f"{tool} rules differ")
        for name, value in self.sysctls.items():
            current = now.sysctls.get(name)
            if current is not None and current != value:
                found.append(f"{name}={current}, was {value}")
        found += [
            f"link {link} left"
            for link in sorted(now.links - self.links)
            if DOCKER_LINK.match(link)
        ]
        return found


class Engine:
    """`with Engine() as engine:` a Docker engine answers inside the block."""

    def __init__(self, say=print):
        self.say = say
        self.proc: subprocess.Popen | None = None
        self.state: HostState | None = None
        self.log = Path(tempfile.mkstemp(prefix="chat-dockerd-", suffix=".log")[1])

    def __enter__(self) -> Engine:
        if docker_answers():
            self.say("Docker engine: the one already running (left as it is)")
            return self
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError(
                "No Docker engine answers and there is no dockerd to start: install Docker "
                "(Debian: apt-get install docker.io docker-compose)."
            )
        if os.geteuid() != 0:
            raise RuntimeError("No Docker engine answers, and only root can start dockerd here.")
        self.state = HostState.capture()
        argv = [dockerd]
        mtu = uplink_mtu()
        if mtu and mtu < 1500:
            argv.append(f"--mtu={mtu}")
        started = time.monotonic()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until(
                lambda: self.proc.poll() is not None or docker_answers(),
                60,
                "dockerd",
                interval=0.2,
            )
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}:\n{self.output()}")
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        self.say(f"Docker engine: dockerd started here in {time.monotonic() - started:.1f}s")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.say(f"dockerd did not stop within {STOP_TIMEOUT}s: killing it")
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            # Its containerd and shims are in its process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.say("dockerd stopped")
        self.log.unlink(missing_ok=True)
        if self.state is not None:
            restored = self.state.restore()
            self.say("host put back: " + (", ".join(restored) or "nothing had changed"))
            left = self.state.differences(HostState.capture())
            if left:
                # Fails the run (the session fixture's teardown) unless it is
                # failing already: then the first error is the one to read.
                if exc[0] is None:
                    raise AssertionError("the host was not put back: " + "; ".join(left))
                self.say("the host was not put back: " + "; ".join(left))
