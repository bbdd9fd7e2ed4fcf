"""Real Postgres and Redis servers on local ports: for tests, benchmarks and `make dev`.

Each server lives in its own directory and can be stopped and started again
(the outage tests do that). Tests take free ports and throw-away directories;
the local stack fixed ports and directories under .work/. As root, Postgres
runs as the `postgres` user, since it refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian/Ubuntu layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: run `make deps` (or apt-get install postgresql)")


class Certificates:
    """A throw-away CA and a server certificate for localhost, made with openssl.

    For the tests that stand in for managed services that require TLS (RDS,
    ElastiCache): clients verify the server against `ca`, host name included.
    """

    def __init__(self, workdir: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"
        if self.cert.exists():
            return
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_key = workdir / "ca.key"
        run = subprocess.run
        run(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(self.ca), "-days", "3",
             "-subj", "/CN=fibstack test CA"], check=True, capture_output=True)  # fmt: skip
        csr = workdir / "server.csr"
        run(["openssl", "req", *ec, "-keyout", str(self.key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"],
            check=True, capture_output=True)  # fmt: skip
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        extensions = workdir / "san.cnf"
        extensions.write_text(f"subjectAltName={names}\n")
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(self.cert), "-days", "3", "-extfile", str(extensions)],
            check=True, capture_output=True)  # fmt: skip
        self.key.chmod(0o600)


class Server:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "server.log"

    def command(self) -> list[str]:
        """The server in the foreground, as a process manager would run it."""
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time set-up before the first start."""

    def start(self) -> None:
        self.prepare()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class PostgresServer(Server):
    # The cluster's superuser (initdb's), which the migration step connects as,
    # and the API's least-privilege role, which that step makes (fibapi/migrate.py).
    user = "fibstack"
    database = "fibstack"
    app_user = "fibstack_app"

    def __init__(
        self, workdir: Path, port: int | None = None, durable: bool = False, tls: Certificates | None = None
    ) -> None:
        super().__init__(workdir, port)
        self.durable = durable  # tests trade crash safety for speed
        # With certificates: TLS only, as RDS requires (no unencrypted connection is accepted).
        self.tls = tls
        self.data = workdir / "data"
        # Random passwords per cluster, kept beside it (never in the repository).
        self.password = kept_secret(workdir / "password")
        self.app_password = kept_secret(workdir / "app-password")
        self.bindir = postgres_bindir()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(workdir, "postgres", "postgres")
            self._as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def prepare(self) -> None:
        """Create the cluster and the database, once (the data is kept after that)."""
        if (self.data / "PG_VERSION").exists():
            return
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            [
                *self._as_user,
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        # Single-user mode: creates the database without starting a server.
        subprocess.run(
            [*self._as_user, str(self.bindir / "postgres"), "--single", "-D", str(self.data), "postgres"],
            input=f'CREATE DATABASE "{self.database}";\n'.encode(),
            check=True,
            capture_output=True,
        )

    def _tls_options(self) -> list[str]:
        if self.tls is None:
            return []
        # Copies in its own directory, which the postgres user can read (as
        # root, the originals may be in a private one); the key readable by
        # Postgres alone, as it insists. TCP connections over TLS only.
        cert, key = self.workdir / "server.pem", self.workdir / "server.key"
        shutil.copy(self.tls.cert, cert)
        shutil.copy(self.tls.key, key)
        key.chmod(0o600)
        hba = self.workdir / "pg_hba_tls_only.conf"
        hba.write_text("local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
        if self._as_user:
            for path in (cert, key, hba):
                shutil.chown(path, "postgres", "postgres")
        options = {"ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key, "hba_file": hba}
        return [arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]

    def command(self) -> list[str]:
        fast = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return [
            *self._as_user,
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            *fast,
            *self._tls_options(),
        ]

    def start(self) -> None:
        super().start()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
                env=os.environ | ({"PGSSLMODE": "require"} if self.tls else {}),
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"Postgres did not become ready; see {self.log}")

    def stop(self, sig: int = signal.SIGINT) -> None:  # SIGINT: Postgres's "fast" shutdown
        super().stop(sig)

    def env(self) -> dict[str, str]:
        """What the API reads: its own role (once the migration step has made it)."""
        env = {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.app_user,
            "PGPASSWORD": self.app_password,
            "PGDATABASE": self.database,
        }
        if self.tls:
            env |= {"PGHOST": "localhost", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(self.tls.ca)}
        return env

    def migration_env(self) -> dict[str, str]:
        """What the migration step reads besides env(): the superuser it connects as."""
        return self.env() | {"MIGRATION_PGUSER": self.user, "MIGRATION_PGPASSWORD": self.password}


def kept_secret(path: Path) -> str:
    """A random password kept in `path` (made on first use, readable by its owner only)."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


class RedisServer(Server):
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        maxmemory: str = "256mb",
        persistent: bool = False,
        tls: Certificates | None = None,
        password: str | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.maxmemory = maxmemory
        self.persistent = persistent
        # With certificates: TLS only, as ElastiCache with in-transit encryption;
        # with a password: AUTH required, as with its AUTH token.
        self.tls = tls
        self.password = password

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make deps` (or apt-get install redis-server)")
        persistence = ["--appendonly", "yes"] if self.persistent else ["--save", "", "--appendonly", "no"]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                      "--tls-auth-clients", "no"]  # fmt: skip
        else:
            listen = ["--port", str(self.port)]
        auth = ["--requirepass", self.password] if self.password else []
        return [
            binary,
            *listen,
            *auth,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            *persistence,
            "--maxmemory",
            self.maxmemory,
            # Redis evicts nothing; the worker keeps values within what maxmemory leaves.
            "--maxmemory-policy",
            "noeviction",
        ]

    def env(self) -> dict[str, str]:
        env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.port)}
        if self.tls:
            env |= {"REDIS_HOST": "localhost", "REDIS_TLS": "1", "REDIS_TLS_CA_FILE": str(self.tls.ca)}
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        return env
