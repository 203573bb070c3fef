//! `audit`: skeleton; its issue fills it in.
