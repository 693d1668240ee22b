"""The parser registry: parsers found through the `interestd.parsers` entry points, validated, picked per message."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, runtime_checkable

from interestd.card import CardDraft
from interestd.errors import ConfigError
from interestd.message import ParsedMessage

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "interestd.parsers"
FALLBACK_PARSER = "email"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")


@runtime_checkable
class Parser(Protocol):
    """A source parser: a pure function of a ParsedMessage (no network, database, clock or files)."""

    name: ClassVar[str]
    priority: ClassVar[int]
    version: ClassVar[str]

    def match(self, msg: ParsedMessage) -> bool: ...

    def parse(self, msg: ParsedMessage) -> CardDraft: ...


@dataclass(frozen=True)
class Pick:
    """The parser chosen for a message, and every parser whose match() said yes (best first)."""

    parser: Parser
    matched: tuple[str, ...]
    match_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Registry:
    """Parsers in the order they are tried: highest priority first, the plain `email` parser last."""

    parsers: tuple[Parser, ...]
    fallback: Parser

    def pick(self, msg: ParsedMessage, *, every_match: bool = True) -> Pick:
        """The first parser whose match() says yes. With every_match (for `explain`), the others are asked too;
        the pipeline needs only the first."""
        matched: list[Parser] = []
        errors: list[str] = []
        for parser in self.parsers:
            try:
                if parser.match(msg):
                    matched.append(parser)
                    if not every_match:
                        break
            except Exception as exc:  # a broken match() must not stop the others from being tried
                errors.append(f"{parser.name}.match failed: {type(exc).__name__}: {exc}")
        chosen = matched[0] if matched else self.fallback
        names = tuple(p.name for p in matched)
        if chosen is self.fallback and self.fallback.name not in names:
            names = (*names, self.fallback.name)
        return Pick(chosen, names, tuple(errors))

    def get(self, name: str) -> Parser | None:
        for parser in (*self.parsers, self.fallback):
            if parser.name == name:
                return parser
        return None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parsers] + [self.fallback.name]


def discover() -> list[Parser]:
    """Instantiate every parser registered in the entry-point group; broken plugins are logged and left out."""
    found: list[Parser] = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            loaded = entry.load()
            parser = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:
            log.error("parser plugin %s (%s) failed to load: %s: %s", entry.name, entry.value, type(exc).__name__, exc)
            continue
        problem = validate(parser)
        if problem:
            log.error("parser plugin %s (%s) is not usable: %s", entry.name, entry.value, problem)
            continue
        found.append(parser)
    return found


def import_parser_modules() -> list[str]:
    """Import the module of every parser registered in the entry-point group, quietly (discover() is where a
    broken plugin is reported); returns the modules imported."""
    imported = []
    for module in sorted({entry.module for entry in entry_points(group=ENTRY_POINT_GROUP)}):
        try:
            importlib.import_module(module)
        except Exception:  # reported by discover(), in the process that builds the registry
            continue
        imported.append(module)
    return imported


def validate(parser: object) -> str | None:
    """Why `parser` cannot be used, or None when it is a proper Parser."""
    name = getattr(parser, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        return f"name must be lower-case letters, digits and _ (got {name!r})"
    if not isinstance(getattr(parser, "priority", None), int):
        return "priority must be an integer"
    if not isinstance(getattr(parser, "version", None), str):
        return "version must be a string"
    for method in ("match", "parse"):
        if not callable(getattr(parser, method, None)):
            return f"has no {method}() method"
    return None


def build_registry(parsers: Iterable[Parser], *, disabled: Iterable[str] = ()) -> Registry:
    """Order the parsers, drop disabled and duplicate names, and set the plain `email` parser apart as fallback."""
    disabled_names = set(disabled)
    by_name: dict[str, Parser] = {}
    for parser in parsers:
        if parser.name in disabled_names and parser.name != FALLBACK_PARSER:
            continue
        if parser.name in by_name:
            log.error("two parsers are named %r; keeping the first (%s)", parser.name, type(by_name[parser.name]))
            continue
        by_name[parser.name] = parser
    fallback = by_name.pop(FALLBACK_PARSER, None)
    if fallback is None:
        raise ConfigError("the plain `email` parser is missing: the interestd installation is incomplete")
    ordered = sorted(by_name.values(), key=lambda p: (-p.priority, p.name))
    return Registry(tuple(ordered), fallback)


def load_registry(extra: Iterable[Parser] = (), *, disabled: Iterable[str] = ()) -> Registry:
    """The registry of installed parsers plus `extra` ones (custom parsers from the config)."""
    installed = discover()
    builtin = {p.name for p in installed}
    custom = list(extra)
    for parser in custom:
        if parser.name in builtin:
            raise ConfigError(f"custom_parsers: the name {parser.name!r} is taken by an installed parser")
    registry = build_registry([*custom, *installed], disabled=disabled)
    log.debug("parsers: %s", ", ".join(registry.names))
    return registry
