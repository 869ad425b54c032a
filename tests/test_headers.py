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


@pytest.mark.skipif(os.geteuid() != 0, reason="linking headers needs root")
def test_backports_tree_links_its_common_tree(tmp_path):
    # bookworm-backports names its trees with "+deb12": the lab's 6.12 headers, which are
    # nearer to 6.18 than 6.1's (kconfig.h lives in the common tree)
    src = tmp_path / "src"
    for name in (
        "linux-headers-6.1.0-57-amd64",
        "linux-headers-6.1.0-57-common",
        "linux-headers-6.12.95+deb12-amd64",
        "linux-headers-6.12.95+deb12-common",
    ):
        tree(src, name)  # fmt: skip
    mods = tmp_path / "m"
    h = headers.resolve("6.18.44-fc-v1045", modules=str(mods), src=str(src),
                        kheaders=str(tmp_path / "none"))  # fmt: skip
    assert h.path.endswith("linux-headers-6.12.95+deb12-amd64")
    source = (mods / "6.18.44-fc-v1045" / "source").resolve()
    assert source == src / "linux-headers-6.12.95+deb12-common"


@pytest.mark.skipif(os.geteuid() != 0, reason="linking headers needs root")
def test_a_link_that_misses_kconfig_is_made_again(tmp_path):
    # what an older recorder left: source linked to the flavour tree, not the common one
    src = tmp_path / "src"
    flavour = tree(src, "linux-headers-6.12.95+deb12-amd64")
    common = tree(src, "linux-headers-6.12.95+deb12-common")
    (common / headers.KCONFIG).parent.mkdir(parents=True)
    (common / headers.KCONFIG).write_text("")
    release = tmp_path / "m" / "6.18.44-fc"
    release.mkdir(parents=True)
    (release / "build").symlink_to(flavour)
    (release / "source").symlink_to(flavour)
    h = headers.resolve("6.18.44-fc", modules=str(tmp_path / "m"), src=str(src),
                        kheaders=str(tmp_path / "none"))  # fmt: skip
    assert h.source == "distro-package" and (release / "source").resolve() == common
    again = headers.resolve("6.18.44-fc", modules=str(tmp_path / "m"), src=str(src),
                            kheaders=str(tmp_path / "none"))  # fmt: skip
    assert again.source == "modules-build"  # complete now: left as it is
