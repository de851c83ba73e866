//! The `ringrelay` binary; the commands live in `ringrelay::cli`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ringrelay::cli::main()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        ringrelay::cli::Cli::command().debug_assert();
    }
}
