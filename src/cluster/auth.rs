//! Link authentication (placeholder; being written).
