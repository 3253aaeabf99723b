// Package drivers runs clickhouse-go v2 — the driver of Grafana's ClickHouse plugin —
// over HTTP against the local ClickHouse endpoint started by scripts/test.sh, the way
// an application and the plugin use it: handshake, catalog queries, every column type
// of ridectl's tables, a streamed result of a million rows (with and without LZ4
// block compression), bound parameters, batch inserts, typed server errors (before and
// after the first block), and every query of grafana/ expanded by tests/grafana.rs
// (src/grafana/macros.rs, the one implementation) run as the plugin would run it: the
// read-only user, the data source's database and max_execution_time.
//
// Environment: RIDECTL_TEST_CLICKHOUSE_ADDR (host:port), RIDECTL_DRIVER_QUERIES (the
// JSON written by tests/grafana.rs), RIDECTL_TEST_READONLY_USER / _PASSWORD.
package drivers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const streamedRows = 1_000_000

func env(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run the matrix through scripts/test.sh", name)
	}
	return v
}

func open(t *testing.T, database string, compression clickhouse.CompressionMethod, user, password string, settings clickhouse.Settings) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{env(t, "RIDECTL_TEST_CLICKHOUSE_ADDR")},
		Protocol:    clickhouse.HTTP,
		Auth:        clickhouse.Auth{Database: database, Username: user, Password: password},
		Compression: &clickhouse.Compression{Method: compression},
		Settings:    settings,
		DialTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testDatabase creates a database with ridectl's schema (sql/schema) for one test.
func testDatabase(t *testing.T) (driver.Conn, string) {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("drivers_go_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000_000)
	admin := open(t, "default", clickhouse.CompressionNone, "default", "", nil)
	if err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name) })
	conn := open(t, name, clickhouse.CompressionLZ4, "default", "", nil)
	files, err := filepath.Glob("../../../sql/schema/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	sort.Strings(files)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range strings.Split(string(text), ";\n") {
			if strings.Contains(stmt, "CREATE") {
				if err := conn.Exec(ctx, stmt); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
		}
	}
	return conn, name
}

func TestHandshake(t *testing.T) {
	conn := open(t, "default", clickhouse.CompressionNone, "default", "", nil)
	if err := conn.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	v, err := conn.ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.Version.Major < 24 || v.DisplayName == "" {
		t.Fatalf("unexpected server: %+v", v)
	}
}

func TestCatalog(t *testing.T) {
	conn, name := testDatabase(t)
	ctx := context.Background()
	var databases []string
	rows, err := conn.Query(ctx, "SHOW DATABASES")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		databases = append(databases, d)
	}
	if !contains(databases, name) {
		t.Fatalf("SHOW DATABASES lacks %s: %v", name, databases)
	}
	var tables []string
	rows, err = conn.Query(ctx, "SHOW TABLES")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table string
		if err := rows.Scan(&table); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, table)
	}
	for _, want := range []string{"ride_events", "city_minute_rollup", "city_window_metrics", "driver_locations"} {
		if !contains(tables, want) {
			t.Fatalf("SHOW TABLES lacks %s: %v", want, tables)
		}
	}
	rows, err = conn.Query(ctx, "DESCRIBE TABLE ride_events")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for rows.Next() {
		var col, typ, defaultType, defaultExpr, comment, codec, ttl string
		if err := rows.Scan(&col, &typ, &defaultType, &defaultExpr, &comment, &codec, &ttl); err != nil {
			t.Fatal(err)
		}
		types[col] = typ
	}
	for col, typ := range map[string]string{"city": "LowCardinality(String)", "timestamp": "DateTime64(3, 'UTC')", "final_fare": "Nullable(Float64)"} {
		if types[col] != typ {
			t.Fatalf("DESCRIBE ride_events: %s is %q, want %q", col, types[col], typ)
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestInsertAndSelectEveryColumnType inserts rides with a batch (Native over HTTP) and
// reads back every type of ridectl's tables, the rollup's states merged.
func TestInsertAndSelectEveryColumnType(t *testing.T) {
	conn, _ := testDatabase(t)
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO ride_events (event_id, schema_version, event_type, ride_id, timestamp, city, estimated_fare, user_id, driver_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, final_fare, cancelled_by, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 26, 10, 0, 0, 123_000_000, time.UTC)
	cities := []string{"berlin", "prague", "vienna"}
	const n = 3000
	for i := 0; i < n; i++ {
		var fare *float64
		kind := "requested"
		if i%3 == 2 {
			f := float64(i%40) + 0.5
			fare = &f
			kind = "completed"
		}
		err := batch.Append(fmt.Sprintf("e%d", i), uint8(1), kind, fmt.Sprintf("r%d", i/3), base.Add(time.Duration(i)*time.Second),
			cities[i%3], 10.25, fmt.Sprintf("u%d", i%50), "", 52.5, 13.4, 52.6, 13.5, fare, "", uint16(i%12), uint64(i))
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("insert: %v", err)
	}

	var (
		city      string
		ts        time.Time
		fare      *float64
		kind      string
		partition uint16
		offset    uint64
		version   uint8
	)
	row := conn.QueryRow(ctx, "SELECT city, timestamp, final_fare, event_type, kafka_partition, kafka_offset, schema_version FROM ride_events WHERE event_id = 'e5'")
	if err := row.Scan(&city, &ts, &fare, &kind, &partition, &offset, &version); err != nil {
		t.Fatal(err)
	}
	if city != "vienna" || !ts.Equal(base.Add(5*time.Second)) || fare == nil || *fare != 5.5 || kind != "completed" || partition != 5 || offset != 5 || version != 1 {
		t.Fatalf("row e5: %s %v %v %s %d %d %d", city, ts, fare, kind, partition, offset, version)
	}
	if err := conn.QueryRow(ctx, "SELECT final_fare FROM ride_events WHERE event_id = 'e0'").Scan(&fare); err != nil || fare != nil {
		t.Fatalf("NULL final_fare: %v %v", fare, err)
	}
	var count uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM ride_events").Scan(&count); err != nil || count != n {
		t.Fatalf("count %d %v", count, err)
	}

	// The rollup filled by the materialized view, its AggregateFunction states merged.
	rows, err := conn.Query(ctx, `SELECT minute, city, countMerge(events), countIfMerge(requests), countIfMerge(completions),
		sumMerge(fare_sum), uniqMerge(riders), max(last_event) FROM city_minute_rollup GROUP BY minute, city ORDER BY minute, city`)
	if err != nil {
		t.Fatal(err)
	}
	var events, requests uint64
	groups := 0
	for rows.Next() {
		var (
			minute, last         time.Time
			c                    string
			e, req, done, riders uint64
			fareSum              float64
		)
		if err := rows.Scan(&minute, &c, &e, &req, &done, &fareSum, &riders, &last); err != nil {
			t.Fatal(err)
		}
		if minute.Second() != 0 || last.Before(minute) || riders == 0 || fareSum <= 0 {
			t.Fatalf("rollup row %v %s %d %v %d %v", minute, c, e, fareSum, riders, last)
		}
		events += e
		requests += req
		groups++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if events != n || requests != 2*n/3 || groups != 150 {
		t.Fatalf("rollup: %d events, %d requests, %d groups", events, requests, groups)
	}

	// city_window_metrics: UInt8, UInt64, Float64 and DateTime64 columns.
	if err := conn.Exec(ctx, "INSERT INTO city_window_metrics (window_start, window_end, city, total_events, requests, completions, cancellations, avg_fare, unique_riders, cancellation_rate, completion_rate, is_final, updated_at) VALUES (now64(3), now64(3) + 300, 'berlin', 10, 5, 4, 1, 12.5, 3, 0.2, 0.8, 1, now64(3))"); err != nil {
		t.Fatal(err)
	}
	var (
		start  time.Time
		riders uint64
		rate   float64
		final  uint8
	)
	if err := conn.QueryRow(ctx, "SELECT window_start, unique_riders, cancellation_rate, is_final FROM city_window_metrics FINAL").Scan(&start, &riders, &rate, &final); err != nil {
		t.Fatal(err)
	}
	if riders != 3 || rate != 0.2 || final != 1 || start.IsZero() {
		t.Fatalf("window row: %v %d %v %d", start, riders, rate, final)
	}
}

// TestStreamMillionRows reads a million rows in max_block_size blocks, with and
// without LZ4 block compression, and checks every value.
func TestStreamMillionRows(t *testing.T) {
	for _, c := range []struct {
		name   string
		method clickhouse.CompressionMethod
	}{{"none", clickhouse.CompressionNone}, {"lz4", clickhouse.CompressionLZ4}} {
		t.Run(c.name, func(t *testing.T) {
			conn := open(t, "default", c.method, "default", "", clickhouse.Settings{"max_block_size": 65536})
			started := time.Now()
			rows, err := conn.Query(context.Background(), fmt.Sprintf(
				"SELECT number, toString(number), toLowCardinality(toString(number %% 7)), toDateTime64(number, 3, 'UTC') FROM numbers(%d)", streamedRows))
			if err != nil {
				t.Fatal(err)
			}
			var seen uint64
			for rows.Next() {
				var (
					n  uint64
					s  string
					lc string
					ts time.Time
				)
				if err := rows.Scan(&n, &s, &lc, &ts); err != nil {
					t.Fatal(err)
				}
				if n != seen || s != fmt.Sprint(seen) || lc != fmt.Sprint(seen%7) || ts.Unix() != int64(seen) {
					t.Fatalf("row %d: %d %q %q %v", seen, n, s, lc, ts)
				}
				seen++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if seen != streamedRows {
				t.Fatalf("streamed %d rows", seen)
			}
			t.Logf("streamed %d rows in %v", seen, time.Since(started))
		})
	}
}

func TestBindParameters(t *testing.T) {
	conn := open(t, "default", clickhouse.CompressionNone, "default", "", nil)
	ctx := clickhouse.Context(context.Background(), clickhouse.WithParameters(clickhouse.Parameters{
		"city": "o'hare", "n": "41",
	}))
	var (
		city string
		n    uint64
	)
	if err := conn.QueryRow(ctx, "SELECT {city:String}, {n:UInt64} + 1").Scan(&city, &n); err != nil {
		t.Fatal(err)
	}
	if city != "o'hare" || n != 42 {
		t.Fatalf("server-side parameters: %q %d", city, n)
	}
	// Client-side binding of the database/sql style.
	if err := conn.QueryRow(context.Background(), "SELECT ?, toUInt64(? * 2)", "it's", 21).Scan(&city, &n); err != nil {
		t.Fatal(err)
	}
	if city != "it's" || n != 42 {
		t.Fatalf("bound arguments: %q %d", city, n)
	}
}

func TestServerErrorsAreTypedExceptions(t *testing.T) {
	for _, method := range []clickhouse.CompressionMethod{clickhouse.CompressionNone, clickhouse.CompressionLZ4} {
		conn := open(t, "default", method, "default", "", clickhouse.Settings{"max_block_size": 10000})
		_, err := conn.Query(context.Background(), "SELECT * FROM no_such_table_anywhere")
		var ex *clickhouse.Exception
		if !errors.As(err, &ex) || ex.Code != 60 {
			t.Fatalf("compression %v: unknown table: want Exception code 60, got %T %v", method, err, err)
		}
		// After the first blocks went out: the exception block at the end of the stream.
		rows, err := conn.Query(context.Background(), "SELECT number, throwIf(number = 500000, 'late failure') FROM numbers(1000000)")
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
		}
		if !errors.As(err, &ex) || ex.Code != 395 || !strings.Contains(ex.Message, "late failure") {
			t.Fatalf("compression %v: mid-stream: want Exception code 395, got %T %v", method, err, err)
		}
	}
}

type grafanaQuery struct {
	What    string   `json:"what"`
	Kind    string   `json:"kind"`
	Columns []string `json:"columns"`
	SQL     string   `json:"sql"`
	Cities  []string `json:"cities"`
}

// TestGrafanaQueries runs every panel, variable and alert query of grafana/, expanded
// by tests/grafana.rs for the dashboard's range, "All" and one city, as the plugin does.
func TestGrafanaQueries(t *testing.T) {
	raw, err := os.ReadFile(env(t, "RIDECTL_DRIVER_QUERIES"))
	if err != nil {
		t.Fatalf("the expanded queries (written by `cargo test --test grafana`): %v", err)
	}
	var doc struct {
		Database string         `json:"database"`
		Queries  []grafanaQuery `json:"queries"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Queries) == 0 {
		t.Fatal("no queries")
	}
	// The data source: HTTP, the read-only user, defaultDatabase, queryTimeout 60.
	conn := open(t, doc.Database, clickhouse.CompressionNone, env(t, "RIDECTL_TEST_READONLY_USER"),
		os.Getenv("RIDECTL_TEST_READONLY_PASSWORD"), clickhouse.Settings{"max_execution_time": 60})
	for _, q := range doc.Queries {
		checkGrafanaQuery(t, conn, q)
	}
	// The read-only user cannot write.
	err = conn.Exec(context.Background(), "INSERT INTO ride_events (event_id) VALUES ('x')")
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 164 {
		t.Fatalf("read-only user wrote: %T %v", err, err)
	}
	t.Logf("%d Grafana queries through clickhouse-go", len(doc.Queries))
}

func checkGrafanaQuery(t *testing.T, conn driver.Conn, q grafanaQuery) {
	t.Helper()
	rows, err := conn.Query(context.Background(), q.SQL)
	if err != nil {
		t.Fatalf("%s: %v\n%s", q.What, err, q.SQL)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	names := rows.Columns()
	var data [][]any
	for rows.Next() {
		vals := make([]any, len(types))
		for i, ct := range types {
			vals[i] = newScanTarget(ct.ScanType())
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: scan: %v", q.What, err)
		}
		data = append(data, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q.What, err)
	}
	if len(data) == 0 {
		t.Fatalf("%s: no rows", q.What)
	}
	dbType := func(i int) string { return types[i].DatabaseTypeName() }
	isTime := func(ty string) bool { return strings.HasPrefix(ty, "DateTime") }
	isNum := func(ty string) bool {
		ty = strings.TrimPrefix(strings.TrimPrefix(ty, "Nullable("), "LowCardinality(")
		for _, p := range []string{"Int", "UInt", "Float", "Decimal"} {
			if strings.HasPrefix(ty, p) {
				return true
			}
		}
		return false
	}
	isText := func(ty string) bool { return strings.Contains(ty, "String") }
	switch q.Kind {
	case "timeseries":
		if !isTime(dbType(0)) {
			t.Fatalf("%s: time column first, got %s %s", q.What, names[0], dbType(0))
		}
		numeric := false
		for i := 1; i < len(types); i++ {
			numeric = numeric || isNum(dbType(i))
		}
		if !numeric {
			t.Fatalf("%s: no number column: %v", q.What, names)
		}
	case "stat":
		for i := range types {
			if !isNum(dbType(i)) {
				t.Fatalf("%s: stat column %s is %s", q.What, names[i], dbType(i))
			}
		}
	case "variable":
		if !isText(dbType(0)) {
			t.Fatalf("%s: %s", q.What, dbType(0))
		}
	}
	for _, want := range q.Columns {
		if !contains(names, want) {
			t.Fatalf("%s: no column %q in %v", q.What, want, names)
		}
	}
	// The City selection reaches the result.
	for i, n := range names {
		if n != "city" || len(q.Cities) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, r := range data {
			seen[fmt.Sprint(deref(r[i]))] = true
		}
		for c := range seen {
			if !contains(q.Cities, c) {
				t.Fatalf("%s: city %q not selected (%v)", q.What, c, q.Cities)
			}
		}
	}
}

func newScanTarget(ty reflect.Type) any {
	return reflect.New(ty).Interface()
}

func deref(v any) any {
	return reflect.ValueOf(v).Elem().Interface()
}
