//! Write one scenario of the suite into a store, to look at it with `leakhound sql` / `analyze`:
//! `cargo run -p leakhound-analyze --example scenario -- KIND SEED STORE`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, seed, store] = args.as_slice() else {
        eprintln!("usage: scenario KIND SEED STORE");
        std::process::exit(2);
    };
    let s = leakhound_analyze::scenarios::generate(kind, seed.parse().expect("seed"))
        .unwrap_or_else(|| panic!("unknown kind {kind}"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let st = leakhound_ingest::Store::open(store).expect("store");
    rt.block_on(leakhound_analyze::backtest::load(&st, &s))
        .expect("load");
    println!(
        "{} rows, {} .. {}, leak {:?}",
        s.rows.len(),
        s.start_s,
        s.end_s,
        s.leak
    );
}
