//! The `leakhound` binary: parses the flags (`cli`) and calls the library crates, one
//! `*_cmd.rs` per command (`actuate_cmd` holds `actuate` and `serve`, which share their policy
//! flags). A command file turns flags into the crates' options, calls them and prints what they
//! return; the work — scraping, importing, SQL, detection, actions — lives in
//! `leakhound-ingest`, `leakhound-analyze` and `leakhound-actuate`.
//!
//! Exit codes: 0 success; 1 failure (the cause chain on stderr); 2 a usage error (a flag or
//! value clap or the command refuses, [`cli::Usage`]). A closed stdout (`leakhound inspect |
//! head`) ends the command quietly with 0, as `cat` and ripgrep do.

mod actuate_cmd;
mod alerts_out;
mod analyze_cmd;
mod backfill_cmd;
mod check;
mod cli;
mod cluster_cmd;
mod compact_cmd;
mod ingest_cmd;
mod inspect_cmd;
mod query_cmd;
mod report_cmd;
mod serve_pages;
mod sql_cmd;
mod status_cmd;

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
    let default_log = match args.command {
        cli::Command::Cluster(_) => "info",
        _ => "warn",
    };
    cli::init_logging(args.log_format, default_log);
    check::enable(args.check_config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Deep plans (the rule queries' CTEs) recurse through planning and, on Ballista, plan
        // serialization: 2 MiB (tokio's default) overflowed the scheduler's stack on
        // rule_baseline. Address space only; pages are touched as used.
        .thread_stack_size(16 << 20)
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
        Err(e) => cli::exit_for(&e),
    }
}
