use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = deskbus::cli::Cli::parse();
    match deskbus::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` prints the whole chain: "cannot open the spool: ...: disk full".
            eprintln!("deskbus: {:#}", anyhow::Error::from(error));
            ExitCode::from(1)
        }
    }
}
