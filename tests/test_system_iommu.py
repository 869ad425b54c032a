"""system.iommu on saved real machine states, and its save/replay round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iommu_trace.system.iommu import parse_cmdline, save_snapshot, snapshot, summarise_mode

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
STABLE_KEYS = {"cmdline", "iommu_params", "present", "vendor", "groups", "mode", "dmesg", "notes"}


def test_firecracker_has_no_iommu():
    snap = snapshot(str(FIXTURES / "firecracker"))
    assert STABLE_KEYS <= snap.keys()
    assert snap["present"] is False
    assert snap["vendor"] is None
    assert snap["groups"] == []
    assert snap["mode"] == "off"
    assert snap["iommu_params"] == {"swiotlb": "noforce"}
    # The kernel was built lazy-by-default and said so, but had nothing to translate.
    assert snap["kernel_default"] == {
        "domain": "translated",
        "invalidation": "lazy",
        "source": "boot log",
    }
    assert any("Default domain type: Translated" in ln for ln in snap["dmesg"])
    assert any("no IOMMU hardware" in n for n in snap["notes"])
    json.dumps(snap)  # stored verbatim in trace metadata


@pytest.mark.parametrize(
    "fixture", sorted(p.name for p in FIXTURES.iterdir() if (p / "snapshot.json").exists())
)
def test_every_saved_snapshot_is_consistent(fixture):
    snap = snapshot(str(FIXTURES / fixture))
    assert STABLE_KEYS <= snap.keys()
    assert snap["mode"] in {"off", "passthrough", "lazy", "strict", "mixed", "unknown"}
    assert snap["present"] == bool(snap["units"] or snap["groups"])
    for g in snap["groups"]:
        assert set(g) == {"group", "type", "devices"}
        assert all(d.count(":") == 2 for d in g["devices"])  # PCI-style names
    json.dumps(snap)


def test_save_then_replay_this_machine(tmp_path):
    live = snapshot("/")
    saved = save_snapshot(str(tmp_path))
    assert saved == live
    assert snapshot(str(tmp_path)) == live
    assert (tmp_path / "proc" / "cmdline").read_text().strip() == live["cmdline"]


def test_missing_root_degrades_to_notes(tmp_path):
    snap = snapshot(str(tmp_path))  # an empty directory: nothing readable
    assert snap["mode"] == "off" and snap["present"] is False
    assert snap["cmdline"] is None
    assert any("cmdline" in n for n in snap["notes"])
    assert any("iommu_groups missing" in n for n in snap["notes"])


@pytest.mark.parametrize(
    "cmdline,expected",
    [
        # Real command lines: an Intel GPU node in passthrough, an AMD strict one, a lazy ARM one.
        (
            "BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=UUID=ab ro quiet intel_iommu=on iommu=pt",
            {"intel_iommu": "on", "iommu": "pt"},
        ),
        (
            "BOOT_IMAGE=/boot/vmlinuz ro amd_iommu=on iommu.strict=1 iommu.passthrough=0",
            {"amd_iommu": "on", "iommu.strict": "1", "iommu.passthrough": "0"},
        ),
        ("console=ttyAMA0 iommu.strict=0 -- iommu=pt", {"iommu.strict": "0"}),  # after -- is init's
        (
            'root=/dev/vda1 intel_iommu=on,sm_on dyndbg="file iommu.c +p" iommu=nopt iommu=pt',
            {"intel_iommu": "on,sm_on", "iommu": "pt"},
        ),  # last repeat wins
        ("quiet splash", {}),
    ],
)
def test_parse_cmdline(cmdline, expected):
    assert parse_cmdline(cmdline) == expected


@pytest.mark.parametrize(
    "types,mode",
    [
        (["DMA-FQ", "DMA-FQ"], "lazy"),
        (["DMA"], "strict"),
        (["identity", "identity"], "passthrough"),
        (["DMA", "identity"], "mixed"),
        (["DMA-FQ", "unmanaged"], "lazy"),  # a vfio-owned group is not the kernel's DMA API
        (["unmanaged"], "unknown"),
    ],
)
def test_summarise_mode(types, mode):
    groups = [{"group": str(i), "type": t, "devices": []} for i, t in enumerate(types)]
    assert summarise_mode(True, groups) == mode


@pytest.mark.parametrize(
    "fixture,mode,params,invalidation",
    [
        ("lab-strict", "strict", {"intel_iommu": "on", "iommu.strict": "1"}, "strict"),
        ("lab-lazy", "lazy", {"intel_iommu": "on", "iommu.strict": "0"}, "lazy"),
        ("lab-passthrough", "passthrough", {"intel_iommu": "on", "iommu.passthrough": "1"}, None),
    ],
)
def test_lab_vtd_snapshots(fixture, mode, params, invalidation):
    snap = snapshot(str(FIXTURES / fixture))
    assert (snap["present"], snap["vendor"], snap["units"]) == (True, "intel", ["dmar0"])
    assert snap["mode"] == mode and snap["iommu_params"] == params
    assert snap["kernel_default"]["invalidation"] == invalidation
    assert len(snap["groups"]) == 18
    group_type = {"strict": "DMA", "lazy": "DMA-FQ", "passthrough": "identity"}[mode]
    assert {"group": "10", "type": group_type, "devices": ["0000:00:0a.0"]} in snap["groups"]
    assert any("DMAR: IOMMU enabled" in ln for ln in snap["dmesg"])
    assert not any("Adding to iommu group" in ln for ln in snap["dmesg"])
    assert snap["config_source"] == "/boot/config-6.1.0-56-amd64"
    assert snap["notes"] == []
