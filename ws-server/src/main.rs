//! `ws`: run a channels server (`ws serve`), control a running one
//! (`ws ctl`), and talk to any WebSocket server (`ws connect`).
//!
//! `ws serve --help`, `ws ctl --help` and `ws connect --help` list every
//! setting with its environment variable and default.

mod admin;
mod app;
mod connect;
mod ctl;
mod page;
mod serve;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The ws-toolkit command line.
#[derive(Debug, Parser)]
#[command(name = "ws", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve channels over WebSocket, with a page at / to try them, an admin
    /// API and Prometheus metrics.
    Serve(Box<settings::ServeArgs>),
    /// Control a running `ws serve` through its admin API.
    Ctl(ctl::CtlArgs),
    /// Connect to a WebSocket server: stdin lines out, messages in.
    Connect(connect::ConnectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::main(*args),
        Command::Ctl(args) => ctl::main(args),
        Command::Connect(args) => connect::main(args),
    }
}
