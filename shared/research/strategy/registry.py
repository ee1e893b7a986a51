"""Finds the strategy classes in the `strategies` package (where the examples live and users put theirs) and in
strategy folders (LH_STRATEGY_DIRS: loose `*.py` files, each imported on its own), and describes them for the API.
`import_fresh` imports one file as a new module object, which hot reload uses: a failed import leaves the classes
already loaded untouched."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from shared.research.strategy.base import Strategy, StrategyParams

STRATEGY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class StrategyDefinitionError(ValueError):
    """A strategy class is malformed or two strategies claim the same name."""


def check_strategy_class(cls: type[Strategy]) -> None:
    """Refuse a strategy class the API could not present or validate against."""
    if not STRATEGY_NAME.match(cls.name or ""):
        raise StrategyDefinitionError(
            f"{cls.__module__}.{cls.__qualname__}: name {cls.name!r} must match {STRATEGY_NAME.pattern}"
        )
    if not cls.title or not cls.description:
        raise StrategyDefinitionError(f"strategy {cls.name!r} needs a title and a description")
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, StrategyParams)):
        raise StrategyDefinitionError(f"strategy {cls.name!r}: Params must subclass StrategyParams")


def strategies_by_name(classes: Iterable[type[Strategy]]) -> dict[str, type[Strategy]]:
    found: dict[str, type[Strategy]] = {}
    for cls in classes:
        check_strategy_class(cls)
        other = found.get(cls.name)
        if other is not None and other is not cls:
            raise StrategyDefinitionError(
                f"strategy name {cls.name!r} is used by both {other.__module__}.{other.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}"
            )
        found[cls.name] = cls
    return dict(sorted(found.items()))


def discover_strategies(package: str = "strategies") -> dict[str, type[Strategy]]:
    """Import every module of `package` and return its strategy classes by name.

    A class counts when it subclasses `Strategy`, is defined in that module (not merely imported there) and
    sets a `name`. A module that fails to import, or a malformed strategy, raises: a service that silently
    dropped a user's strategy would be harder to debug than one that refuses to start.
    """
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        modules.append(importlib.import_module(info.name))
    return strategies_by_name(cls for module in modules for cls in strategy_classes(module))


def strategy_classes(module: ModuleType) -> list[type[Strategy]]:
    """The strategy classes `module` defines (not those it merely imports) that set a `name`."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj is not Strategy
        and obj.__module__ == module.__name__
        and obj.__dict__.get("name")
    ]


def package_files(package: str = "strategies") -> dict[Path, str]:
    """The source files of an (imported or importable) package's modules, with the module name each is imported
    under (`strategies/dual_ma.py` -> `strategies.dual_ma`); the packages' own `__init__.py` are left out."""
    root = importlib.import_module(package)
    files: dict[Path, str] = {}
    for base in map(Path, root.__path__):
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__" or any(not p.isidentifier() for p in parts):
                continue
            files[path.resolve()] = ".".join((package, *parts))
    return files


def folder_files(dirs: Sequence[Path]) -> dict[Path, str]:
    """The strategy files of strategy folders: each folder's own `*.py` (not those starting with `_` or `.`), with a
    module name of its own (the folder's hash and the file's stem), so a file named like an installed module
    (`json.py`) shadows nothing and two folders may hold files of the same name."""
    files: dict[Path, str] = {}
    for folder in dirs:
        base = folder.resolve()
        tag = hashlib.sha256(str(base).encode()).hexdigest()[:8]
        for path in sorted(base.glob("*.py")):
            if path.name.startswith(("_", ".")):
                continue
            stem = re.sub(r"\W", "_", path.stem)
            files[path] = f"lh_strategy_dir_{tag}_{stem}"
    return files


def import_fresh(path: Path, module_name: str, source: bytes | None = None) -> ModuleType:
    """Import `path` as a new module object named `module_name` (compiled from `source` when given: the bytes the
    caller read, so what runs is what it hashed). On success the new module replaces any older one in
    `sys.modules` (a later import of the name gets the current code); on failure the older one stays there and the
    error is raised. The classes of an older module object are never changed."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise ImportError(f"{path} is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    code = compile(path.read_bytes() if source is None else source, str(path), "exec", dont_inherit=True)
    previous = sys.modules.get(module_name)
    # in sys.modules while it runs, as an import does: pydantic and dataclasses look their annotations up there
    sys.modules[module_name] = module
    try:
        # what an import does (from the bytes the caller read, not a cached .pyc of another version of the file); the
        # files are the operator's own strategy folders, never anything a request brought
        exec(code, module.__dict__)  # noqa: S102
    except BaseException:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise
    return module


def discover_folders(dirs: Sequence[Path]) -> dict[str, type[Strategy]]:
    """The strategies of the files in strategy folders (LH_STRATEGY_DIRS). As `discover_strategies`, a file that
    fails to import or a malformed strategy raises, and so does a folder that does not exist (a typo in the setting
    would otherwise drop its strategies without a word)."""
    for folder in dirs:
        if not folder.is_dir():
            raise StrategyDefinitionError(f"strategy folder {folder} (LH_STRATEGY_DIRS) is not a folder")
    classes: list[type[Strategy]] = []
    for path, module_name in folder_files(dirs).items():
        classes.extend(strategy_classes(import_fresh(path, module_name)))
    return strategies_by_name(classes)


class StrategyInfo(BaseModel):
    """How the API presents a strategy: its parameters as a JSON schema."""

    name: str
    title: str
    description: str
    parameters: dict[str, Any]


def describe(cls: type[Strategy]) -> StrategyInfo:
    return StrategyInfo(name=cls.name, title=cls.title, description=cls.description, parameters=cls.parameter_schema())


def describe_all(strategies: Mapping[str, type[Strategy]]) -> list[StrategyInfo]:
    return [describe(cls) for cls in strategies.values()]
