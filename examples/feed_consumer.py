#!/usr/bin/env python3
"""Follow ticketd's change feed (GET /admin/events) and print every event once, in order.

    TICKETD_URL=http://127.0.0.1:8080 TICKETD_ADMIN_TOKEN=... python3 examples/feed_consumer.py

The position (`next`) is kept in a file and written only after the page's events were handled,
so a consumer that crashes and restarts sees nothing twice and misses nothing. Standard library
only. See docs/EVENTS.md.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

URL = os.environ.get("TICKETD_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ["TICKETD_ADMIN_TOKEN"]
POSITION = os.environ.get("FEED_POSITION_FILE", "feed-position")


def load_position():
    try:
        with open(POSITION) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def save_position(seq):
    tmp = POSITION + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(seq))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, POSITION)


def handle(event):
    # Replace with the consumer's work: settlement, a buyer notification, the warehouse.
    print(event["seq"], event["type"], event["subject"], json.dumps(event["data"], ensure_ascii=False))


def main():
    after = load_position()
    while True:
        request = urllib.request.Request(
            f"{URL}/admin/events?after={after}&limit=1000&wait=30",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=45) as answer:
                page = json.load(answer)
        except (urllib.error.URLError, TimeoutError) as e:
            print(f"feed unavailable ({e}); retrying in 2 s", file=sys.stderr)
            time.sleep(2)
            continue
        for event in page["events"]:
            assert event["seq"] == after + 1, f"gap after {after}: {event['seq']}"
            handle(event)
            after = event["seq"]
        if page["events"]:
            save_position(page["next"])


if __name__ == "__main__":
    main()
