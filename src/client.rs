//! Blocking Rust client (being written).
