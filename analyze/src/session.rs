//! A DataFusion session over a store: in this process (the default), or on an Apache Ballista
//! cluster (`--engine ballista://HOST:PORT`, [`Engine`]; the scheduler and executors are
//! `leakhound cluster ...`, crate `leakhound-cluster`). The same tables, schemas, functions
//! (`leak_stl_iforest`, also registered on the cluster) and settings either way: on Ballista
//! the client sends the plan and the settings; the scheduler lists the store's visible files
//! and the executors read them (and run the functions).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use leakhound_ingest::Store;
use leakhound_schemas::Table;

use crate::error::Result;

/// A session with every table of `store` registered under its name (`goroutine_counts`,
/// `goroutine_samples`, `stacks`, `ingest_log`). Readers see the store as of this call
/// (compaction in progress stays invisible, see `leakhound_ingest::visibility`).
pub async fn session(store: &Store) -> Result<SessionContext> {
    session_on(store, &Engine::InProcess).await
}

/// Where a session's queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion in this process.
    #[default]
    InProcess,
    /// A Ballista scheduler at `host:port` (`leakhound cluster scheduler`).
    Ballista { host: String, port: u16 },
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `inprocess` (or empty), or `ballista://HOST:PORT`.
    fn from_str(s: &str) -> std::result::Result<Engine, String> {
        if s.is_empty() || s == "inprocess" {
            return Ok(Engine::InProcess);
        }
        let bad = || format!("{s:?} is not an engine: write inprocess or ballista://HOST:PORT");
        let rest = s.strip_prefix("ballista://").ok_or_else(bad)?;
        let url = url::Url::parse(&format!("df://{rest}")).map_err(|_| bad())?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let port = url.port().ok_or_else(bad)?;
        if !url.path().trim_matches('/').is_empty()
            || url.query().is_some()
            || !url.username().is_empty()
        {
            return Err(bad());
        }
        Ok(Engine::Ballista {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::InProcess => f.write_str("inprocess"),
            Engine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}

/// A session on `engine` with every table of `store` registered (see [`session`]).
pub async fn session_on(store: &Store, engine: &Engine) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    // No filter pushdown into the Parquet decoder (DataFusion's default): the store's filters
    // either prune whole files and row groups by statistics (time, partition), which needs no
    // pushdown, or keep most rows (`profile`, `leaked`, `min_goroutine_id IS NOT NULL`), where
    // the decoder's row selections cost more than decoding everything: with pushdown on, the
    // named queries over a month took 10-40% longer (`queries_vs_duckdb`).
    // Joins build one hash table over the whole (left, small) side and stream the other side
    // without repartitioning it. The named queries join a few thousand rows (latest snapshot
    // per pod, stacks) against the samples; a collected build side also hands the scan a plain
    // dynamic filter (key bounds, hash lookup) that prunes files and row groups by `ts`, which
    // the per-partition form of that filter cannot.
    config.options_mut().optimizer.repartition_joins = false;
    let ctx = match engine {
        Engine::InProcess => {
            let ctx = SessionContext::new_with_config(config);
            let reader = store.reader().await?;
            ctx.register_object_store(store.base_url(), reader);
            ctx
        }
        Engine::Ballista { host, port } => {
            use ballista::prelude::{SessionConfigExt, SessionContextExt};
            // Our settings ride along with the plan (Ballista adds its own); the scheduler
            // plans with them. Ballista's adaptive planner (on by default in 55) re-planned
            // the rule queries' CTEs (one scan used three times) into stage after stage without
            // end (6,700 stages in 10 minutes for rule_baseline over a few hundred rows); the
            // static distributed planner runs them in a handful.
            let config = config
                .upgrade_for_ballista()
                .with_ballista_adaptive_query_planner(false);
            let state = datafusion::execution::SessionStateBuilder::new()
                .with_config(config)
                .with_default_features()
                .build();
            SessionContext::remote_with_state(&format!("df://{host}:{port}"), state).await?
        }
    };
    // leakhound's functions (the cluster's scheduler and executors register the same ones).
    ctx.register_udaf(crate::anomaly::udaf::udaf().as_ref().clone());
    for table in Table::ALL {
        let url = ListingTableUrl::parse(store.table_url(table))?;
        // Partition values repeat for every row of a file: a dictionary of one value.
        let parts = table
            .partitioning()
            .columns()
            .iter()
            .map(|c| (c.to_string(), dict(DataType::Utf8)))
            .collect();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(parts);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(match engine {
                Engine::InProcess => view_schema(&table.schema()),
                // Not on Ballista: a string view batch carries the whole buffers it points
                // into, so every shuffled or fetched batch did too (Arrow IPC writes them whole).
                // goroutines_by_state over 2 days of 200 pods took 616 MB and 26 s on one
                // executor, 7 days 8.9 GB before it was stopped; plain strings ship what they hold.
                Engine::Ballista { .. } => table.schema(),
            });
        // The session's statistics cache: a query that scans a table twice (the two-pass
        // named queries) reads each file's footer statistics once, not once per scan.
        let provider = ListingTable::try_new(config)?
            .with_cache(ctx.runtime_env().cache_manager.get_file_statistic_cache());
        ctx.register_table(table.name(), Arc::new(provider))?;
    }
    Ok(ctx)
}

/// A partition column's type: values as a dictionary (one per file), as DataFusion recommends.
fn dict(t: DataType) -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(t))
}

/// `schema` with every `Utf8` as `Utf8View`: the Parquet reader decodes strings straight into
/// views (short ones — namespaces, pods, states — inline), which group, compare and hash
/// without chasing offsets. Results come back as `Utf8View`; readers cast to `Utf8`.
fn view_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::Engine;

    #[test]
    fn engines_parse_strictly() {
        assert_eq!("inprocess".parse(), Ok(Engine::InProcess));
        assert_eq!(
            "ballista://127.0.0.1:50050".parse(),
            Ok(Engine::Ballista {
                host: "127.0.0.1".into(),
                port: 50050
            })
        );
        assert_eq!(
            "ballista://leakhound-scheduler:50050"
                .parse::<Engine>()
                .map(|e| e.to_string()),
            Ok("ballista://leakhound-scheduler:50050".into())
        );
        for bad in [
            "ballista",
            "ballista://",
            "ballista://host",
            "ballista://host:port",
            "ballista://host:99999",
            "ballista://user@host:1",
            "ballista://host:1/path",
            "ballista://host:1?x=1",
            "df://host:1",
            "duckdb",
        ] {
            assert!(bad.parse::<Engine>().is_err(), "{bad:?} accepted");
        }
    }
}
