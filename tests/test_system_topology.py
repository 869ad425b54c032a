"""`topo` on saved real machine states: PCI tree, links, paths, drawings, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from iommu_trace.cli import cli
from iommu_trace.system import topology
from iommu_trace.system import topology_render as render

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
FIRECRACKER = str(FIXTURES / "firecracker")


@pytest.fixture(scope="module")
def fc() -> topology.Topology:
    return topology.collect(FIRECRACKER)


def test_firecracker_flat_virtio_bus(fc):
    kinds = {d.address: (d.kind, d.name) for d in fc.devices}
    assert kinds == {
        "0000:00:00.0": ("host-bridge", "Intel host-bridge 0x0d57"),
        "0000:00:01.0": ("other", "virtio-balloon"),
        "0000:00:02.0": ("storage", "virtio-blk"),
        "0000:00:03.0": ("nic", "virtio-net"),
        "0000:00:04.0": ("other", "virtio-vsock"),
        "0000:00:05.0": ("other", "virtio-rng"),
    }
    assert all(d.parent is None and d.host_bridge == "pci0000:00" for d in fc.devices)
    assert all(d.link is None and d.iommu_group is None for d in fc.devices)
    nic = fc.device("0000:00:03.0")
    assert nic.netdevs == ["eth0"] and nic.driver == "virtio-pci"
    assert fc.device("0000:00:02.0").block == ["vda"]
    notes = " ".join(fc.notes)
    for said in ("no PCIe link attributes", "flat bus", "no GPU", "no IOMMU", "infiniband"):
        assert said in notes


def test_firecracker_network_links(fc):
    links = {ln["name"]: ln for ln in fc.links}
    assert set(links) == {"lo", "eth0", "ifb0", "ifb1"}
    eth0 = links["eth0"]
    assert (eth0["state"], eth0["driver"], eth0["pci"], eth0["rdma"]) == (
        "up",
        "virtio_net",
        "0000:00:03.0",
        [],
    )
    assert eth0["speed_mbps"] is None  # virtio reports -1
    assert links["ifb0"]["kind"] == "ifb" and links["ifb0"]["pci"] is None
    assert links["lo"]["type"] == "loopback"


def test_path_on_a_flat_bus(fc):
    rep = topology.path(fc, "eth0", "vda")
    p2p, staged = rep["peer_to_peer"], rep["host_staged"]
    assert p2p["class"] == "PHB"  # both hang off the root complex
    assert p2p["hops"] == ["0000:00:03.0", "pci0000:00", "0000:00:02.0"]
    assert p2p["pcie_links"] == 2 and p2p["gbps"] is None and p2p["unknown_links"] == 2
    assert staged["hops"] == ["0000:00:03.0", "pci0000:00", "mem:?", "pci0000:00", "0000:00:02.0"]
    assert staged["host_memory_passes"] == 2 and staged["crosses_sockets"] is False
    assert "unknown" in render.path_text(rep)


@pytest.mark.parametrize(
    "name,error",
    [
        ("gpu0", "no gpu0: this machine has 0 GPU(s)"),
        ("lo", "lo is not backed by a PCI device (loopback link)"),
        ("ifb0", "ifb0 is not backed by a PCI device (ifb link)"),
        ("nope", "no device called nope"),
    ],
)
def test_unresolvable_endpoints(fc, name, error):
    with pytest.raises(LookupError, match=error.replace("(", r"\(").replace(")", r"\)")):
        topology.path(fc, "eth0", name)


def test_endpoint_by_short_pci_address(fc):
    assert topology.resolve(fc, "00:03.0").address == "0000:00:03.0"


def test_text_tree(fc):
    out = render.text(fc)
    assert out.startswith("pci0000:00  (root complex)\n")
    assert "└─ 0000:00:05.0  other  virtio-rng  [virtio-pci]" in out
    assert "eth0" in out and "IOMMU: off" in out


def test_dot_source_has_every_device(fc, tmp_path):
    out = render.draw(fc, str(tmp_path / "t.dot"))
    src = Path(out).read_text()
    for d in fc.devices:
        assert d.address in src
    assert "eth0 (up, speed ?)" in src


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot not installed")
@pytest.mark.parametrize("suffix,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_drawings(fc, tmp_path, suffix, magic):
    out = render.draw(fc, str(tmp_path / f"t.{suffix}"))
    assert Path(out).read_bytes().startswith(magic)


def test_cli_topo_replays_snapshot():
    r = CliRunner().invoke(cli, ["topo", "--root", FIRECRACKER, "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["devices"]) == 6 and data["iommu"]["mode"] == "off"


@pytest.mark.parametrize(
    "spec",
    ["eth0:vda", "0000:00:03.0:vda", "eth0:0000:00:02.0", "0000:00:03.0:0000:00:02.0", "eth0,vda"],
)
def test_cli_path_specs(spec):
    r = CliRunner().invoke(cli, ["topo", "--root", FIRECRACKER, "--path", spec])
    assert r.exit_code == 0, r.output
    assert "[PHB]" in r.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--path", "eth0:gpu0"], "no gpu0"),
        (["--path", "eth0"], "expected SRC:DST"),
        (["-o", "t.jpg"], "cannot draw to .jpg"),
        (["--save", "x"], "cannot be combined with --root"),
    ],
)
def test_cli_errors_are_one_line(args, message):
    r = CliRunner().invoke(cli, ["topo", "--root", FIRECRACKER, *args])
    assert r.exit_code == 2
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_save_then_replay_this_machine(tmp_path):
    live = topology.collect("/")
    r = CliRunner().invoke(cli, ["topo", "--save", str(tmp_path), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert topology.collect(str(tmp_path)).as_dict() == live.as_dict()


# -- the lab guest: q35, emulated VT-d, a PCIe switch with NVMe and e1000e below it

LAB_STRICT = str(FIXTURES / "lab-strict")


@pytest.fixture(scope="module")
def lab() -> topology.Topology:
    return topology.collect(LAB_STRICT)


def test_lab_switch_tree(lab):
    kind = {d.address: d.kind for d in lab.devices}
    assert kind["0000:00:0b.0"] == "root-port"
    assert kind["0000:01:00.0"] == "switch-upstream"
    assert kind["0000:02:00.0"] == kind["0000:02:01.0"] == "switch-downstream"
    assert (kind["0000:03:00.0"], kind["0000:04:00.0"], kind["0000:05:00.0"]) == (
        "nvme",
        "nic",
        "nic",
    )
    nvme = lab.device("0000:03:00.0")
    assert nvme.parent == "0000:02:00.0" and nvme.block == ["nvme1n1"]
    assert nvme.iommu_group == "15" and lab.device("0000:02:00.0").iommu_group == "15"
    assert lab.device("0000:04:00.0").netdevs == ["enp4s0"]
    assert lab.device("0000:05:00.0").name == "virtio-net"
    # An integrated endpoint reports "Unknown"/0 for its link: no link at all.
    assert lab.device("0000:00:0a.0").link is None


def test_lab_links_judged_from_both_ends(lab):
    # The root port can do x16 @ 16 GT/s, the switch below it only x1 @ 2.5:
    # trained at x1 @ 2.5, which is no downgrade.
    rp = lab.device("0000:00:0b.0").link
    assert (rp.cur_width, rp.cur_speed, rp.max_width, rp.max_speed) == (1, 2.5, 16, 16.0)
    assert rp.downgraded  # below its own capability...
    assert topology.downgraded_links(lab) == []  # ...but not below the pair's
    st = topology.link_state(lab, lab.device("0000:01:00.0"))
    assert st["downgraded"] is False and st["describe"] == "x1 @ 2.5 GT/s"
    assert topology.link_state(lab, lab.device("0000:00:0b.0")) is None  # port: internal


def test_lab_peer_to_peer_under_one_switch_is_pix(lab):
    rep = topology.path(lab, "enp4s0", "nvme1n1")
    p2p, staged = rep["peer_to_peer"], rep["host_staged"]
    assert p2p["class"] == "PIX"
    assert p2p["hops"] == [
        "0000:04:00.0",
        "0000:02:01.0",
        "0000:01:00.0",
        "0000:02:00.0",
        "0000:03:00.0",
    ]
    assert p2p["pcie_links"] == 2  # NIC-DSP and DSP-NVMe; inside the switch is not a link
    assert staged["pcie_links"] == 4  # plus the switch's uplink, twice
    assert p2p["gbps"] == staged["gbps"] == 0.25  # x1 @ 2.5 GT/s, 8b/10b
    assert p2p["unknown_links"] == 0
    assert any("ACS" in n for n in rep["notes"])  # strict mode translates peer DMA


def test_lab_peer_to_peer_across_root_ports_is_phb(lab):
    rep = topology.path(lab, "enp5s0", "nvme1n1")
    assert rep["peer_to_peer"]["class"] == "PHB"
    assert rep["peer_to_peer"]["hops"][:3] == ["0000:05:00.0", "0000:00:0c.0", "pci0000:00"]
    assert rep["peer_to_peer"]["pcie_links"] == 3


def test_lab_drawing_marks_groups_and_links(lab, tmp_path):
    src = Path(render.draw(lab, str(tmp_path / "lab.dot"))).read_text()
    assert "IOMMU group 15" in src and "x1 @ 2.5 GT/s" in src
    assert "color=red" not in src  # no downgraded link


# -- an H100 in a Firecracker VM: one GPU on a flat bus, no IOMMU, no netlink module

H100 = str(FIXTURES / "h100-firecracker")


def test_h100_gpu_and_its_link():
    t = topology.collect(H100)
    gpu = t.device("0000:00:06.0")
    assert (gpu.kind, gpu.label, gpu.driver, gpu.model) == (
        "gpu",
        "gpu0",
        "nvidia",
        "NVIDIA H100 80GB HBM3",
    )
    assert gpu.link.describe() == "x16 @ 32.0 GT/s" and gpu.link.gbps() == 63.01
    assert any("pyroute2 not importable" in n for n in t.notes)  # sysfs fallback
    assert {ln["name"] for ln in t.links} == {"eth0", "ifb0", "ifb1", "lo"}
    rep = topology.path(t, "eth0", "gpu0")
    assert rep["peer_to_peer"]["class"] == "PHB"
    assert rep["host_staged"]["gbps"] == 63.01 and rep["host_staged"]["unknown_links"] == 1
    assert "at most 63.01 GB/s" in render.path_text(rep)
