fn main() {
    bigbatch_cli::main()
}
