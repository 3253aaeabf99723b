"""A battery of ride events from a client that is not ridectl (confluent-kafka, the
seed design's client): malformed messages and valid-but-unusual ones. Each is keyed
`battery-<run>-<n>`; the expected outcome of each is printed as one JSON line
`{"key": ..., "expect": "valid" | "dead_letter", "ride_id": ...}` so the Rust test can check that
every message is exactly once in ride_events or exactly once in the dead-letter topic.

Usage: battery_producer.py BOOTSTRAP TOPIC RUN_ID
"""
import json
import sys
import time
from datetime import datetime, timedelta, timezone

from confluent_kafka import Producer

bootstrap, topic, run = sys.argv[1], sys.argv[2], sys.argv[3]
now = datetime.now(timezone.utc)


def event(n, **over):
    e = {
        "event_type": "requested",
        "ride_id": f"battery-{run}-{n}",
        "timestamp": (now - timedelta(seconds=5)).isoformat(),
        "city": "bratislava",
        "user_id": f"user-{n}",
        "estimated_fare": 7.25,
    }
    e.update(over)
    return e


def js(obj):
    return json.dumps(obj).encode()


cases = []  # (expect, payload bytes)
# Malformed: every one must be dead-lettered once.
cases.append(("dead_letter", b"this is not json"))
cases.append(("dead_letter", js(event(1))[:40]))  # truncated
cases.append(("dead_letter", b"[1, 2, 3]"))  # an array
cases.append(("dead_letter", b"null"))
cases.append(("dead_letter", bytes(range(256))))  # binary
cases.append(("dead_letter", b'{"event_type": "requested", "city": "\xff\xfe", "ride_id": "x"}'))  # invalid UTF-8
cases.append(("dead_letter", js(event(6))[:-1] + b', "city": "prague"}'))  # duplicate key
cases.append(("dead_letter", js(event(7, estimated_fare="cheap"))))  # wrong type
cases.append(("dead_letter", js(event(8, event_type="teleported"))))  # unknown event type
cases.append(("dead_letter", js(event(9)).replace(b"7.25", b"NaN")))  # NaN is not JSON
cases.append(("dead_letter", js(event(10)).replace(b"7.25", b"1e309")))  # out of f64 range
cases.append(("dead_letter", js(event(11, estimated_fare=-3.0))))  # negative fare
cases.append(("dead_letter", js(event(12, city=""))))  # empty city
cases.append(("dead_letter", js(event(13, city="x" * 65))))  # city too long
cases.append(("dead_letter", js(event(14, note="y" * 900_000, city=""))))  # 900 KB, bad
cases.append(("dead_letter", b'{"a":' * 100_000 + b"1" + b"}" * 100_000))  # 100,000 deep
cases.append(("dead_letter", js(event(16, timestamp=(now + timedelta(days=1)).isoformat()))))  # future
# Valid but unusual: every one must be in ride_events once.
cases.append(("valid", js(event(20))))  # the seed shape (naive isoformat would be the same)
cases.append(("valid", js(event(21, timestamp=(now - timedelta(seconds=3)).astimezone(timezone(timedelta(hours=2))).isoformat()))))  # +02:00
cases.append(("valid", js(event(22, timestamp=int((now.timestamp() - 4) * 1000)))))  # epoch millis
cases.append(("valid", js(event(23, surge_multiplier=1.4, app={"version": "5.2", "os": "ios"}))))  # extra fields
cases.append(("valid", js(event(24, timestamp=(now - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"))))  # 9 digits
cases.append(("valid", js({k: v for k, v in event(25).items() if k not in ("user_id", "estimated_fare")})))  # minimal
cases.append(("valid", js(event(26, city="x' OR 1=1 --"))))  # SQL in a city name is data
cases.append(("valid", js(event(27, note="z" * 900_000))))  # 900 KB, valid
nested = b"[" * 200 + b"]" * 200
cases.append(("valid", js(event(28))[:-1] + b', "deep": ' + nested + b"}"))  # nesting in an unknown field is ignored

producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000, "linger.ms": 5})
failed = []
for i, (expect, payload) in enumerate(cases):
    key = f"battery-{run}-{i}"
    producer.produce(topic, key=key, value=payload,
                     on_delivery=lambda err, msg: failed.append(str(err)) if err else None)
    ride_id = json.loads(payload)["ride_id"] if expect == "valid" else None
    print(json.dumps({"key": key, "expect": expect, "ride_id": ride_id}))
left = producer.flush(30)
if left or failed:
    sys.exit(f"{left} messages not delivered: {failed}")
