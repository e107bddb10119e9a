"""The gateway binary as the suites run it: on a free 127.0.0.1 port, from a
directory of its own (so no developer's .env is read), with only the
environment given, until it answers."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body, headers=None, timeout=30):
    """POSTs `body`: (status, answer bytes), for every status."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Gateway:
    """A running gateway: `url`, `port`, `proc`, `dir` (its working directory
    and log); `ready` is the path polled until it answers 200."""

    def __init__(self, binary, env, work=None, ready="/readyz"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = work or tempfile.mkdtemp(prefix="gateway-")
        env = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(self.port), "RUST_LOG": "warn", **env}
        self.log = open(os.path.join(self.dir, "gateway.log"), "w")
        self.proc = subprocess.Popen([os.path.abspath(binary)], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + ready, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        sys.exit("the gateway did not become ready; log:\n" + open(self.log.name).read())

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """SIGTERM, then SIGKILL after 30 s."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=20):
        return "".join(open(self.log.name).readlines()[-lines:])
