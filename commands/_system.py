"""What `doctor` and `topo` share: --root/--save and one-line failures."""

from __future__ import annotations

import json
import os
from typing import Any, NoReturn

import click

from ..errors import UserError

ROOT_HELP = "read a snapshot saved with --save instead of this machine"


def fail(message: str) -> NoReturn:
    raise UserError(message)


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=1, default=str))


def check_save(save: str | None, root: str) -> None:
    if save and root != "/":
        fail("--save reads this machine; it cannot be combined with --root")
    if save and os.path.exists(save) and not os.path.isdir(save):
        fail(f"--save {save}: exists and is not a directory")


def save_view(view: Any, dest: str, about: dict[str, Any]) -> None:
    try:
        view.save(dest, about=about)
    except OSError as e:
        fail(f"cannot save to {dest}: {e.strerror or e}")
