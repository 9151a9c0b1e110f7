"""Many hosts on one machine: Linux network namespaces joined by a bridge, each a host with
an address of its own, running what a real deployment runs: a PostgreSQL of the harness's own
(initdb in a temporary folder), gateways (`mlops serve`), controllers (`mlops controller`) and
HAProxy in front. Nothing here touches the machine's own network or its shared PostgreSQL:
every interface and address lives inside a namespace the harness made, and the harness
removes them all (and every process in them) when it ends, also when a test fails.

    with Cluster(tmp_path, gateways=3, controllers=2) as cluster:
        cluster.client()                      # a Client on the cluster's store (unix socket)
        with cluster.inside():                # this thread's sockets open in the client host
            httpx.get(cluster.balancer_url + "/v2/health/live")
        cluster.partition("gw2", "db")        # packets between two hosts are dropped
        cluster.kill("gw3")                   # SIGKILL to every process of a host

Root, `ip` (iproute2), `nft` (nftables), `haproxy` and PostgreSQL's server binaries are needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.server import MLOPS, REPO, eventually

SUBNET = "10.231.0"
PREFIX = "mlt-"
"""Every namespace the harness makes starts with this: `cleanup_leftovers` finds them."""
CLONE_NEWNET = 0x40000000
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/bin"))
HEALTH_INTER_MS = 500
HEALTH_FALL = 2
HEALTH_RISE = 2

HAPROXY_CONFIG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A request whose connection is refused (a host that died) is tried again, elsewhere.
    retries {retries}
    {redispatch}option redispatch
frontend gateways
    bind {address}:8080
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /v1/gateway/serving
    http-check expect status 200
    default-server inter {inter}ms fall {fall} rise {rise}
{servers}
"""


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


def have_tools() -> str | None:
    """What is missing to run the harness here, or None."""
    if os.geteuid() != 0:
        return "root is needed for network namespaces"
    for tool in ("ip", "nft", "haproxy"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (PG_BIN / "postgres").exists():
        return "PostgreSQL's server binaries are not installed"
    return None


def cleanup_leftovers() -> None:
    """Remove namespaces an earlier run of the harness left (a killed test process)."""
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX):
            _kill_all(name)
            run("ip", "netns", "del", name, check=False)


def pids_of(netns: str) -> list[int]:
    out = run("ip", "netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split()]


def _kill_all(netns: str) -> None:
    for pid in pids_of(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def netns_of_thread(netns: str) -> Iterator[None]:
    """Move the calling thread into `netns` (sockets it opens meanwhile live there), and back."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    processes: list[subprocess.Popen[bytes]]


class Cluster:
    def __init__(
        self, root: Path, *, gateways: int = 3, controllers: int = 2, staleness_s: float = 2.0
    ) -> None:
        self.root = root
        self.id = uuid.uuid4().hex[:6]
        self.gateway_names = [f"gw{i}" for i in range(1, gateways + 1)]
        self.controller_names = [f"ctl{i}" for i in range(1, controllers + 1)]
        self.staleness_s = staleness_s
        names = ["db", "lb", "client", *self.gateway_names, *self.controller_names]
        self.hosts = {
            name: Host(name, f"{PREFIX}{self.id}-{name}", f"{SUBNET}.{10 + i}", [])
            for i, name in enumerate(names)
        }
        self.net = f"{PREFIX}{self.id}-net"
        self.pg_dir = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
        self.store_url = f"postgresql+psycopg://postgres@{self.hosts['db'].address}:5432/mlops"
        self.local_store_url = f"postgresql+psycopg://postgres@/mlops?host={self.pg_dir}"
        """The same store over PostgreSQL's unix socket: how this (root-namespace) test
        process reaches it without an address outside the namespaces."""
        self.balancer_url = f"http://{self.hosts['lb'].address}:8080"

    def gateway_url(self, name: str) -> str:
        return f"http://{self.hosts[name].address}:8000"

    # ----------------------------------------------------------------- the network

    def _make_network(self) -> None:
        run("ip", "netns", "add", self.net)
        run("ip", "-n", self.net, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.net, "link", "set", "br0", "up")
        for host in self.hosts.values():
            run("ip", "netns", "add", host.netns)
            run("ip", "-n", host.netns, "link", "set", "lo", "up")
            port = f"p-{host.name}"
            run(
                "ip", "-n", self.net, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host.netns,
            )  # fmt: skip
            run("ip", "-n", self.net, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            run("ip", "-n", host.netns, "link", "set", "eth0", "up")

    def partition(self, a: str, b: str) -> None:
        """Drop every packet between hosts `a` and `b` (silently: no reset, no error)."""
        for here, there in ((a, b), (b, a)):
            ns, peer = self.hosts[here].netns, self.hosts[there].address
            run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "cut", check=False)
            run(
                "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "cut", "out",
                "{ type filter hook output priority 0 ; }", check=False,
            )  # fmt: skip
            run(
                "ip", "netns", "exec", ns, "nft", "add", "chain", "inet", "cut", "in",
                "{ type filter hook input priority 0 ; }", check=False,
            )  # fmt: skip
            run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "cut", "out",
                "ip", "daddr", peer, "drop")  # fmt: skip
            run("ip", "netns", "exec", ns, "nft", "add", "rule", "inet", "cut", "in",
                "ip", "saddr", peer, "drop")  # fmt: skip

    def heal(self, *names: str) -> None:
        for name in names:
            run("ip", "netns", "exec", self.hosts[name].netns, "nft", "delete", "table",
                "inet", "cut", check=False)  # fmt: skip

    @contextlib.contextmanager
    def inside(self, name: str = "client") -> Iterator[None]:
        with netns_of_thread(self.hosts[name].netns):
            yield

    # ----------------------------------------------------------------- processes

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        host = self.hosts[name]
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            host.processes.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", host.netns, *cmd],
                    env={**os.environ, **(env or {})},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def kill(self, name: str) -> None:
        """SIGKILL to every process of host `name`, as when the machine dies."""
        host = self.hosts[name]
        _kill_all(host.netns)
        for proc in host.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        host.processes.clear()

    def env(self, name: str) -> dict[str, str]:
        home = self.root / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        return {
            "MLOPS_HOME": str(home),
            "MLOPS_STORE": self.store_url,
            "PYTHONPATH": str(REPO),  # the test-only model classes
            "MLOPS_ACTOR": name,
        }

    def start_postgres(self) -> None:
        os.chown(self.pg_dir, _uid("postgres"), _gid("postgres"))
        data = self.pg_dir / "data"
        run("runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data),
            "-U", "postgres", "--auth=trust", "-E", "UTF8")  # fmt: skip
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        self._run_postgres()
        run("runuser", "-u", "postgres", "--", str(PG_BIN / "createdb"), "-h", str(self.pg_dir),
            "mlops")  # fmt: skip

    def _run_postgres(self) -> None:
        self.start(
            "db",
            [
                "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"),
                "-D", str(self.pg_dir / "data"),
                "-c", f"listen_addresses={self.hosts['db'].address}", "-c", "port=5432",
                "-c", f"unix_socket_directories={self.pg_dir}", "-c", "fsync=off",
                "-c", "max_connections=300",
            ],
        )  # fmt: skip
        eventually(
            lambda: run(
                str(PG_BIN / "pg_isready"), "-h", str(self.pg_dir), "-U", "postgres", check=False
            ),
            lambda done: done.returncode == 0,
            timeout=60,
        )

    def restart_postgres(self) -> None:
        """Stop PostgreSQL at once (its fast shutdown: every session is cut) and start it again."""
        run("runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D",
            str(self.pg_dir / "data"), "stop", "-m", "fast")  # fmt: skip
        for proc in self.hosts["db"].processes:
            proc.wait(60)
        self.hosts["db"].processes.clear()
        self._run_postgres()

    def start_gateway(self, name: str, *args: str) -> None:
        self.start(
            name,
            [
                MLOPS, "serve", "--host", self.hosts[name].address, "--port", "8000",
                "--no-controller", "--max-staleness", f"{self.staleness_s:g}",
                "--log-level", "warning", *args,
            ],
            self.env(name),
        )  # fmt: skip

    def start_controller(self, name: str) -> None:
        self.start(name, [MLOPS, "controller", "--tick", "0.25", "--lease", "2"], self.env(name))

    def start_balancer(
        self,
        inter_ms: int = HEALTH_INTER_MS,
        fall: int = HEALTH_FALL,
        rise: int = HEALTH_RISE,
        retries: int = 1,
    ) -> None:
        servers = "\n".join(
            f"    server {name} {self.hosts[name].address}:8000 check"
            for name in self.gateway_names
        )
        config = self.root / "haproxy.cfg"
        config.write_text(
            HAPROXY_CONFIG.format(
                address=self.hosts["lb"].address,
                inter=inter_ms,
                fall=fall,
                rise=rise,
                retries=retries,
                redispatch="" if retries else "no ",
                servers=servers,
            )
        )
        self.start("lb", ["haproxy", "-f", str(config), "-db"])

    def wait_gateways(self, names: list[str] | None = None, timeout: float = 120) -> None:
        for name in names or self.gateway_names:
            url = f"{self.gateway_url(name)}/v1/gateway/serving"

            def serving(url: str = url) -> bool:
                with self.inside(), contextlib.suppress(httpx.TransportError):
                    return httpx.get(url, timeout=5).status_code == 200
                return False

            eventually(serving, bool, timeout)

    def wait_balanced(self, names: list[str] | None = None, timeout: float = 60) -> None:
        """Until the balancer has sent requests to every gateway in `names` (all by default)."""
        wanted = len(names or self.gateway_names)
        seen: set[str] = set()

        def probe() -> set[str]:
            with self.inside(), contextlib.suppress(httpx.TransportError, ValueError):
                answer = httpx.get(f"{self.balancer_url}/v1/gateway", timeout=5)
                if answer.status_code == 200:
                    seen.add(answer.json()["worker"])
            return seen

        eventually(probe, lambda found: len(found) >= wanted, timeout)

    # ----------------------------------------------------------------- whole

    def __enter__(self) -> Cluster:
        cleanup_leftovers()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._make_network()
            self.start_postgres()
            from mlops import Client

            with Client(self.local_store_url, home=self.root / "homes" / "admin"):
                pass  # the schema, made once before the hosts start
            for name in self.gateway_names:
                self.start_gateway(name)
            for name in self.controller_names:
                self.start_controller(name)
            self.start_balancer()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for host in self.hosts.values():
            _kill_all(host.netns)
            for proc in host.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            run("ip", "netns", "del", host.netns, check=False)
        run("ip", "netns", "del", self.net, check=False)
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _gid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


class Load:
    """Single-row predictions (`rows`, in turn) through the balancer from the client host, on
    `connections` threads: (monotonic time, status, release revision) of each answer; status 0
    for a request that got no answer."""

    def __init__(
        self, cluster: Cluster, deployment: str, rows: list[Any], connections: int = 4
    ) -> None:
        self.rows = rows
        self.cluster, self.deployment = cluster, deployment
        self.seen: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(connections)]

    def _run(self, k: int) -> None:
        path = f"/v1/models/{self.deployment}:predict"
        with (
            self.cluster.inside(),
            httpx.Client(base_url=self.cluster.balancer_url, timeout=10) as http,
        ):
            i = k
            while not self._stop.is_set():
                try:
                    r = http.post(path, json={"instances": [self.rows[i % len(self.rows)]]})
                    answer = (r.status_code, int(r.headers.get("x-release-revision", -1)))
                except httpx.TransportError:
                    answer = (0, -1)
                self.seen.append((time.monotonic(), *answer))
                i += 1

    def since(self, t0: float) -> Counter[tuple[int, int]]:
        return Counter((status, rev) for at, status, rev in list(self.seen) if at >= t0)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
