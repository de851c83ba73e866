//! Load generator (`ringrelay bench`): being written.

/// Flags of `ringrelay bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {}

/// Runs the load generator; the error is printed by the binary.
pub fn run(_args: &BenchArgs) -> Result<(), String> {
    Err("bench not built yet".into())
}
