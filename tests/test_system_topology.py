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
        "up", "virtio_net", "0000:00:03.0", [])
    assert eth0["speed_mbps"] is None  # virtio reports -1
    assert links["ifb0"]["kind"] == "ifb" and links["ifb0"]["pci"] is None
    assert links["lo"]["type"] == "loopback"


def test_path_on_a_flat_bus(fc):
    rep = topology.path(fc, "eth0", "vda")
    p2p, staged = rep["peer_to_peer"], rep["host_staged"]
    assert p2p["class"] == "PHB"  # both hang off the root complex
    assert p2p["hops"] == ["0000:00:03.0", "pci0000:00", "0000:00:02.0"]
    assert p2p["pcie_links"] == 2 and p2p["gbps"] is None and p2p["unknown_links"] == 2
    assert staged["hops"] == ["0000:00:03.0", "pci0000:00", "mem:?", "pci0000:00",
                              "0000:00:02.0"]
    assert staged["host_memory_passes"] == 2 and staged["crosses_sockets"] is False
    assert "unknown" in render.path_text(rep)


@pytest.mark.parametrize("name,error", [
    ("gpu0", "no gpu0: this machine has 0 GPU(s)"),
    ("lo", "lo is not backed by a PCI device (loopback link)"),
    ("ifb0", "ifb0 is not backed by a PCI device (ifb link)"),
    ("nope", "no device called nope"),
])
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
@pytest.mark.parametrize("suffix,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"),
                                          ("pdf", b"%PDF")])
def test_drawings(fc, tmp_path, suffix, magic):
    out = render.draw(fc, str(tmp_path / f"t.{suffix}"))
    assert Path(out).read_bytes().startswith(magic)


def test_cli_topo_replays_snapshot():
    r = CliRunner().invoke(cli, ["topo", "--root", FIRECRACKER, "--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["devices"]) == 6 and data["iommu"]["mode"] == "off"


@pytest.mark.parametrize("spec", ["eth0:vda", "0000:00:03.0:vda", "eth0:0000:00:02.0",
                                  "0000:00:03.0:0000:00:02.0", "eth0,vda"])
def test_cli_path_specs(spec):
    r = CliRunner().invoke(cli, ["topo", "--root", FIRECRACKER, "--path", spec])
    assert r.exit_code == 0, r.output
    assert "[PHB]" in r.output


@pytest.mark.parametrize("args,message", [
    (["--path", "eth0:gpu0"], "no gpu0"),
    (["--path", "eth0"], "expected SRC:DST"),
    (["-o", "t.jpg"], "cannot draw to .jpg"),
    (["--save", "x"], "cannot be combined with --root"),
])
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
