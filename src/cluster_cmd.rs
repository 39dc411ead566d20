//! `leakhound cluster scheduler|executor`: Apache Ballista's scheduler and executor with
//! leakhound's store registered (crate `leakhound-cluster`). `sql`, `query` and `analyze` run on
//! them with `--engine ballista://HOST:PORT`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::{StoreArgs, usage};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ballista's scheduler: plans each query over the store's committed files and hands its
    /// stages to the executors.
    Scheduler(SchedulerArgs),
    /// A Ballista executor: runs the stages the scheduler hands it, reading the store.
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where the scheduler listens (gRPC; clients and executors connect here).
    #[arg(
        long,
        env = "LEAKHOUND_SCHEDULER_LISTEN",
        default_value = "0.0.0.0:50050"
    )]
    pub listen: SocketAddr,
    /// An executor without a heartbeat for this long is dropped and its tasks run elsewhere
    /// (longer than the executors' --heartbeat).
    #[arg(long, env = "LEAKHOUND_EXECUTOR_TIMEOUT", default_value = "60s", value_parser = crate::cli::duration)]
    pub executor_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The scheduler, HOST:PORT.
    #[arg(long, env = "LEAKHOUND_SCHEDULER", value_parser = host_port)]
    pub scheduler: (String, u16),
    /// Where the executor's Arrow Flight service listens (shuffle reads, results).
    #[arg(
        long,
        env = "LEAKHOUND_EXECUTOR_LISTEN",
        default_value = "0.0.0.0:50051"
    )]
    pub listen: SocketAddr,
    /// The port of the executor's gRPC service (the scheduler calls it), on the same address.
    #[arg(long, env = "LEAKHOUND_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    pub grpc_port: u16,
    /// The host the scheduler and other executors reach this executor at (a pod's IP);
    /// default: the listen address.
    #[arg(long, env = "LEAKHOUND_EXECUTOR_ADVERTISE")]
    pub advertise: Option<String>,
    /// Tasks run at once (default: the CPUs available).
    #[arg(long, env = "LEAKHOUND_EXECUTOR_SLOTS")]
    pub slots: Option<usize>,
    /// Shuffle files (default: a temporary folder).
    #[arg(long, env = "LEAKHOUND_EXECUTOR_WORK_DIR")]
    pub work_dir: Option<String>,
    /// How often to tell the scheduler this executor is alive (under its --executor-timeout).
    #[arg(long, env = "LEAKHOUND_EXECUTOR_HEARTBEAT", default_value = "15s", value_parser = crate::cli::duration)]
    pub heartbeat: std::time::Duration,
}

/// `HOST:PORT`, by the rules `--engine ballista://HOST:PORT` follows (one parser for both).
fn host_port(s: &str) -> Result<(String, u16), String> {
    match format!("ballista://{s}").parse() {
        Ok(leakhound_analyze::session::Engine::Ballista { host, port }) => {
            Ok((host.trim_matches(['[', ']']).to_string(), port))
        }
        _ => Err(format!("{s:?} is not HOST:PORT")),
    }
}

pub async fn run(c: ClusterCommand) -> Result<ExitCode> {
    match c {
        ClusterCommand::Scheduler(a) => {
            let store = a.store.open()?;
            if let Some(code) = crate::check::reached("cluster scheduler") {
                return Ok(code);
            }
            leakhound_cluster::run_scheduler(store, a.listen, a.executor_timeout).await?;
        }
        ClusterCommand::Executor(a) => {
            let store = a.store.open()?;
            if a.listen.port() == a.grpc_port {
                return Err(usage(format!(
                    "--listen {} and --grpc-port {} must differ",
                    a.listen, a.grpc_port
                )));
            }
            if let Some(code) = crate::check::reached("cluster executor") {
                return Ok(code);
            }
            let opts = leakhound_cluster::ExecutorOptions {
                flight: a.listen,
                grpc_port: a.grpc_port,
                advertise: a.advertise.unwrap_or_else(|| a.listen.ip().to_string()),
                scheduler: a.scheduler,
                vcores: a
                    .slots
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
                work_dir: a.work_dir,
                heartbeat: a.heartbeat,
            };
            leakhound_cluster::run_executor(store, opts).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
