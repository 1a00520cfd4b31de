"""pluggy's markers for project ``autoaccel``: what a plugin decorates its hook implementations with."""

from __future__ import annotations

import pluggy

PROJECT = "autoaccel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
