//! A DataFusion session over a store.

use std::sync::Arc;

use arrow::datatypes::DataType;
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
    // Filters evaluated inside the Parquet scan (late materialisation): the named queries filter
    // on a few columns and read the others only where the filter holds.
    config.options_mut().execution.parquet.pushdown_filters = true;
    config.options_mut().execution.parquet.reorder_filters = true;
    let ctx = SessionContext::new_with_config(config);
    let reader = store.reader().await?;
    ctx.register_object_store(store.base_url(), reader);
    for table in Table::ALL {
        let url = ListingTableUrl::parse(store.table_url(table))?;
        let parts = table
            .partitioning()
            .columns()
            .iter()
            .map(|c| (c.to_string(), DataType::Utf8))
            .collect();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(parts);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(table.schema());
        let provider = ListingTable::try_new(config)?;
        ctx.register_table(table.name(), Arc::new(provider))?;
    }
    Ok(ctx)
}
