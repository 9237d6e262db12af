use clap::Parser;

// The scan path allocates a few small strings per request; mimalloc's thread-local free lists
// make that markedly cheaper than glibc's allocator (measured with bench/scan.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal::cli::main(shoal::cli::Cli::parse())
}
