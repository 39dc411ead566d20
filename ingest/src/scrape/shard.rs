//! Sharded ingest: `leakhound ingest --shard I/N` scrapes the targets that fall to shard `I` of
//! `N` (0-based, as a Kubernetes Indexed Job numbers its pods: `JOB_COMPLETION_INDEX`).
//!
//! **Which targets.** Rendezvous (highest-random-weight) hashing: a target goes to the shard
//! whose `xxh3(key, seed = shard)` is highest. Every shard decides alone, from the target list
//! it sees, with no coordination; adding a shard moves only the targets the new shard wins
//! (about 1/(N+1) of them), and each of those moves *to the new shard* — nothing reshuffles
//! between the old ones, unlike `hash % N` (which moves ~N/(N+1)). Hand-written because it is
//! ten lines over a hash the crate already uses (xxh3, stable across versions and platforms,
//! unlike `std`'s `DefaultHasher`); the crates that offer it (`hrw-hash`, `rendezvous_hash`)
//! add a dependency for no more.
//!
//! **The key** is the pod's UID when discovery gives it (a pod's identity for its whole life;
//! a StatefulSet pod recreated under the same name is a new process anyway), else
//! `cluster/namespace/pod` from the target file or flag, else the URL.
//!
//! **Writes never contend.** Each shard's rows are its own targets' (ingest keys name the
//! target, so two shards never claim the same key), its data files are uniquely named, and the
//! commit log serialises commits by a conditional put (`commit`): two shards committing at once
//! both land, one retrying the next sequence number. The id-tracking state is per shard
//! (`_state/ingest-shard-I.json`); a target a shard has no state for — the targets that moved to
//! it when `N` changed — takes its state from whichever other state file (the unsharded
//! `ingest.json` included) tracked it most recently (most passes), so residence times survive
//! a resharding. Left as is: a target that moves back to a shard that scraped it long ago finds
//! its old entry there and resumes from it (its first-seen times stay true, the passes since
//! are not counted).

use std::fmt;
use std::str::FromStr;

use super::targets::TargetSpec;

/// The most shards `--shard` accepts: more would be a typo, not a fleet.
pub const MAX_SHARDS: u32 = 4096;

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad =
            || format!("{s:?} is not a shard: write I/N, 0 <= I < N <= {MAX_SHARDS} (e.g. 0/4)");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        // Digits only: no sign, no spaces inside, no `0x`.
        let num = |x: &str| -> Result<u32, String> {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            x.parse().map_err(|_| bad())
        };
        let (index, count) = (num(i)?, num(n)?);
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The shard of `count` that `key` falls to.
    pub fn owner(key: &str, count: u32) -> u32 {
        (0..count)
            .max_by_key(|&j| {
                (
                    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), j as u64),
                    j,
                )
            })
            .unwrap_or(0)
    }

    pub fn owns(&self, key: &str) -> bool {
        Shard::owner(key, self.count) == self.index
    }

    /// This shard's state file, relative to the store root.
    pub fn state_path(&self) -> String {
        format!("_state/ingest-shard-{}.json", self.index)
    }
}

/// The key a target is sharded on (see the module header).
pub fn key(spec: &TargetSpec) -> String {
    if let Some(uid) = spec.uid.as_deref().filter(|u| !u.is_empty()) {
        return format!("uid:{uid}");
    }
    match (&spec.namespace, &spec.pod) {
        (Some(ns), Some(pod)) => format!(
            "pod:{}/{ns}/{pod}",
            spec.cluster.as_deref().unwrap_or_default()
        ),
        _ => format!("url:{}", spec.url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        // As the fleet bench names its targets.
        (0..n)
            .map(|i| {
                key(&TargetSpec {
                    url: format!("http://127.1.{}.{}:16060", i / 250, i % 250 + 1),
                    namespace: Some("fleet".into()),
                    pod: Some(format!("pod-{i:04}")),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[test]
    fn four_shards_cover_every_target_exactly_once_and_a_fifth_moves_a_fifth_to_itself() {
        let keys = keys(1000);
        let four: Vec<Shard> = (0..4).map(|i| Shard { index: i, count: 4 }).collect();
        let mut per_shard = [0usize; 4];
        for k in &keys {
            let owners: Vec<u32> = four.iter().filter(|s| s.owns(k)).map(|s| s.index).collect();
            assert_eq!(owners.len(), 1, "{k}: owned by {owners:?}");
            per_shard[owners[0] as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (200..=300).contains(&n)),
            "unbalanced: {per_shard:?}"
        );
        let mut moved = 0;
        for k in &keys {
            let (before, after) = (Shard::owner(k, 4), Shard::owner(k, 5));
            if before != after {
                moved += 1;
                assert_eq!(
                    after, 4,
                    "{k} moved between old shards: {before} -> {after}"
                );
            }
        }
        // About a fifth (200 of 1,000).
        assert!((150..=250).contains(&moved), "{moved} of 1000 moved");
    }

    #[test]
    fn the_key_is_the_uid_then_the_pod_then_the_url() {
        let mut s = TargetSpec {
            url: "http://127.0.0.1:1".into(),
            ..Default::default()
        };
        assert_eq!(key(&s), "url:http://127.0.0.1:1");
        s.namespace = Some("ns".into());
        s.pod = Some("p".into());
        assert_eq!(key(&s), "pod:/ns/p");
        s.cluster = Some("c".into());
        assert_eq!(key(&s), "pod:c/ns/p");
        s.uid = Some("0b7f-uid".into());
        assert_eq!(key(&s), "uid:0b7f-uid");
    }

    #[test]
    fn shard_flags_parse_strictly() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        assert_eq!("0/1".parse(), Ok(Shard { index: 0, count: 1 }));
        for bad in [
            "4/4",
            "1/0",
            "0/0",
            "-1/4",
            "+1/4",
            "a/b",
            "1",
            "1/",
            "/4",
            "1/4/2",
            " 1 /4",
            "0x1/4",
            "0/5000",
            "99999999999/4",
            "",
        ] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
        assert_eq!(
            Shard { index: 2, count: 5 }.state_path(),
            "_state/ingest-shard-2.json"
        );
    }

    #[test]
    fn one_shard_owns_everything() {
        let one = Shard { index: 0, count: 1 };
        assert!(keys(100).iter().all(|k| one.owns(k)));
    }
}
