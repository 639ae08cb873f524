//! `sqlx::migrate!` embeds the migration folders when this crate compiles, and cargo does not
//! watch a folder for new files by itself: without this, adding a migration leaves a stale
//! build applying the old set (what `sqlx migrate build-script` generates).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
