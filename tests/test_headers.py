"""Kernel headers for BCC: the order the recorder tries, on real directory layouts."""

from __future__ import annotations

import os

import pytest

from iommu_trace.tracer import headers


def tree(root, name):
    d = root / name
    (d / "include").mkdir(parents=True)
    (d / "Makefile").write_text("")
    return d


def test_missing_headers_name_the_fix(tmp_path):
    with pytest.raises(headers.HeadersMissing) as e:
        headers.resolve("6.18.0-x", modules=str(tmp_path / "m"), src=str(tmp_path / "src"),
                        kheaders=str(tmp_path / "none"))  # fmt: skip
    msg = str(e.value)
    assert "\n" not in msg and "no kernel headers for 6.18.0-x" in msg
    assert "apt-get install linux-headers-amd64" in msg


def test_modules_build_first(tmp_path):
    tree(tmp_path / "m" / "6.1.0-9-amd64", "build")
    h = headers.resolve("6.1.0-9-amd64", modules=str(tmp_path / "m"), src=str(tmp_path / "src"))
    assert h.source == "modules-build"


@pytest.mark.skipif(os.geteuid() != 0, reason="linking headers needs root")
def test_nearest_distro_tree_is_linked(tmp_path):
    src = tmp_path / "src"
    tree(src, "linux-headers-5.10.0-30-amd64")
    tree(src, "linux-headers-6.1.0-56-amd64")
    tree(src, "linux-headers-6.1.0-56-common")
    mods = tmp_path / "m"
    h = headers.resolve("6.18.44-fc", modules=str(mods), src=str(src),
                        kheaders=str(tmp_path / "none"))  # fmt: skip
    assert h.source == "distro-package" and h.path.endswith("linux-headers-6.1.0-56-amd64")
    assert (mods / "6.18.44-fc" / "build").resolve() == (src / "linux-headers-6.1.0-56-amd64")
    assert (mods / "6.18.44-fc" / "source").resolve() == (src / "linux-headers-6.1.0-56-common")
    assert "nearest installed version" in h.note
