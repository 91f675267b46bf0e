"""A RabbitMQ cluster of this test's own: three nodes started from the installed server, each
with its own node name, AMQP and distribution ports, data and log directories, sharing an Erlang
cookie of their own, clustered together. Never the shared node: other node names, other ports,
other directories (only the host's epmd name service is shared, as for any Erlang node)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tools.stack import free_port

SBIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class RabbitNode:
    name: str
    amqp_port: int
    dist_port: int
    directory: Path
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # the cluster's .erlang.cookie
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.directory / "node.pid"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.directory / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        (self.directory / "log").mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(
            "loopback_users = none\n"
            "cluster_partition_handling = pause_minority\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (self.directory / "advanced.config").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")
        (self.directory / "enabled_plugins").write_text("[].\n")

    def start(self) -> None:
        log = (self.directory / "log" / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(SBIN / "rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ctl(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", self.name, "-q", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.name}: {result.stderr}{result.stdout}")
        return result.stdout

    def wait_running(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            result = subprocess.run(
                [str(SBIN / "rabbitmqctl"), "-n", self.name, "-q", "await_startup", "--timeout", "10"],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode == 0:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start: {result.stderr}{self.log_tail()}")
            time.sleep(1)

    def log_tail(self) -> str:
        path = self.directory / "log" / "server.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole node (its Erlang VM and helpers): a crash, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.ctl("stop", timeout=60, check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RabbitCluster:
    base: Path
    size: int = 3
    nodes: list[RabbitNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        home = self.base / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        tag = uuid.uuid4().hex[:6]
        for index in range(self.size):
            self.nodes.append(
                RabbitNode(
                    name=f"wce-test-{tag}-{index}@localhost",
                    amqp_port=free_port(),
                    dist_port=free_port(),
                    directory=self.base / f"node{index}",
                    home=home,
                )
            )

    @property
    def amqp_url(self) -> str:
        """The engine's WCE_AMQP_URL: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> RabbitCluster:
        for node in self.nodes:
            node.prepare()
            node.start()
        for node in self.nodes:
            node.wait_running()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        running = first.ctl("eval", "length(rabbit_nodes:all_running()).").strip()
        if running != str(self.size):
            raise RuntimeError(f"cluster has {running} running nodes, expected {self.size}")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:
                node.kill()

    def queue_leaders(self, via: RabbitNode) -> dict[str, str]:
        """Queue name -> node name of its leader (quorum queues) or home node."""
        output = via.ctl("list_queues", "name", "leader", "--no-table-headers")
        leaders = {}
        for line in output.splitlines():
            parts = line.split("\t")
            if len(parts) == 2:
                leaders[parts[0]] = parts[1]
        return leaders
