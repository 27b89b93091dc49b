"""How every ``driftloop`` command talks: one-line errors, documented exit codes, defaults in ``--help``.

A usage mistake (argparse's own too) is one line on stderr, ``driftloop: error: …``, and exit code
:data:`~driftloop.errors.EXIT_USAGE`; a command that ran and failed exits
:data:`~driftloop.errors.EXIT_FAILURE`. Every parser is a :class:`DriftloopParser`, so subcommands
inherit both behaviours.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import NoReturn

from driftloop.errors import EXIT_FAILURE, EXIT_USAGE

EXIT_OK = 0


def one_line(message: str) -> str:
    """The message on one line (a multi-line exception text joined with '; ')."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    """Prints ``driftloop: error: <message>`` as one line on stderr and returns ``code`` (for ``return fail(…)``)."""
    print(f"driftloop: error: {one_line(message)}", file=sys.stderr)
    return code


def exit_codes(failure: str = "the command failed while running", *more: tuple[int, str],
               success: str = "success") -> str:
    """A command's epilog: what each exit code means.

    Args:
        failure: What exit code 1 means for this command.
        more: Further (code, meaning) pairs, e.g. ``driftloop drift``'s.
        success: What exit code 0 means.
    """
    rows = [(EXIT_OK, success), (EXIT_FAILURE, failure),
            (EXIT_USAGE, "usage error: an unknown option, a bad value, or a file, registry, model or version "
                         "that does not exist"), *more]
    rows.sort()
    return "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in rows)


class HelpFormatter(argparse.HelpFormatter):
    """Keeps the epilog's layout and appends each option's default (unless its help already names one).

    Defaults come from the parser, which takes them from their one definition (``CTParams``, ``DriftConfig``,
    …), so the help never restates a number.
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # Each line filled on its own: descriptions wrap, the epilog's exit-code lines keep their layout.
        lines = []
        for line in text.splitlines():
            lead = indent + line[:len(line) - len(line.lstrip())]
            hanging = "   " if line[:1].isspace() else ""  # under an exit code's meaning
            lines.append(textwrap.fill(line.strip(), width, initial_indent=lead, subsequent_indent=lead + hanging)
                         if line.strip() else "")
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not shows_default(action) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)".lstrip()


def shows_default(action: argparse.Action) -> bool:
    """Whether an option has a default worth showing (not unset, off, empty, or help/version)."""
    default = action.default
    unset = default is None or default is False or default is argparse.SUPPRESS or default in ("", [])
    return not unset and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))


class DriftloopParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (with a pointer to ``--help``), exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and action.option_strings and shows_default(action):
            action.help = "(default: %(default)s)"  # argparse prints nothing for an option without help
        return action

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("driftloop").strip()
        where = f"{command}: " if command else ""
        sys.exit(fail(f"{where}{message} (see '{self.prog} --help')", EXIT_USAGE))
