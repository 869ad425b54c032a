"""Boot the lab VM (virtme-ng + qemu, emulated VT-d, NVMe disk) and run one command in it.

The guest is a copy-on-write view of the host's root over 9p (read-only, /tmp etc.
overlaid), so the venv and the package are there at the same paths; files come back
through one directory shared read-write (`vng --rwdir`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..errors import UserError
from ..render.progress import step
from .iommus import Iommu
from .kernels import find_kernel, release_of
from .modes import Mode

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Tools:
    vng: str
    qemu: str
    kernel: str
    busybox: str


def _is_static_elf(path: str) -> bool:
    """True when the ELF file has no PT_INTERP segment (virtme's initramfs needs that)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only; the lab is x86-64
        return False
    order: Literal["little", "big"] = "little" if head[5] == 1 else "big"
    phoff = int.from_bytes(head[32:40], order)
    phentsize = int.from_bytes(head[54:56], order)
    phnum = int.from_bytes(head[56:58], order)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(head):
            return False
        if int.from_bytes(head[off : off + 4], order) == 3:  # PT_INTERP
            return False
    return True


def _find_vng() -> str | None:
    # vng lives next to our interpreter when installed into the venv (the lab extra)
    here = os.path.join(os.path.dirname(sys.executable), "vng")
    return here if os.access(here, os.X_OK) else shutil.which("vng")


def find_tools(kernel: str | None = None, busybox: str | None = None) -> Tools:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise UserError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    vng = _find_vng()
    if vng is None:
        raise UserError("vng (virtme-ng) not found: pip install 'iommu-trace[lab]' into the venv")
    kernel = find_kernel(kernel)
    if busybox is None:
        for name in ("busybox-static", "busybox.static", "busybox"):
            path = shutil.which(name)
            if path and _is_static_elf(os.path.realpath(path)):
                busybox = path
                break
        else:
            raise UserError(
                "no statically linked busybox (virtme needs one for the initramfs): "
                "apt-get install busybox-static"
            )
    elif not _is_static_elf(busybox):
        raise UserError(f"{busybox} is not a statically linked busybox")
    return Tools(vng=vng, qemu=qemu, kernel=kernel, busybox=busybox)


kernel_release = release_of


@dataclass
class VMSpec:
    mode: Mode
    iommu: Iommu
    disk: str  # raw image attached as the NVMe namespace (DMAs through the vIOMMU)
    share: str  # host directory the guest may write (same path inside)
    command: str  # shell command run in the guest; its exit status is the VM's
    cpus: int = 2
    memory: str = "2G"
    verbose: bool = False  # kernel console to stderr
    extra_append: list[str] = field(default_factory=list)

    @property
    def cmdline(self) -> str:
        return " ".join([self.mode.cmdline(self.iommu), *self.extra_append])


def build_command(tools: Tools, spec: VMSpec) -> list[str]:
    qemu_opts = [
        # split irqchip: the IOMMUs' interrupt remapping needs it (under KVM; harmless in TCG)
        "-machine", "q35,kernel-irqchip=split",
        "-device", spec.iommu.device,
        "-drive", f"file={spec.disk},if=none,id=labnvme,format=raw",
        "-device", "nvme,serial=iommulab,drive=labnvme",
    ]  # fmt: skip
    cmd = [
        tools.vng,
        "--run", tools.kernel,
        # KVM here is paravirtual and hangs stock kernels; TCG works.
        # microvm has no PCI (no VT-d, no NVMe); virtiofs needs a daemon: use 9p.
        "--disable-kvm", "--force-9p", "--disable-microvm",
        "--qemu", tools.qemu,
        "--busybox", tools.busybox,
        "--cpus", str(spec.cpus),
        "--memory", spec.memory,
        "--rwdir", spec.share,
        "--cwd", spec.share,
        # '=' forms: values that start with '-' would read as options
        "--append=" + spec.cmdline,
        "--qemu-opts=" + shlex.join(qemu_opts),
        "--exec=" + spec.command,
    ]  # fmt: skip
    if spec.verbose:
        cmd.append("--verbose")
    return cmd


@dataclass
class GuestResult:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float

    def last_line(self) -> str:
        for text in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        return ""


def guest_step(line: str) -> str | None:
    """The slow step a guest line begins: lab/guest.py's command line, record's "writing"."""
    if line.startswith("guest: $ "):
        if " record " in line:
            return "starting the recorder in the guest (its BPF compile is slow under TCG)"
        return "running the workload in the guest"
    if line.startswith("iommu-trace: writing "):
        return "recording the workload in the guest"
    return None


def _pump(stream, sink: list[str], progress: Progress | None) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if progress is not None:
            progress("vm| " + line.rstrip("\n"))
            if name := guest_step(line):
                step(progress, name)
    stream.close()


def _stop(proc: subprocess.Popen) -> None:
    # vng -> sh -> virtme-run -> qemu all share the session we created for vng
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_vm(
    tools: Tools, spec: VMSpec, timeout: float, progress: Progress | None = stderr_progress
) -> GuestResult:
    """Boot, run spec.command, return its status and output; stop qemu after `timeout` s."""
    cmd = build_command(tools, spec)
    env = dict(os.environ)
    # vng runs `virtme-run` through the shell: it must be on PATH
    env["PATH"] = os.path.dirname(tools.vng) + os.pathsep + env.get("PATH", "")
    if progress:
        progress(
            f"lab: booting {kernel_release(tools.kernel)} with {spec.iommu.device.split(',')[0]} "
            f"in {spec.mode.name} mode ({spec.cmdline}) under qemu TCG, timeout {timeout:.0f} s"
        )
        step(progress, f"booting the guest ({spec.mode.name})")
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,  # one process group to stop on timeout
    )
    out: list[str] = []
    err: list[str] = []
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, progress), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, progress), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise UserError(
            f"guest ({spec.mode.name}) did not finish within {timeout:.0f} s; qemu stopped "
            "(raise --timeout, or --verbose to see the kernel console)"
        ) from None
    except BaseException:
        _stop(proc)
        raise
    for t in pumps:
        t.join(5)
    elapsed = time.monotonic() - start
    if progress:
        progress(f"lab: guest exited with status {rc} after {elapsed:.1f} s")
    return GuestResult(rc, "".join(out), "".join(err), elapsed)
