// @clickhouse/client (Node) against the local ClickHouse endpoint started by
// scripts/test.sh: handshake, catalog, ridectl's column types, a million rows
// streamed, bound parameters, inserts and typed server errors.
// Environment: RIDECTL_TEST_CLICKHOUSE_URL (http://host:port).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createClient, ClickHouseError } from '@clickhouse/client';

const url = process.env.RIDECTL_TEST_CLICKHOUSE_URL;
if (!url) throw new Error('RIDECTL_TEST_CLICKHOUSE_URL is not set: run the matrix through scripts/test.sh');
const database = `drivers_node_${process.pid}_${Date.now() % 1e9}`;
let admin;
let client;

before(async () => {
  admin = createClient({ url });
  await admin.command({ query: `CREATE DATABASE ${database}` });
  client = createClient({ url, database, compression: { request: true, response: true } });
  const dir = new URL('../../../sql/schema/', import.meta.url);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) {
    for (const stmt of readFileSync(new URL(file, dir), 'utf8').split(';\n')) {
      if (stmt.includes('CREATE')) await client.command({ query: stmt });
    }
  }
});

after(async () => {
  await admin?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
  await client?.close();
  await admin?.close();
});

test('handshake', async () => {
  assert.equal((await client.ping()).success, true);
  const rows = await (await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })).json();
  assert.match(rows[0].v, /^\d+\.\d+/);
});

test('catalog', async () => {
  const dbs = await (await client.query({ query: 'SHOW DATABASES', format: 'JSONEachRow' })).json();
  assert.ok(dbs.some((r) => r.name === database));
  const tables = (await (await client.query({ query: 'SHOW TABLES', format: 'JSONEachRow' })).json()).map((r) => r.name);
  for (const t of ['ride_events', 'city_minute_rollup', 'city_window_metrics', 'driver_locations']) assert.ok(tables.includes(t), t);
  const cols = await (await client.query({ query: 'DESCRIBE TABLE ride_events', format: 'JSONEachRow' })).json();
  const types = Object.fromEntries(cols.map((c) => [c.name, c.type]));
  assert.equal(types.city, 'LowCardinality(String)');
  assert.equal(types.timestamp, "DateTime64(3, 'UTC')");
  assert.equal(types.final_fare, 'Nullable(Float64)');
});

test('insert and select every column type, rollup states merged', async () => {
  const base = Date.UTC(2026, 10, 26, 10, 0, 0, 123);
  const cities = ['berlin', 'prague', 'vienna'];
  const n = 3000;
  const values = Array.from({ length: n }, (_, i) => ({
    event_id: `e${i}`, schema_version: 1, event_type: i % 3 === 2 ? 'completed' : 'requested',
    ride_id: `r${Math.floor(i / 3)}`, timestamp: new Date(base + i * 1000).toISOString().replace('T', ' ').replace('Z', ''), city: cities[i % 3],
    estimated_fare: 10.25, user_id: `u${i % 50}`, driver_id: '', pickup_lat: 52.5, pickup_lng: 13.4,
    dropoff_lat: 52.6, dropoff_lng: 13.5, final_fare: i % 3 === 2 ? (i % 40) + 0.5 : null,
    cancelled_by: '', kafka_partition: i % 12, kafka_offset: i,
  }));
  await client.insert({ table: 'ride_events', values, format: 'JSONEachRow' });
  const [row] = await (await client.query({
    query: "SELECT city, toUnixTimestamp64Milli(timestamp) AS ms, final_fare, event_type, kafka_offset FROM ride_events WHERE event_id = 'e5'",
    format: 'JSONEachRow' })).json();
  assert.ok(row, 'e5 was inserted');
  assert.equal(row.city, 'vienna');
  assert.equal(Number(row.ms), base + 5000);
  assert.equal(row.final_fare, 5.5);
  assert.equal(row.event_type, 'completed');
  assert.equal(Number(row.kafka_offset), 5);
  const [nul] = await (await client.query({ query: "SELECT final_fare FROM ride_events WHERE event_id = 'e0'", format: 'JSONEachRow' })).json();
  assert.equal(nul.final_fare, null);
  const rollup = await (await client.query({
    query: `SELECT minute, city, countMerge(events) AS events, countIfMerge(requests) AS requests,
            sumMerge(fare_sum) AS fare_sum, uniqMerge(riders) AS riders, max(last_event) AS last
            FROM city_minute_rollup GROUP BY minute, city`, format: 'JSONEachRow' })).json();
  assert.equal(rollup.length, 150);
  assert.equal(rollup.reduce((s, r) => s + Number(r.events), 0), n);
  assert.equal(rollup.reduce((s, r) => s + Number(r.requests), 0), (2 * n) / 3);
});

test('a million rows streamed', async () => {
  const rs = await client.query({ query: 'SELECT number, toString(number) AS s FROM numbers(1000000)',
    format: 'JSONCompactEachRow', clickhouse_settings: { max_block_size: '65536' } });
  let seen = 0;
  for await (const rows of rs.stream()) {
    for (const row of rows) {
      const [n, s] = row.json();
      assert.ok(Number(n) === seen && s === String(seen));
      seen += 1;
    }
  }
  assert.equal(seen, 1_000_000);
});

test('bound parameters', async () => {
  const [row] = await (await client.query({
    query: 'SELECT {city:String} AS city, {n:UInt64} + 1 AS n',
    query_params: { city: "o'hare", n: 41 }, format: 'JSONEachRow' })).json();
  assert.equal(row.city, "o'hare");
  assert.equal(Number(row.n), 42);
});

test('server errors are typed with their code', async () => {
  await assert.rejects(client.query({ query: 'SELECT * FROM no_such_table_anywhere' }),
    (e) => e instanceof ClickHouseError && e.code === '60');
  await assert.rejects(async () => {
    const rs = await client.query({ query: "SELECT number, throwIf(number = 500000, 'late failure') FROM numbers(1000000)",
      format: 'JSONCompactEachRow', clickhouse_settings: { max_block_size: '10000' } });
    for await (const rows of rs.stream()) void rows;
  }, (e) => /late failure/.test(String(e?.message)) && /395/.test(String(e?.code ?? e?.message)));
});
