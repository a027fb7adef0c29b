from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from iobench import hostinfo

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
40 27 254:0 /data /mnt/my\\040disk rw,noatime master:3 - ext4 /dev/vda rw
"""


def test_parse_mountinfo_handles_optional_fields_and_escapes() -> None:
    mounts = hostinfo.parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == ["/proc", "/", "/dev/shm", "/mnt/my disk"]
    root = mounts[1]
    assert (root.device, root.fs_type, root.source, root.super_options) == (
        "254:0",
        "ext4",
        "/dev/vda",
        "rw,discard",
    )
    assert mounts[3].mount_options == "rw,noatime"


def test_target_facts_agree_with_findmnt(tmp_path: Path) -> None:
    facts = hostinfo.target_facts(tmp_path)
    if shutil.which("findmnt"):
        expected = subprocess.run(
            ["findmnt", "-n", "-o", "FSTYPE,TARGET", "--target", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert [facts["fs_type"], facts["mount_point"]] == expected
    assert facts["free_bytes"] > 0 and facts["total_bytes"] >= facts["free_bytes"]
    if facts["block_device"]:
        assert facts["scheduler"] and facts["rotational"] in (True, False)


def test_tmpfs_target_warns(shm_dir: Path) -> None:
    facts = hostinfo.target_facts(shm_dir)
    assert facts["fs_type"] == "tmpfs"
    assert facts["block_device"] is None
    warnings = hostinfo.warnings_for(hostinfo.host_facts(), facts)
    assert any("target is tmpfs: page cache and fsync results do not describe a disk" in w for w in warnings)


def test_host_facts_are_read_not_guessed() -> None:
    host = hostinfo.host_facts()
    assert host["kernel"] == os.uname().release
    assert host["cpu_count"] == os.cpu_count()
    assert host["memory_total_bytes"] > 0
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    assert host["rlimit_memlock"]["soft"] == (None if soft == resource.RLIM_INFINITY else soft)


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ({"load_average": [5.0, 1, 1], "cpu_count": 2, "cpus_usable": 1}, "load average 5.00 on 2 CPUs"),
        ({"cpu_governor": "powersave"}, "governor is 'powersave'"),
        ({"hypervisor": True}, "hypervisor"),
    ],
)
def test_noise_warnings(host: dict, fragment: str) -> None:
    assert any(fragment in w for w in hostinfo.warnings_for(host, None))


def test_cpu_tick_from_kernel_config(tmp_path: Path) -> None:
    import gzip

    plain = tmp_path / "config-6.1"
    plain.write_text("CONFIG_HZ_250=y\n# CONFIG_HZ_1000 is not set\nCONFIG_HZ=250\n")
    packed = tmp_path / "config.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write("CONFIG_HZ=1000\n")
    assert hostinfo.cpu_tick_ns((plain,)) == (4_000_000, f"CONFIG_HZ=250 in {plain}")
    # The first readable config wins; a missing one is skipped.
    assert hostinfo.cpu_tick_ns((tmp_path / "absent", packed, plain)) == (
        1_000_000,
        f"CONFIG_HZ=1000 in {packed}",
    )


def test_cpu_tick_assumed_when_the_config_is_unreadable(tmp_path: Path) -> None:
    broken = tmp_path / "config.gz"
    broken.write_bytes(b"not gzip")
    empty = tmp_path / "config"
    empty.write_text("CONFIG_HZ_PERIODIC=y\n")
    tick, source = hostinfo.cpu_tick_ns((broken, empty, tmp_path / "absent"))
    assert tick == 10_000_000 and source.startswith("assumed 10 ms")


def test_cpu_tick_of_this_host_matches_its_config() -> None:
    tick, source = hostinfo.cpu_tick_ns()
    if source.startswith("assumed"):
        pytest.skip("this kernel exposes no config")
    hz = int(source.split()[0].removeprefix("CONFIG_HZ="))
    assert tick * hz == 1_000_000_000 and hz in (100, 250, 300, 1000)


def _fake_cache(root: Path, cpu: int, index: int, level: int, kind: str, size: str, shared: str) -> None:
    folder = root / f"cpu{cpu}" / "cache" / f"index{index}"
    folder.mkdir(parents=True)
    for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
        (folder / name).write_text(f"{value}\n")


def test_llc_is_the_highest_data_or_unified_cache_in_sysfs(tmp_path: Path) -> None:
    _fake_cache(tmp_path, 0, 0, 1, "Data", "48K", "0")
    _fake_cache(tmp_path, 0, 1, 1, "Instruction", "32K", "0")
    _fake_cache(tmp_path, 0, 2, 2, "Unified", "1024K", "0")
    _fake_cache(tmp_path, 0, 3, 3, "Unified", "32768K", "0-1")
    _fake_cache(tmp_path, 1, 0, 2, "Unified", "2048K", "1")  # another CPU's caches are not read
    assert hostinfo.llc_facts(0, tmp_path) == {
        "llc_bytes": 32 << 20,
        "llc_level": 3,
        "llc_shared_cpus": "0-1",
        "llc_source": str(tmp_path / "cpu0" / "cache"),
    }
    assert hostinfo.llc_facts(1, tmp_path)["llc_bytes"] == 2 << 20


def test_llc_ignores_a_higher_instruction_cache_and_says_when_unreadable(tmp_path: Path) -> None:
    _fake_cache(tmp_path, 0, 0, 2, "Unified", "512K", "0")
    _fake_cache(tmp_path, 0, 1, 3, "Instruction", "8M", "0")
    assert hostinfo.llc_facts(0, tmp_path)["llc_bytes"] == 512 << 10
    missing = hostinfo.llc_facts(7, tmp_path)
    assert missing["llc_bytes"] is None and missing["llc_level"] is None
    assert missing["llc_source"] == f"{tmp_path / 'cpu7' / 'cache'}: not readable"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32768K", 32 << 20),
        ("1M", 1 << 20),
        ("2G", 2 << 30),
        ("512", 512),
        (" 48k\n", 48 << 10),
        ("", None),
        ("big", None),
    ],
)
def test_cache_sizes_as_sysfs_writes_them(text: str, size: int | None) -> None:
    assert hostinfo.parse_cache_size(text) == size


def test_fits_llc() -> None:
    assert hostinfo.fits_llc(32 << 20, 32 << 20) is True
    assert hostinfo.fits_llc((32 << 20) + 1, 32 << 20) is False
    assert hostinfo.fits_llc(1, None) is None
    assert hostinfo.fits_llc(None, 32 << 20) is None


def test_this_hosts_llc_is_in_the_host_facts() -> None:
    host = hostinfo.host_facts()
    sysfs = Path("/sys/devices/system/cpu") / f"cpu{min(os.sched_getaffinity(0))}" / "cache"
    if not sysfs.is_dir():
        pytest.skip("no cache topology in sysfs here")
    sizes = {
        int((index / "level").read_text()): hostinfo.parse_cache_size((index / "size").read_text())
        for index in sysfs.glob("index*")
        if (index / "type").read_text().strip() != "Instruction"
    }
    assert host["llc_bytes"] == sizes[max(sizes)]
    assert dict(hostinfo.describe(host, {}))["LLC"].startswith(
        f"{hostinfo.format_size(sizes[max(sizes)])} L{max(sizes)}"
    )


def test_a_running_damon_pageout_scheme_is_found_and_warned(tmp_path) -> None:
    from iobench import hostinfo

    context = tmp_path / "kdamonds" / "0" / "contexts" / "0"
    scheme = context / "schemes" / "0"
    (scheme / "access_pattern" / "age").mkdir(parents=True)
    (context / "monitoring_attrs" / "intervals").mkdir(parents=True)
    (tmp_path / "kdamonds" / "0" / "state").write_text("on\n")
    (scheme / "action").write_text("pageout\n")
    (scheme / "access_pattern" / "age" / "min").write_text("6\n")
    (context / "monitoring_attrs" / "intervals" / "aggr_us").write_text("5000000\n")
    assert hostinfo.damon_pageout_after_s(tmp_path) == 30.0
    warned = hostinfo.warnings_for({"damon_pageout_after_s": 30.0}, None)
    assert any("DAMON reclaims memory idle for 30 s" in w for w in warned)
    (tmp_path / "kdamonds" / "0" / "state").write_text("off\n")
    assert hostinfo.damon_pageout_after_s(tmp_path) is None
    (scheme / "action").write_text("stat\n")
    assert hostinfo.damon_pageout_after_s(tmp_path / "nowhere") is None
