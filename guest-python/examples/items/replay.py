"""Runs cases.json through the app natively and prints each response as a
JSON line: the native half of the shared suite (the host half is
tests/examples.rs, which compares the two)."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent


def replay(app) -> list[dict]:
    from cello.testing import TestClient

    client = TestClient(app)
    out = []
    for case in json.loads((HERE / "cases.json").read_text()):
        reply = client.request(
            case["method"], case["path"], json=case.get("json"), content=case.get("body")
        )
        content_type = reply.headers.get("content-type", "")
        body = reply.json() if content_type.startswith("application/json") else reply.text
        out.append({"status": reply.status_code, "content_type": content_type, "body": body})
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from app import app

    for line in replay(app):
        print(json.dumps(line))
