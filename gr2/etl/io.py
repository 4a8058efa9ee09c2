"""Reading raw files as (file, line, raw) records, on Spark executors.

Each record keeps its file and 1-based line number, so a quarantined record can be found again in its
source. UTF-8 text (plain or .gz) is read with Hadoop's line reader, split across tasks, numbered with
`zipWithIndex` per file (its partitions follow the file's order). Other encodings (MovieLens is
Latin-1) are decoded per whole file on an executor. A Parquet row is a record too (`read_parquet_rows`).
A reader whose files are local and at least as many as the cores (or small) parses them in Python
tasks of one file each that stream, cut and number the lines themselves and hand Spark Arrow batches
(`parse_text_files`): the same rows, without pickling each one into the JVM.
File names are taken literally: a name Hadoop would read as a glob, a list or a URI is read on the driver.
"""

from __future__ import annotations

import glob
import gzip
import re
from pathlib import Path

from pyspark.sql import types as T

LINES = T.StructType(
    [
        T.StructField("file", T.StringType(), False),
        T.StructField("line", T.LongType(), False),
        T.StructField("raw", T.StringType(), True),
    ]
)


class InputError(FileNotFoundError):
    pass


HIDDEN = "hidden or temporary file (its name, or a folder's on its path, starts with . or _)"
OUTSIDE = "symlink to a file outside the input folder"


def scan_files(path: str | Path, patterns: tuple[str, ...] = ("*",)) -> tuple[list[str], list[tuple[str, str]]]:
    """(files to read, [(file, reason)] skipped) under `path` (a file, a folder or a glob), both sorted.

    Skipped, each with its reason: names (or folders below `path`) starting with "." or "_" (`_SUCCESS`,
    `.crc` files, `_temporary/`), and symlinks that lead out of the input folder (a link is followed
    only to a file inside it)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [str(p.resolve())], []
    if p.is_dir():
        root = p.resolve()
        candidates = sorted({f for pat in patterns for f in p.rglob(pat) if f.is_file()})
    else:
        root, candidates = None, sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
    found, skipped = set(), {}
    for f in candidates:
        below = f.relative_to(p).parts if root is not None else (f.name,)
        target = f.resolve()
        if any(part.startswith((".", "_")) for part in below):
            skipped[str(f.absolute())] = HIDDEN
        elif root is not None and f.is_symlink() and not target.is_relative_to(root):
            skipped[str(f.absolute())] = OUTSIDE
        else:
            found.add(str(target))
    return sorted(found), sorted(skipped.items())


def list_files(path: str | Path, patterns: tuple[str, ...] = ("*",)) -> list[str]:
    """Files under `path` (a file, a folder or a glob) matching any of `patterns`, sorted (`scan_files`
    without the skipped ones)."""
    found, _ = scan_files(path, patterns)
    if not found:
        raise InputError(f"no input files matching {patterns} under {Path(path).expanduser()}")
    return found


def _decode_file(item, encoding: str):
    path, content = item
    name = path.split("/")[-1]
    if name.endswith(".gz"):
        content = gzip.decompress(content)
    text = content.decode(encoding, errors="replace")
    if text.startswith("\ufeff") and _is_utf8(encoding):
        text = text[1:]  # a UTF-8 byte-order mark is not part of line 1 (Hadoop's reader drops it too)
    local = local_path(path)
    for i, raw in enumerate(split_lines(text), start=1):
        yield (local, i, raw)


def local_path(file: str) -> str:
    """The file's path without a `file:` scheme."""
    return file[5:] if file.startswith("file:") else file


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig")


_TERMINATOR = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines as Hadoop's text reader cuts them (at \n, \r and \r\n only), so a file reads the same
    through either path. str.splitlines would also cut at \x85, \x0c, \x1c-\x1e and \u2028, which are
    ordinary characters inside a Latin-1 or UTF-8 record."""
    lines = _TERMINATOR.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


# Hadoop reads a path as a glob ([] {} * ?), splits a list at commas, and cannot hold a colon in a file
# name ("Relative path in absolute URI"). A file whose name has one of these is read on the driver
# instead, literally: x[1].jsonl beside x1.jsonl is its own file, not a pattern that matches the other.
HADOOP_UNSAFE = re.compile(r"[\[\]{}*?,:\\]")


def hadoop_unsafe(file: str) -> bool:
    """True when Hadoop would not read `file` literally (its name, or a folder's on its path, has one of
    HADOOP_UNSAFE's characters)."""
    return bool(HADOOP_UNSAFE.search(local_path(file)))


SMALL_FILE = 8 << 20  # bytes


def _size(file: str) -> int:
    try:
        return Path(local_path(file)).stat().st_size
    except OSError:
        return 0


_NOT_BLANK = re.compile(r"\S", re.ASCII)  # Java's \S: blank means only space, \t, \n, \x0b, \f, \r


def line_records(spark, files: list[str], encoding: str = "utf-8", skip_blank: bool = True):
    """An RDD of (file, line, raw) tuples, one per line of every file, still in Python: a reader that
    parses lines maps its parser over it in the same pass (`read_lines` makes it a DataFrame)."""
    sc = spark.sparkContext
    literal = [f for f in files if hadoop_unsafe(f)]
    hadoop = [f for f in files if f not in literal]
    rdds = []
    if hadoop and encoding.lower().replace("-", "") in ("utf8", "ascii"):
        # A small file is one split: zipWithIndex then needs no extra job to count the lines before it.
        for f in hadoop:
            text = sc.textFile(f, 1 if _size(f) < SMALL_FILE else None)
            rdds.append(text.zipWithIndex().map(lambda pair, f=f: (f, pair[1] + 1, pair[0])))
    elif hadoop:
        rdds.append(sc.binaryFiles(",".join(hadoop)).flatMap(lambda item: _decode_file(item, encoding)))
    for f in literal:
        rdds.append(sc.parallelize(list(_decode_file((f, Path(f).read_bytes()), encoding)), 1))
    rdd = sc.union(rdds) if len(rdds) > 1 else rdds[0] if rdds else sc.emptyRDD()
    # Many small files would be as many tasks in every later pass; records carry their file and line, so
    # their partitions can be merged (without a shuffle) into a few of up to ~128 MiB.
    target = max(2 * sc.defaultParallelism, -(-sum(_size(f) for f in files) // (128 << 20)))
    if rdd.getNumPartitions() > target:
        rdd = rdd.coalesce(target)
    if skip_blank:
        # Blank lines are layout, not records (trailing newlines, spacing between blocks); so are lines of
        # only whitespace (tabs too).
        rdd = rdd.filter(lambda rec: rec[2] is not None and _NOT_BLANK.search(rec[2]) is not None)
    return rdd


def read_lines(spark, files: list[str], encoding: str = "utf-8", skip_blank: bool = True):
    """A DataFrame (file, line, raw) with one row per line of every file."""
    return spark.createDataFrame(line_records(spark, files, encoding, skip_blank), LINES)


def read_parquet_rows(spark, file: str):
    """A DataFrame (file, line, raw) with one row per row of a Parquet file: line is the 1-based row index,
    raw the row as JSON (Spark's to_json: timestamps as ISO-8601, UTC).

    Spark's Parquet reader takes a path as a glob, so a file whose name Hadoop would not read literally
    (`hadoop_unsafe`) is decoded on the driver with pyarrow instead: the same column types (a timestamp
    without zone stays one), the same JSON. `file` is always the name as given."""
    from pyspark.sql import functions as F

    if hadoop_unsafe(file):
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark.sql.pandas.types import from_arrow_schema

        table = pq.ParquetFile(file).read()
        cols = table.column_names
        row = "__gr2_row__"
        table = table.append_column(row, pa.array(range(1, table.num_rows + 1), pa.int64()))
        df = spark.createDataFrame(table, from_arrow_schema(table.schema, prefer_timestamp_ntz=True))
        line = F.col(row)
    else:
        df = spark.read.parquet(file)
        cols = df.columns
        line = F.col("_metadata.row_index") + 1
    return df.select(
        F.lit(file).alias("file"),
        line.cast("long").alias("line"),
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in cols])).alias("raw"),
    )


# -- parsed records through Arrow ---------------------------------------------------------------------

CHUNK = 8 << 20  # bytes read at a time from one file
BATCH = 10_000  # parsed rows per Arrow batch


def arrow_readable(file: str) -> bool:
    """A file an executor's Python can open by its name: a local path (or file: URI), not a Hadoop URI."""
    return "://" not in file or file.startswith("file://")


def iter_lines(path: str, encoding: str = "utf-8", chunk: int = CHUNK):
    """(1-based line number, text) for every line of a local text file (.gz decompressed), streamed a
    chunk at a time, cut where `split_lines` (and Hadoop's reader) cuts: at \\n, \\r and \\r\\n. Bytes
    that are not `encoding` become U+FFFD; a UTF-8 byte-order mark is not part of line 1."""
    import codecs

    local = local_path(path)
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    opener = gzip.open if local.lower().endswith(".gz") else open
    n, pending, first = 0, "", True
    with opener(local, "rb") as fh:
        while True:
            data = fh.read(chunk)
            text = pending + decoder.decode(data, final=not data)
            if first and text:
                first = False
                if _is_utf8(encoding) and text.startswith("\ufeff"):
                    text = text[1:]
            if data:
                # The text after the last terminator waits for the next chunk; so does a final \r, which
                # may be the first half of a \r\n.
                held = text.endswith("\r")
                lines = _TERMINATOR.split(text[:-1] if held else text)
                pending = lines.pop() + ("\r" if held else "")
            else:
                lines = split_lines(text)
            for raw in lines:
                n += 1
                yield n, raw
            if not data:
                return


def parse_text_files(spark, files: list[str], encoding: str, parse, schema,
                     header_files: frozenset = frozenset(), skip_blank: bool = True):
    """A DataFrame of `schema`: `parse(file, line, raw)` (one row) applied to every line of every file,
    in Python tasks of one file each that read, cut and parse the lines and hand the rows to Spark as
    Arrow batches.

    This is `line_records` + `createDataFrame` without their two costs at millions of lines: every
    parsed row pickled field by field into the JVM, and zipWithIndex's job to count the lines of each
    split. Line numbers are counted as the file is read. The line 1 of a file in `header_files` (a CSV
    header) is not a record."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    names = list(files)

    def to_batch(rows):
        cols = list(zip(*rows))
        return pa.RecordBatch.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(cols, arrow_schema)], schema=arrow_schema)

    def task(batches):
        for batch in batches:
            for i in batch.column(0).to_pylist():
                f = names[i]
                rows = []
                for line, raw in iter_lines(f, encoding):
                    if (skip_blank and _NOT_BLANK.search(raw) is None) or (line == 1 and f in header_files):
                        continue
                    rows.append(parse(f, line, raw))
                    if len(rows) >= BATCH:
                        yield to_batch(rows)
                        rows = []
                if rows:
                    yield to_batch(rows)

    # One task per file (a partition each), biggest first, so the long ones start early.
    order = sorted(range(len(names)), key=lambda i: -_size(names[i]))
    tasks = spark.createDataFrame(spark.sparkContext.parallelize([(i,) for i in order], max(1, len(order))), "i long")
    return tasks.mapInArrow(task, schema)


def whole_file_tasks_fit(spark, files: list[str]) -> bool:
    """Whether one task per file keeps the cores busy: as many files as cores, or so little text that
    one core reads it quickly. A few big files are better split by Hadoop's reader (`line_records`)."""
    return all(arrow_readable(f) for f in files) and (
        len(files) >= spark.sparkContext.defaultParallelism or sum(_size(f) for f in files) <= 8 * SMALL_FILE)
