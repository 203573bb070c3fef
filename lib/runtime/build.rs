// `sqlx::migrate!` embeds the migrations at compile time, but on stable Rust the compiler does
// not know it read them: without this, a new or edited migration would not rebuild the crate
// and a stale binary would run the old set.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
