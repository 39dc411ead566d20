//! Write one scenario of the suite into a store, to look at it with `leakhound sql` / `analyze`:
//! `cargo run -p leakhound-analyze --example scenario -- KIND SEED STORE [dumps]` (`dumps`: the
//! debug=2 captures ingest would have taken, as well as the counts).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, seed, store, evidence) = match args.as_slice() {
        [k, s, st] => (k, s, st, leakhound_analyze::backtest::Evidence::Counts),
        [k, s, st, d] if d == "dumps" => (
            k,
            s,
            st,
            leakhound_analyze::backtest::Evidence::CountsAndDumps,
        ),
        _ => {
            eprintln!("usage: scenario KIND SEED STORE [dumps]");
            std::process::exit(2);
        }
    };
    let s = leakhound_analyze::scenarios::generate(kind, seed.parse().expect("seed"))
        .unwrap_or_else(|| panic!("unknown kind {kind}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let st = leakhound_ingest::Store::open(store).expect("store");
    rt.block_on(leakhound_analyze::backtest::load(&st, &s, evidence))
        .expect("load");
    println!(
        "{} rows, {} .. {}, leak {:?}",
        s.rows.len(),
        s.start_s,
        s.end_s,
        s.leak
    );
}
