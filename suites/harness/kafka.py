"""Every message of a Kafka topic, read back with confluent-kafka's
`assign` (no consumer group needed: brokers such as tansu have none)."""

import time


def read_topic(bootstrap, topic, deadline_s=60, quiet_s=2):
    """Every message of every partition the topic has now (a broker that
    lost it may have made it again with its own count): (partition, offset,
    key, value). Read until every partition's high watermark is reached and
    nothing more arrives for `quiet_s` (some brokers' watermarks, tansu's,
    count record batches, not records), or the deadline passes."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-back", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    stored = []
    counts = {p: 0 for p in partitions}
    deadline = time.monotonic() + deadline_s
    last = time.monotonic()
    while time.monotonic() < deadline:
        if all(counts[p] >= end for p, end in ends.items()) and time.monotonic() - last > quiet_s:
            break
        message = consumer.poll(0.2)
        if message is None or message.error():
            continue
        last = time.monotonic()
        counts[message.partition()] = counts.get(message.partition(), 0) + 1
        stored.append((message.partition(), message.offset(), message.key() or b"", message.value() or b""))
    consumer.close()
    return stored
