"""The CPUs the service sizes itself by: the affinity mask, capped by the cgroup's CPU quota.

Each case builds the two things the kernel shows a process, a cgroup mount and the process's
/proc/self/cgroup, as files in tmp_path.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from service import cores

AFFINITY = len(os.sched_getaffinity(0))


def tree(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup mount holding `files` (path → content) and a /proc/self/cgroup reading `membership`."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership + "\n")
    return root, proc


V2 = "0::/kubepods/pod1/ctr"
V1 = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc"


@pytest.mark.parametrize(("membership", "files", "expected"), [
    # cgroup v2: cpu.max is "<quota> <period>" or "max <period>"
    (V2, {"kubepods/pod1/ctr/cpu.max": "200000 100000"}, 2.0),
    (V2, {"kubepods/pod1/ctr/cpu.max": "150000 100000"}, 1.5),
    (V2, {"kubepods/pod1/ctr/cpu.max": "max 100000"}, None),
    # the smallest limit on the way up wins (a pod's limit above a container without one)
    (V2, {"kubepods/pod1/ctr/cpu.max": "max 100000", "kubepods/pod1/cpu.max": "50000 100000"}, 0.5),
    (V2, {"kubepods/pod1/ctr/cpu.max": "400000 100000", "kubepods/cpu.max": "300000 100000"}, 3.0),
    # a container's own namespace: its cgroup is the mount itself
    ("0::/", {"cpu.max": "100000 100000"}, 1.0),
    # cgroup v1: cfs_quota_us over cfs_period_us, -1 for none, under the hierarchy that has `cpu`
    (V1, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"}, 3.0),
    (V1, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"}, None),
    # the host's path does not exist inside a container without a cgroup namespace: the mount is read
    (V1, {"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"}, 2.5),
    # a memory limit is no CPU limit; neither is a file that cannot be parsed
    (V1, {"memory/docker/abc/memory.limit_in_bytes": "1073741824"}, None),
    (V2, {"kubepods/pod1/ctr/cpu.max": "garbage"}, None),
    (V2, {}, None),
])
def test_quota(tmp_path, membership, files, expected):
    root, proc = tree(tmp_path, membership, files)
    assert cores.quota(root, proc) == expected


def test_no_cgroup_file_means_no_limit(tmp_path):
    assert cores.quota(tmp_path, tmp_path / "missing") is None
    assert cores.count(tmp_path, tmp_path / "missing") == AFFINITY


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("100000 100000", 1),
    ("10000 100000", 1),           # a tenth of a CPU still gets one thread
    ("150000 100000", min(2, AFFINITY)),  # rounded up: 1.5 CPUs keep two threads busy part time
    (f"{100000 * (AFFINITY + 8)} 100000", AFFINITY),  # a quota above the mask changes nothing
    ("max 100000", AFFINITY),
])
def test_count_is_the_affinity_capped_by_the_quota(tmp_path, cpu_max, expected):
    root, proc = tree(tmp_path, "0::/", {"cpu.max": cpu_max})
    assert cores.count(root, proc) == expected
