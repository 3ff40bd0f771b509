"""The previous catalog `connector topics lint --against REF` compares with.

REF is a catalog folder, or a git revision (`origin/main`, a tag, a commit) of the
repository holding the catalog: the catalog folder and the descriptor set are then read
as they were at REF (`git archive`), so CI checks a pull request against its base with no
checkout of its own. `--against-descriptor-set` names the previous descriptor set when it
is not in the repository; without either, only a changed type name is seen.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool

from connectors.config.catalog.compat import Lookup, breaking
from connectors.config.catalog.load import Catalog, CatalogError, load_catalog
from connectors.config.schemas import load_descriptor_set
from connectors.core.errors import ConfigError, Problem


def lookup(path: str | None) -> Lookup:
    """Message descriptors by full name from the descriptor set at `path`."""
    if not path:
        return lambda name: None
    try:
        pool = load_descriptor_set(Path(path))
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError([Problem("--against-descriptor-set", f"a FileDescriptorSet ({exc})",
                                   path)]) from exc  # fmt: skip
    return lambda name: _find(pool, name)


def _find(pool: descriptor_pool.DescriptorPool, name: str) -> Any:
    try:
        return pool.FindMessageTypeByName(name)
    except KeyError:
        return None


def check_against(
    catalog: Catalog, root: Path, ref: str, descriptor_set: str | None, old_set: str | None
) -> list[str]:
    """One line per change of `catalog` that breaks readers, relative to `ref`."""
    with tempfile.TemporaryDirectory(prefix="catalog-against-") as scratch:
        if Path(ref).is_dir():
            old_root = Path(ref)
        else:
            old_root = _git_export(root, ref, Path(scratch))
            if old_set is None and descriptor_set:
                old_set = _git_file(Path(descriptor_set), ref, Path(scratch) / "old.binpb")
        try:
            old = load_catalog(old_root)
        except CatalogError as exc:
            return [f"--against {ref}: the previous catalog is not valid: {exc.problems[0]}"]
        problems = breaking(old, catalog, lookup(old_set), lookup(descriptor_set))
    return [str(p) for p in problems]


def _git(cwd: Path, *args: str, ref: str = "") -> bytes:
    done = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
        ["git", *args],  # noqa: S607 - git as found on PATH, like a developer's shell
        cwd=cwd,
        capture_output=True,
        check=False,  # noqa: S607
    )
    if done.returncode != 0:
        text = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = text[-1] if text else "git failed"
        expected = f"a catalog folder or a git revision ({reason})"
        raise ConfigError([Problem("--against", expected, ref or None)])
    return done.stdout


def _git_export(root: Path, ref: str, scratch: Path) -> Path:
    """The catalog folder as it was at `ref`, extracted under `scratch`."""
    folder = root if root.is_dir() else root.parent
    top = Path(_git(folder, "rev-parse", "--show-toplevel").decode().strip())
    relative = root.resolve().relative_to(top.resolve())
    archive = _git(top, "archive", "--format=tar", ref, "--", str(relative), ref=ref)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(scratch, filter="data")
    return scratch / relative


def _git_file(path: Path, ref: str, out: Path) -> str | None:
    """The file at `path` as it was at `ref`, written to `out`; None if it was not there."""
    folder = path.resolve().parent
    try:
        top = Path(_git(folder, "rev-parse", "--show-toplevel").decode().strip())
        relative = path.resolve().relative_to(top.resolve())
        out.write_bytes(_git(top, "show", f"{ref}:{relative}"))
    except (ConfigError, ValueError):
        return None
    return str(out)
