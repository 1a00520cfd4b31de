"""Rebuild pydoc_corpus.txt: the docstrings of a fixed list of Python standard-library modules, as plain prose.

The text is Python's own documentation (Python Software Foundation License, see LICENSE-PSF.txt), so it ships
with the examples and needs no download. The output depends on the Python version that runs this; the committed
file was made with CPython 3.11.

    python examples/data/make_corpus.py
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

MODULES = ("argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime", "decimal", "email",
           "fractions", "functools", "heapq", "http.client", "inspect", "ipaddress", "itertools", "json", "logging",
           "pathlib", "pickle", "random", "re", "shutil", "statistics", "string", "subprocess", "tarfile", "textwrap",
           "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile")
LIMIT = 400_000  # characters


def docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    found = [inspect.getdoc(module) or ""]
    for _, obj in sorted(vars(module).items()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        found.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            found.extend(inspect.getdoc(m) or "" for _, m in sorted(vars(obj).items()) if inspect.isfunction(m))
    return found


def main() -> None:
    seen, paragraphs = set(), []
    for name in MODULES:
        for doc in docstrings(name):
            for para in re.split(r"\n\s*\n", doc):
                text = " ".join(para.split())
                # Prose only: code examples (>>>) and short fragments are left out.
                if len(text) > 60 and ">>>" not in text and text not in seen:
                    seen.add(text)
                    paragraphs.append(text)
    out = "\n".join(paragraphs)[:LIMIT]
    Path(__file__).with_name("pydoc_corpus.txt").write_text(out + "\n", encoding="utf-8")
    print(f"{len(out):,} characters, {len(out.split()):,} words")


if __name__ == "__main__":
    main()
