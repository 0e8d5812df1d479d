//! Hosts that are really apart: each in a network namespace of its own with its own address
//! (10.215.N.1, .2, ...), all on one Ethernet segment, joined either by a Linux bridge (a veth pair
//! from each host into a bridge in a namespace of its own) or by a switch that delays and drops
//! frames as `tc netem` would on each host's link.
//!
//! That switch runs in this process, not in the kernel: the kernels these tests run on have no
//! netem (`tc qdisc add ... netem` answers "Specified qdisc kind is unknown") and no tc
//! classifiers, so neither a bridge with netem nor a filter could delay or drop packets. Each host
//! gets a TAP device (`eth0`) whose other end is a file descriptor here; the switch learns which
//! MAC address is behind which port, floods broadcasts and unknown destinations, and delivers each
//! frame after a delay drawn uniformly from the sender's link's range, or drops it with the link's
//! loss probability — netem's `delay` and `loss` on every host's egress, but without netem's
//! reordering (a link's frames leave in order).
//!
//! Needs root and `ip` (and /dev/net/tun for the switch). Everything is removed on drop: the
//! namespaces (and with them the veth pairs, the bridge and the TAP devices), then the switch's
//! threads.

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::Dice;

/// What each host's link does to the frames it sends.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Delay, drawn uniformly from this range for every frame.
    pub delay: (Duration, Duration),
    /// Probability that a frame is dropped.
    pub loss: f64,
}

impl Link {
    /// A link that adds nothing.
    pub const CLEAN: Link = Link {
        delay: (Duration::ZERO, Duration::ZERO),
        loss: 0.0,
    };
}

/// The namespaces, their addresses, and the switch between them.
pub struct Lan {
    hosts: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// One frame on its way: delivered at `at` to `ports`.
struct InFlight {
    at: Instant,
    seq: u64,
    ports: Vec<usize>,
    frame: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Earliest first (BinaryHeap is a max-heap).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Frames waiting for their time, and the wake-up for the delivering thread.
#[derive(Default)]
struct Queue {
    frames: Mutex<BinaryHeap<InFlight>>,
    changed: Condvar,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What joins the hosts.
#[derive(Debug, Clone, Copy)]
pub enum Wiring {
    /// A Linux bridge, each host on it by a veth pair: the kernel's own path.
    Bridge,
    /// The switch in this process, each host's link as given.
    Switch(Link),
}

impl Lan {
    /// `hosts` namespaces on one segment, joined as `wiring` says.
    pub fn create(hosts: usize, wiring: Wiring) -> Result<Lan, String> {
        let id = std::process::id() % 100_000;
        let subnet = 10 + id % 240;
        let mut lan = Lan {
            hosts: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let bridge = format!("jsw-lan-{id}-br");
        let in_bridge =
            |args: &[&str]| run(&[&["ip", "netns", "exec", &bridge][..], args].concat());
        if let Wiring::Bridge = wiring {
            run(&["ip", "netns", "add", &bridge])?;
            // First in the list, without an address: deleted on drop with the hosts.
            lan.hosts.push((bridge.clone(), String::new()));
            in_bridge(&["ip", "link", "add", "br0", "type", "bridge"])?;
            in_bridge(&["ip", "link", "set", "br0", "up"])?;
        }
        let mut taps = Vec::new();
        for i in 0..hosts {
            let ns = format!("jsw-lan-{id}-{i}");
            let ip = format!("10.215.{subnet}.{}", i + 1);
            run(&["ip", "netns", "add", &ns])?;
            lan.hosts.push((ns.clone(), ip.clone()));
            let inside = |args: &[&str]| run(&[&["ip", "netns", "exec", &ns][..], args].concat());
            inside(&["ip", "link", "set", "lo", "up"])?;
            match wiring {
                Wiring::Bridge => {
                    let port = format!("p{i}");
                    inside(&[
                        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                        "netns", &bridge,
                    ])?;
                    in_bridge(&["ip", "link", "set", &port, "master", "br0"])?;
                    in_bridge(&["ip", "link", "set", &port, "up"])?;
                }
                Wiring::Switch(_) => taps.push(open_tap_in(&ns)?),
            }
            inside(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            inside(&["ip", "link", "set", "eth0", "up"])?;
        }
        if let Wiring::Switch(link) = wiring {
            lan.start_switch(taps, link);
        }
        Ok(lan)
    }

    /// The hosts, without the bridge's namespace.
    fn machines(&self) -> &[(String, String)] {
        let bridge = self.hosts.first().is_some_and(|(_, ip)| ip.is_empty());
        &self.hosts[usize::from(bridge)..]
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> &str {
        &self.machines()[i].1
    }

    /// `program` to be run on host `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.machines()[i].0])
            .arg(program);
        c
    }

    fn start_switch(&mut self, taps: Vec<File>, link: Link) {
        let taps: Vec<Arc<File>> = taps.into_iter().map(Arc::new).collect();
        let queue = Arc::new(Queue::default());
        let macs = Arc::new(Mutex::new(HashMap::<[u8; 6], usize>::new()));
        let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for (port, tap) in taps.iter().enumerate() {
            let (tap, queue, macs, seq, stop) = (
                tap.clone(),
                queue.clone(),
                macs.clone(),
                seq.clone(),
                self.stop.clone(),
            );
            let ports = taps.len();
            self.threads.push(std::thread::spawn(move || {
                let mut dice = Dice::new(0x9e37_79b9 ^ port as u64);
                // The last frame this link sends leaves no earlier than the one before it.
                let mut last = Instant::now();
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if !readable(&tap, 100) {
                        continue;
                    }
                    let n = match (&*tap).read(&mut buf) {
                        Ok(n) if n >= 14 => n,
                        Ok(_) => continue,
                        Err(_) => break, // the device is gone
                    };
                    let frame = buf[..n].to_vec();
                    let dst: [u8; 6] = frame[0..6].try_into().unwrap();
                    let src: [u8; 6] = frame[6..12].try_into().unwrap();
                    let to = {
                        let mut macs = macs.lock().unwrap();
                        macs.insert(src, port);
                        match macs.get(&dst) {
                            Some(&p) if dst[0] & 1 == 0 => vec![p],
                            _ => (0..ports).filter(|&p| p != port).collect(),
                        }
                    };
                    if (dice.between(0, 1_000_000) as f64) < link.loss * 1e6 {
                        continue;
                    }
                    let (lo, hi) = (
                        link.delay.0.as_micros() as u64,
                        link.delay.1.as_micros() as u64,
                    );
                    let delay = Duration::from_micros(if hi > lo {
                        dice.between(lo, hi + 1)
                    } else {
                        lo
                    });
                    last = last.max(Instant::now() + delay);
                    let item = InFlight {
                        at: last,
                        seq: seq.fetch_add(1, Ordering::Relaxed),
                        ports: to,
                        frame,
                    };
                    queue.frames.lock().unwrap().push(item);
                    queue.changed.notify_one();
                }
            }));
        }
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut frames = queue.frames.lock().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let wait = match frames.peek() {
                    Some(f) if f.at <= now => {
                        let f = frames.pop().unwrap();
                        for p in f.ports {
                            // A full or vanished device drops the frame, as a wire would.
                            let _ = (&*taps[p]).write(&f.frame);
                        }
                        continue;
                    }
                    Some(f) => f.at - now,
                    None => Duration::from_millis(100),
                };
                frames = queue.changed.wait_timeout(frames, wait).unwrap().0;
            }
        }));
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (ns, _) in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Whether `file` has something to read within `ms` milliseconds.
fn readable(file: &File, ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 && fd.revents & libc::POLLIN != 0 }
}

/// Opens a TAP device named `eth0` inside the namespace `ns`: a thread of its own enters the
/// namespace, opens it, and ends (so no other thread's namespace changes). The device lives as long
/// as the returned file is open and the namespace exists.
fn open_tap_in(ns: &str) -> Result<File, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<File, String> {
        let target = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns on this thread only, with a namespace file descriptor.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun: {e}"))?;
        #[repr(C)]
        struct IfReq {
            name: [u8; 16],
            flags: libc::c_short,
            _pad: [u8; 22],
        }
        let mut req = IfReq {
            name: [0; 16],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..4].copy_from_slice(b"eth0");
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        // SAFETY: TUNSETIFF reads an ifreq-sized struct that lives through the call.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
            return Err(format!("TUNSETIFF: {}", std::io::Error::last_os_error()));
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| "the thread opening the TAP device panicked".to_string())?
}
