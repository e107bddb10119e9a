"""The gateway binary as the SDK suites run it: on a free 127.0.0.1 port, from
an empty directory (so no developer's .env is read), with only the
environment given, until it answers /readyz."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, binary, env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="sdk-gateway-")
        env = {"PATH": os.environ.get("PATH", ""), "HOST": "127.0.0.1", "PORT": str(self.port), "RUST_LOG": "warn", **env}
        self.log = open(os.path.join(self.dir, "gateway.log"), "w")
        self.proc = subprocess.Popen([os.path.abspath(binary)], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        sys.exit("the gateway did not become ready; log:\n" + open(self.log.name).read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def log_tail(self, lines=20):
        return "".join(open(self.log.name).readlines()[-lines:])
