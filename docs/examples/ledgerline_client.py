#!/usr/bin/env python3
"""A complete Ledgerline client in Python's standard library only. See docs/integrating.md.

    export LEDGERLINE_API_URL=http://127.0.0.1:8080   # default
    export LEDGERLINE_MERCHANT_ID=merchant-1 LEDGERLINE_KEY_ID=k1 LEDGERLINE_SECRET='...'
    python3 docs/examples/ledgerline_client.py submit acc-1 12.50 EUR credit --key order-1001 --wait
    python3 docs/examples/ledgerline_client.py status <transaction_id>
    python3 docs/examples/ledgerline_client.py events <transaction_id>
    python3 docs/examples/ledgerline_client.py balance acc-1
    python3 docs/examples/ledgerline_client.py check-vectors docs/signing-vectors.json

Answers are printed as JSON. Exit status: 0 on success, 1 on a problem answer (printed to
stderr), 2 on a usage error.
"""

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

FINAL_STATES = {"POSTED", "DECLINED", "REJECTED", "FAILED"}
# Answers after which the same request may be sent again, unchanged but re-signed
# (docs/integrating.md, "When to retry"): the body arrived too slowly, rate limited, an
# unexpected server error, not durable in time.
RETRYABLE_STATUSES = {408, 429, 500, 503}


def canonical_string(method, path_and_query, timestamp, idempotency_key, body):
    """The string that is signed (docs/signing.md). `body` is the exact bytes sent."""
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join([method.upper(), path_and_query, timestamp, idempotency_key or "", body_hash])


def signature_header(secret, key_id, method, path_and_query, timestamp, idempotency_key, body):
    """The value of X-Signature: `keyId=<key id>,v1=<hex HMAC-SHA256>`."""
    canonical = canonical_string(method, path_and_query, timestamp, idempotency_key, body)
    digest = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256)
    return "keyId=%s,v1=%s" % (key_id, digest.hexdigest())


class LedgerlineError(Exception):
    """A problem answer (RFC 9457): `status` and the problem document."""

    def __init__(self, status, problem):
        super().__init__("HTTP %s %s" % (status, json.dumps(problem)))
        self.status = status
        self.problem = problem

    @property
    def slug(self):
        """The stable part of the problem `type`, e.g. `invalid-signature`."""
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]


class LedgerlineClient:
    def __init__(self, base_url, merchant_id, key_id, secret, attempts_max=5, timeout_secs=10):
        self.base_url = base_url.rstrip("/")
        self.merchant_id = merchant_id
        self.key_id = key_id
        self.secret = secret
        self.attempts_max = attempts_max
        self.timeout_secs = timeout_secs

    def request(self, method, path, body=b"", idempotency_key=None):
        """One signed attempt. Returns (status, headers, parsed JSON body)."""
        timestamp = str(int(time.time()))
        headers = {
            "X-Merchant-Id": self.merchant_id,
            "X-Timestamp": timestamp,
            "X-Signature": signature_header(
                self.secret, self.key_id, method, path, timestamp, idempotency_key, body
            ),
        }
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if body:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base_url + path, data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_secs) as response:
                return response.status, response.headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                problem = json.loads(raw)
            except ValueError:
                problem = {"detail": raw.decode("utf-8", "replace")}
            return error.code, error.headers, problem

    def create_transaction(self, account_id, amount, currency, txn_type, idempotency_key=None,
                           **optional):
        """POST /v1/transactions, retried safely: every attempt sends the same key and the same
        body bytes (re-signed with a fresh timestamp), so it applies at most once."""
        idempotency_key = idempotency_key or "txn-" + uuid.uuid4().hex
        fields = {"account_id": account_id, "amount": amount, "currency": currency,
                  "type": txn_type}
        fields.update({k: v for k, v in optional.items() if v is not None})
        # Serialised once: the retry must hash exactly the same bytes.
        body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for attempt in range(1, self.attempts_max + 1):
            try:
                status, headers, answer = self.request(
                    "POST", "/v1/transactions", body, idempotency_key
                )
            except OSError:
                # No answer at all: the request may or may not have landed. Retrying with the
                # same key is what makes this safe.
                if attempt == self.attempts_max:
                    raise
                time.sleep(attempt)
                continue
            if status == 202:
                return answer
            if status in RETRYABLE_STATUSES and attempt < self.attempts_max:
                time.sleep(int(headers.get("Retry-After") or attempt))
                continue
            raise LedgerlineError(status, answer)
        raise AssertionError("unreachable")

    def _get(self, path):
        status, _, answer = self.request("GET", path)
        if status != 200:
            raise LedgerlineError(status, answer)
        return answer

    def get_transaction(self, transaction_id):
        return self._get("/v1/transactions/%s" % transaction_id)

    def list_events(self, transaction_id):
        return self._get("/v1/transactions/%s/events" % transaction_id)

    def get_balance(self, account_id):
        return self._get("/v1/accounts/%s/balance" % account_id)

    def wait_for_final_state(self, transaction_id, timeout_secs=60.0, poll_secs=0.5):
        """Polls the status until POSTED, DECLINED, REJECTED or FAILED."""
        deadline = time.monotonic() + timeout_secs
        while True:
            try:
                status = self.get_transaction(transaction_id)
                if status["state"] in FINAL_STATES:
                    return status
            except LedgerlineError as error:
                # 404: the RECEIVED record is not readable yet; 503: briefly unavailable.
                if error.status not in (404, 503):
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError("transaction %s is not final yet" % transaction_id)
            time.sleep(poll_secs)


def check_vectors(path):
    """Signs every vector of docs/signing-vectors.json; returns the names that disagree."""
    with open(path, encoding="utf-8") as file:
        vectors = json.load(file)
    failures = []
    for v in vectors:
        body = v["body"].encode("utf-8")
        canonical = canonical_string(v["method"], v["path"], v["timestamp"],
                                     v["idempotency_key"], body)
        header = signature_header(v["secret"], v["key_id"], v["method"], v["path"],
                                  v["timestamp"], v["idempotency_key"], body)
        # A valid vector must be reproduced exactly; an invalid one (tampered body) must not
        # verify, although the server computes the same canonical string from what it got.
        matches = header == v["signature_header"]
        ok = canonical == v["canonical"] and matches == v["valid"]
        print("%s %s" % ("ok  " if ok else "FAIL", v["name"]))
        if not ok:
            failures.append(v["name"])
    return failures


def main(argv):
    parser = argparse.ArgumentParser(description="Ledgerline API client (examples).")
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="submit a transaction")
    submit.add_argument("account_id")
    submit.add_argument("amount")
    submit.add_argument("currency")
    submit.add_argument("type", choices=["credit", "debit"])
    submit.add_argument("--key", help="Idempotency-Key (default: a new random one)")
    submit.add_argument("--description")
    submit.add_argument("--wait", action="store_true", help="then wait for a final state")
    for name in ("status", "events"):
        commands.add_parser(name).add_argument("transaction_id")
    commands.add_parser("balance").add_argument("account_id")
    commands.add_parser("check-vectors").add_argument("file")
    args = parser.parse_args(argv)

    if args.command == "check-vectors":
        return 1 if check_vectors(args.file) else 0

    client = LedgerlineClient(
        os.environ.get("LEDGERLINE_API_URL", "http://127.0.0.1:8080"),
        os.environ["LEDGERLINE_MERCHANT_ID"],
        os.environ["LEDGERLINE_KEY_ID"],
        os.environ["LEDGERLINE_SECRET"],
    )
    try:
        if args.command == "submit":
            answer = client.create_transaction(
                args.account_id, args.amount, args.currency, args.type,
                idempotency_key=args.key, description=args.description,
            )
            if args.wait:
                answer = client.wait_for_final_state(answer["transaction_id"])
        elif args.command == "status":
            answer = client.get_transaction(args.transaction_id)
        elif args.command == "events":
            answer = client.list_events(args.transaction_id)
        else:
            answer = client.get_balance(args.account_id)
    except LedgerlineError as error:
        print(error, file=sys.stderr)
        return 1
    print(json.dumps(answer, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
