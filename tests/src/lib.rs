//! What the end-to-end tests (`tests/`) and the chaos suite (`chaos/`) share: finding the binaries,
//! and starting a coordinator and workers as real processes on loopback.

pub mod bins;
pub mod certs;
pub mod cluster;
pub mod need;
