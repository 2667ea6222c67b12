//! Compiles every Berth proto into one module tree and writes the descriptor set
//! that gRPC reflection serves. Needs `protoc` (Debian: protobuf-compiler).

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        "berth/types/v1/types.proto",
        "berth/image/v1/image.proto",
        "berth/runtime/v1/runtime.proto",
        "berth/network/v1/network.proto",
        "berth/volume/v1/volume.proto",
        "berth/events/v1/events.proto",
    ];
    println!("cargo:rerun-if-changed=berth");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("berth_descriptor.bin"))
        .bytes(".berth.image.v1.LoadImagesRequest.chunk")
        .bytes(".berth.image.v1.SaveImagesResponse.chunk")
        .bytes(".berth.image.v1.ImportImageRequest.chunk")
        .bytes(".berth.image.v1.CommitImageRequest.chunk")
        .bytes(".berth.image.v1.BuildRequest.chunk")
        .bytes(".berth.runtime.v1.ArchiveChunk.chunk")
        .bytes(".berth.runtime.v1.GetArchiveResponse.chunk")
        .bytes(".berth.runtime.v1.PutArchiveRequest.chunk")
        // Credentials: a hand-written Debug that never prints them (src/lib.rs).
        .skip_debug([".berth.image.v1.RegistryAuth"])
        .compile_protos(&protos, &["."])?;
    Ok(())
}
