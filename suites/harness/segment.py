"""segment-analytics-python, unmodified, as the sink suites use it: one
real SDK sending tracked events to the gateway."""


def send_tracks(url, write_key, users, per_user, message_id, properties):
    """`per_user` events for each of `users`, in turn, with gzip on, then a
    flush and shutdown: ({message id: (user, seq)}, the SDK's errors). `message_id(user,
    seq)` and `properties(user, seq)` make each event's id and properties."""
    from segment.analytics import Client

    errors = []
    client = Client(write_key, host=url, on_error=lambda e, batch: errors.append(str(e)), gzip=True)
    sent = {}
    for seq in range(per_user):
        for user in users:
            event_id = message_id(user, seq)
            client.track(user, "Order Completed", properties(user, seq), message_id=event_id)
            sent[event_id] = (user, seq)
    client.flush()
    client.shutdown()
    return sent, errors
