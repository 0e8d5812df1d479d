//! How a sweep shares the workers: its `priority` (its weight in the fair share between active
//! sweeps), `max_running` (a cap on its jobs running at once) and `device` (which workers may take
//! its jobs: `cpu`, `cuda` or `any`). Read from the sweep file's top level; leasing
//! (`jobs::share`) applies them.

use crate::Error;

/// Largest priority: a sweep at most this many times another's share.
pub const MAX_PRIORITY: f64 = 1000.0;

/// Which workers may take a sweep's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Any,
    Cpu,
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Any => "any",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }

    pub fn parse(text: &str) -> Option<Device> {
        [Device::Any, Device::Cpu, Device::Cuda]
            .into_iter()
            .find(|d| d.name() == text)
    }

    /// The class of a worker that says it trains on `worker_device` (`cpu`, `cuda:0`, `cuda (H200)`…).
    pub fn of_worker(worker_device: &str) -> Device {
        if worker_device
            .trim()
            .to_ascii_lowercase()
            .starts_with("cuda")
        {
            Device::Cuda
        } else {
            Device::Cpu
        }
    }

    /// Whether a worker of class `worker` may take this sweep's jobs.
    pub fn admits(self, worker: Device) -> bool {
        self == Device::Any || self == worker
    }
}

/// A sweep's share of the workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub priority: f64,
    pub max_running: Option<u32>,
    pub device: Device,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            priority: 1.0,
            max_running: None,
            device: Device::Any,
        }
    }
}

fn bad(key: &str, reason: String) -> Error {
    Error::SweepValue {
        key: key.to_string(),
        reason,
    }
}

impl Schedule {
    /// The schedule of a sweep file's `priority`, `max_running` and `device` (each optional).
    pub fn read(
        priority: Option<f64>,
        max_running: Option<i64>,
        device: Option<&str>,
    ) -> Result<Schedule, Error> {
        let priority = match priority {
            None => 1.0,
            Some(p) if p.is_finite() && p > 0.0 && p <= MAX_PRIORITY => p,
            Some(p) => {
                return Err(bad(
                    "priority",
                    format!(
                        "{p} is out of range: a sweep's weight in the fair share, above 0 and at most {MAX_PRIORITY} (default 1)"
                    ),
                ));
            }
        };
        let max_running = match max_running {
            None => None,
            Some(n) if (1..=1_000_000).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(bad(
                    "max_running",
                    format!(
                        "{n} is out of range: the most jobs of this sweep running at once, 1 to 1000000 (default: no cap)"
                    ),
                ));
            }
        };
        let device = match device {
            None => Device::Any,
            Some(d) => Device::parse(d.trim()).ok_or_else(|| {
                bad(
                    "device",
                    format!(
                        "{:?} is not a device class: use \"cpu\", \"cuda\" or \"any\" (the default)",
                        d.chars().take(40).collect::<String>()
                    ),
                )
            })?,
        };
        Ok(Schedule {
            priority,
            max_running,
            device,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_routed_by_device_class() {
        assert_eq!(Device::of_worker("cpu"), Device::Cpu);
        assert_eq!(Device::of_worker("cuda:0"), Device::Cuda);
        assert!(Device::Any.admits(Device::Cuda) && Device::Any.admits(Device::Cpu));
        assert!(Device::Cuda.admits(Device::Cuda) && !Device::Cuda.admits(Device::Cpu));
        assert!(!Device::Cpu.admits(Device::Cuda));
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_key() {
        for (p, m, d, key) in [
            (Some(0.0), None, None, "priority"),
            (Some(f64::NAN), None, None, "priority"),
            (Some(1e9), None, None, "priority"),
            (None, Some(0), None, "max_running"),
            (None, Some(-3), None, "max_running"),
            (None, None, Some("gpu"), "device"),
        ] {
            let e = Schedule::read(p, m, d).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        assert_eq!(
            Schedule::read(None, None, None).unwrap(),
            Schedule::default()
        );
    }
}
