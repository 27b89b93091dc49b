"""Reading an HTML page as a browser's parser would, to tell data from script."""

from __future__ import annotations

import json
from html.parser import HTMLParser

# A value a request or a table could carry that, written raw into a page, would end Evidently's data
# <script> and run its own; it marks where it lands.
MARKER = "driftloop-injected"
PAYLOAD = f"</script><script>document.title='{MARKER}'</script><!--\u2028"


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.outside: list[str] = []  # text and attribute values outside <script>
        self._in_script = False

    def handle_starttag(self, tag, attrs) -> None:
        self.outside += [v or "" for _, v in attrs]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.outside.append(data)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def assert_payload_is_inert_data(document: str, payload: str = PAYLOAD) -> None:
    """The page's scripts are Evidently's own: the payload is in the first one's JSON, whole, as a string,
    and nowhere else — no script element of its own, no text or attribute outside the data."""
    parser = _Scripts()
    parser.feed(document)
    parser.close()
    data, *code = parser.scripts
    assert not [s for s in code if MARKER in s], "the payload became a script of its own"
    assert not [t for t in parser.outside if MARKER in t], "the payload escaped into the page"
    statements = [line.strip() for line in data.strip().splitlines()]
    values = [json.loads(s.split(" = ", 1)[1].removesuffix(";")) for s in statements]
    assert payload in [s for v in values for s in _strings(v)], "the payload is not in the report's data"


def assert_no_script(document: str) -> None:
    """A page of driftloop's own (no script of its own): no script element, and the payload's marker in no
    attribute value a browser could act on; hostile values appear, if at all, as text."""
    parser = _Scripts()
    parser.feed(document)
    parser.close()
    assert parser.scripts == [] and "<script" not in document.lower(), "the page has a script element"
    attributes = _Attributes()
    attributes.feed(document)
    attributes.close()
    assert not [v for v in attributes.values if MARKER in v], "the payload landed in an attribute"


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.values += [v or "" for _, v in attrs]
