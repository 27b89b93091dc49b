"""Tables read chunk by chunk and written atomically, at a local path or an ``s3://`` URI.

Reading never holds the whole table: Parquet is read a row group at a time (cut into ``chunk_rows``), CSV
through pandas' chunked reader. An ``s3://`` table is streamed to a temporary file first (S3 has no cheap
seek for Parquet's footer-first reads).

Writing goes to a temporary file beside the destination, renamed into place once complete; an ``s3://``
destination is a temporary local file uploaded at the end in one PUT or one multipart upload. Either way a
reader sees the whole table or none of it, never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from driftloop import storage
from driftloop.data import CSV, PARQUET, table_format
from driftloop.errors import DataError

_COUNT_BLOCK = 1 << 20


@contextlib.contextmanager
def local_copy(uri: str, s3: storage.S3Settings | None = None) -> Iterator[Path]:
    """A local path holding the table at ``uri``: the file itself, or a temporary download of an S3 object.

    Raises:
        DataError: the file or object does not exist or cannot be read.
    """
    if not storage.is_s3_uri(uri):
        path = Path(uri.removeprefix("file://"))
        if not path.exists():
            raise DataError(f"file not found: {path}")
        if path.is_dir():
            raise DataError(f"expected a file, got a directory: {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="driftloop-table-") as tmp:
        yield storage.download_file(uri, Path(tmp) / Path(storage.split_s3_uri(uri)[1]).name, s3)


@dataclass(frozen=True)
class TableReader:
    """One table on local disk, read in chunks of at most ``chunk_rows`` rows.

    Attributes:
        path: The file.
        uri: Where the user said the table is (named in errors).
        kind: :data:`~driftloop.data.CSV` or :data:`~driftloop.data.PARQUET`.
        columns: The table's column names, in file order.
        rows: Its row count (for CSV, its lines after the header: a quoted value spanning lines counts twice).
    """

    path: Path
    uri: str
    kind: str
    columns: list[str]
    rows: int

    @classmethod
    def open(cls, path: Path, uri: str) -> TableReader:
        """Reads the header (CSV) or the footer (Parquet) only.

        Raises:
            DataError: not a table of its kind, or a table without rows.
        """
        kind = table_format(uri)
        try:
            if kind == CSV:
                columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
                rows = _count_lines(path) - 1
            else:
                import pyarrow.parquet as pq

                metadata = pq.ParquetFile(path).metadata
                columns, rows = list(metadata.schema.to_arrow_schema().names), metadata.num_rows
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
            raise DataError(f"cannot parse {uri} as {kind}: {_first_line(exc)}") from None
        if rows <= 0:
            raise DataError(f"no rows in {uri}")
        return cls(path, uri, kind, columns, rows)

    def chunks(self, columns: Sequence[str], chunk_rows: int, text: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
        """The table's ``columns`` in chunks of at most ``chunk_rows`` rows, in file order.

        Args:
            text: CSV columns read as text, whatever they look like: categories and ids keep the file's
                spelling ("007" stays "007"; a chunk with a missing value does not turn 7 into "7.0").

        Raises:
            DataError: the file cannot be parsed further on.
        """
        if chunk_rows < 1:
            raise DataError(f"chunk rows must be at least 1, not {chunk_rows}")
        try:
            if self.kind == CSV:
                dtypes = {name: str for name in text if name in columns}
                with pd.read_csv(self.path, usecols=list(columns), dtype=dtypes, chunksize=chunk_rows) as reader:
                    for chunk in reader:
                        yield chunk[list(columns)]
            else:
                import pyarrow.parquet as pq

                for batch in pq.ParquetFile(self.path).iter_batches(batch_size=chunk_rows, columns=list(columns)):
                    yield batch.to_pandas()
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
            raise DataError(f"cannot parse {self.uri} as {self.kind}: {_first_line(exc)}") from None


def _count_lines(path: Path) -> int:
    """Newline-terminated lines (and a last unterminated one), read in blocks: bounded memory."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(_COUNT_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TableWriter:
    """Writes a table chunk by chunk and publishes it whole on :meth:`commit` (or nothing, on :meth:`discard`).

    Parquet chunks become row groups with the first chunk's schema; CSV chunks are appended under one header.
    """

    def __init__(self, uri: str, kind: str | None = None, s3: storage.S3Settings | None = None) -> None:
        self.uri = uri
        self.kind = kind or table_format(uri)
        if self.kind not in (CSV, PARQUET):
            raise DataError(f"unknown table format '{self.kind}': use {CSV} or {PARQUET}")
        self.s3 = s3
        self.rows = 0
        self._target: Path | None = None  # the local destination; None for S3
        if storage.is_s3_uri(uri):
            storage.split_s3_uri(uri)  # a malformed URI fails before any work is done
            handle, name = tempfile.mkstemp(prefix="driftloop-scored-")
            os.close(handle)
            self._tmp = Path(name)
        else:
            target = Path(uri.removeprefix("file://"))
            if target.is_dir():
                raise DataError(f"output {target} is a directory; give a file path")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"cannot write {target}: {exc.strerror}") from None
            self._target, self._tmp = target, target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._parquet = None  # pyarrow.parquet.ParquetWriter, opened with the first chunk's schema
        self._csv = None

    def write(self, frame: pd.DataFrame) -> None:
        """Appends one chunk."""
        try:
            if self.kind == PARQUET:
                self._write_parquet(frame)
            else:
                if self._csv is None:
                    self._csv = open(self._tmp, "w", newline="")  # noqa: SIM115 - closed by commit/discard
                frame.to_csv(self._csv, index=False, header=self.rows == 0)
        except OSError as exc:
            raise DataError(f"cannot write {self.uri}: {exc.strerror or exc}") from None
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
        else:
            try:
                table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise DataError(f"cannot write {self.uri}: rows {self.rows + 1}… do not fit the types of the "
                                f"first chunk ({_first_line(exc)})") from None
        self._parquet.write_table(table)

    def commit(self) -> str:
        """Publishes the table at its URI; returns where it is."""
        self._close()
        try:
            if self._target is None:
                return storage.upload_file(self._tmp, self.uri, self.s3)
            os.replace(self._tmp, self._target)
            return str(self._target)
        except OSError as exc:
            raise DataError(f"cannot write {self.uri}: {exc.strerror}") from None
        finally:
            self._tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        """Leaves no trace: the destination keeps whatever it held before."""
        with contextlib.suppress(Exception):
            self._close()
        self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._csv is not None:
            self._csv.close()
            self._csv = None
