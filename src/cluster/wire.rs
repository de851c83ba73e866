//! Link wire codec (placeholder; being written).
