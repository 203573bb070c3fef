//! `reconciler`: skeleton; its issue fills it in.
