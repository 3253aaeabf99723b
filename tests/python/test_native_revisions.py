"""The Native format over HTTP as a ClickHouse server writes it for each client protocol
revision (`client_protocol_version`), checked byte by byte against the layout of
ClickHouse's NativeWriter::write and BlockInfo::write, with the revisions of
src/Core/ProtocolDefines.h:

* revision 0 (parameter absent): `columns, rows, (name, type, data)...`;
* > 0: a BlockInfo before each block: field 1 is_overflows (bool), field 2 bucket_num
  (Int32, -1), from 54480 field 3 out_of_order_buckets (VarUInt count), then 0;
* >= 54454 (DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION): a has_custom byte after the type;
* >= 54492 (..._STRING_WITH_SIZE_STREAM_SERIALIZATION): String data as UInt64 cumulative
  end offsets, then the bytes;
* < 54405: no LowCardinality.

Not reproduced: the time zone of a `DateTime('tz')` column's type name, which the engine's
own revision-0 output already drops (NativeWriter does so below 54337), so such a column
arrives as `DateTime` in the server's time zone at every revision.

Revisions sent by drivers: clickhouse-go v2 54460, clickhouse-connect 54405 (after its
probe), the Rust crate and @clickhouse/client none (0).
"""

import re
import struct

import pytest

from conftest import send  # noqa: F401  (the fixtures come from conftest)
from test_chdb_server import unframe

BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
BLOCK_INFO_54480 = b"\x01\x00\x02\xff\xff\xff\xff\x03\x00\x00"


def native(server, sql, revision=None, **params):
    if revision is not None:
        params["client_protocol_version"] = str(revision)
    response = server.request(body=sql.encode(), params={"default_format": "Native", **params})
    assert response.status == 200, response.text
    return response.body


def column(name, type_name, custom_byte, data):
    head = bytes([len(name)]) + name + bytes([len(type_name)]) + type_name
    return head + (b"\x00" if custom_byte else b"") + data


def expected_block(revision, columns, rows):
    info = b"" if not revision else BLOCK_INFO_54480 if revision >= 54480 else BLOCK_INFO
    custom = revision >= 54454
    body = b"".join(column(n, t, custom, d) for n, t, d in columns)
    return info + bytes([len(columns), rows]) + body


@pytest.mark.parametrize("revision", [None, 1, 54405, 54452, 54453, 54454, 54460, 54465,
                                      54473, 54479, 54480, 54483, 54491])
def test_block_layout_per_revision(server, revision):
    body = native(server, "SELECT toUInt8(7) AS a, 'ab' AS s, toNullable(toInt32(-2)) AS n",
                  revision)
    assert body == expected_block(revision or 0, [
        (b"a", b"UInt8", b"\x07"),
        (b"s", b"String", b"\x02ab"),
        (b"n", b"Nullable(Int32)", b"\x00" + struct.pack("<i", -2)),
    ], 1)


@pytest.mark.parametrize("revision", [54492, 54493, 60000])
def test_strings_as_a_size_stream_from_54492(server, revision):
    """Higher revisions than the server knows get the newest layout it knows."""
    sql = ("SELECT ['ab', 'c', ''] AS a, toNullable('xyz') AS n, ('p', 1::UInt8) AS t, "
           "toLowCardinality('k') AS lc")
    offsets = struct.pack("<QQQ", 2, 3, 3)
    assert native(server, sql, revision) == expected_block(54492, [
        (b"a", b"Array(String)", struct.pack("<Q", 3) + offsets + b"abc"),
        (b"n", b"Nullable(String)", b"\x00" + struct.pack("<Q", 3) + b"xyz"),
        (b"t", b"Tuple(String, UInt8)", struct.pack("<Q", 1) + b"p\x01"),
        # The LowCardinality dictionary keeps its own serialization.
        (b"lc", b"LowCardinality(String)",
         struct.pack("<QQQ", 1, 0x600, 2) + b"\x00\x01k" + struct.pack("<Q", 1) + b"\x01"),
    ], 1)


def test_every_type_ridectl_reads_keeps_its_data(server):
    """The data part of each column is the engine's, only framed for the revision: the
    revision-54460 answer is the revision-0 answer with BlockInfo and has_custom bytes."""
    sql = ("SELECT toLowCardinality(toString(number % 3)) AS lc, "
           "toDateTime64(1700000000.123 + number, 3, 'UTC') AS ts, "
           "if(number % 2 = 0, NULL, number * 1.5) AS fare, toDecimal64(number, 4) AS d, "
           "[toString(number)] AS arr, map('k', number) AS m, toUUID('00000000-0000-0000-0000-"
           "000000000001') AS u, toDateTime(number, 'UTC') AS dt, toDate(number) AS day "
           "FROM numbers(5)")
    plain = native(server, sql)
    framed = native(server, sql, 54460)
    assert framed.startswith(BLOCK_INFO + plain[:2])
    # Remove the has_custom byte after each type name: walk the headers of the plain block.
    names = [b"lc", b"ts", b"fare", b"d", b"arr", b"m", b"u", b"dt", b"day"]
    rebuilt = framed[len(BLOCK_INFO):]
    for name in names:
        at = rebuilt.index(bytes([len(name)]) + name)
        type_len = rebuilt[at + 1 + len(name)]
        custom_at = at + 2 + len(name) + type_len
        assert rebuilt[custom_at] == 0, name
        rebuilt = rebuilt[:custom_at] + rebuilt[custom_at + 1:]
    assert rebuilt == plain


def test_blocks_of_max_block_size_each_with_block_info(server):
    body = native(server, "SELECT number AS n FROM numbers(10)", 54460, max_block_size="4")
    blocks, pos = [], 0
    while pos < len(body):
        assert body[pos:pos + 8] == BLOCK_INFO
        columns, rows = body[pos + 8], body[pos + 9]
        assert columns == 1
        header = pos + 10 + 10  # name "n", type "UInt64", has_custom
        assert body[pos + 10:header] == b"\x01n\x06UInt64\x00"
        blocks.append(struct.unpack_from(f"<{rows}Q", body, header))
        pos = header + 8 * rows
    assert blocks == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]


def test_compress_1_frames_the_revision_layout(server):
    sql = "SELECT number AS n, toString(number) AS s FROM numbers(200000)"
    plain = native(server, sql, 54460)
    framed = native(server, sql, 54460, compress="1")
    assert unframe(framed) == plain
    assert plain.count(BLOCK_INFO) >= 3, "streamed in several blocks"


def test_old_revisions_get_no_low_cardinality(server):
    sql = ("SELECT toLowCardinality('x') AS lc, "
           "CAST(['y', NULL] AS Array(LowCardinality(Nullable(String)))) AS a")
    array = (b"a", b"Array(Nullable(String))",
             struct.pack("<Q", 2) + b"\x00\x01" + b"\x01y\x00")
    assert native(server, sql, 54404) == expected_block(54404, [
        (b"lc", b"String", b"\x01x"), array], 1)
    # From 54405 the engine's LowCardinality data goes out as it is.
    assert native(server, sql, 54405) == BLOCK_INFO + native(server, sql)


def test_aggregate_function_states_are_refused_not_garbled(server):
    response = server.request(
        body=b"SELECT uniqState(number) AS s FROM numbers(10)",
        params={"default_format": "Native", "client_protocol_version": "54460"})
    assert response.status == 501
    assert response.header("X-ClickHouse-Exception-Code") == "48"
    # Merged states are plain numbers and go through.
    merged = native(server, "SELECT uniqMerge(s) AS u FROM (SELECT uniqState(number) AS s "
                            "FROM numbers(10))", 54460)
    assert merged == expected_block(54460, [(b"u", b"UInt64", struct.pack("<Q", 10))], 1)


def test_error_before_data_is_framed_with_compress_1(server):
    response = server.request(body=b"SELECT nosuchcolumn", params={
        "default_format": "Native", "client_protocol_version": "54460", "compress": "1"})
    assert response.status == 404
    assert response.header("X-ClickHouse-Exception-Code") == "47"
    assert unframe(response.body).startswith(b"Code: 47. DB::Exception: ")


@pytest.mark.parametrize("compress", ["0", "1"])
def test_error_mid_stream_is_a_tagged_block_and_breaks_the_response(server, compress):
    sql = ("SELECT number AS n, throwIf(number = 1500000, 'late failure') AS f "
           "FROM numbers(2000000) SETTINGS max_block_size=65536")
    response = server.request(body=sql.encode(), params={
        "default_format": "Native", "client_protocol_version": "54460", "compress": compress})
    assert response.status == 200
    assert not response.complete, "no final chunk after a late error"
    tag = response.header("X-ClickHouse-Exception-Tag").encode()
    assert len(tag) == 16
    body = unframe(response.body) if compress == "1" else response.body
    assert body[:8] == BLOCK_INFO, "whole blocks came before the failure"
    opening = b"\r\n__exception__\r\n" + tag + b"\r\n"
    message = body[body.index(opening) + len(opening):]
    trailer = re.search(rb"(\d+) " + tag + rb"\r\n__exception__\r\n\Z", message)
    assert trailer, message[-200:]
    text = message[:trailer.start()]
    assert int(trailer.group(1)) == len(text) and text.endswith(b"\n")
    assert text.startswith(b"Code: 395. DB::Exception:") and b"late failure" in text


def test_bad_revision_is_an_error(server):
    response = server.request(body=b"SELECT 1", params={"client_protocol_version": "x"})
    assert response.status == 400
