//! The `ferry` binary.

fn main() {
    ferry_cli::main();
}
