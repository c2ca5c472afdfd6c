"""The cores we may use: affinity capped by a cgroup CPU quota, as containers under Kubernetes get."""

from __future__ import annotations

import os

from resnet_serve.host import available_cores, cgroup_chain, classifier_share, quota_cores


def test_a_quota_allows_its_cores_rounded_up_and_max_allows_any():
    assert quota_cores("200000 100000\n") == 2
    assert quota_cores("150000 100000") == 2
    assert quota_cores("50000 100000") == 1
    assert quota_cores("max 100000") is None
    assert quota_cores("") is None
    assert quota_cores("garbage 100000") is None and quota_cores("-1 100000") is None


def test_available_cores_are_the_affinity_capped_by_the_cgroup_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(affinity + 4) * 100000} 100000\n")
    assert available_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").unlink()
    assert available_cores(tmp_path) == affinity


def test_a_quota_on_a_cgroup_above_ours_caps_us_too(tmp_path):
    # No cgroup namespace (a systemd service: CPUQuota= on its own cgroup, /sys/fs/cgroup the host's).
    ours = tmp_path / "system.slice" / "resnet-serve.service"
    ours.mkdir(parents=True)
    (ours / "cpu.max").write_text("max 100000\n")
    (tmp_path / "system.slice" / "cpu.max").write_text("100000 100000\n")
    assert available_cores(tmp_path, "0::/system.slice/resnet-serve.service\n") == 1
    assert available_cores(tmp_path, "0::/\n") == len(os.sched_getaffinity(0))  # a namespace: the root is ours
    assert cgroup_chain(tmp_path, "0::/a/b") == [tmp_path / "a" / "b", tmp_path / "a", tmp_path]


def test_cgroup_v1_quota_files_count_too(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert available_cores(tmp_path) == len(os.sched_getaffinity(0))


def test_the_classifier_leaves_a_quarter_of_eight_or_more_cores_and_none_of_fewer():
    assert [classifier_share(cores) for cores in (1, 2, 4, 7)] == [1, 2, 4, 7]
    assert [classifier_share(cores) for cores in (8, 16, 64)] == [6, 12, 48]
