"""Run the whole stack locally as processes: the Twilio simulator and the four services (and,
when asked, the web console).

Used by ``make demo``, the end-to-end tests and the benchmarks. Each process gets its own port
and the same environment (database, broker, simulator URLs), so several stacks can run side by
side on one machine (tests give each stack its own database and broker vhost).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from tools.forked_process import ForkedProcess, ForkServer
from tools.twilio_sim.tls import TlsFiles

ROOT = Path(__file__).resolve().parent.parent
SERVICE_ROLES = ("segmenter", "tracker", "dispatcher", "sender")


# Listening ports come from below the kernel's ephemeral range (32768-60999 by default), which
# outgoing connections draw from: a port that bind(0) found free could be taken by some client's
# connection before the service bound it ("address already in use" in a busy parallel test run).
# Each pytest-xdist worker draws from a share of its own; a port is never handed out twice by one
# process, and is checked to be free when handed out.
LISTEN_PORTS = range(20000, 32768)
PORT_SHARES = 8
_handed_out: set[int] = set()


def _port_share() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker[2:].isdigit():
        return LISTEN_PORTS
    size = len(LISTEN_PORTS) // PORT_SHARES
    start = LISTEN_PORTS.start + (int(worker[2:]) % PORT_SHARES) * size
    return range(start, start + size)


def free_port() -> int:
    share = _port_share()
    for _ in range(2):
        offset = random.randrange(len(share))
        for step in range(len(share)):
            port = share[(offset + step) % len(share)]
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
        # Every port of the share was handed out once: those of stopped servers are free again.
        _handed_out.difference_update(share)
    raise RuntimeError(f"no free port in {share}")


# Where processes come from: ``python -m`` afresh, or forks of a server that imported them already
# (``fork_from``; the test suite's way, see tools/forked_process.py).
_fork_server: ForkServer | None = None


def fork_from(server: ForkServer | None) -> None:
    """Start every process of this one from ``server`` (None: afresh)."""
    global _fork_server
    _fork_server = server


class ManagedProcess:
    """``python -m <module>`` with its output in a log file; stopped gracefully or killed."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        health_url: str | None,
        log_dir: Path,
        args: list[str] | None = None,
    ) -> None:
        self.module = module
        self.health_url = health_url
        self.env = dict(env)
        self.args = list(args or [])
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{module.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("ab")
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes] | ForkedProcess:
        if _fork_server is not None:
            return _fork_server.start(
                self.module, self.args, env={**os.environ, **self.env}, cwd=ROOT, log_path=self.log_path
            )
        return subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        if self.health_url is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} not healthy after {timeout_s}s:\n{self.tail()}")

    def restart(self) -> None:
        """Start the process again after it was killed or stopped."""
        self.stop()
        self._log = self.log_path.open("ab")
        self.proc = self._spawn()

    def tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 25.0) -> int | None:
        self.ask_to_stop()
        return self.wait_stopped(time.monotonic() + timeout_s)

    def ask_to_stop(self) -> None:
        """SIGTERM: the service finishes what it holds and exits (``wait_stopped`` waits for it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> int | None:
        """Wait for the exit until ``deadline`` (monotonic), then SIGKILL."""
        try:
            self.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self.kill()
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode


@dataclass
class Stack:
    """The simulator and the four services, with ports of their own."""

    env: dict[str, str]
    log_dir: Path
    senders: int = 1
    dispatchers: int = 1
    simulator_args: list[str] = field(default_factory=list)
    # Certificates of a TLS listener of the simulator: the services then reach Twilio over HTTPS
    # at https://localhost:<port>, trusting the certificate's CA (SSL_CERT_FILE).
    simulator_tls: TlsFiles | None = None
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    # As a deployment runs them: migrations applied once by ``python -m shared.migrate`` as the
    # owner (the URL in ``env``), then each service connecting as a login role of its own, a
    # non-superuser member of ``wce_<service>`` (named ``<login_prefix>_<service>``).
    least_privilege: bool = True
    login_prefix: str = field(default_factory=lambda: f"wce_login_{uuid.uuid4().hex[:10]}")
    service_urls: dict[str, str] = field(default_factory=dict)
    # The web console too, on a port of its own, calling the stack's APIs (plain HTTP on
    # 127.0.0.1, so its cookie goes without the Secure flag).
    console: bool = False

    def __post_init__(self) -> None:
        self.simulator_port = free_port()
        self.segmenter_port = free_port()
        self.tracker_port = free_port()
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        self.api_url = f"http://127.0.0.1:{self.segmenter_port}"
        self.tracker_url = f"http://127.0.0.1:{self.tracker_port}"
        self.console_port = free_port()
        self.console_url = f"http://127.0.0.1:{self.console_port}"
        self.env.update(
            {
                "WCE_SEGMENTER_PORT": str(self.segmenter_port),
                "WCE_TRACKER_PORT": str(self.tracker_port),
                "WCE_TWILIO_API_BASE_URL": self.simulator_url,
                "WCE_TWILIO_CONTENT_BASE_URL": self.simulator_url,
                "WCE_PUBLIC_BASE_URL": self.tracker_url,
            }
        )
        if self.simulator_tls is not None:
            self.simulator_tls_port = free_port()
            https = f"https://localhost:{self.simulator_tls_port}"
            self.env.update(
                {
                    "WCE_TWILIO_API_BASE_URL": https,
                    "WCE_TWILIO_CONTENT_BASE_URL": https,
                    "SSL_CERT_FILE": str(self.simulator_tls.ca_cert),
                }
            )
            self.simulator_args = [
                *self.simulator_args,
                "--tls-port",
                str(self.simulator_tls_port),
                "--tls-cert",
                str(self.simulator_tls.cert),
                "--tls-key",
                str(self.simulator_tls.key),
            ]

    def _owner_url(self) -> str:
        return self.env.get("WCE_DATABASE_URL") or os.environ.get(
            "WCE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wce"
        )

    def _psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", self._owner_url(), "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _prepare_database(self) -> None:
        """Migrate as the owner, then create each service's login role."""
        migrate = ManagedProcess("shared.migrate", self.env, None, self.log_dir, args=["--create-database"])
        if migrate.wait_stopped(time.monotonic() + 300) != 0:
            raise RuntimeError(f"migrations failed:\n{migrate.tail()}")
        owner = urlsplit(self._owner_url())
        password = f" PASSWORD '{owner.password}'" if owner.password else ""
        self._psql(
            "; ".join(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login}') THEN"
                f' CREATE ROLE "{login}" LOGIN{password} IN ROLE wce_{service}; END IF; END $$'
                for service in SERVICE_ROLES
                for login in [f"{self.login_prefix}_{service}"]
            )
        )
        for service in SERVICE_ROLES:
            login = f"{self.login_prefix}_{service}"
            netloc = f"{quote(login)}{':' + quote(owner.password) if owner.password else ''}@{owner.hostname}"
            if owner.port:
                netloc += f":{owner.port}"
            self.service_urls[service] = urlunsplit(owner._replace(netloc=netloc))

    def _drop_logins(self) -> None:
        if not self.service_urls:
            return
        try:
            logins = [f'"{self.login_prefix}_{service}"' for service in self.service_urls]
            self._psql(f"DROP ROLE IF EXISTS {', '.join(logins)}")
        except (subprocess.SubprocessError, OSError):
            pass
        self.service_urls.clear()

    def _service(self, name: str, module: str, port: int, port_var: str | None) -> ManagedProcess:
        env = dict(self.env)
        if port_var:
            env[port_var] = str(port)
        service = module.rsplit(".", 1)[-1]
        if service in self.service_urls:
            env["WCE_DATABASE_URL"] = self.service_urls[service]
            env["WCE_MIGRATE_AT_START"] = "false"
        process = ManagedProcess(module, env, f"http://127.0.0.1:{port}/healthz", self.log_dir)
        self.processes[name] = process
        return process

    def start(self, timeout_s: float = 90.0) -> Stack:
        if self.least_privilege:
            self._prepare_database()
        simulator = ManagedProcess(
            "tools.twilio_sim",
            self.env,
            f"{self.simulator_url}/healthz",
            self.log_dir,
            args=["--host", "127.0.0.1", "--port", str(self.simulator_port), *self.simulator_args],
        )
        self.processes["simulator"] = simulator
        # The segmenter before the other services: it declares the topology they use (and
        # migrates, when it migrates at start). It needs nothing of the simulator's to start.
        segmenter = self._service("segmenter", "services.segmenter", self.segmenter_port, None)
        simulator.wait_healthy(timeout_s)
        segmenter.wait_healthy(timeout_s)
        started = [self._service("tracker", "services.tracker", self.tracker_port, None)]
        for index in range(self.dispatchers):
            started.append(
                self._service(f"dispatcher{index}", "services.dispatcher", free_port(), "WCE_DISPATCHER_PORT")
            )
        for index in range(self.senders):
            started.append(self._service(f"sender{index}", "services.sender", free_port(), "WCE_SENDER_PORT"))
        if self.console:
            started.append(self._console())
        for process in started:
            process.wait_healthy(timeout_s)
        return self

    def _console(self) -> ManagedProcess:
        env = {
            **self.env,
            "WCE_CONSOLE_PORT": str(self.console_port),
            "WCE_CONSOLE_API_URL": self.api_url,
            "WCE_CONSOLE_TRACKER_URL": self.tracker_url,
            "WCE_CONSOLE_COOKIE_SECURE": "false",
            # The console reaches the engine through its APIs only: it gets no database or
            # broker it could use.
            "WCE_DATABASE_URL": "postgresql://the-console-has-no-database@127.0.0.1:1/none",
            "WCE_AMQP_URL": "amqp://the-console-has-no-broker@127.0.0.1:1/",
        }
        process = ManagedProcess("services.console", env, f"{self.console_url}/healthz", self.log_dir)
        self.processes["console"] = process
        return process

    def stop(self, timeout_s: float = 25.0) -> None:
        """Every service asked at once (each drains on its own), then the simulator, which the
        senders may still be calling while they drain."""
        services = [process for name, process in self.processes.items() if name != "simulator"]
        for process in services:
            process.ask_to_stop()
        deadline = time.monotonic() + timeout_s
        for process in services:
            process.wait_stopped(deadline)
        if "simulator" in self.processes:
            self.processes["simulator"].stop()
        self._drop_logins()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{process.tail(25)}" for name, process in self.processes.items())
