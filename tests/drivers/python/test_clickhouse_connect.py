"""clickhouse-connect (the Python client) against the local ClickHouse endpoint started by
scripts/test.sh: it probes `client_protocol_version` and, when the answer has a BlockInfo,
reads every result in revision 54405's Native layout. Environment:
RIDECTL_TEST_CLICKHOUSE_URL (http://host:port)."""

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

SCHEMA = Path(__file__).resolve().parents[3] / "sql" / "schema"


def url():
    value = os.environ.get("RIDECTL_TEST_CLICKHOUSE_URL")
    if not value:
        pytest.fail("RIDECTL_TEST_CLICKHOUSE_URL is not set: run the matrix through scripts/test.sh")
    return value


def connect(**kwargs):
    host, port = url().removeprefix("http://").split(":")
    return clickhouse_connect.get_client(host=host, port=int(port), **kwargs)


@pytest.fixture(scope="module")
def client():
    database = f"drivers_py_{os.getpid()}_{time.time_ns() % 10**9}"
    admin = connect()
    admin.command(f"CREATE DATABASE {database}")
    client = connect(database=database, compress="lz4")
    for path in sorted(SCHEMA.glob("*.sql")):
        for statement in path.read_text().split(";\n"):
            if "CREATE" in statement:
                client.command(statement)
    yield client
    admin.command(f"DROP DATABASE IF EXISTS {database}")
    client.close()
    admin.close()


def test_handshake_negotiates_the_native_protocol_revision(client):
    assert client.protocol_version == 54405, "the probe saw a server's BlockInfo"
    assert client.server_version.split(".")[0].isdigit()


def test_catalog(client):
    assert client.database in client.query("SHOW DATABASES").result_columns[0]
    tables = client.query("SHOW TABLES").result_columns[0]
    assert {"ride_events", "city_minute_rollup", "city_window_metrics"} <= set(tables)
    types = dict(client.query("DESCRIBE TABLE ride_events").result_rows[i][:2]
                 for i in range(18))
    assert types["city"] == "LowCardinality(String)"
    assert types["timestamp"] == "DateTime64(3, 'UTC')"
    assert types["final_fare"] == "Nullable(Float64)"


def test_insert_and_select_every_column_type(client):
    base = datetime(2026, 11, 26, 10, 0, 0, 123000, tzinfo=timezone.utc)
    cities = ["berlin", "prague", "vienna"]
    rows = [[f"e{i}", 1, "completed" if i % 3 == 2 else "requested", f"r{i // 3}",
             base + timedelta(seconds=i), cities[i % 3], 10.25, f"u{i % 50}", "", 52.5, 13.4,
             52.6, 13.5, (i % 40) + 0.5 if i % 3 == 2 else None, "", i % 12, i]
            for i in range(3000)]
    columns = ["event_id", "schema_version", "event_type", "ride_id", "timestamp", "city",
               "estimated_fare", "user_id", "driver_id", "pickup_lat", "pickup_lng",
               "dropoff_lat", "dropoff_lng", "final_fare", "cancelled_by", "kafka_partition",
               "kafka_offset"]
    client.insert("ride_events", rows, column_names=columns)
    row = client.query("SELECT city, timestamp, final_fare, event_type, kafka_offset "
                       "FROM ride_events WHERE event_id = 'e5'").result_rows[0]
    assert row[0] == "vienna" and row[2] == 5.5 and row[3] == "completed" and row[4] == 5
    assert row[1].replace(tzinfo=timezone.utc) == base + timedelta(seconds=5)
    assert client.query("SELECT final_fare FROM ride_events WHERE event_id = 'e0'"
                        ).result_rows == [(None,)]
    rollup = client.query(
        "SELECT minute, city, countMerge(events), countIfMerge(requests), sumMerge(fare_sum), "
        "uniqMerge(riders), max(last_event) FROM city_minute_rollup GROUP BY minute, city"
    ).result_rows
    assert len(rollup) == 150
    assert sum(r[2] for r in rollup) == 3000 and sum(r[3] for r in rollup) == 2000


def test_a_million_rows_streamed(client):
    seen = 0
    with client.query_column_block_stream(
            "SELECT number, toString(number) FROM numbers(1000000)",
            settings={"max_block_size": 65536}) as stream:
        for numbers, strings in stream:
            assert numbers[0] == seen and strings[-1] == str(seen + len(numbers) - 1)
            seen += len(numbers)
    assert seen == 1_000_000


def test_bound_parameters(client):
    assert client.query("SELECT {city:String}, {n:UInt64} + 1",
                        parameters={"city": "o'hare", "n": 41}).result_rows == [("o'hare", 42)]
    assert client.query("SELECT %(city)s", parameters={"city": "it's"}).result_rows == [("it's",)]


def test_server_errors_carry_their_code(client):
    with pytest.raises(DatabaseError, match=r"Code: 60\."):
        client.query("SELECT * FROM no_such_table_anywhere")
    with pytest.raises(DatabaseError, match="late failure"):
        with client.query_row_block_stream(
                "SELECT number, throwIf(number = 500000, 'late failure') FROM numbers(1000000)",
                settings={"max_block_size": 10000}) as stream:
            for _ in stream:
                pass
