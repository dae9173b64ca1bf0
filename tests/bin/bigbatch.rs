//! The `bigbatch` binary, built with the tests' features (see Cargo.toml).

fn main() {
    bigbatch_cli::main()
}
