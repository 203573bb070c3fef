//! Hand validation of a merchant's `callback_url` (no URL crate: this crate stays small and the
//! rule is narrow). Accepted: `https://host[:port][/path][?query][#fragment]`, printable ASCII
//! without whitespace, at most 2048 characters, no `user:password@`.
//!
//! This only checks the shape. Whoever calls the URL must still refuse private and loopback
//! addresses after DNS resolution (SSRF), which a parser cannot know.

/// Longest callback URL accepted.
pub(crate) const MAX_CALLBACK_URL_LEN: usize = 2048;

/// Checks `url`; the error is a short, fixed-text detail for the API response.
pub(crate) fn validate(url: &str) -> Result<(), &'static str> {
    if url.len() > MAX_CALLBACK_URL_LEN {
        return Err("must be at most 2048 characters");
    }
    // Printable ASCII only: non-ASCII hosts must be punycode and paths percent-encoded, so
    // what we store is exactly what an HTTP client will send.
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without whitespace");
    }
    let rest = match url.get(..8) {
        Some(scheme) if scheme.eq_ignore_ascii_case("https://") => &url[8..],
        _ => return Err("must be an https:// URL"),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err("must not contain credentials");
    }
    let (host, port) = split_host_port(authority).ok_or("must have a valid host")?;
    if !valid_host(host) {
        return Err("must have a valid host");
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
        if !valid {
            return Err("must have a valid port");
        }
    }
    Ok(())
}

/// Splits `host[:port]` or `[ipv6][:port]`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        let is_ipv6 = !literal.is_empty()
            && literal.contains(':')
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return is_ipv6.then_some((authority, port));
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

fn valid_host(host: &str) -> bool {
    if host.starts_with('[') {
        return true; // checked in split_host_port
    }
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['.', '-'])
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_with_a_host_are_accepted() {
        for url in [
            "https://merchant.example/hooks",
            "https://merchant.example",
            "HTTPS://merchant.example:8443/a/b?c=d&e=%20#f",
            "https://[2001:db8::1]:443/cb",
            "https://10.0.0.1/cb",
            "https://a_b.example/",
        ] {
            assert_eq!(validate(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        for url in [
            "http://merchant.example/hooks",
            "https://",
            "https:///path",
            "https://:443/",
            "https://user:pw@merchant.example/",
            "https://merchant.example/a b",
            "https://merchant.example/\u{e9}",
            "https://merchant.example:0/",
            "https://merchant.example:65536/",
            "https://merchant.example:/",
            "https://merchant.example:12a/",
            "https://[zz::1]/",
            "https://[::1/",
            "https://.example/",
            "https://a..example/",
            "ftp://merchant.example",
            "merchant.example",
            "",
        ] {
            assert!(validate(url).is_err(), "{url}");
        }
        let long = format!("https://merchant.example/{}", "a".repeat(2048));
        assert!(validate(&long).is_err());
    }
}
