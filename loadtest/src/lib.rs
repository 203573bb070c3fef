//! `loadtest`: skeleton; its issue fills it in.
