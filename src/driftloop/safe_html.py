"""Keeping data embedded in an HTML page data: no value from a request or a table may end up as markup.

Evidently's standalone report puts the whole report, category values and column names included, into
a ``<script>`` block as JSON (``var metric_… = {...};``). ``json.dumps`` leaves ``</script>`` and
``<!--`` inside strings as they are, so a category value such as ``</script><script>…`` sent in an
inference request would close Evidently's block and run as script in whoever opens the report. Here the
data block is rewritten so that ``<``, ``>`` and ``&`` (and the JavaScript line separators U+2028/2029)
appear only as ``\\u`` escapes: the same strings to JavaScript, never markup to the HTML parser.
"""

from __future__ import annotations

import re

from driftloop.errors import DriftloopError

# Evidently's data block (evidently.legacy.utils.dashboard.file_html_template): the first <script> of
# the page, one `var NAME = JSON;` statement per line. json.dumps writes no raw line breaks (it escapes
# them inside strings), so each statement is one line whatever the data holds.
_DATA_BLOCK = re.compile(r"<script>\n((?:[ \t]*var [A-Za-z_$][\w$]* = [^\n]*;\n)+)[ \t]*</script>")
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                "\u2028": "\\u2028", "\u2029": "\\u2029"})


class UnsafeReportError(DriftloopError):
    """A report whose embedded data cannot be made inert; it is not written."""


def script_safe_json(text: str) -> str:
    """JSON text that can sit inside a ``<script>`` element: only inside strings can ``<`` occur in JSON,
    and there ``\\u003c`` means the same character."""
    return text.translate(_SCRIPT_UNSAFE)


def neutralise_evidently_data(document: str) -> str:
    """Evidently's standalone HTML with its embedded data made inert (see the module docstring).

    Raises:
        UnsafeReportError: the page does not have the layout of Evidently's report (a newer Evidently,
            say): better no report than one that might run injected script.
    """
    first_script = document.find("<script")
    match = _DATA_BLOCK.match(document, first_script) if first_script >= 0 else None
    if match is None:
        raise UnsafeReportError("Evidently's report does not have the expected data block; "
                                "refusing to write a report whose data could run as script")
    data = script_safe_json(match.group(1))
    return document[:match.start(1)] + data + document[match.end(1):]
