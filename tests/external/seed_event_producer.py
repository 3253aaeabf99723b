# services/event_producer.py — Produce ride events to Kafka
from confluent_kafka import Producer
import json
from datetime import datetime

producer = Producer({
    'bootstrap.servers': 'kafka:9092',
    'linger.ms': 50,                      # batch messages for 50ms (throughput vs latency)
    'batch.num.messages': 1000,
    'compression.type': 'lz4',
})

def emit_ride_event(event_type: str, ride_id: str, data: dict):
    """Publish a ride lifecycle event.

    Args:
        event_type: One of requested, accepted, started, completed, cancelled
        ride_id: Unique ride identifier (used as partition key)
        data: Event payload with ride details
    """
    event = {
        'event_type': event_type,
        'ride_id': ride_id,
        'timestamp': datetime.utcnow().isoformat(),
        **data,
    }

    producer.produce(
        topic='ride-events',
        key=ride_id,                       # same ride → same partition → ordered
        value=json.dumps(event),
        callback=lambda err, msg: print(f"Error: {err}") if err else None,
    )
    producer.poll(0)                       # trigger delivery callbacks

# Example usage from the ride service
emit_ride_event('requested', 'ride-abc-123', {
    'user_id': 'user-456',
    'pickup': {'lat': 48.1486, 'lng': 17.1077},
    'dropoff': {'lat': 48.1586, 'lng': 17.1177},
    'estimated_fare': 8.50,
    'city': 'bratislava',
})
