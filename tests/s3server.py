"""An S3-compatible bucket on 127.0.0.1 for tests of `--results-dir s3://...` (issue 14).

moto's server runs as a subprocess (not moto's in-process ThreadedMotoServer): it then outlives a
driver subprocess that a test interrupts (SIGINT/SIGKILL), and uploads of large checkpoints do not compete
with the driver for its GIL.

Usage:

    with moto_s3() as s3:
        ray.init(...)                       # after entering: Ray workers inherit the environment
        tune.RunConfig(storage_path=s3.uri, name="exp")
        s3.keys("exp")                      # ['exp/.validate_storage_marker', 'exp/trial_.../result.json', ...]

Inside the block the process environment points every AWS client at the server
(AWS_ENDPOINT_URL, fake credentials, region us-east-1, no EC2 metadata lookups), so a plain
`s3://bucket/prefix` works for pyarrow (FileSystem.from_uri, as Ray's StorageContext calls it)
in this process and in every process started from it. `s3.explicit_uri()` gives the same
location with the endpoint in the URI's query, for processes that do not get this environment.
On exit the server stops and the environment is restored.

Start Ray inside the block: Tune pickles its pyarrow filesystem with the endpoint resolved, so a
cluster started earlier still reaches the server, but its workers then lack the fake credentials
and AWS_EC2_METADATA_DISABLED, and look for credentials on the network.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from procs import stop

REGION = "us-east-1"


@dataclass
class S3Bucket:
    endpoint: str  # "127.0.0.1:PORT" (pyarrow's endpoint_override form)
    bucket: str
    prefix: str  # no leading or trailing "/"
    fs: pafs.S3FileSystem  # explicit endpoint: works whatever the environment
    env: dict[str, str]  # what was set in os.environ (pass it to processes started elsewhere)
    process: subprocess.Popen

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def uri(self) -> str:
        """s3://bucket/prefix: resolves to this server through AWS_ENDPOINT_URL in the environment."""
        return f"s3://{self.bucket}/{self.prefix}"

    def join(self, *parts: str) -> str:
        """A URI below the prefix, e.g. join("exp") for Tuner.restore / Tuner.can_restore."""
        return "/".join([self.uri, *(p.strip("/") for p in parts)])

    def explicit_uri(self, *parts: str) -> str:
        """Like join(), with the endpoint in the query (pyarrow's from_uri options): needs only the
        credentials, not AWS_ENDPOINT_URL. Sub-paths go before the query."""
        return f"{self.join(*parts)}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"

    def path(self, *parts: str) -> str:
        """The pyarrow path ("bucket/prefix/...") for `fs`."""
        return "/".join([self.bucket, self.prefix, *(p.strip("/") for p in parts)])

    def keys(self, under: str = "") -> list[str]:
        """Object keys below prefix/under, relative to the prefix, sorted (objects only: S3 has no
        directories, pyarrow's implied ones are left out)."""
        selector = pafs.FileSelector(self.path(under), recursive=True, allow_not_found=True)
        start = self.path() + "/"
        return sorted(
            info.path[len(start):] for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File
        )

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key)) as f:
            return f.readall()

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _aws_env(endpoint_url: str, config_file: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        # Read by the AWS SDK in pyarrow (C++) and by boto3; the _S3 one wins over the generic one,
        # so both are set in case the caller's environment has either.
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_S3": endpoint_url,
        # No credential or region lookups elsewhere: no EC2 instance metadata (169.254.169.254),
        # no ~/.aws files of the person running the tests.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": config_file,
        "AWS_SHARED_CREDENTIALS_FILE": config_file,
        "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])),
    }


# Variables that would override or add to the fake credentials above.
_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
          "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when the thread that started it dies (a test run killed by a timeout
    or SIGKILL would otherwise leave it running)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _start_server(port: int, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
    )


def _wait_until_up(proc: subprocess.Popen, port: int, timeout: float) -> bool:
    """True once the server answers; False if it exited (e.g. the port was taken meanwhile)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with opener.open(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"moto S3 server on 127.0.0.1:{port} did not answer in {timeout} s")


@contextlib.contextmanager
def moto_s3(tmp_path: os.PathLike | None = None, bucket: str = "regstudy", prefix: str = "results",
            timeout: float = 30.0):
    """Start moto's S3 server on a free 127.0.0.1 port, create `bucket`, point the environment at it;
    yields an S3Bucket. The server log goes to tmp_path/moto.log (or a temporary directory)."""
    with contextlib.ExitStack() as stack:
        root = Path(tmp_path) if tmp_path is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        config_file = root / "aws-config-empty"
        config_file.touch()
        log = stack.enter_context(open(root / "moto.log", "ab"))

        for _attempt in range(5):  # the free port can be taken between probing and binding
            port = _free_port()
            env = _aws_env(f"http://127.0.0.1:{port}", str(config_file))
            proc = _start_server(port, env, log)
            if _wait_until_up(proc, port, timeout):
                break
        else:
            raise RuntimeError(f"moto S3 server did not start; see {root / 'moto.log'}")

        saved = {k: os.environ.get(k) for k in [*env, *_UNSET]}
        try:
            for k in _UNSET:
                os.environ.pop(k, None)
            os.environ.update(env)
            endpoint = f"127.0.0.1:{port}"
            admin = pafs.S3FileSystem(access_key="testing", secret_key="testing", region=REGION,
                                      endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
            admin.create_dir(bucket)
            fs = pafs.S3FileSystem(access_key="testing", secret_key="testing", region=REGION,
                                   endpoint_override=endpoint, scheme="http")
            yield S3Bucket(endpoint=endpoint, bucket=bucket, prefix=prefix.strip("/"), fs=fs, env=env, process=proc)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            stop(proc)
