"""One run's outputs, published as one generation: never a mix of two runs, whatever kills the writer.

Everything a run writes for the user (pareto.json, recipe.yaml, report.html, model/) goes into a folder of its
own, ``OUT/.generations/<id>/``. When it is complete, one atomic step (renaming a symlink over ``OUT/current``)
makes it the current generation. The names the user opens, ``OUT/pareto.json`` and the rest, are symlinks
through ``current``, so at every instant they all resolve to the same, complete generation: a kill -9 or a
full disk mid-write leaves the previous one in place. Leftovers of a killed writer are removed at the next
start; the study and the checkpoint cache live beside the generations and are never part of one.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoaccel.errors import AutoaccelError
from autoaccel.pids import alive

if TYPE_CHECKING:
    import optuna

    from autoaccel.finish import Summary

OUTPUTS = ("pareto.json", "recipe.yaml", "report.html", "model")
GENERATIONS = ".generations"
CURRENT = "current"
# Tests kill the writer at a named step to prove every kill point leaves one whole generation.
KILL_AT = "AUTOACCEL_TEST_KILL_AT"


def _fault_point(step: str) -> None:
    if os.environ.get(KILL_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)



class Generation:
    """A folder for one run's outputs, published (made current) in one atomic step."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.published = False
        # The writer's pid in the name (and its host in .writer): the next start removes a generation that is
        # not current only if its writer is dead, never another live run's generation in progress.
        self.id = f"{time.strftime('%Y%m%dT%H%M%S')}_{os.getpid()}_{secrets.token_hex(3)}"
        self.dir = out_dir / GENERATIONS / self.id
        try:
            self.dir.mkdir(parents=True)
            (self.dir / ".writer").write_text(socket.gethostname(), encoding="utf-8")
        except OSError as exc:
            raise _unwritable(out_dir, exc) from exc

    def path(self, name: str) -> Path:
        return self.dir / name

    def write(self, name: str, text: str) -> Path:
        """Write one output file of this generation (its folder is this writer's alone: no temp name needed)."""
        path = self.dir / name
        try:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.discard()
            raise _unwritable(self.out_dir, exc) from exc
        _fault_point(f"after:{name}")
        return path

    def publish(self) -> None:
        """Make this generation current in one atomic rename, then point the output names through it."""
        _fault_point("before:switch")
        previous = current(self.out_dir)
        link = _tmp_name(self.out_dir)
        try:
            os.symlink(Path(GENERATIONS) / self.id, link)
            os.replace(link, self.out_dir / CURRENT)
        except OSError as exc:
            link.unlink(missing_ok=True)
            self.discard()
            raise _unwritable(self.out_dir, exc) from exc
        self.published = True  # from here on it is the current generation: never discarded
        _fault_point("after:switch")
        try:
            for name in OUTPUTS:
                _point_through_current(self.out_dir, name)
            # The generation just superseded stays one more round: a reader that resolved its names a moment ago
            # still finds whole files there. Everything older goes.
            sweep(self.out_dir, spare=previous)
        except OSError as exc:
            raise AutoaccelError(f"--out: the outputs are complete under {self.out_dir / CURRENT}, but linking "
                                 f"{self.out_dir}/pareto.json and the others to them failed ({exc.strerror or exc})") from exc

    def public(self, export: dict[str, Any]) -> dict[str, Any]:
        """An export report naming its files as the user opens them (OUT/model/...), not inside this generation."""
        files = {k: str(self.out_dir / Path(v).relative_to(self.dir)) if Path(v).is_relative_to(self.dir) else v
                 for k, v in (export.get("files") or {}).items()}
        return {**export, "files": files} if files else dict(export)

    def discard(self) -> None:
        """Remove this generation unless it was published (then it is, or was, the user's outputs)."""
        if not self.published:
            shutil.rmtree(self.dir, ignore_errors=True)

    def adopt_model(self) -> None:
        """Carry the current generation's model/ into this one (``autoaccel report`` rebuilds the rest only)."""
        source = current(self.out_dir)
        if source is None or not (source / "model").is_dir():
            return
        try:
            shutil.copytree(source / "model", self.dir / "model", copy_function=_link_or_copy)
        except OSError as exc:
            self.discard()
            raise _unwritable(self.out_dir, exc) from exc


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # files of a published generation never change: sharing them is safe and free
    except OSError:
        shutil.copy2(src, dst)


def _point_through_current(out_dir: Path, name: str) -> None:
    """Make ``OUT/name`` a symlink to ``current/name`` (once; later generations switch through ``current``)."""
    path, target = out_dir / name, Path(CURRENT) / name
    if path.is_symlink() and Path(os.readlink(path)) == target:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # a real folder written by an older autoaccel: replaced once
    tmp = _tmp_name(out_dir)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def current(out_dir: Path) -> Path | None:
    """The folder of the current generation, or None before the first one."""
    link = out_dir / CURRENT
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def _tmp_name(out_dir: Path) -> Path:
    """A temporary name unique to this writer (two writers never share one)."""
    return out_dir / f".tmp.{os.getpid()}.{secrets.token_hex(4)}"


def _writer_alive(pid_text: str, host: str) -> bool:
    """Whether another live process on this host may still be writing."""
    return (pid_text.isdigit() and int(pid_text) != os.getpid() and host == socket.gethostname()
            and alive(int(pid_text)))


def sweep(out_dir: Path, spare: Path | None = None) -> list[str]:
    """Remove what killed writers left behind: generations that are not current (nor ``spare``), and temporary
    links. Those of another live writer on this host (a concurrent run on the same --out) are left alone."""
    removed: list[str] = []
    keep = current(out_dir)
    root = out_dir / GENERATIONS
    for gen in sorted(root.iterdir()) if root.is_dir() else []:
        if gen.resolve() in (keep, spare):
            continue
        # A generation a writer has just created may not hold its .writer file yet: judged as this host's, so
        # a live writer's fresh folder is never swept away under it (its pid is in the folder's name).
        try:
            host = (gen / ".writer").read_text(encoding="utf-8").strip() if (gen / ".writer").is_file() else socket.gethostname()
        except FileNotFoundError:
            continue  # another writer on this --out swept it between the listing and the read
        if _writer_alive(gen.name.split("_")[1] if gen.name.count("_") == 2 else "", host):
            continue
        shutil.rmtree(gen, ignore_errors=True)
        removed.append(gen.name)
    for tmp in out_dir.glob(".tmp.*") if out_dir.is_dir() else []:
        if not _writer_alive(tmp.name.split(".")[2], socket.gethostname()):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def _unwritable(out_dir: Path, exc: OSError) -> AutoaccelError:
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or type(exc).__name__)
    return AutoaccelError(f"--out: cannot write the outputs under {out_dir} ({why}); the last complete outputs there, "
                          "if any, are untouched (the study keeps every trial: `autoaccel report --out` rebuilds them)")


def publish(gen: Generation, summary: "Summary", study: "optuna.Study", meta: dict[str, Any]) -> Path:
    """Write pareto.json, recipe.yaml and report.html into ``gen`` (its model/ is already there, if any), then
    make it current. Paths in ``meta['export']`` name the files as the user opens them (OUT/model/...)."""
    from autoaccel.finish import output_texts
    from autoaccel.options import mask_url
    from autoaccel.outputs._report import build_report

    meta = {**meta, "export": gen.public(meta.get("export") or {}), "generation": gen.id}
    if meta.get("storage"):
        meta["storage"] = mask_url(str(meta["storage"]))  # whoever called, no output carries a password
    _fault_point("after:model")
    for name, text in output_texts(summary, meta).items():
        gen.write(name, text)
    gen.write("report.html", build_report(study, summary, meta))
    gen.publish()
    return gen.out_dir / "report.html"

