"""Load a script (scripts are not a package) or a test module by path, for the script tests. A plain
module with a name no other test folder uses, so test files import it directly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_path(name: str, path: Path) -> ModuleType:
    """Execute ``path`` as the module ``name`` (registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as the module ``fsqtok_script_<name>``."""
    return load_path(f"fsqtok_script_{name}", ROOT / "scripts" / f"{name}.py")
