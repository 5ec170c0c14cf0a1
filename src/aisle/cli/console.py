"""How the CLI says an error: the message is text, never Rich markup, so a message that names a `[table]` or an
item id in brackets is printed as written (markup would swallow `[search]`)."""

from __future__ import annotations

from rich.text import Text


def error_line(message: object) -> Text:
    """`error: <message>` with the prefix in red and the message verbatim."""
    return Text.assemble(("error:", "red"), " ", str(message))
