//! The push service's code (`actuate::push`), generated from `proto/leakhound/push/v1/push.proto`
//! (the file the Go agent's code is generated from too). protox compiles the .proto in Rust, so
//! no `protoc` is needed on a developer's machine or in CI; tonic-prost-build writes the
//! messages and the server (and the client, for the crate's own tests).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let file = "leakhound/push/v1/push.proto";
    println!("cargo:rerun-if-changed={root}/{file}");
    let fds = protox::compile([file], [root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
