#!/usr/bin/env python3
"""ClickHouse-compatible HTTP interface in front of chDB, the embedded ClickHouse engine.

Serves the part of ClickHouse's HTTP protocol used by the clients of the driver matrix
(tests/drivers: clickhouse-go v2, clickhouse-connect, @clickhouse/client, the JDBC driver,
the `clickhouse` Rust crate) and curl:

* the query in `?query=`, in the body, or in a multipart form (`query` field), where a
  body after a URL query continues it (which is how INSERT data travels);
* server-side query parameters (`param_<name>`), bound by chDB itself;
* every other URL parameter is a setting for that request only;
* streaming INSERTs in any input format, with ClickHouse's compressed-block framing
  (`decompress=1`) and HTTP `Content-Encoding`;
* results in ClickHouse's block framing (`compress=1`) and/or HTTP compression;
* Native results in the layout of the client's `client_protocol_version`, as a server
  writes them (NativeTranscoder: chDB itself only writes revision 0);
* ClickHouse-style errors (`X-ClickHouse-Exception-Code`, the body in the `compress=1`
  framing when asked for; after the first bytes of a result, the tagged `__exception__`
  block and a response broken off), users with passwords and read-only users;
* HTTPS (`--tls-cert`/`--tls-key`), the handshake done on the connection's own thread.

Each request runs on its own short-lived chDB connection, i.e. a fresh ClickHouse session,
exactly like a sessionless request to clickhouse-server: settings, SET and USE never leak
into later requests. A root connection keeps the engine open for the server's lifetime;
chDB allows a single process per data directory, so this server is its only user.

Not supported: HTTP sessions (`session_id` is accepted and ignored, every request is its own
session), X-ClickHouse-Progress headers, external tables in multipart requests, HEAD/OPTIONS,
AggregateFunction/Dynamic/Variant/JSON columns in Native at a nonzero protocol revision
(refused: their data cannot be delimited here), the time zone of `DateTime('tz')` type
names in Native (chDB's revision-0 output drops it).
"""

import argparse
import array
import base64
import binascii
import bz2
import hmac
import itertools
import json
import logging
import lzma
import os
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
import zlib
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import chdb  # noqa: F401  -- bootstraps the engine library; its raw API is chdb._chdb
import lz4.block
import lz4.frame
from chdb import _chdb
from clickhouse_cityhash.cityhash import CityHash128

try:
    from compression import zstd  # Python 3.14+
except ImportError:
    from backports import zstd

log = logging.getLogger("chdb_server")

KEEP_ALIVE_TIMEOUT = 30  # seconds an idle keep-alive connection is kept (ClickHouse default)
READ_SIZE = 1 << 20  # largest piece read from the socket at once
INSERT_BATCH = 1 << 20  # bytes handed to chDB per streaming-insert append
RESPONSE_BUFFER = 1 << 20  # result bytes held back so early errors still get a real status
NATIVE_BLOCK = 1 << 20  # uncompressed size of a `compress=1` block (DBMS_DEFAULT_BUFFER_SIZE)
MAX_COMPRESSED_BLOCK = 1 << 30  # ClickHouse's DBMS_MAX_COMPRESSED_SIZE

# URL parameters handled by the HTTP layer; every other parameter is a setting.
RESERVED_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "compress", "decompress", "stacktrace", "buffer_size", "wait_end_of_query", "role",
    "session_id", "session_timeout", "session_check", "close_session",
    "client_protocol_version",
})
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The start of `INSERT ... FORMAT <name> <data>` / `INSERT ... VALUES <data>`; the data starts
# after blanks and at most one line break, as clickhouse-server's parser has it.
INSERT_RE = re.compile(rb"\s*(INSERT\s+INTO\s+.+?)\s+(?:FORMAT\s+([A-Za-z0-9_]+)|VALUES\b)"
                       rb"[ \t\f]*\r?\n?", re.I | re.S)
INSERT_LOOKAHEAD = 64 * 1024  # where the INSERT statement must end for the data to be streamed
SELECT_RE = re.compile(rb"\bSELECT\b", re.I)
# A trailing `FORMAT <name>` clause, optionally followed by SETTINGS.
FORMAT_CLAUSE_RE = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*(?:SETTINGS\b.*?)?;?\s*\Z",
                              re.I | re.S)
FORMAT_WORD_RE = re.compile(r"\bFORMAT\b|output_format_", re.I)
ENGINE_ERROR_RE = re.compile(r"Code: (\d+)\. .*", re.S)

# Formats whose per-block outputs concatenate into one valid result, mapped to the header
# chDB repeats at the start of every streamed block: (kind, count) or None.
STREAMABLE_FORMATS = {
    "RowBinary": None, "Native": None, "CSV": None,
    "TabSeparated": None, "TSV": None, "TabSeparatedRaw": None, "TSVRaw": None,
    "JSONEachRow": None, "JSONLines": None, "NDJSON": None,
    "JSONCompactEachRow": None, "JSONStringsEachRow": None,
    "RowBinaryWithNames": ("binary", 1), "RowBinaryWithNamesAndTypes": ("binary", 2),
    "TabSeparatedWithNames": ("lines", 1), "TSVWithNames": ("lines", 1),
    "TabSeparatedWithNamesAndTypes": ("lines", 2), "TSVWithNamesAndTypes": ("lines", 2),
    "JSONCompactEachRowWithNames": ("lines", 1),
    "JSONCompactEachRowWithNamesAndTypes": ("lines", 2),
}

# exceptionCodeToHTTPStatus() of clickhouse-server; anything else is 500.
HTTP_STATUS_BY_ERROR = {
    401: ("REQUIRED_PASSWORD",),
    403: ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
          "ACCESS_DENIED"),
    400: ("BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT",
          "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE",
          "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
          "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6", "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
          "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT_IN_AST",
          "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST", "TOO_BIG_AST",
          "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
          "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    404: ("UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
          "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING",
          "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT",
          "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"),
    413: ("QUERY_IS_TOO_LARGE",),
    501: ("NOT_IMPLEMENTED",),
    503: ("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"),
    411: ("HTTP_LENGTH_REQUIRED",),
    408: ("TIMEOUT_EXCEEDED",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}


# --- errors -------------------------------------------------------------------------------

class ServerError(Exception):
    """A ClickHouse exception: its code and the full `Code: N. DB::Exception: ...` text."""

    def __init__(self, code, text):
        super().__init__(text)
        self.code = code
        self.text = text


class Errors:
    """Builds ClickHouse-style exceptions with the engine's own error codes and version."""

    def __init__(self, codes_by_name, version):
        self._codes = codes_by_name
        self._version = version
        self._status = {self._codes[name]: status
                        for status, names in HTTP_STATUS_BY_ERROR.items()
                        for name in names if name in self._codes}

    def make(self, name, message):
        code = self._codes[name]
        return ServerError(code, f"Code: {code}. DB::Exception: {message}. ({name}) "
                                 f"(version {self._version})")

    def from_engine(self, exc):
        """Turns a chDB RuntimeError into a ServerError carrying the engine's code."""
        match = ENGINE_ERROR_RE.search(str(exc))
        if match is None:
            return self.make("STD_EXCEPTION", str(exc))
        text = match.group(0).strip()
        if "(version " not in text:
            text += f" (version {self._version})"
        return ServerError(int(match.group(1)), text)

    @contextmanager
    def engine_calls(self):
        """Re-raises chDB failures inside the block as ServerErrors."""
        try:
            yield
        except RuntimeError as exc:
            raise self.from_engine(exc) from None

    def http_status(self, code):
        return self._status.get(code, 500)


# --- the engine ---------------------------------------------------------------------------

class Engine:
    """The embedded ClickHouse engine bound to one data directory."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        self._root = _chdb.connect(self.path)  # keeps the engine up between requests
        version, timezone, compression = self._scalar_row(
            "SELECT version(), timezone(), getSetting('enable_http_compression')")
        self.timezone = timezone
        self.http_compression = compression == "true"
        self.errors = Errors(self._error_codes(), version)

    def _scalar_row(self, sql):
        return self._root.query(sql, "TSV").bytes().decode().rstrip("\n").split("\t")

    def _error_codes(self):
        rows = self._root.query(
            "SELECT toUInt32(number) AS code, errorCodeToName(code) AS name "
            "FROM numbers(10000) WHERE name != ''", "TSV").bytes().decode().splitlines()
        return {name: int(code) for code, name in (row.split("\t") for row in rows)}

    def session(self, settings, database):
        """A fresh connection (= ClickHouse session) with `settings` applied and `database`
        selected. Values are bound as query parameters, never spliced into SQL."""
        conn = _chdb.connect(self.path)
        try:
            with self.errors.engine_calls():
                if database:
                    conn.query("USE {db:Identifier}", "TSV", params={"db": database})
                if settings:
                    statement, values = self._set_statement(settings)
                    conn.query(statement, "TSV", params=values)
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_statement(self, settings):
        assignments, values = [], {}
        for i, (name, value) in enumerate(settings):
            if not IDENTIFIER_RE.match(name):
                raise self.errors.make("UNKNOWN_SETTING", f"Unknown setting '{name}'")
            assignments.append(f"{name} = {{v{i}:String}}")
            values[f"v{i}"] = value
        return "SET " + ", ".join(assignments), values

    def close(self):
        self._root.close()


# --- users --------------------------------------------------------------------------------

class Users:
    """Password check against the --users-file; without one everybody is `default`."""

    def __init__(self, path, errors):
        self._errors = errors
        self._users = None
        if path:
            with open(path, encoding="utf-8") as f:
                self._users = json.load(f)["users"]

    def authenticate(self, user, password):
        """Returns True when the user is read-only; raises AUTHENTICATION_FAILED."""
        if self._users is None:
            return False
        entry = self._users.get(user)
        expected = (entry or {}).get("password", "")
        if entry is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise self._errors.make(
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, "
                "or there is no user with such name")
        return bool(entry.get("readonly", False))


def request_credentials(headers, options):
    """User and password from X-ClickHouse-User/Key, basic auth, or user/password params."""
    user, password = headers.get("X-ClickHouse-User"), headers.get("X-ClickHouse-Key")
    authorization = headers.get("Authorization", "")
    if user is None and password is None and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, _, password = decoded.partition(":")
    elif user is None and password is None:
        user, password = options.get("user"), options.get("password")
    return user or "default", password or ""


# --- compression --------------------------------------------------------------------------

def block_checksum(data):
    """CityHash128 (v1.0.2) of a compressed block as ClickHouse stores it: high half first."""
    digest = CityHash128(data)
    return struct.pack("<QQ", digest >> 64, digest & 0xFFFFFFFFFFFFFFFF)


def native_frame(data):
    """One block of ClickHouse's compressed framing: checksum, 0x82 (LZ4), sizes, data."""
    compressed = lz4.block.compress(data, store_size=False)
    block = struct.pack("<BII", 0x82, len(compressed) + 9, len(data)) + compressed
    return block_checksum(block) + block


def decode_native_frames(chunks, errors):
    """Decodes the `decompress=1` framing block by block, verifying every checksum."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        pos = 0
        while len(buffer) - pos >= 25:
            method, size, raw_size = struct.unpack_from("<BII", buffer, pos + 16)
            if size > MAX_COMPRESSED_BLOCK:
                raise errors.make("TOO_LARGE_SIZE_COMPRESSED",
                                  f"Too large size_compressed_without_checksum: {size}")
            if size < 9:
                raise errors.make("CORRUPTED_DATA", f"Can't decompress data: the compressed "
                                  f"data size ({size}) is less than the header size (9)")
            end = pos + 16 + size
            if len(buffer) < end:
                break
            yield decode_native_block(bytes(buffer[pos:end]), method, raw_size, errors)
            pos = end
        del buffer[:pos]
    if buffer:
        raise errors.make("CANNOT_READ_ALL_DATA",
                          f"Cannot read all data: {len(buffer)} bytes of a truncated "
                          "compressed block at the end of the body")


def decode_native_block(frame, method, raw_size, errors):
    block, payload = frame[16:], frame[25:]
    actual = block_checksum(block)
    if actual != frame[:16]:
        raise errors.make(
            "CHECKSUM_DOESNT_MATCH",
            f"Checksum doesn't match: corrupted data. Reference: {frame[:16].hex()}. "
            f"Actual: {actual.hex()}. Size of compressed block: {len(block)}")
    try:
        if method == 0x82:
            return lz4.block.decompress(payload, uncompressed_size=raw_size)
        if method == 0x90:
            return zstd.decompress(payload)
    except (lz4.block.LZ4BlockError, zstd.ZstdError) as exc:
        raise errors.make("CANNOT_DECOMPRESS", f"Cannot decompress block: {exc}") from None
    if method == 0x02:
        return payload
    raise errors.make("UNKNOWN_CODEC", f"Unknown codec family code: {method}")


DECOMPRESSORS = {
    "gzip": lambda: zlib.decompressobj(31),
    "x-gzip": lambda: zlib.decompressobj(31),
    "deflate": zlib.decompressobj,
    "xz": lzma.LZMADecompressor,
    "zstd": zstd.ZstdDecompressor,
    "lz4": lz4.frame.LZ4FrameDecompressor,
    "bz2": bz2.BZ2Decompressor,
}


def decode_content(chunks, encoding, errors):
    """Undoes an HTTP Content-Encoding, including concatenated streams."""
    factory = DECOMPRESSORS.get(encoding)
    if factory is None:
        raise errors.make("UNKNOWN_COMPRESSION_METHOD",
                          f"Unknown compression method '{encoding}'")
    decoder, pending = factory(), False
    for chunk in chunks:
        while chunk:
            pending = True
            try:
                out = decoder.decompress(chunk)
            except (zlib.error, lzma.LZMAError, OSError, RuntimeError, zstd.ZstdError) as exc:
                raise errors.make("CANNOT_DECOMPRESS",
                                  f"Cannot decode {encoding} body: {exc}") from None
            if out:
                yield out
            if not decoder.eof:
                break
            chunk, decoder, pending = decoder.unused_data, factory(), False
    if pending:
        raise errors.make("CANNOT_DECOMPRESS", f"Truncated {encoding} body")


class StreamEncoder:
    """Uniform encode()/flush() over the standard streaming compressors."""

    def __init__(self, compressor, prefix=b""):
        self._compressor = compressor
        self._prefix = prefix

    def encode(self, data):
        out, self._prefix = self._prefix + self._compressor.compress(data), b""
        return out

    def flush(self):
        out, self._prefix = self._prefix + self._compressor.flush(), b""
        return out


def lz4_frame_encoder(_level):
    compressor = lz4.frame.LZ4FrameCompressor()
    return StreamEncoder(compressor, compressor.begin())


# HTTP response encodings in clickhouse-server's order of preference.
ENCODERS = {
    "gzip": lambda level: StreamEncoder(zlib.compressobj(level, zlib.DEFLATED, 31)),
    "deflate": lambda level: StreamEncoder(zlib.compressobj(level)),
    "xz": lambda level: StreamEncoder(lzma.LZMACompressor(preset=min(max(level, 0), 9))),
    "zstd": lambda level: StreamEncoder(zstd.ZstdCompressor(level=level)),
    "lz4": lz4_frame_encoder,
    "bz2": lambda level: StreamEncoder(bz2.BZ2Compressor(min(max(level, 1), 9))),
}


class NativeBlockEncoder:
    """`compress=1`: the result in ClickHouse's compressed-block framing."""

    def __init__(self):
        self._buffer = bytearray()

    def encode(self, data):
        self._buffer += data
        if len(self._buffer) < NATIVE_BLOCK:
            return b""
        cut = len(self._buffer) - len(self._buffer) % NATIVE_BLOCK
        out = b"".join(native_frame(bytes(self._buffer[i:i + NATIVE_BLOCK]))
                       for i in range(0, cut, NATIVE_BLOCK))
        del self._buffer[:cut]
        return out

    def flush(self):
        out = native_frame(bytes(self._buffer)) if self._buffer else b""
        self._buffer.clear()
        return out


# --- request body -------------------------------------------------------------------------

class RequestBody:
    """The request body as it arrives (Content-Length or chunked), read incrementally.
    The read position lives here, so drain() can finish a partially consumed body."""

    def __init__(self, rfile, headers, errors):
        self._rfile = rfile
        self._errors = errors
        self._encoding = headers.get("Content-Encoding", "").strip().lower()
        self._chunked = headers.get("Transfer-Encoding", "").lower().endswith("chunked")
        try:
            self._remaining = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        except ValueError:
            raise ConnectionError("bad Content-Length") from None
        self._in_chunk = False
        self._finished = not self._chunked and self._remaining == 0

    def _next_piece(self):
        """The next at most READ_SIZE bytes of content, or None at the end of the body."""
        if self._chunked and not self._remaining and not self._finished:
            self._next_chunk()
        if self._finished:
            return None
        piece = self._rfile.read(min(self._remaining, READ_SIZE))
        if not piece:
            raise ConnectionError("client closed the connection mid-body")
        self._remaining -= len(piece)
        self._finished = not self._chunked and not self._remaining
        return piece

    def _next_chunk(self):
        if self._in_chunk:
            self._rfile.readline(3)  # CRLF closing the previous chunk
        line = self._rfile.readline(65537)
        try:
            self._remaining = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise ConnectionError("bad chunked request body") from None
        self._in_chunk = True
        if self._remaining == 0:
            while self._rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._finished = True

    def raw_chunks(self):
        """Wire bytes without the transfer encoding."""
        while (piece := self._next_piece()) is not None:
            yield piece

    def chunks(self, native_framing=False):
        """Body content: Content-Encoding undone, then optionally the `decompress=1` framing."""
        chunks = self.raw_chunks()
        if self._encoding and self._encoding != "identity":
            chunks = decode_content(chunks, self._encoding, self._errors)
        if native_framing:
            chunks = decode_native_frames(chunks, self._errors)
        return chunks

    def read(self, native_framing=False):
        return b"".join(self.chunks(native_framing))

    def drain(self):
        """Discards what is left so the connection can serve the next request."""
        while self._next_piece() is not None:
            pass


def match_insert(head):
    """The INSERT statement and format at the start of `head` when the rest is its data.
    INSERT ... SELECT and a FORMAT/VALUES inside a string literal are left to the engine."""
    match = INSERT_RE.match(head)
    if match is None or match.group(1).count(b"'") % 2 or SELECT_RE.search(match.group(1)):
        return None
    return match


def read_prefix(chunks, size):
    """Joins pieces from the `chunks` iterator until at least `size` bytes (or the end)."""
    pieces, total = [], 0
    for piece in chunks:
        pieces.append(piece)
        total += len(piece)
        if total >= size:
            break
    return b"".join(pieces)


def coalesce(chunks, size):
    """Regroups chunks into pieces of at least `size` bytes (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        if not buffer and len(chunk) >= size:
            yield chunk
            continue
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def parse_multipart(body, content_type, errors):
    """Text fields of a multipart/form-data body as (name, value) pairs."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise errors.make("BAD_ARGUMENTS", "multipart/form-data without a boundary")
    delimiter = b"--" + match.group(1).encode()
    fields = []
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.partition(b"\r\n\r\n")
        disposition = re.search(rb'name="([^"]*)"(.*)', head)
        if disposition is None:
            continue
        if b"filename=" in disposition.group(2):
            raise errors.make("NOT_IMPLEMENTED", "External tables in multipart requests "
                                                 "are not supported by this server")
        value = value[:-2] if value.endswith(b"\r\n") else value
        try:
            fields.append((disposition.group(1).decode(), value.decode()))
        except UnicodeDecodeError:
            raise errors.make("BAD_ARGUMENTS", "multipart field is not UTF-8") from None
    return fields


# --- request model ------------------------------------------------------------------------

class QueryRequest:
    """What a request asks for, split into options, settings and query parameters."""

    def __init__(self, pairs, headers):
        self.options, self.settings, self.params = {}, {}, {}
        for name, value in pairs:
            if name.startswith("param_"):
                self.params[name[6:]] = value
            elif name in RESERVED_PARAMS:
                self.options[name] = value
            elif name:
                self.settings[name] = value
        self.query = self.options.get("query", "")
        self.database = headers.get("X-ClickHouse-Database") or self.options.get("database")
        self.default_format = (headers.get("X-ClickHouse-Format")
                               or self.options.get("default_format") or "TabSeparated")
        self.query_id = (self.options.get("query_id") or headers.get("X-ClickHouse-Query-Id")
                         or str(uuid.uuid4()))
        revision = self.options.get("client_protocol_version", "0") or "0"
        self.protocol_revision = int(revision) if revision.isdigit() else None

    def flag(self, name):
        return self.options.get(name, "0").lower() in ("1", "true")

    def session_settings(self, readonly_user, is_get):
        """Settings for the session, `readonly` last so it cannot be lifted: 1 for read-only
        users, at least 2 for GET requests (as clickhouse-server does)."""
        settings = dict(self.settings)
        readonly = settings.pop("readonly", None)
        if readonly_user:
            readonly = "1"
        elif is_get and readonly in (None, "0"):
            readonly = "2"
        items = list(settings.items())
        return items + [("readonly", readonly)] if readonly is not None else items


def output_format(sql, default_format):
    match = FORMAT_CLAUSE_RE.search(sql)
    return match.group(1) if match else default_format


def content_type(fmt):
    lower = fmt.lower()
    if lower.startswith(("rowbinary", "native", "parquet", "arrow", "orc", "avro", "protobuf",
                         "capnproto", "msgpack", "bson", "npy")):
        return "application/octet-stream"
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "withnames" in lower
                                                     else "absent")
    if lower.startswith(("json", "ndjson")):
        return "application/json; charset=UTF-8"
    if lower.startswith("xml"):
        return "application/xml; charset=UTF-8"
    return "text/plain; charset=UTF-8"


def summary_header(read_rows=0, read_bytes=0, written_rows=0, written_bytes=0,
                   result_rows=0, result_bytes=0, elapsed=0.0):
    """X-ClickHouse-Summary: a JSON object of decimal strings, as clickhouse-server sends."""
    values = {"read_rows": read_rows, "read_bytes": read_bytes, "written_rows": written_rows,
              "written_bytes": written_bytes, "total_rows_to_read": read_rows,
              "result_rows": result_rows, "result_bytes": result_bytes,
              "elapsed_ns": int(elapsed * 1e9)}
    return json.dumps({k: str(v) for k, v in values.items()}, separators=(",", ":"))


class QueryStats:
    """Progress of a query, summed over the results chDB returned so far."""

    def __init__(self):
        self.counters = dict.fromkeys(
            ("read_rows", "read_bytes", "result_rows", "result_bytes", "elapsed"), 0)

    def add(self, result):
        for name, value in (("read_rows", result.storage_rows_read()),
                            ("read_bytes", result.storage_bytes_read()),
                            ("result_rows", result.rows_read()),
                            ("result_bytes", result.bytes_read()),
                            ("elapsed", result.elapsed())):
            self.counters[name] += value

    def summary(self):
        return summary_header(**self.counters)


def exception_block(tag, text):
    """A mid-stream exception in clickhouse-server's tagged format (25.11+)."""
    message = text.encode() + b"\n"
    return (b"\r\n__exception__\r\n" + tag + b"\r\n" + message
            + b"%d " % len(message) + tag + b"\r\n__exception__\r\n")


# --- Native over HTTP for a client protocol revision -------------------------------------

# Protocol revisions that change what a server writes in a Native block (ClickHouse's
# src/Core/ProtocolDefines.h; NativeWriter::write, BlockInfo::write).
REVISION_WITH_TIME_ZONE_PARAMETER_IN_DATETIME = 54337  # below: `DateTime('tz')` sent as `DateTime`
REVISION_WITH_LOW_CARDINALITY_TYPE = 54405  # below: LowCardinality columns sent as full columns
REVISION_WITH_CUSTOM_SERIALIZATION = 54454  # from: a has_custom byte after each column's type
REVISION_WITH_OUT_OF_ORDER_BUCKETS = 54480  # from: BlockInfo field 3, out_of_order_buckets
REVISION_WITH_STRING_SIZE_STREAM = 54492  # from: Strings as cumulative UInt64 offsets + bytes
# The newest revision this server knows: a higher one gets this one's layout, as a server
# can only write the layouts it knows.
NATIVE_MAX_REVISION = 54492

FIXED_SIZES = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "Nothing": 1,
    "UInt16": 2, "Int16": 2, "Date": 2, "BFloat16": 2, "Enum16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4,
    "Decimal32": 4, "Time": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "Time64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
}
# Type aliases as the engine names them in a Native header.
TYPE_ALIASES = {
    "Point": "Tuple(Float64, Float64)", "Ring": "Array(Point)", "LineString": "Array(Point)",
    "MultiLineString": "Array(LineString)", "Polygon": "Array(Ring)",
    "MultiPolygon": "Array(Polygon)",
}
LC_HAS_ADDITIONAL_KEYS = 1 << 9
LC_NEED_GLOBAL_DICTIONARY = 1 << 8


class NeedMoreData(Exception):
    """The buffered bytes end inside a block."""


def split_type_args(text):
    """`A, B(C, D), 'x,y'` -> ['A', 'B(C, D)', "'x,y'"]: top-level commas only."""
    args, depth, start, quote, i = [], 0, 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    args.append(text[start:].strip())
    return [a for a in args if a]


IDENTIFIER_PREFIX_RE = re.compile(r"(?:`[^`]*`|[A-Za-z_][A-Za-z0-9_]*)\s+(?=[A-Z])")


class NativeType:
    """A parsed Native column type: what is needed to find where its data ends."""

    def __init__(self, name):
        name = TYPE_ALIASES.get(name.strip(), name.strip())
        self.kind, _, rest = name.partition("(")
        self.args = split_type_args(rest[:-1]) if rest else []
        self.children = []
        kind = self.kind
        if kind in ("Nullable", "Array", "LowCardinality"):
            self.children = [NativeType(self.args[0])]
        elif kind == "Map":
            self.kind = "Array"
            self.children = [NativeType(f"Tuple({self.args[0]}, {self.args[1]})")]
        elif kind == "Nested":
            self.kind = "Array"
            self.children = [NativeType(f"Tuple({', '.join(self.args)})")]
        elif kind == "Tuple":
            # Named elements: `name Type`; the name never starts a type.
            self.children = [NativeType(IDENTIFIER_PREFIX_RE.sub("", a, count=1))
                             for a in self.args]
        elif kind == "SimpleAggregateFunction":
            self.kind = "Alias"
            self.children = [NativeType(self.args[-1])]
        elif kind == "FixedString":
            self.size = int(self.args[0])
        elif kind == "Decimal":
            precision = int(self.args[0])
            self.size = 4 if precision <= 9 else 8 if precision <= 18 else 16 \
                if precision <= 38 else 32
        elif kind.startswith("Interval"):
            self.size = 8
        elif kind in FIXED_SIZES:
            self.size = FIXED_SIZES[kind]
        elif kind != "String":
            self.kind = "Unsupported"
        self.supported = self.kind != "Unsupported" and all(c.supported for c in self.children)
        self.has_string = self.kind == "String" or any(
            c.has_string for c in self.children if self.kind != "LowCardinality")


class NativeReader:
    """Reads chDB's Native stream (revision 0: no BlockInfo, default serializations)."""

    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, size):
        end = self.pos + size
        if end > len(self.data):
            raise NeedMoreData
        piece = self.data[self.pos:end]
        self.pos = end
        return piece

    def varint(self):
        data, pos = self.data, self.pos
        result = shift = 0
        while True:
            if pos >= len(data):
                raise NeedMoreData
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return result
            shift += 7

    def string(self):
        return self.take(self.varint())

    def uint64(self):
        return struct.unpack("<Q", self.take(8))[0]


def write_varint(value):
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string_binary(value):
    return write_varint(len(value)) + value


class NativeColumnWriter:
    """Copies one column's data from a reader, rewritten for the revision where needed."""

    def __init__(self, reader, size_stream_strings, full_low_cardinality):
        self.r = reader
        self.size_stream = size_stream_strings
        self.full_low_cardinality = full_low_cardinality

    def prefix(self, t, out):
        """serializeBinaryBulkStatePrefix: LowCardinality's key version, recursively."""
        if t.kind == "LowCardinality":
            version = self.r.take(8)
            if not self.full_low_cardinality:
                out += version
        else:
            for child in t.children:
                self.prefix(child, out)

    def data(self, t, rows, out, rewrite=True):
        r = self.r
        kind = t.kind
        if kind == "String":
            if rewrite and self.size_stream:
                self.size_stream_strings(rows, out)
            else:
                start = r.pos
                self.skip_strings(rows)
                out += r.data[start:r.pos]
        elif kind == "Nullable":
            out += r.take(rows)
            self.data(t.children[0], rows, out, rewrite)
        elif kind == "Array":
            offsets = r.take(8 * rows)
            out += offsets
            count = struct.unpack_from("<Q", offsets, 8 * rows - 8)[0] if rows else 0
            self.data(t.children[0], count, out, rewrite)
        elif kind == "Tuple":
            for child in t.children:
                self.data(child, rows, out, rewrite)
        elif kind == "Alias":
            self.data(t.children[0], rows, out, rewrite)
        elif kind == "LowCardinality":
            self.low_cardinality(t, rows, out)
        else:
            out += r.take(t.size * rows)

    def low_cardinality(self, t, rows, out):
        if self.full_low_cardinality:
            self.full_column(t, rows, out)
            return
        r = self.r
        flags_bytes = r.take(8)
        out += flags_bytes
        flags = struct.unpack("<Q", flags_bytes)[0]
        if flags & LC_NEED_GLOBAL_DICTIONARY:
            raise ValueError("a global LowCardinality dictionary in a Native block")
        if flags & LC_HAS_ADDITIONAL_KEYS:
            keys_bytes = r.take(8)
            out += keys_bytes
            keys = struct.unpack("<Q", keys_bytes)[0]
            inner = t.children[0]
            if inner.kind == "Nullable":  # the dictionary holds the non-null type
                inner = inner.children[0]
            # The dictionary is written with the inner type's default serialization.
            self.data(inner, keys, out, rewrite=False)
        count_bytes = r.take(8)
        out += count_bytes
        out += r.take((1 << (flags & 0xFF)) * struct.unpack("<Q", count_bytes)[0])

    def full_column(self, t, rows, out):
        """A LowCardinality column as the full column of its inner type (a Nullable one
        gets its null map from the dictionary's null key, 0)."""
        r = self.r
        flags = struct.unpack("<Q", r.take(8))[0]
        inner = t.children[0]
        nullable = inner.kind == "Nullable"
        key_type = inner.children[0] if nullable else inner
        keys = []
        if flags & LC_HAS_ADDITIONAL_KEYS:
            for _ in range(struct.unpack("<Q", r.take(8))[0]):
                value = bytearray()
                self.data(key_type, 1, value)
                keys.append(bytes(value))
        count = struct.unpack("<Q", r.take(8))[0]
        width = 1 << (flags & 0xFF)
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
        indexes = struct.unpack(f"<{count}{code}", r.take(width * count))
        if nullable:
            out += bytes(1 if i == 0 else 0 for i in indexes)
        out += b"".join(keys[i] for i in indexes)

    def skip_strings(self, rows):
        r = self.r
        data, pos, end = r.data, r.pos, len(r.data)
        for _ in range(rows):
            if pos >= end:
                raise NeedMoreData
            byte = data[pos]
            if byte < 0x80:
                pos += 1 + byte
            else:
                r.pos = pos
                pos = r.varint() + r.pos
        if pos > end:
            raise NeedMoreData
        r.pos = pos

    def size_stream_strings(self, rows, out):
        """Revision 54492+: all cumulative end offsets as UInt64, then the bytes."""
        r = self.r
        offsets = array.array("Q")
        pieces = []
        total = 0
        for _ in range(rows):
            value = r.string()
            total += len(value)
            offsets.append(total)
            pieces.append(value)
        if sys.byteorder != "little":
            offsets.byteswap()
        out += offsets.tobytes()
        out += b"".join(pieces)


def without_low_cardinality(type_name):
    """`Array(LowCardinality(Nullable(String)))` -> `Array(Nullable(String))`."""
    while (start := type_name.find("LowCardinality(")) >= 0:
        depth, end = 0, start
        for end in range(start + len("LowCardinality"), len(type_name)):
            depth += {"(": 1, ")": -1}.get(type_name[end], 0)
            if depth == 0:
                break
        type_name = (type_name[:start] + type_name[start + len("LowCardinality("):end]
                     + type_name[end + 1:])
    return type_name


class NativeTranscoder:
    """Rewrites chDB's Native output (the layout of revision 0) into the layout a
    ClickHouse server writes for the client's `client_protocol_version`:

    * a BlockInfo before each block: field 1 is_overflows (false), field 2 bucket_num
      (-1), from 54480 field 3 out_of_order_buckets (empty), then 0;
    * from 54454, a has_custom byte after each column's type: always 0, the default
      serialization (the engine's sparse or replicated columns are never kept, which a
      server may do but never must);
    * from 54492, String data (also inside Nullable, Array, Map and Tuple) as the
      cumulative end offsets (UInt64) followed by the bytes;
    * below 54337 a `DateTime('tz')` column is named `DateTime`.

    * below 54405, LowCardinality columns as full columns of their inner type.

    Blocks are rewritten one at a time as
    they arrive, so a streamed result stays streamed. A column whose data cannot be
    delimited without knowing its states (AggregateFunction, Dynamic, Variant, JSON) is
    refused with NOT_IMPLEMENTED."""

    def __init__(self, revision, errors):
        self.revision = min(revision, NATIVE_MAX_REVISION)
        self.errors = errors
        self.buffer = bytearray()
        self.types = {}
        info = b"\x01\x00\x02\xff\xff\xff\xff"
        if self.revision >= REVISION_WITH_OUT_OF_ORDER_BUCKETS:
            info += b"\x03\x00"
        self.block_info = info + b"\x00"

    def encode(self, data):
        self.buffer += data
        out = bytearray()
        pos = 0
        while pos < len(self.buffer):
            try:
                pos = self._block(NativeReader(self.buffer, pos), out)
            except NeedMoreData:
                break
        del self.buffer[:pos]
        return bytes(out)

    def flush(self):
        if self.buffer:
            raise self.errors.make("CANNOT_READ_ALL_DATA", "The engine's Native output ends "
                                   f"inside a block ({len(self.buffer)} bytes left)")
        return b""

    def _type(self, name):
        t = self.types.get(name)
        if t is None:
            t = self.types[name] = NativeType(name)
        if not t.supported:
            raise self.errors.make(
                "NOT_IMPLEMENTED", f"Native output with client_protocol_version "
                f"{self.revision} is not supported by this server for columns of type {name}")
        return t

    def _block(self, r, out):
        """Rewrites the block at the reader's position into `out`; returns its end."""
        block = bytearray(self.block_info)
        columns, rows = r.varint(), r.varint()
        block += write_varint(columns) + write_varint(rows)
        writer = NativeColumnWriter(r, self.revision >= REVISION_WITH_STRING_SIZE_STREAM,
                                    self.revision < REVISION_WITH_LOW_CARDINALITY_TYPE)
        for _ in range(columns):
            name, type_name = r.string(), r.string()
            t = self._type(type_name.decode())
            if self.revision < REVISION_WITH_LOW_CARDINALITY_TYPE:
                type_name = without_low_cardinality(type_name.decode()).encode()
            if (self.revision < REVISION_WITH_TIME_ZONE_PARAMETER_IN_DATETIME
                    and type_name.startswith(b"DateTime(")):
                type_name = b"DateTime"
            block += string_binary(name) + string_binary(type_name)
            if self.revision >= REVISION_WITH_CUSTOM_SERIALIZATION:
                block.append(0)
            if rows:  # no rows: no data, not even a prefix
                writer.prefix(t, block)
                writer.data(t, rows, block)
        out += block
        return r.pos


# --- results ------------------------------------------------------------------------------

def header_length(kind, count, chunk):
    """Length of the names/types header chDB puts at the start of a streamed block."""
    if kind == "lines":
        pos = -1
        for _ in range(count):
            pos = chunk.index(b"\n", pos + 1)
        return pos + 1
    columns, pos = read_varint(chunk, 0)
    for _ in range(columns * count):
        size, pos = read_varint(chunk, pos)
        pos += size
    return pos


def read_varint(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def stream_result(conn, handle, header, stats):
    """Blocks of a streaming query, with the repeated per-block header removed."""
    header_size = None
    done = False
    try:
        while True:
            result = conn.streaming_fetch_result(handle)
            if result is None or result.size() == 0:
                done = True
                return
            stats.add(result)
            data = result.bytes()
            if header_size is None:
                header_size = header_length(*header, data) if header else 0
                yield data
            else:
                yield data[header_size:]
    finally:
        if not done:
            try:
                conn.streaming_cancel_query(handle)
            except RuntimeError:
                pass  # the query already failed


class ResponseWriter:
    """A 200 response whose headers are sent lazily: a result that fails before
    `buffer_limit` encoded bytes still gets a proper error status, a result that fits
    goes out with Content-Length, a longer one is streamed chunked."""

    def __init__(self, handler, headers, stats, encoders, buffer_limit, transcoder=None):
        self._handler = handler
        self._transcoder = transcoder
        self._headers = headers
        self._stats = stats
        self._encoders = encoders
        self._limit = buffer_limit
        self._pending = []
        self._pending_size = 0
        self._committed = False
        self._tag = headers["X-ClickHouse-Exception-Tag"].encode()

    def write(self, data):
        if self._transcoder is not None:
            data = self._transcoder.encode(data)
        self._append(self._encode(data))

    def _encode(self, data, final=False, flush_framing=False):
        """`data` through the encoders; all of them flushed when `final`, only the
        `compress=1` framing (its pending bytes become a block) when `flush_framing`."""
        for encoder in self._encoders:
            data = encoder.encode(data)
            if final or (flush_framing and isinstance(encoder, NativeBlockEncoder)):
                data += encoder.flush()
        return data

    def _append(self, data):
        if data:
            self._pending.append(data)
            self._pending_size += len(data)
        if self._pending_size >= self._limit:
            self._send_chunk()

    def finish(self):
        if self._transcoder is not None:
            self._transcoder.flush()
        self._append(self._encode(b"", final=True))
        if self._committed:
            self._send_chunk()
            self._handler.wfile.write(b"0\r\n\r\n")
        else:
            self._commit({"Content-Length": str(self._pending_size)})
            for piece in self._pending:
                self._handler.wfile.write(piece)

    def fail(self, error):
        """Reports an error after data went out as clickhouse-server does
        (WriteBufferFromHTTPServerResponse::cancelWithException): the data so far is
        flushed, then the tagged exception block follows (in its own `compress=1` block
        when the result is framed), and the response is broken off without the final
        empty chunk, the connection closed. Returns False when nothing was sent yet, so
        the caller can answer with an error status instead."""
        if not self._committed:
            return False
        self._append(self._encode(b"", flush_framing=True))
        self._append(self._encode(exception_block(self._tag, error.text), final=True))
        self._send_chunk()
        self._handler.close_connection = True
        return True

    def _commit(self, framing):
        handler = self._handler
        handler.send_response(200)
        summary = {"X-ClickHouse-Summary": self._stats.summary()}
        for name, value in {**self._headers, **summary, **framing}.items():
            handler.send_header(name, value)
        handler.end_headers()
        self._committed = True

    def _send_chunk(self):
        if not self._committed:
            self._commit({"Transfer-Encoding": "chunked"})
        if self._pending_size:
            self._handler.wfile.write(b"%X\r\n" % self._pending_size
                                      + b"".join(self._pending) + b"\r\n")
        self._pending, self._pending_size = [], 0


# --- HTTP ---------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-server"
    sys_version = ""
    timeout = KEEP_ALIVE_TIMEOUT
    disable_nagle_algorithm = True
    rbufsize = 64 * 1024

    def handle(self):
        self.close_connection = False
        try:
            while not self.close_connection and self.server.wait_for_request(self):
                self.handle_one_request()
        finally:
            self.server.forget(self)

    def setup(self):
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # on this thread, under the socket timeout

    def parse_request(self):
        self.server.request_started(self)
        return super().parse_request()

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self):
        started = time.monotonic()
        path, _, query_string = self.path.partition("?")
        self._responded = False
        self._compress_errors = False
        try:
            body = RequestBody(self.rfile, self.headers, self.server.errors)
            status = self._respond(path, query_string, body)
            if not self.close_connection:
                body.drain()  # whatever a handler did not read, e.g. a body sent to /ping
        except OSError as exc:  # the client went away, or sent a broken body
            status = "aborted"
            log.warning("%s %s: connection lost: %s", self.command, path, exc)
            self.close_connection = True
        log.info("%s %s -> %s in %.1f ms", self.command, path, status,
                 (time.monotonic() - started) * 1000)

    def _respond(self, path, query_string, body):
        """Serves one request; returns the HTTP status sent."""
        try:
            if path in ("/ping", "/replicas_status"):
                self._send_plain(200, b"Ok.\n")
                return 200
            if path == "/":
                return self._handle_query(query_string, body)
            self._send_plain(404, f"There is no handle {path}\n\nUse / or /ping for "
                                  "health checks.\n".encode())
            return 404
        except ServerError as error:
            status = self.server.errors.http_status(error.code)
            log.warning("%s %s -> %d: %s", self.command, path, status, error.text)
            body.drain()  # like clickhouse-server, read the rest before answering
            self._send_error(status, error)
            return status
        except OSError:
            raise
        except Exception as exc:  # a bug: report it like clickhouse-server would
            log.exception("%s %s failed", self.command, path)
            self.close_connection = True
            if not self._responded:
                self._send_error(500, self.server.errors.make("STD_EXCEPTION", repr(exc)))
            return 500

    def send_response(self, code, message=None):
        self._responded = True
        super().send_response(code, message)

    def end_headers(self):
        if self.close_connection or self.server.stopping:
            self.send_header("Connection", "close")
        super().end_headers()

    def _handle_query(self, query_string, body):
        server = self.server
        pairs = parse_qsl(query_string, keep_blank_values=True)
        form = self.headers.get("Content-Type", "")
        multipart = form.startswith("multipart/form-data")
        if multipart:
            pairs += parse_multipart(body.read(), form, server.errors)
        request = QueryRequest(pairs, self.headers)
        if request.protocol_revision is None:
            raise server.errors.make(
                "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "Cannot parse client_protocol_version "
                f"{request.options['client_protocol_version']!r}: not an unsigned integer")
        if self.command == "GET" and not request.query:
            self._send_plain(200, b"Ok.\n")
            return 200
        readonly_user = server.users.authenticate(
            *request_credentials(self.headers, request.options))
        settings = request.session_settings(readonly_user, self.command == "GET")
        # From here on, as in clickhouse-server, an error body goes through the
        # `compress=1` framing when the request asked for it.
        self._compress_errors = request.flag("compress")
        conn = server.engine.session(settings, request.database)
        try:
            if multipart:
                return self._run_query(conn, request, request.query.encode())
            # The body continues the query; an INSERT's data is streamed, never buffered.
            chunks = body.chunks(request.flag("decompress"))
            head = request.query.encode() + b"\n" if request.query else b""
            head += read_prefix(chunks, INSERT_LOOKAHEAD)
            insert = match_insert(head)
            if insert:
                data = itertools.chain([head[insert.end():]], chunks)
                return self._run_insert(conn, request, insert, data)
            return self._run_query(conn, request, head + b"".join(chunks))
        finally:
            conn.close()

    def _run_insert(self, conn, request, match, data):
        """Streams `data` into `INSERT ...` through chDB's streaming insert."""
        statement = match.group(1).decode(errors="replace")
        fmt = (match.group(2) or b"Values").decode()
        errors = self.server.errors
        with errors.engine_calls():
            inserter = conn.send_insert(statement, fmt)
        try:
            with errors.engine_calls():
                for piece in coalesce(data, INSERT_BATCH):
                    conn.insert_append(inserter, piece)
                result = conn.insert_done(inserter)
        except BaseException:
            try:
                conn.insert_cancel(inserter)
            except RuntimeError:
                pass  # already finished by the engine's own failure
            raise
        headers = self._common_headers(request)
        headers["X-ClickHouse-Summary"] = summary_header(
            written_rows=result.rows_written(), written_bytes=result.bytes_written(),
            elapsed=result.elapsed())
        self._send_plain(200, b"", headers)
        return 200

    def _run_query(self, conn, request, sql):
        errors = self.server.errors
        if not sql.strip():
            raise errors.make("SYNTAX_ERROR", "Empty query")
        text = sql.decode(errors="replace")
        fmt = output_format(text, request.default_format)
        with errors.engine_calls():
            info = conn.classify_query(sql)
            if info["statement_count"] > 1:
                raise errors.make("SYNTAX_ERROR", "Multi-statements are not allowed")
            stream = self._start_stream(conn, request, sql, text, info)
            if stream is None:
                result = conn.query(sql, request.default_format, params=request.params)
        headers = self._common_headers(request)
        headers.update({"Content-Type": content_type(fmt), "X-ClickHouse-Format": fmt,
                        "X-ClickHouse-Timezone": self.server.engine.timezone,
                        "X-ClickHouse-Exception-Tag": secrets.token_hex(8)})
        headers.update(self._content_encoding(request))
        encoders = self._encoders(request, headers)
        transcoder = None
        if fmt == "Native" and request.protocol_revision:
            transcoder = NativeTranscoder(request.protocol_revision, errors)
        stats = QueryStats()
        if stream is None:
            stats.add(result)
            writer = ResponseWriter(self, headers, stats, encoders, float("inf"), transcoder)
            writer.write(result.get_memview().view())
            writer.finish()
            return 200
        blocks = stream_result(conn, *stream, stats)
        return self._send_stream(blocks, request, headers, stats, encoders, transcoder)

    def _start_stream(self, conn, request, sql, text, info):
        """Starts a streaming query when its blocks can be concatenated safely, i.e. the
        output format is known for sure (no FORMAT clause, no output_format_* overrides) and
        chDB can stream the statement; returns None to run the query materialized."""
        header = STREAMABLE_FORMATS.get(request.default_format, False)
        if (header is False or info["query_class"] != _chdb.query_class.READ_ONLY
                or FORMAT_WORD_RE.search(text) or request.flag("wait_end_of_query")
                or any(name.startswith("output_format_") for name in request.settings)):
            return None
        try:
            return conn.send_query(sql, request.default_format, params=request.params), header
        except RuntimeError as exc:
            if "Streaming query is not supported" in str(exc):
                return None
            raise

    def _send_stream(self, blocks, request, headers, stats, encoders, transcoder):
        buffer_size = request.options.get("buffer_size", "")
        limit = max(RESPONSE_BUFFER, int(buffer_size) if buffer_size.isdigit() else 0)
        if self.request_version != "HTTP/1.1":
            limit = float("inf")  # no chunked encoding before HTTP/1.1
        writer = ResponseWriter(self, headers, stats, encoders, limit, transcoder)
        try:
            with self.server.errors.engine_calls(), closing(blocks):
                for data in blocks:
                    writer.write(data)
                writer.finish()
        except ServerError as error:
            if not writer.fail(error):
                raise
            log.warning("query failed mid-stream: %s", error.text)
        return 200

    def _content_encoding(self, request):
        """Content-Encoding for the result, chosen like clickhouse-server does."""
        enabled = request.settings.get("enable_http_compression")
        if not (self.server.engine.http_compression if enabled is None
                else enabled.lower() in ("1", "true")):
            return {}
        accepted = self.headers.get("Accept-Encoding", "").lower()
        for name in ENCODERS:
            if name in accepted:
                return {"Content-Encoding": name}
        return {}

    def _encoders(self, request, headers):
        encoders = [NativeBlockEncoder()] if request.flag("compress") else []
        encoding = headers.get("Content-Encoding")
        if encoding:
            level = int(request.settings.get("http_zlib_compression_level") or 3)
            encoders.append(ENCODERS[encoding](level))
        return encoders

    def _common_headers(self, request):
        return {"X-ClickHouse-Query-Id": request.query_id,
                "X-ClickHouse-Server-Display-Name": self.server.display_name,
                "Keep-Alive": f"timeout={KEEP_ALIVE_TIMEOUT}"}

    def _send_plain(self, status, body, headers=None):
        self.send_response(status)
        headers = headers or {}
        headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status, error):
        headers = {"X-ClickHouse-Exception-Code": str(error.code),
                   "X-ClickHouse-Server-Display-Name": self.server.display_name}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="ClickHouse server HTTP API"'
        body = error.text.encode() + b"\n"
        if self._compress_errors:
            body = native_frame(body)
            headers["Content-Type"] = "application/octet-stream"
        self._send_plain(status, body, headers)

    def log_request(self, code="-", size="-"):
        pass  # _dispatch logs each request once it is complete


class Server(ThreadingHTTPServer):
    """One thread per connection; stop() finishes in-flight requests and closes idle
    keep-alive connections, then server_close() joins every connection thread."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address, engine, users, ssl_context=None):
        self.ssl_context = ssl_context
        self.engine = engine
        self.errors = engine.errors
        self.users = users
        self.display_name = socket.gethostname()
        self._lock = threading.Lock()
        self._idle = set()
        self._stopping = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def get_request(self):
        sock, address = super().get_request()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        """Failures outside a request, e.g. a connection reset while idle."""
        if isinstance(sys.exc_info()[1], OSError):
            log.info("connection from %s closed: %s", client_address, sys.exc_info()[1])
        else:
            log.exception("connection from %s failed", client_address)

    def wait_for_request(self, handler):
        """Marks the connection idle; False once the server is stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._idle.add(handler)
            return True

    def request_started(self, handler):
        with self._lock:
            self._idle.discard(handler)

    @property
    def stopping(self):
        return self._stopping

    def forget(self, handler):
        with self._lock:
            self._idle.discard(handler)

    def stop(self):
        self.shutdown()
        with self._lock:
            self._stopping = True
            for handler in self._idle:
                try:
                    handler.connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--path", required=True, help="chDB data directory")
    parser.add_argument("--users-file", help='JSON: {"users": {"name": {"password": "...", '
                                             '"readonly": false}}}')
    parser.add_argument("--log-file", help="log here instead of stderr")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def tls_context(cert, key):
    """A server-side TLS context (TLS 1.2+), or None without a certificate."""
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(filename=args.log_file, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    try:
        engine = Engine(args.path)
    except RuntimeError as exc:  # e.g. another process already serves this directory
        log.error("cannot open %s: %s", args.path, exc)
        if args.log_file:
            print(f"cannot open {args.path}: {exc}", file=sys.stderr)
        return 1
    try:
        server = Server((args.host, args.port), engine, Users(args.users_file, engine.errors),
                        tls_context(args.tls_cert, args.tls_key))
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: threading.Thread(target=server.stop).start())
        host, port = server.server_address[:2]
        scheme = "https" if server.ssl_context else "http"
        print(f"ready on {scheme}://{host}:{port}", flush=True)
        log.info("serving %s on %s://%s:%d", engine.path, scheme, host, port)
        server.serve_forever(poll_interval=0.2)
        server.server_close()
    finally:
        engine.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
