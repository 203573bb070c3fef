//! Writes a wrk Lua script that cycles through N pre-signed POSTs (benchmark support).
//!
//! ```bash
//! cargo run --release -p ingress --example wrk_signed -- 20000 bench-merchant k1 "$SECRET" > /tmp/signed.lua
//! wrk -t2 -c64 -d20s --latency -s /tmp/signed.lua http://127.0.0.1:8080
//! ```
//! Signatures carry the current time, so a script is good for the signing window (300 s by
//! default). Requests past N repeat earlier ones: retries, which ingress publishes again like
//! any accepted request, so the load per request is unchanged.

use ledgerline_contracts::signing;

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [n, merchant, key_id, secret] = args.as_slice() else {
        eprintln!("usage: wrk_signed <requests> <merchant> <key_id> <secret>");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("requests: a number");
    let ts = ledgerline_runtime::time::now_unix().to_string();
    println!("local requests = {{}}");
    for i in 0..n {
        let kind = if i % 10 < 3 { "debit" } else { "credit" };
        let body = format!(
            r#"{{"account_id":"acc-{}","amount":"{}.{:02}","currency":"EUR","type":"{kind}"}}"#,
            i % 10_000,
            1 + i % 500,
            i % 100
        );
        let key = format!("wrk-{ts}-{i}");
        let canonical =
            signing::canonical_string("POST", "/v1/transactions", &ts, &key, body.as_bytes());
        let sig = signing::signature_header(key_id, &signing::sign(secret.as_bytes(), &canonical));
        println!(
            "requests[{}] = wrk.format(\"POST\", \"/v1/transactions\", {{[\"Content-Type\"]=\"application/json\", [\"X-Merchant-Id\"]={}, [\"X-Timestamp\"]=\"{ts}\", [\"X-Signature\"]={}, [\"Idempotency-Key\"]={}}}, {})",
            i + 1,
            lua_string(merchant),
            lua_string(&sig),
            lua_string(&key),
            lua_string(&body)
        );
    }
    println!("local counter = 0");
    println!("request = function() counter = counter % {n} + 1; return requests[counter] end");
    println!(
        "done = function(summary, latency, requests) io.write(string.format(\"non-2xx/3xx: %d\\n\", summary.errors.status)) end"
    );
}
