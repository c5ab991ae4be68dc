//! Helpers the bench binaries share: servers in their own processes, and
//! command-line and number formatting.

use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server in its own process.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Runs this bench binary again as `--serve NAME`, and reads the port
    /// it prints on its first line.
    pub fn start(name: &str) -> Self {
        Self::start_under(name, &[])
    }

    /// [`start`](Self::start) under another program, `wrapper` being its
    /// command line up to the bench binary (for example
    /// `["valgrind", "--tool=callgrind"]`).
    pub fn start_under(name: &str, wrapper: &[String]) -> Self {
        let exe = std::env::current_exe().expect("the bench binary");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--serve", name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("server process");
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let port: u16 = line.trim().parse().expect("the server's port");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn proc_file(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).unwrap_or_default()
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        let stat = self.proc_file("stat");
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        // The kernel's USER_HZ is 100 on every Linux configuration.
        Duration::from_millis(ticks * 10)
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory it has had, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multi-thread tokio runtime with one worker: every server and load
/// client in the benches runs on one, so they compare like with like.
pub fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The payload length and header length (without a masking key) of the
/// frame starting `frame`, once its length fields have arrived. For the
/// benches' hand-written peers, which do no other WebSocket work.
pub fn frame_lengths(frame: &[u8]) -> Option<(usize, usize)> {
    match *frame.get(1)? & 0x7f {
        126 => {
            let bytes = frame.get(2..4)?;
            Some((usize::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4))
        }
        127 => {
            let bytes: [u8; 8] = frame.get(2..10)?.try_into().ok()?;
            let len = usize::try_from(u64::from_be_bytes(bytes)).unwrap_or(usize::MAX);
            Some((len, 10))
        }
        short => Some((usize::from(short), 2)),
    }
}

/// A rate as `12k` or `1.20M`.
pub fn fmt_rate(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else {
        format!("{:.0}k", rate / 1e3)
    }
}

/// `--name 1,2,3` from the command line, or `default`.
pub fn list_arg(args: &[String], name: &str, default: &[usize]) -> Vec<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|list| {
            list.split(',')
                .map(|n| n.parse().expect("a list of numbers"))
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// The `percent`th percentile of `sorted` (ascending), or the default for
/// an empty slice.
pub fn percentile<T: Copy + Default>(sorted: &[T], percent: usize) -> T {
    sorted
        .get((sorted.len() * percent / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// `--name N` from the command line, or `default`.
pub fn number_arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// Raises this process's open-file limit to its hard limit, for benches
/// that hold thousands of sockets.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they get.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}
