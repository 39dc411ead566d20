//! `leakhound report --cluster ID --pprof FILE`: a leak cluster as a goroutine profile that
//! `go tool pprof` opens (gzip'd profile.proto, sample type `goroutine/count`, one sample per
//! stack of the cluster with its goroutine count at detection).

use std::collections::HashMap;
use std::io::Write;

use leakhound_ingest::parse::proto::{Function, Line, Location, Profile, Sample, ValueType};
use prost::Message;

use crate::error::{Error, Result};
use crate::rootcause::StackInfo;

/// A cluster written as a profile by [`cluster_profile`].
#[derive(Debug)]
pub struct ClusterProfile {
    /// The gzip'd profile.proto.
    pub bytes: Vec<u8>,
    pub stacks: usize,
    pub goroutines: i64,
}

/// The latest detection of cluster `id` (`leak_clusters.cluster_id`) as a goroutine profile:
/// its stacks with their goroutine counts at detection.
pub async fn cluster_profile(store: &leakhound_ingest::Store, id: &str) -> Result<ClusterProfile> {
    use arrow::array::{Array, AsArray};
    let ctx = crate::session::session(store).await?;
    let quoted = id.replace('\'', "''");
    let rows = ctx
        .sql(&format!(
            "SELECT c.event_id, c.namespace, c.workload, c.pod, \
                    CAST(to_unixtime(c.detected_at) AS BIGINT) AS at, \
                    CAST(to_unixtime(e.onset) AS BIGINT) AS onset, c.stack_ids \
             FROM leak_clusters c JOIN leak_events e \
               ON c.event_id = e.event_id AND c.detected_at = e.detected_at \
             WHERE c.cluster_id = '{quoted}' ORDER BY c.detected_at DESC LIMIT 1"
        ))
        .await?
        .collect()
        .await?;
    let Some(b) = rows.iter().find(|b| b.num_rows() > 0) else {
        return Err(Error::NoCluster {
            id: id.to_string(),
            store: store.url().to_string(),
        });
    };
    let v = |name: &str| -> Option<String> {
        let c = b.column_by_name(name)?;
        let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).ok()?;
        let s = c.as_string::<i32>();
        (!s.is_null(0)).then(|| s.value(0).to_string())
    };
    let num = |name: &str| v(name).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let namespace = v("namespace").unwrap_or_default();
    let (workload, pod) = (v("workload"), v("pod"));
    let (at, onset) = (num("at"), num("onset"));
    let stack_ids: Vec<i64> = b
        .column_by_name("stack_ids")
        .ok_or_else(|| Error::Internal("leak_clusters has no stack_ids".into()))?
        .as_list::<i32>()
        .value(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .iter()
        .flatten()
        .collect();
    let growth = crate::rootcause::growth(
        &ctx,
        &namespace,
        workload.as_deref(),
        pod.as_deref(),
        onset - 600,
        at,
    )
    .await?;
    let info = crate::rootcause::stack_info(&ctx, &stack_ids).await?;
    let stacks: Vec<_> = stack_ids
        .iter()
        .filter_map(|id| {
            let n = growth.get(id).map(|g| g.now).unwrap_or(0);
            info.get(id).map(|s| (s.clone(), n))
        })
        .collect();
    let bytes = pprof_bytes(&stacks, at * 1_000_000_000)
        .map_err(|e| Error::Internal(format!("encoding the profile: {e}")))?;
    Ok(ClusterProfile {
        bytes,
        stacks: stacks.len(),
        goroutines: stacks.iter().map(|s| s.1).sum(),
    })
}

/// Encode `stacks` (frames innermost first, goroutine count) as a gzip'd profile.proto.
pub fn pprof_bytes(stacks: &[(StackInfo, i64)], time_nanos: i64) -> std::io::Result<Vec<u8>> {
    let mut strings: Vec<Vec<u8>> = vec![Vec::new()];
    let mut index: HashMap<String, i64> = HashMap::new();
    let mut s = |x: &str| -> i64 {
        if let Some(i) = index.get(x) {
            return *i;
        }
        strings.push(x.as_bytes().to_vec());
        let i = strings.len() as i64 - 1;
        index.insert(x.to_string(), i);
        i
    };
    let sample_type = vec![ValueType {
        r#type: s("goroutine"),
        unit: s("count"),
    }];
    let mut functions: Vec<Function> = Vec::new();
    let mut fn_ids: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut loc_ids: HashMap<(String, String, u32), u64> = HashMap::new();
    let mut samples = Vec::new();
    for (stack, n) in stacks {
        let mut ids = Vec::new();
        for f in &stack.frames {
            let key = (f.function.clone(), f.file.clone(), f.line);
            let id = if let Some(id) = loc_ids.get(&key) {
                *id
            } else {
                let fkey = (f.function.clone(), f.file.clone());
                let fid = if let Some(id) = fn_ids.get(&fkey) {
                    *id
                } else {
                    let id = functions.len() as u64 + 1;
                    let name = s(&f.function);
                    functions.push(Function {
                        id,
                        name,
                        system_name: name,
                        filename: s(&f.file),
                    });
                    fn_ids.insert(fkey, id);
                    id
                };
                let id = locations.len() as u64 + 1;
                locations.push(Location {
                    id,
                    address: 0,
                    line: vec![Line {
                        function_id: fid,
                        line: i64::from(f.line),
                    }],
                });
                loc_ids.insert(key, id);
                id
            };
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![*n],
            label: Vec::new(),
        });
    }
    let period_type = Some(ValueType {
        r#type: s("goroutine"),
        unit: s("count"),
    });
    let p = Profile {
        sample_type,
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos,
        period_type,
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&p.encode_to_vec())?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leakhound_schemas::model::Frame;

    #[test]
    fn the_profile_parses_back_with_the_same_stacks_and_counts() {
        let st = |fs: &[(&str, u32)]| StackInfo {
            frames: fs
                .iter()
                .map(|(f, l)| Frame {
                    function: f.to_string(),
                    file: "/src/main.go".into(),
                    line: *l,
                })
                .collect(),
            created_by: None,
        };
        let stacks = vec![
            (st(&[("main.leak", 10), ("main.main", 20)]), 7),
            (st(&[("main.other", 11), ("main.main", 20)]), 3),
        ];
        let bytes = pprof_bytes(&stacks, 1).unwrap();
        let snap = leakhound_ingest::parse::parse_snapshot(&bytes[..], "report.pb.gz").unwrap();
        assert_eq!(snap.total(), 10);
        let tops: Vec<(String, u64)> = snap
            .groups
            .iter()
            .map(|g| (g.stack.frames[0].function.clone(), g.count))
            .collect();
        assert!(tops.contains(&("main.leak".into(), 7)), "{tops:?}");
        assert!(tops.contains(&("main.other".into(), 3)), "{tops:?}");
    }
}
