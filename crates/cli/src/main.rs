fn main() {
    if let Err(e) = bigbatch_cli::run_cli(std::env::args_os()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
