//! `leakhound report --cluster ID --pprof FILE`: a leak cluster as a goroutine profile that
//! `go tool pprof` opens (gzip'd profile.proto, sample type `goroutine/count`, one sample per
//! stack of the cluster with its goroutine count at detection).

use std::collections::HashMap;
use std::io::Write;

use leakhound_ingest::parse::proto::{Function, Line, Location, Profile, Sample, ValueType};
use prost::Message;

use crate::rootcause::StackInfo;

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
