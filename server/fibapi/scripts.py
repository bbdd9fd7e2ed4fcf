"""The API's Lua scripts, each called with named inputs.

Each script's file names its inputs in two header lines, `-- KEYS: a b c`
and `-- ARGV: d e f`; Script reads them, and a call gives each by name
(anything after the named ARGV is the script's variable part, `rest`). A
name given that the file does not declare, or one it declares and the call
leaves out, is an error at once, not a script reading the wrong slot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import Redis
from redis.client import Pipeline

from . import contract

HERE = Path(__file__).parent

# Put in front of the scripts that queue work (queue.lua, recompute.lua):
# admission and running RQ's recorded commands, and the constants they need.
ADMISSION_PRELUDE = (
    f"local REFUSALS, REFUSALS_MAXLEN = '{contract.REFUSALS_STREAM}', {contract.REFUSALS_MAXLEN}\n"
    f"local TIMELINE_FIELD = '{contract.TIMELINE_FIELD}'\n" + (HERE / "admission.lua").read_text()
)


def declared(text: str, what: str) -> tuple[str, ...]:
    """The names a script's `-- KEYS:` or `-- ARGV:` header line declares."""
    found = re.search(rf"^-- {what}:(.*)$", text, re.MULTILINE)
    if found is None:
        raise ValueError(f"the script declares no {what} (a line '-- {what}: name ...')")
    return tuple(found.group(1).split())


class Script:
    def __init__(self, redis: Redis, name: str, prelude: str = "") -> None:
        text = (HERE / name).read_text()
        self.name = name
        self.keys = declared(text, "KEYS")
        self.args = declared(text, "ARGV")
        self._script = redis.register_script(prelude + text)

    def __call__(
        self,
        keys: Mapping[str, Any],
        args: Mapping[str, Any],
        rest: Sequence[Any] = (),
        client: Redis | Pipeline | None = None,
    ) -> Any:
        for given, wanted, what in ((keys, self.keys, "KEYS"), (args, self.args, "ARGV")):
            if set(given) != set(wanted):
                raise TypeError(f"{self.name} takes {what} {', '.join(wanted)}; given {', '.join(given)}")
        return self._script(
            keys=[keys[name] for name in self.keys], args=[*(args[name] for name in self.args), *rest], client=client
        )
