//! The `onionstream` binary. Owns nothing: the program is the library's [`onionstream::main`]
//! (see `lib.rs` for why it is a library). Must never hold code of its own.

fn main() -> std::process::ExitCode {
    onionstream::main()
}
