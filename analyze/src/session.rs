//! A DataFusion session over a store.

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
    let ctx = SessionContext::new_with_config(config);
    let reader = store.reader().await?;
    ctx.register_object_store(store.base_url(), reader);
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
            .with_schema(view_schema(&table.schema()));
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
