//! The `leakhound` binary: parses flags and wires the library crates together. Every decision
//! lives in `leakhound-ingest` / `leakhound-analyze`; this file only dispatches.

mod actuate_cmd;
mod analyze_cmd;
mod check;
mod cli;
mod inspect;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as DataFusion's own CLI ships: queries allocate and free many short-lived
/// buffers from several threads, where it spends less than glibc's malloc (about a tenth less
/// CPU over the named queries, `queries_vs_duckdb`). Built without transparent huge pages
/// (`no_thp`): a short-lived process touching fresh 2 MiB pages spent more zeroing them than
/// it saved.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args.log_format);
    check::enable(args.check_config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
