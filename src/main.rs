use clap::Parser;

fn main() -> std::process::ExitCode {
    shoal::cli::main(shoal::cli::Cli::parse())
}
