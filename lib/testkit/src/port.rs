//! Loopback ports for processes a test or a fault run starts itself.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// Most ports the OS is asked for before giving up on finding one not handed out yet.
const ATTEMPTS_MAX: usize = 64;

/// Ports this process has handed out. The OS may give a port it gave a moment ago again once
/// its listener is dropped, and a fault run picks several before it starts any process: two
/// services were once handed the same port, and the load reached the wrong one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that was free a moment ago and that this process has not handed out before:
/// the OS picks it, the listener is dropped, and the caller hands the number to a process it
/// starts. Another process could take it in between; on a test machine that race is rare
/// enough that a start-up failure says so.
pub fn free_port() -> std::io::Result<u16> {
    for _ in 0..ATTEMPTS_MAX {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every one of {ATTEMPTS_MAX} loopback ports the OS offered was handed out already"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_in_a_row_are_all_different() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
