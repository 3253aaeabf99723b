"""End-to-end tests of scripts/chdb_server.py over real HTTP (no mocks).

The requests mirror what the `clickhouse` Rust crate 0.15.3 sends: queries as POST bodies
with `default_format=RowBinaryWithNamesAndTypes` and `Accept-Encoding: lz4`, `.param()` values
as a multipart form, and INSERTs as `?query=INSERT ... FORMAT RowBinary&decompress=1` with a
chunked body of LZ4 blocks in ClickHouse's compressed framing.
"""

import gzip
import json
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import clickhouse_connect
import lz4.block
import lz4.frame
import pytest
from clickhouse_cityhash.cityhash import CityHash128

from conftest import SERVER_SCRIPT, send

ERROR_BODY = re.compile(r"Code: (\d+)\. DB::Exception: .+ \([A-Z_]+\) \(version [\d.]+\)\n\Z",
                        re.S)


# --- wire helpers (independent of the server's implementation) ----------------------------

def checksum(block):
    digest = CityHash128(block)
    return struct.pack("<QQ", digest >> 64, digest & (2 ** 64 - 1))


def lz4_frame(data):
    """One block of ClickHouse's compressed framing, as the crate's `compress()` builds it."""
    compressed = lz4.block.compress(data, store_size=False)
    block = struct.pack("<BII", 0x82, len(compressed) + 9, len(data)) + compressed
    return checksum(block) + block


def unframe(data):
    """Decodes a `compress=1` response, checking every block's checksum."""
    out, pos = b"", 0
    while pos < len(data):
        method, size, raw_size = struct.unpack_from("<BII", data, pos + 16)
        block = data[pos + 16:pos + 16 + size]
        assert checksum(block) == data[pos:pos + 16]
        assert method == 0x82
        out += lz4.block.decompress(block[9:], uncompressed_size=raw_size)
        pos += 16 + size
    return out


def varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def string(value):
    raw = value.encode()
    return varint(len(raw)) + raw


def ride_row(ride_id, city, ts_ms, fare):
    """RowBinary of (id UInt32, city LowCardinality(String), ts DateTime64(3), fare Float64)."""
    return struct.pack("<I", ride_id) + string(city) + struct.pack("<qd", ts_ms, fare)


class Reader:
    """Reads RowBinary values from a byte string."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def varint(self):
        result = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def string(self):
        size = self.varint()
        self.pos += size
        return self.data[self.pos - size:self.pos].decode()

    def header(self):
        """The names and types header of RowBinaryWithNamesAndTypes."""
        count = self.varint()
        names = [self.string() for _ in range(count)]
        return names, [self.string() for _ in range(count)]

    def uint64_rows(self, width):
        values = struct.unpack(f"<{(len(self.data) - self.pos) // 8}Q", self.data[self.pos:])
        return [values[i:i + width] for i in range(0, len(values), width)]


def rbwnat_header(names, types):
    return varint(len(names)) + b"".join(string(v) for v in names + types)


def multipart(query, params):
    """The multipart/form-data body the crate builds for `.param()` queries."""
    boundary = "clickhouse-rs-boundary-" + uuid.uuid4().hex[:16]
    body = b""
    for name, value in [("query", query)] + [(f"param_{k}", v) for k, v in params.items()]:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 f"{value}\r\n").encode()
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def create_rides(server, table):
    server.sql(f"DROP TABLE IF EXISTS {table}")
    server.sql(f"CREATE TABLE {table} (id UInt32, city LowCardinality(String), "
               "ts DateTime64(3), fare Float64) ENGINE = MergeTree ORDER BY id")


def assert_error(response, status, code):
    assert response.status == status, (response.status, response.text)
    assert response.header("X-ClickHouse-Exception-Code") == str(code)
    match = ERROR_BODY.match(response.text)
    assert match, response.text
    assert match.group(1) == str(code)


# --- basics -------------------------------------------------------------------------------

def test_ping_and_health(server):
    for path in ("/ping", "/replicas_status", "/"):
        response = send(server.connection(), "GET", path)
        assert (response.status, response.body) == (200, b"Ok.\n")
    assert send(server.connection(), "GET", "/nope").status == 404


def test_select_version_with_curl_get_and_post(server):
    url = f"http://127.0.0.1:{server.port}/"
    get = subprocess.run(["curl", "-sS", "--fail", url + "?query=SELECT%20version()"],
                         capture_output=True, check=True, text=True).stdout
    post = subprocess.run(["curl", "-sS", "--fail", url, "--data-binary", "SELECT version()"],
                          capture_output=True, check=True, text=True).stdout
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+\n", get)
    assert get == post


def test_keep_alive_survives_unread_bodies_and_errors(server):
    conn = server.connection()
    assert send(conn, "POST", "/ping", b"x" * 100000).body == b"Ok.\n"
    assert server.request(body=b"SELECT nope", conn=conn).status == 404
    assert server.request(body=b"SELECT 42", conn=conn).text == "42\n"


def test_query_param_and_body_are_concatenated(server):
    response = server.request(query="SELECT 1 +", body=b"2")
    assert (response.status, response.text) == (200, "3\n")


def test_success_headers(server):
    response = server.request(body=b"SELECT 1", params={"query_id": "q-123"})
    assert response.status == 200
    assert response.header("X-ClickHouse-Query-Id") == "q-123"
    assert response.header("X-ClickHouse-Format") == "TabSeparated"
    assert response.header("Content-Type").startswith("text/tab-separated-values")
    assert response.header("X-ClickHouse-Server-Display-Name")
    summary = json.loads(response.header("X-ClickHouse-Summary"))
    assert summary["result_rows"] == "1" and all(isinstance(v, str) for v in summary.values())


def test_output_formats(server):
    sql = "SELECT number AS n, toString(number) AS s FROM numbers(3)"
    assert server.sql(sql + " FORMAT JSONEachRow").splitlines() == [
        '{"n":0,"s":"0"}', '{"n":1,"s":"1"}', '{"n":2,"s":"2"}']
    assert server.sql(sql) == "0\t0\n1\t1\n2\t2\n"
    response = server.request(body=sql.encode(), params={"default_format": "JSONEachRow"})
    assert response.header("X-ClickHouse-Format") == "JSONEachRow"
    assert json.loads(response.text.splitlines()[2]) == {"n": 2, "s": "2"}
    json_doc = json.loads(server.sql(sql + " FORMAT JSON"))
    assert json_doc["rows"] == 3


def test_row_binary_with_names_and_types_streams_one_header(server):
    """A result spanning many blocks must carry the names/types header exactly once."""
    sql = "SELECT number AS a, number * 2 AS b FROM numbers(300000) SETTINGS max_block_size=1000"
    response = server.request(body=sql.encode(),
                              params={"default_format": "RowBinaryWithNamesAndTypes"})
    assert response.status == 200
    reader = Reader(response.body)
    assert reader.header() == (["a", "b"], ["UInt64", "UInt64"])
    rows = reader.uint64_rows(2)
    assert len(rows) == 300000 and rows[-1] == (299999, 599998)
    assert all(row == (i, 2 * i) for i, row in enumerate(rows))


def test_empty_result_still_has_header(server):
    response = server.request(body=b"SELECT number AS n FROM numbers(0)",
                              params={"default_format": "RowBinaryWithNamesAndTypes"})
    assert response.body == b"\x01\x01n\x06UInt64"


def test_error_after_streaming_started_uses_exception_tag(server):
    sql = ("SELECT number, throwIf(number = 500000, 'late failure') FROM numbers(1000000) "
           "SETTINGS max_block_size=10000")
    response = server.request(body=sql.encode(), params={"default_format": "TSV"})
    assert response.status == 200  # headers were sent before the failure
    tag = response.header("X-ClickHouse-Exception-Tag").encode()
    assert response.body.endswith(b" " + tag + b"\r\n__exception__\r\n")
    assert b"FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in response.body[-1000:]


def test_errors_carry_clickhouse_code(server):
    assert_error(server.request(body=b"SELECT nosuchcolumn"), 404, 47)
    assert_error(server.request(body=b"SELEC 1"), 400, 62)
    assert_error(server.request(body=b"SELECT * FROM no_such_table"), 404, 60)
    assert_error(server.request(body=b"SELECT 1; SELECT 2"), 400, 62)
    assert_error(server.request(body=b"SELECT 1", params={"no_such_setting": "1"}), 404, 115)
    assert_error(server.request(body=b""), 400, 62)


def test_get_requests_are_readonly(server):
    assert_error(server.request(query="CREATE TABLE get_t (a Int8) ENGINE = Memory"), 500, 164)


# --- query parameters ---------------------------------------------------------------------

def test_params_in_url(server):
    response = server.request(body=b"SELECT {a:UInt32} + {b:UInt32}, {s:String}",
                              params={"param_a": "40", "param_b": "2", "param_s": "x\\ty"})
    assert response.text == "42\tx\\ty\n"  # values use escaped text format, as in ClickHouse


def test_params_in_multipart_form_like_the_crate(server):
    body, headers = multipart("SELECT {n:UInt64} AS n, {s:String} AS s",
                              {"n": "7", "s": "seven"})
    response = send(server.connection(), "POST", "/?default_format=JSONEachRow", body, headers)
    assert response.status == 200, response.text
    assert json.loads(response.text) == {"n": 7, "s": "seven"}


def test_param_value_is_never_sql(server):
    server.sql("CREATE TABLE IF NOT EXISTS secrets (k String) ENGINE = Memory")
    server.sql("INSERT INTO secrets VALUES ('a'), ('b')")
    attack = "' OR 1=1 --"
    for response in (
        server.request(body=b"SELECT count() FROM secrets WHERE k = {k:String}",
                       params={"param_k": attack}),
        send(server.connection(), "POST", "/",
             *multipart("SELECT count() FROM secrets WHERE k = {k:String}", {"k": attack})),
    ):
        assert (response.status, response.text) == (200, "0\n")
    echoed = server.request(body=b"SELECT {k:String}", params={"param_k": attack})
    assert echoed.text == "\\' OR 1=1 --\n"


# --- inserts ------------------------------------------------------------------------------

def test_insert_json_each_row_body(server):
    create_rides(server, "rides_json")
    rows = [{"id": 1, "city": "berlin", "ts": "2026-01-02 03:04:05.678", "fare": 12.5},
            {"id": 2, "city": "paris", "ts": "2026-01-02 03:04:06.000", "fare": 7.25}]
    body = "\n".join(json.dumps(row) for row in rows).encode()
    response = server.request(query="INSERT INTO rides_json FORMAT JSONEachRow", body=body)
    assert response.status == 200, response.text
    assert json.loads(response.header("X-ClickHouse-Summary"))["written_rows"] == "2"
    assert server.sql("SELECT id, city, ts, fare FROM rides_json ORDER BY id") == (
        "1\tberlin\t2026-01-02 03:04:05.678\t12.5\n2\tparis\t2026-01-02 03:04:06.000\t7.25\n")


def test_insert_with_inline_data_in_body(server):
    create_rides(server, "rides_inline")
    sql = b"INSERT INTO rides_inline FORMAT JSONEachRow\n" + json.dumps(
        {"id": 5, "city": "rome", "ts": 0, "fare": 1}).encode()
    assert server.request(body=sql).status == 200
    assert server.sql("SELECT count() FROM rides_inline") == "1\n"


def test_insert_select_and_values_in_body(server):
    create_rides(server, "rides_select")
    assert server.request(body=b"INSERT INTO rides_select SELECT number, 'x', 0, 1 "
                               b"FROM values('number UInt32', 1, 2)").status == 200
    assert server.request(query="INSERT INTO rides_select VALUES",
                          body=b"(3, 'y', 0, 2), (4, 'z', 0, 3)").status == 200
    assert server.sql("SELECT groupArray(id) FROM (SELECT id FROM rides_select ORDER BY id)") \
        == "[1,2,3,4]\n"


def test_insert_native_with_statement_in_body(server):
    """clickhouse-connect's uncompressed insert: `INSERT ... FORMAT Native\n<blocks>`."""
    create_rides(server, "rides_native")
    native = server.request(body=b"SELECT toUInt32(number) AS id, toLowCardinality('nice') "
                                 b"AS city, toDateTime64(number, 3) AS ts, number / 2 AS fare "
                                 b"FROM numbers(100000) FORMAT Native").body
    response = server.request(body=b"INSERT INTO rides_native FORMAT Native\n" + native)
    assert response.status == 200, response.text
    assert server.sql("SELECT count(), sum(id) FROM rides_native") == "100000\t4999950000\n"


def test_insert_row_binary_uncompressed_chunked(server):
    create_rides(server, "rides_rb")
    rows = [ride_row(i, ["berlin", "paris", "rome"][i % 3], 1767225600000 + i, i / 4)
            for i in range(10000)]
    pieces = [b"".join(rows[i:i + 700]) for i in range(0, len(rows), 700)]
    response = server.request(query="INSERT INTO rides_rb(id, city, ts, fare) FORMAT RowBinary",
                              body=iter(pieces))
    assert response.status == 200, response.text
    assert server.sql("SELECT count(), sum(id), uniqExact(city), max(fare), "
                      "toUnixTimestamp64Milli(max(ts)) FROM rides_rb") == (
        f"10000\t49995000\t3\t{9999 / 4}\t{1767225600000 + 9999}\n")


def test_insert_row_binary_lz4_framed_like_the_crate(server):
    create_rides(server, "rides_lz4")
    data = b"".join(ride_row(i, "madrid", 1767225600000 + i, 1.5) for i in range(50000))
    frames = [lz4_frame(data[i:i + 254 * 1024]) for i in range(0, len(data), 254 * 1024)]
    assert len(frames) > 1
    response = server.request(
        query="INSERT INTO rides_lz4(id,city,ts,fare) FORMAT RowBinary",
        params={"decompress": "1"}, body=iter(frames))
    assert response.status == 200, response.text
    assert server.sql("SELECT count(), sum(id), any(city) FROM rides_lz4") == (
        "50000\t1249975000\tmadrid\n")


def test_crate_style_describe_then_row_binary_with_names_and_types_insert(server):
    """The crate's `insert::<Row>()`: DESCRIBE TABLE, then RowBinaryWithNamesAndTypes rows
    behind a names/types header, LZ4-framed in a chunked body."""
    create_rides(server, "rides_crate")
    params = {"default_format": "RowBinaryWithNamesAndTypes", "database": "default",
              "describe_include_subcolumns": "0", "query_id": "ins-describe"}
    described = server.request(body=b"DESCRIBE TABLE rides_crate", params=params,
                               headers={"Accept-Encoding": "lz4"})
    assert described.status == 200 and described.header("Content-Encoding") == "lz4"
    reader = Reader(lz4.frame.decompress(described.body))
    names, types = reader.header()
    assert names[:2] == ["name", "type"] and set(types) == {"String"}
    columns = []
    while reader.pos < len(reader.data):
        row = [reader.string() for _ in names]
        columns.append((row[0], row[1]))
    assert columns == [("id", "UInt32"), ("city", "LowCardinality(String)"),
                       ("ts", "DateTime64(3)"), ("fare", "Float64")]

    data = rbwnat_header([c for c, _ in columns], [t for _, t in columns]) + b"".join(
        ride_row(i, "porto", 1767225600123, 2.5) for i in range(30000))
    frames = [lz4_frame(data[i:i + 254 * 1024]) for i in range(0, len(data), 254 * 1024)]
    response = server.request(
        query="INSERT INTO rides_crate(`id`,`city`,`ts`,`fare`) FORMAT RowBinaryWithNamesAndTypes",
        params={"database": "default", "decompress": "1"}, body=iter(frames))
    assert response.status == 200, response.text
    assert server.sql("SELECT count(), sum(id), any(city), any(ts) FROM rides_crate") == (
        "30000\t449985000\tporto\t2026-01-01 00:00:00.123\n")


def test_checksum_convention_matches_the_crate():
    """The crate's own `it_compresses` vector (compression/lz4/mod.rs)."""
    source = bytes([1, 0, 2, 255, 255, 255, 255, 0, 1, 1, 1, 115, 6, 83, 116, 114, 105, 110,
                    103, 3, 97, 98, 99])
    expected = bytes([245, 5, 222, 235, 225, 158, 59, 108, 225, 31, 65, 215, 66, 66, 36, 92,
                      130, 34, 0, 0, 0, 23, 0, 0, 0, 240, 8, 1, 0, 2, 255, 255, 255, 255, 0, 1,
                      1, 1, 115, 6, 83, 116, 114, 105, 110, 103, 3, 97, 98, 99])
    assert lz4_frame(source) == expected


def test_corrupted_checksum_is_rejected_and_connection_survives(server):
    create_rides(server, "rides_bad")
    frame = bytearray(lz4_frame(ride_row(1, "oslo", 0, 0.0)))
    frame[3] ^= 0xFF
    conn = server.connection()
    response = server.request(query="INSERT INTO rides_bad FORMAT RowBinary",
                              params={"decompress": "1"}, body=iter([bytes(frame)]), conn=conn)
    assert_error(response, 500, 40)
    assert "CHECKSUM_DOESNT_MATCH" in response.text
    # Same keep-alive connection, next request is unaffected.
    assert server.request(body=b"SELECT count() FROM rides_bad", conn=conn).text == "0\n"


def test_insert_gzip_content_encoding(server):
    create_rides(server, "rides_gz")
    body = gzip.compress(b"".join(ride_row(i, "lyon", 0, 0.0) for i in range(1000)))
    response = server.request(query="INSERT INTO rides_gz FORMAT RowBinary", body=body,
                              headers={"Content-Encoding": "gzip"})
    assert response.status == 200, response.text
    assert server.sql("SELECT count() FROM rides_gz") == "1000\n"


def test_malformed_insert_writes_nothing(server):
    create_rides(server, "rides_partial")
    body = b'{"id": 1, "city": "a", "ts": 0, "fare": 1}\n{"id": "oops"}\n'
    response = server.request(query="INSERT INTO rides_partial FORMAT JSONEachRow", body=body)
    assert response.status in (400, 500)
    assert response.header("X-ClickHouse-Exception-Code")
    assert server.sql("SELECT count() FROM rides_partial") == "0\n"


def test_insert_deduplication_token(server):
    server.sql("CREATE TABLE dedup (id UInt32) ENGINE = MergeTree ORDER BY id "
               "SETTINGS non_replicated_deduplication_window = 1000")
    for _ in range(2):
        response = server.request(query="INSERT INTO dedup FORMAT JSONEachRow",
                                  params={"insert_deduplication_token": "batch-1"},
                                  body=b'{"id": 1}\n{"id": 2}\n')
        assert response.status == 200, response.text
    assert server.sql("SELECT count() FROM dedup") == "2\n"
    server.request(query="INSERT INTO dedup FORMAT JSONEachRow", body=b'{"id": 3}\n',
                   params={"insert_deduplication_token": "batch-2"})
    assert server.sql("SELECT count() FROM dedup") == "3\n"


def test_async_insert_setting(server):
    server.sql("CREATE TABLE async_t (id UInt32) ENGINE = MergeTree ORDER BY id")
    response = server.request(query="INSERT INTO async_t FORMAT TSV", body=b"1\n2\n",
                              params={"async_insert": "1", "wait_for_async_insert": "1"})
    assert response.status == 200, response.text
    assert server.sql("SELECT count() FROM async_t") == "2\n"


# --- compression of results ---------------------------------------------------------------

def test_compress_1_response_uses_block_framing(server):
    sql = b"SELECT number FROM numbers(300000)"
    plain = server.request(body=sql).body
    framed = server.request(body=sql, params={"compress": "1"})
    assert framed.status == 200 and framed.header("Content-Encoding") is None
    assert unframe(framed.body) == plain


@pytest.mark.parametrize("encoding, decode", [("lz4", lz4.frame.decompress),
                                              ("gzip", gzip.decompress)])
def test_http_response_compression(server, encoding, decode):
    sql = b"SELECT number AS n FROM numbers(200000)"
    params = {"default_format": "RowBinaryWithNamesAndTypes"}
    plain = server.request(body=sql, params=params).body
    response = server.request(body=sql, params=params, headers={"Accept-Encoding": encoding})
    assert response.header("Content-Encoding") == encoding
    assert decode(response.body) == plain
    disabled = server.request(body=sql, headers={"Accept-Encoding": encoding},
                              params={**params, "enable_http_compression": "0"})
    assert disabled.header("Content-Encoding") is None and disabled.body == plain


# --- settings and sessions ----------------------------------------------------------------

def test_settings_apply_to_one_request_only(server):
    conn = server.connection()  # one keep-alive connection = one server thread
    sql = b"SELECT number FROM numbers(3)"
    limited = server.request(body=sql, conn=conn, params={
        "max_result_rows": "1", "result_overflow_mode": "throw"})
    assert_error(limited, 500, 396)
    assert server.request(body=sql, conn=conn).text == "0\n1\n2\n"
    assert server.request(body=b"SET max_threads = 1", conn=conn).status == 200
    assert server.request(body=b"SELECT getSetting('max_threads') = 1",
                          conn=conn).text == "0\n"
    got = server.request(body=b"SELECT getSetting('date_time_input_format')", conn=conn,
                         params={"date_time_input_format": "best_effort"})
    assert got.text == "best_effort\n"


def test_wait_end_of_query_buffers_the_whole_result(server):
    response = server.request(body=b"SELECT number FROM numbers(500000)",
                              params={"wait_end_of_query": "1"})
    assert response.status == 200
    assert response.header("Content-Length") == str(len(response.body))
    assert json.loads(response.header("X-ClickHouse-Summary"))["result_rows"] == "500000"


def test_database_param(server):
    server.sql("CREATE DATABASE IF NOT EXISTS `ride-db`")
    assert server.sql("SELECT currentDatabase()", database="ride-db") == "ride-db\n"
    assert server.sql("SELECT currentDatabase()") == "default\n"
    assert_error(server.request(body=b"SELECT 1", params={"database": "missing"}), 404, 81)


def test_eight_threads_with_parameterized_queries(server):
    def worker(n):
        conn = server.connection()
        for i in range(25):
            a, b = n * 1000 + i, i + 1
            if i % 2:
                body, headers = multipart("SELECT {a:UInt32} * {b:UInt32}, {s:String}",
                                          {"a": a, "b": b, "s": f"w{n}-{i}"})
                response = send(conn, "POST", "/", body, headers)
            else:
                response = server.request(body=b"SELECT {a:UInt32} * {b:UInt32}, {s:String}",
                                          params={"param_a": a, "param_b": b,
                                                  "param_s": f"w{n}-{i}"}, conn=conn)
            assert response.text == f"{a * b}\tw{n}-{i}\n"
        return n

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(worker, range(8))) == list(range(8))


def test_sessions_see_each_others_writes_immediately(server):
    server.sql("CREATE TABLE shared_writes (i UInt32) ENGINE = MergeTree ORDER BY i")
    writer, reader = server.connection(), server.connection()
    for i in range(20):
        assert server.request(query="INSERT INTO shared_writes FORMAT TSV",
                              body=f"{i}\n".encode(), conn=writer).status == 200
        assert server.request(body=b"SELECT count() FROM shared_writes",
                              conn=reader).text == f"{i + 1}\n"


def test_queries_run_during_a_streaming_insert(server):
    server.sql("CREATE TABLE slow_insert (i UInt32) ENGINE = MergeTree ORDER BY i")
    in_body = threading.Event()

    def slow_body():
        yield b"1\n"
        in_body.set()
        time.sleep(1)
        yield b"2\n"

    result = {}
    thread = threading.Thread(target=lambda: result.update(response=server.request(
        query="INSERT INTO slow_insert FORMAT TSV", body=slow_body())))
    thread.start()
    assert in_body.wait(10)
    assert server.request(body=b"SELECT 7").text == "7\n"  # not blocked by the insert
    thread.join()
    assert result["response"].status == 200
    assert server.sql("SELECT count() FROM slow_insert") == "2\n"


# --- users --------------------------------------------------------------------------------

USERS = {"default": {"password": "s3cret", "readonly": False},
         "grafana": {"password": "viewer", "readonly": True}}


def test_authentication(fresh_server):
    server = fresh_server(USERS)
    assert_error(server.request(body=b"SELECT 1"), 403, 516)
    assert_error(server.request(body=b"SELECT 1", headers={
        "X-ClickHouse-User": "default", "X-ClickHouse-Key": "wrong"}), 403, 516)
    assert_error(server.request(body=b"SELECT 1", params={"user": "nobody"}), 403, 516)
    ok = server.request(body=b"SELECT 1", headers={
        "X-ClickHouse-User": "default", "X-ClickHouse-Key": "s3cret"})
    assert (ok.status, ok.text) == (200, "1\n")
    basic = subprocess.run(["curl", "-sS", "--fail", "-u", "default:s3cret",
                            f"http://127.0.0.1:{server.port}/?query=SELECT%202"],
                           capture_output=True, text=True, check=True)
    assert basic.stdout == "2\n"
    assert server.sql("SELECT 3", user="default", password="s3cret") == "3\n"


def test_readonly_user(fresh_server):
    server = fresh_server(USERS)
    admin = {"X-ClickHouse-User": "default", "X-ClickHouse-Key": "s3cret"}
    viewer = {"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": "viewer"}
    assert server.request(body=b"CREATE TABLE ro (a UInt8) ENGINE = MergeTree ORDER BY a",
                          headers=admin).status == 200
    assert server.request(query="INSERT INTO ro FORMAT TSV", body=b"1\n",
                          headers=admin).status == 200
    assert server.request(body=b"SELECT sum(a) FROM ro", headers=viewer).text == "1\n"
    assert_error(server.request(query="INSERT INTO ro FORMAT TSV", body=b"2\n",
                                headers=viewer), 500, 164)
    assert_error(server.request(body=b"INSERT INTO ro VALUES (3)", headers=viewer), 500, 164)
    assert_error(server.request(body=b"CREATE TABLE ro2 (a UInt8) ENGINE = Memory",
                                headers=viewer), 500, 164)
    assert_error(server.request(body=b"DROP TABLE ro", headers=viewer), 500, 164)
    assert_error(server.request(query="INSERT INTO ro FORMAT TSV", body=b"4\n", headers=viewer,
                                params={"readonly": "0"}), 500, 164)  # cannot lift readonly
    assert server.request(body=b"SELECT count() FROM ro", headers=admin).text == "1\n"


# --- lifecycle ----------------------------------------------------------------------------

def test_data_persists_across_restart(fresh_server):
    first = fresh_server()
    first.sql("CREATE TABLE kept (id UInt32, city LowCardinality(String)) "
              "ENGINE = MergeTree ORDER BY id")
    assert first.request(query="INSERT INTO kept FORMAT JSONEachRow",
                         body=b'{"id":1,"city":"berlin"}\n{"id":2,"city":"oslo"}\n').status == 200
    assert first.stop() == 0
    second = fresh_server()
    assert second.sql("SELECT id, city FROM kept ORDER BY id") == "1\tberlin\n2\toslo\n"
    assert second.stop() == 0


def test_sigterm_finishes_in_flight_request_and_exits_zero(fresh_server):
    server = fresh_server()
    idle = server.connection()
    assert server.request(body=b"SELECT 1", conn=idle).status == 200  # stays open, idle
    result = {}

    def slow_query():
        result["response"] = server.request(body=b"SELECT sleep(1.5), 'done'")

    thread = threading.Thread(target=slow_query)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    thread.join()
    assert result["response"].status == 200
    assert result["response"].text == "0\tdone\n"
    assert time.monotonic() - started < 10


def test_second_process_on_same_path_is_refused(fresh_server, tmp_path):
    running = fresh_server()
    second = subprocess.run([sys.executable, str(SERVER_SCRIPT), "--port", "0",
                             "--path", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert "ready on" not in second.stdout
    assert running.sql("SELECT 1") == "1\n"


# --- clickhouse-connect -------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["lz4", "zstd", "gzip", False])
def test_clickhouse_connect_roundtrip(server, compression):
    client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port,
                                           compress=compression)
    table = f"cc_rides_{compression or 'plain'}"
    client.command(f"CREATE TABLE {table} (id UInt32, city LowCardinality(String), "
                   "ts DateTime64(3)) ENGINE = MergeTree ORDER BY id")
    rows = [[i, ["berlin", "paris"][i % 2], datetime(2026, 1, 1, 8, 30, 0, 125000)]
            for i in range(5000)]
    client.insert(table, rows, column_names=["id", "city", "ts"])
    result = client.query(f"SELECT id, city, ts FROM {table} WHERE city = {{c:String}} "
                          "ORDER BY id LIMIT 2", parameters={"c": "paris"}).result_rows
    assert result == [(1, "paris", datetime(2026, 1, 1, 8, 30, 0, 125000)),
                      (3, "paris", datetime(2026, 1, 1, 8, 30, 0, 125000))]
    assert client.command(f"SELECT count() FROM {table}") == 5000
    client.close()
