"""The fork server that workers are forked from: what it has imported before it forks one."""

from __future__ import annotations

import sys
from typing import Any

# Only the standard library at the top: a worker forked from the fork server imports this module to run
# _modules_at_start, and what it imports must not be mistaken for what the fork server preloaded.


def _modules_at_start(results: Any) -> None:
    results.put(sorted(sys.modules))


def test_workers_start_with_their_code_and_the_parser_plugins_already_imported() -> None:
    from interestd.forking import fork_context
    from interestd.registry import import_parser_modules

    plugins = import_parser_modules()
    assert "interestd_parsers.vk" in plugins and "interestd_parsers.site_form" in plugins
    context = fork_context()
    results = context.SimpleQueue()
    process = context.Process(target=_modules_at_start, args=(results,))
    process.start()
    loaded = set(results.get())
    process.join(30)
    assert process.exitcode == 0
    assert set(plugins) <= loaded
    assert {"interestd.workers", "interestd.evaluation", "phonenumbers"} <= loaded
