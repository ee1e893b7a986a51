"""Finds the strategy classes in the `strategies` package (where the examples live and users put theirs) and
describes them for the API."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable, Mapping
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
    classes = [
        obj
        for module in modules
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Strategy)
        and obj is not Strategy
        and obj.__module__ == module.__name__
        and obj.__dict__.get("name")
    ]
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
