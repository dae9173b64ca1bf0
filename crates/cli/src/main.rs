fn main() {
    bigbatch_cli::keep_freed_memory();
    if let Err(e) = bigbatch_cli::run_cli(std::env::args_os()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
