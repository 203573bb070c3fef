//! Loopback ports for processes a test or a fault run starts itself.

use std::net::TcpListener;

/// A loopback port that was free a moment ago: the OS picks it, the listener is dropped, and
/// the caller hands the number to a process it starts. Another process could take it in
/// between; on a test machine that race is rare enough that a start-up failure says so.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
