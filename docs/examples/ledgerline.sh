#!/usr/bin/env bash
# A complete Ledgerline client in bash, curl and openssl: signs requests, submits a transaction
# with safe retries, and reads its status, events and balances. See docs/integrating.md.
#
#   export LEDGERLINE_API_URL=http://127.0.0.1:8080   # default
#   export LEDGERLINE_MERCHANT_ID=merchant-1 LEDGERLINE_KEY_ID=k1 LEDGERLINE_SECRET='…'
#   export LEDGERLINE_TIMEOUT_SECS=10                  # per attempt; default
#   docs/examples/ledgerline.sh submit acc-1 12.50 EUR credit order-1001
#   docs/examples/ledgerline.sh status <transaction_id>
#   docs/examples/ledgerline.sh wait <transaction_id>      # until POSTED, DECLINED or REJECTED
#   docs/examples/ledgerline.sh events <transaction_id>
#   docs/examples/ledgerline.sh balance acc-1
#   docs/examples/ledgerline.sh sign METHOD PATH TIMESTAMP IDEMPOTENCY_KEY BODY   # prints X-Signature
#
# Answers are printed as received (JSON). Exit status: 0 on success, 1 on a problem answer
# (its status and body go to stderr), 2 on a usage error.
set -euo pipefail

api_url=${LEDGERLINE_API_URL:-http://127.0.0.1:8080}
attempts_max=${LEDGERLINE_ATTEMPTS_MAX:-5}
# No answer within this many seconds counts as no answer (status 000): retried like a reset.
timeout_secs=${LEDGERLINE_TIMEOUT_SECS:-10}

# sign METHOD PATH_AND_QUERY TIMESTAMP IDEMPOTENCY_KEY BODY → prints the X-Signature value.
sign() {
    local method=$1 path=$2 timestamp=$3 idempotency_key=$4 body=$5
    local body_hash signature
    # printf '%s' adds no newline: the hash is over the exact body bytes.
    body_hash=$(printf '%s' "$body" | openssl dgst -sha256 -r | cut -d' ' -f1)
    signature=$(printf '%s\n%s\n%s\n%s\n%s' "$method" "$path" "$timestamp" "$idempotency_key" "$body_hash" \
        | openssl dgst -sha256 -hmac "$LEDGERLINE_SECRET" -r | cut -d' ' -f1)
    printf 'keyId=%s,v1=%s' "$LEDGERLINE_KEY_ID" "$signature"
}

# request METHOD PATH [BODY [IDEMPOTENCY_KEY]]: one signed attempt. Sets $status, $body_out and
# $retry_after (empty when the answer has none); status 000 means no answer arrived.
request() {
    local method=$1 path=$2 body=${3:-} idempotency_key=${4:-}
    local timestamp headers_file body_file
    timestamp=$(date +%s)
    headers_file=$(mktemp) body_file=$(mktemp)
    local -a args=(
        -sS --max-time "$timeout_secs" -X "$method" "$api_url$path"
        -H "X-Merchant-Id: $LEDGERLINE_MERCHANT_ID"
        -H "X-Timestamp: $timestamp"
        -H "X-Signature: $(sign "$method" "$path" "$timestamp" "$idempotency_key" "$body")"
        -D "$headers_file" -o "$body_file" -w '%{http_code}'
    )
    if [[ -n $idempotency_key ]]; then
        args+=(-H "Idempotency-Key: $idempotency_key")
    fi
    if [[ -n $body ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    status=$(curl "${args[@]}" 2>/dev/null) || status=000
    body_out=$(cat "$body_file")
    retry_after=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9]*\).*/\1/p' "$headers_file")
    rm -f "$headers_file" "$body_file"
}

# finish: print the answer; a problem goes to stderr with exit status 1.
finish() {
    if [[ $status == 2?? ]]; then
        printf '%s\n' "$body_out"
    else
        printf 'HTTP %s %s\n' "$status" "$body_out" >&2
        exit 1
    fi
}

# submit ACCOUNT AMOUNT CURRENCY TYPE [IDEMPOTENCY_KEY]: POST with retries. Every attempt
# re-signs with a fresh timestamp but keeps the same key and the same body bytes, so a retry
# of a request that did land is recorded as a duplicate and never applies twice.
submit() {
    local account=$1 amount=$2 currency=$3 type=$4
    local key=${5:-"order-$(date +%s)-$RANDOM$RANDOM"}
    local body attempt=1
    body=$(printf '{"account_id":"%s","amount":"%s","currency":"%s","type":"%s"}' \
        "$account" "$amount" "$currency" "$type")
    while true; do
        request POST /v1/transactions "$body" "$key"
        # 000: no answer (the request may or may not have landed); 408: the body arrived too
        # slowly; 429: rate limited; 500: unexpected server error; 503: not durable in time.
        # All are safe to retry with the same key and body.
        if [[ $status =~ ^(000|408|429|500|503)$ ]] && ((attempt < attempts_max)); then
            sleep "${retry_after:-$attempt}"
            attempt=$((attempt + 1))
            continue
        fi
        finish
        return
    done
}

# wait TRANSACTION_ID: polls the status until a final state, then prints it.
wait_final() {
    local id=$1 state
    for _ in $(seq 1 120); do
        request GET "/v1/transactions/$id"
        state=$(printf '%s' "$body_out" | sed -n 's/.*"state":"\([A-Z]*\)".*/\1/p')
        case $status:$state in
            200:POSTED | 200:DECLINED | 200:REJECTED | 200:FAILED) finish; return ;;
            200:* | 404:* | 503:*) sleep 0.5 ;; # still in flight, or briefly unavailable
            *) finish ;;
        esac
    done
    printf 'transaction %s did not reach a final state\n' "$id" >&2
    exit 1
}

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

command=${1:-}
shift || true
case $command in
    submit) (($# >= 4)) || usage; submit "$@" ;;
    status) (($# == 1)) || usage; request GET "/v1/transactions/$1"; finish ;;
    wait) (($# == 1)) || usage; wait_final "$1" ;;
    events) (($# == 1)) || usage; request GET "/v1/transactions/$1/events"; finish ;;
    balance) (($# == 1)) || usage; request GET "/v1/accounts/$1/balance"; finish ;;
    sign) (($# == 5)) || usage; sign "$@"; printf '\n' ;;
    *) usage ;;
esac
