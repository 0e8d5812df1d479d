//! Choosing the compute device, once, at the edge: `cpu` (burn's pure-Rust `flex` backend) or
//! `cuda:N` (burn-cuda, in builds with the `cuda` feature).
//!
//! burn-cuda panics on first use when there is no driver, so CUDA is probed here first: the driver
//! library is loaded and asked how many devices it sees, and a missing driver, a missing device or a
//! build without CUDA becomes an error that says so.

use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use jetsweep_data::Prepared;

use crate::error::WorkerError;
use jetsweep_proto::trial::Hyperparameters;

use crate::train::{PackOutcomes, Progress, RunOptions, Summary, train_autodiff, train_pack_cpu};

/// Where a trial runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = WorkerError;

    fn from_str(s: &str) -> Result<Self, WorkerError> {
        match s.trim() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    WorkerError::Device(format!(
                        "{other:?} is not a device: use cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The CPU backend: flex, single-threaded (one worker process per core is the fast layout for these
/// tiny models; see worker/docs/speed.md). The packed trainer needs no autodiff; the reference
/// trainer runs on [`CpuBackend`].
pub type Cpu = burn::backend::Flex;
pub type CpuBackend = burn::backend::Autodiff<Cpu>;

#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<Cuda>;

/// How many trials a worker on `choice` trains packed, unless told otherwise: on a CPU core the
/// per-trial cost stops falling past about 16 (worker/docs/speed.md); a GPU wants hundreds to fill it.
pub fn default_pack(choice: DeviceChoice) -> usize {
    match choice {
        DeviceChoice::Cpu => 16,
        DeviceChoice::Cuda(_) => 512,
    }
}

/// The most trials one pack may hold (the coordinator grants at most this many in one lease).
pub const MAX_PACK: usize = jetsweep_proto::limits::MAX_PACK as usize;

/// Checks that `choice` can run here, with a clear error if not.
pub fn check(choice: DeviceChoice) -> Result<(), WorkerError> {
    match choice {
        DeviceChoice::Cpu => Ok(()),
        DeviceChoice::Cuda(index) => probe_cuda(index),
    }
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda(index: usize) -> Result<(), WorkerError> {
    Err(WorkerError::Device(format!(
        "cuda:{index}: this jetsweep-worker was built without CUDA support; rebuild it with `cargo build --release --features cuda`, or use --device cpu"
    )))
}

#[cfg(feature = "cuda")]
fn probe_cuda(index: usize) -> Result<(), WorkerError> {
    use std::os::raw::c_int;
    let lib = ["libcuda.so.1", "libcuda.so"]
        .iter()
        // SAFETY: loading libcuda runs its initialisers; it is the NVIDIA driver's own library,
        // which burn-cuda loads the same way, and it is kept loaded for the rest of this function.
        .find_map(|name| unsafe { libloading::Library::new(*name) }.ok())
        .ok_or_else(|| {
            WorkerError::Device(format!(
                "cuda:{index}: no NVIDIA driver found (libcuda.so.1 could not be loaded); this machine has no usable GPU, use --device cpu"
            ))
        })?;
    // SAFETY: the two symbols are looked up by their names in the driver API, with the C
    // signatures the CUDA driver API documents (`CUresult cuInit(unsigned int)`,
    // `CUresult cuDeviceGetCount(int*)`); `n` outlives the call that writes it; `lib` outlives both.
    let count = unsafe {
        let init: libloading::Symbol<unsafe extern "C" fn(u32) -> c_int> =
            lib.get(b"cuInit\0").map_err(|e| {
                WorkerError::Device(format!("cuda:{index}: libcuda has no cuInit: {e}"))
            })?;
        let device_count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> c_int> =
            lib.get(b"cuDeviceGetCount\0").map_err(|e| {
                WorkerError::Device(format!(
                    "cuda:{index}: libcuda has no cuDeviceGetCount: {e}"
                ))
            })?;
        let status = init(0);
        if status != 0 {
            return Err(WorkerError::Device(format!(
                "cuda:{index}: the NVIDIA driver failed to initialise (CUresult {status}); check nvidia-smi"
            )));
        }
        let mut n: c_int = 0;
        let status = device_count(&mut n);
        if status != 0 {
            return Err(WorkerError::Device(format!(
                "cuda:{index}: cannot count CUDA devices (CUresult {status})"
            )));
        }
        n as usize
    };
    if index >= count {
        return Err(WorkerError::Device(format!(
            "cuda:{index} does not exist: this machine has {count} CUDA device(s)"
        )));
    }
    // burn-cuda compiles kernels with NVRTC and passes it the toolkit's headers.
    let toolkit = std::env::var_os("CUDA_PATH")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/usr/local/cuda", "/opt/cuda"].map(std::path::PathBuf::from))
        .any(|p| p.join("include").is_dir());
    if !toolkit {
        return Err(WorkerError::Device(format!(
            "cuda:{index}: no CUDA toolkit headers found; set CUDA_PATH to the toolkit root (the folder with include/)"
        )));
    }
    Ok(())
}

/// Trains `configs` as one pack on the chosen device: the loop engine on a CPU, the tensor engine
/// on a GPU (see [`train_pack_cpu`]). Each trial's outcome, in order.
pub fn train_pack_on(
    choice: DeviceChoice,
    data: &Prepared,
    configs: &[Hyperparameters],
    options: &RunOptions,
    observe: &mut dyn FnMut(usize, Progress<'_>) -> ControlFlow<String>,
) -> PackOutcomes {
    check(choice)?;
    match choice {
        DeviceChoice::Cpu => train_pack_cpu(data, configs, options, observe),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => {
            let device = burn::backend::cuda::CudaDevice::new(index);
            let on_device = uploaded::<Cuda>(choice, data, &device);
            crate::train::train_pack_tensors::<Cuda>(
                data, &on_device, configs, &device, options, observe,
            )
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => unreachable!("check() refuses CUDA in builds without it"),
    }
}

/// The dataset on a GPU, uploaded once per worker process: the last one uploaded is kept (keyed
/// by device and content hash) and reused by every pack that trains on it.
#[cfg(feature = "cuda")]
fn uploaded<B: burn::tensor::backend::Backend>(
    choice: DeviceChoice,
    data: &Prepared,
    device: &B::Device,
) -> std::sync::Arc<crate::train::DeviceData<B>>
where
    crate::train::DeviceData<B>: Send + Sync + 'static,
{
    use std::any::Any;
    use std::sync::{Arc, Mutex};
    type Kept = Option<(String, Arc<dyn Any + Send + Sync>)>;
    static KEPT: Mutex<Kept> = Mutex::new(None);
    let key = format!("{choice}/{}", data.provenance.sha256);
    let mut kept = jetsweep_proto::sync::lock(&KEPT);
    if let Some((k, d)) = kept.as_ref()
        && *k == key
        && let Ok(d) = d.clone().downcast::<crate::train::DeviceData<B>>()
    {
        return d;
    }
    // The previous dataset is dropped first: one copy on the device at a time.
    *kept = None;
    let fresh = Arc::new(crate::train::DeviceData::<B>::upload(data, device));
    *kept = Some((key, fresh.clone()));
    fresh
}

/// Trains one trial with burn's autodiff and optimizer (see [`train_autodiff`]): the reference the
/// packed engines are checked against.
pub fn train_autodiff_on(
    choice: DeviceChoice,
    data: &Prepared,
    config: &Hyperparameters,
    options: &RunOptions,
    observe: &mut dyn FnMut(Progress<'_>) -> ControlFlow<String>,
) -> Result<Summary, WorkerError> {
    check(choice)?;
    match choice {
        DeviceChoice::Cpu => {
            train_autodiff::<CpuBackend>(data, config, &Default::default(), options, observe)
        }
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(index) => {
            let device = burn::backend::cuda::CudaDevice::new(index);
            train_autodiff::<CudaBackend>(data, config, &device, options, observe)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => unreachable!("check() refuses CUDA in builds without it"),
    }
}
