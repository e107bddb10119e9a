"""A process's memory, from /proc (Linux)."""


def status_kib(pid, field):
    """A `/proc/PID/status` figure in KiB: VmHWM (peak RSS) or VmRSS."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def reset_peak(pid):
    """Resets VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
