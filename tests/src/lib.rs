//! End-to-end tests across crates live in `tests/`; this library is empty (Cargo needs a target).
