//! `ridectl`: parse the command line and dispatch. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ridectl::cli::Cli::parse();
    ridectl::cli::run(cli)
}
