//! The `datapool` executable: parse the command line and run it.

fn main() -> std::process::ExitCode {
    datapool::cli::main()
}
