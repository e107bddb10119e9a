"""redis-server on a free 127.0.0.1 port, nothing saved: what the suites
share allowances and events' ids through (Debian's package; the suites'
run.sh install it)."""

import subprocess
import sys
import time

from harness.gateway import free_port


class Redis:
    """redis-server on a free loopback port, nothing saved."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                return
            time.sleep(0.05)
        sys.exit("redis-server did not start")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def kill(self):
        self.proc.kill()
        self.proc.wait()
