//! `ledger-writer`: skeleton; its issue fills it in.
