"""Imported by the fork server (forking.PRELOAD): the parser plugins' modules, found through their entry points,
so that every worker forked from it starts with them loaded."""

from interestd.registry import import_parser_modules

PRELOADED = import_parser_modules()
