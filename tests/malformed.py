"""A hand-made corpus of malformed HTTP requests for fuzzing driftloop's services: wrong types, huge
numbers, NaN/Infinity, deep nesting, invalid UTF-8, wrong content types, huge headers, duplicate keys.

Deterministic (a seeded generator), so a failure is the same failure on the next run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.method} {self.path[:80]} {dict(list(self.headers.items())[:4])} {self.body[:80]!r}"


ODD_VALUES = [None, True, -1, 0, 2 ** 63, -(2 ** 70), 1e308, "", "x" * 10_000, "\u2028</script>", [], {},
              [[[[1]]]], {"a": {"b": None}}, "NaN", 1.5, "1" * 400]
ODD_BODIES = [
    b"", b"{", b"}", b"[]", b"{}", b"null", b"0", b'"x"', b"\xff\xfe\xfd", b"\xef\xbb\xbf{}", b"{\"a\":\xc3\x28}",
    b"1" * 5000, b"[" + b"1" * 5000 + b"]", b"1e400", b"[-1e400]", b"NaN", b"[Infinity]", b'{"a": -Infinity}',
    b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"[" * 100_000,
    b'{"a": 1, "a": 2}', b"\x00" * 100, b"{'single': 'quotes'}", b'{"a": 1,}', b"[1, 2, 3" ,
]
WRONG_CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                       "application/xml", "", "application/jsonx", "text/json"]


def _mutate(value, rng: random.Random, depth: int = 0):
    """``value`` with one field, somewhere inside, replaced by an odd value or removed."""
    if isinstance(value, dict) and value and depth < 4:
        key = rng.choice(list(value))
        out = dict(value)
        choice = rng.random()
        if choice < 0.15:
            del out[key]
        elif choice < 0.25:
            out[f"unknown{rng.randint(0, 9)}"] = rng.choice(ODD_VALUES)
        elif choice < 0.6 and isinstance(value[key], dict | list):
            out[key] = _mutate(value[key], rng, depth + 1)
        else:
            out[key] = rng.choice(ODD_VALUES)
        return out
    if isinstance(value, list) and value and depth < 4:
        out = list(value)
        i = rng.randrange(len(out))
        out[i] = _mutate(out[i], rng, depth + 1) if rng.random() < 0.6 else rng.choice(ODD_VALUES)
        if rng.random() < 0.1:
            out = out * 3
        return out
    return rng.choice(ODD_VALUES)


def body_probes(method: str, path: str, valid: dict | list, n_mutations: int, seed: int,
                headers: dict[str, str] | None = None) -> Iterator[Probe]:
    """Malformed bodies for one JSON endpoint: the fixed odd bodies, wrong content types on a valid body,
    and ``n_mutations`` seeded mutations of ``valid``."""
    base = {**JSON, **(headers or {})}
    for body in ODD_BODIES:
        yield Probe(method, path, body, base)
    good = json.dumps(valid).encode()
    for content_type in WRONG_CONTENT_TYPES:
        yield Probe(method, path, good, {**base, "content-type": content_type})
    yield Probe(method, path, good, {**base, "x-huge": "h" * 60_000})  # one header larger than servers allow
    yield Probe(method, path, good, {**base, **{f"x-many-{i}": "v" for i in range(150)}})
    rng = random.Random(seed)
    for _ in range(n_mutations):
        yield Probe(method, path, json.dumps(_mutate(valid, rng), allow_nan=True).encode(), base)


def path_probes(template: str, values: list[str], query: list[str] = ()) -> Iterator[Probe]:
    """GETs with odd path segments and query strings; ``template`` has one ``{}``."""
    odd = ["..", "%2e%2e", "..%2F..%2Fregistry", "%00", "a" * 5000, "%ff%fe", "churn%2F..%2F..", "ü", "window-1.html",
           "window-000001.html%00.txt", "%2e%2e%2fwindow-000001.html"]
    for value in [*values, *odd]:
        yield Probe("GET", template.format(value))
    for q in query:
        yield Probe("GET", f"{template.format(values[0])}?{q}")
