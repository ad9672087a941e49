"""How many CPU cores this process may use, one rule for the exporter and the served model.

The exporter sizes ``auto`` instance counts with it on the exporting host; the classifier's
model.py shares the serving host's cores among its instances with it when it loads (the two
hosts may differ). Self-contained on purpose (os only): the exporter pastes this file's source
into the classifier's model.py, which runs inside Triton and cannot import ``gatta``.
"""

import os


def available_cores():
    """CPU cores this process may use: its affinity, then a cgroup v2 quota (containers,
    Kubernetes limits), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores
