//! Compiles proto/stasis.proto into Rust (module `stasis_image::schema`) with protox, a
//! pure-Rust protobuf compiler: building stasis needs no protoc binary.

fn main() {
    let proto = "proto/stasis.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = match protox::compile([proto], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("{proto}: {e:?}"),
    };
    // The descriptor set itself, for readers that decode by reflection (and the tests
    // that compare the schema with model.rs).
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("stasis.fds.bin"), prost::Message::encode_to_vec(&fds)).expect("writing stasis.fds.bin");
    let mut config = prost_build::Config::new();
    if let Err(e) = config.compile_fds(fds) {
        panic!("generating Rust from {proto}: {e}");
    }
}
