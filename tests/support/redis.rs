//! A throwaway Redis server for tests: `redis-server` on a free loopback
//! port with its files in a temporary directory, nothing saved to disk.
//! It can be stopped and started again on the same port, for outages.
//!
//! The server is stopped (and its directory removed) when the value is
//! dropped, or when the test process exits, whichever comes first: a
//! watcher shell stops it once the pipe from this process closes.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command};
use std::time::{Duration, Instant};

/// A Redis server on one port, running or stopped.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    running: Option<Watcher>,
}

/// The shell that runs the server and stops it when its input closes.
struct Watcher {
    shell: Child,
    stop: ChildStdin,
}

impl Redis {
    /// Starts a new server and waits until it takes connections.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cello-redis-")
            .tempdir()
            .unwrap()
            .keep();
        // Each start makes it anew, and each stop removes it.
        let mut redis = Self {
            port: free_port(),
            dir,
            running: None,
        };
        redis.resume();
        redis
    }

    /// The URL for the host's `[cluster] redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (its data is lost) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut watcher) = self.running.take() {
            let _ = watcher.stop.write_all(b"\n");
            drop(watcher.stop);
            let _ = watcher.shell.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answers() {
            assert!(Instant::now() < deadline, "Redis did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn resume(&mut self) {
        assert!(self.running.is_none(), "Redis is running already");
        let redis_server = which("redis-server");
        // The watcher starts the server, and stops it and removes its
        // files when its standard input closes.
        let script = format!(
            "mkdir -p {dir}; {redis_server} --port {port} --bind 127.0.0.1 --dir {dir} \
             --save '' --appendonly no --logfile {dir}/log & \
             read _; kill $! 2>/dev/null; wait; rm -rf {dir}",
            port = self.port,
            dir = self.dir.display(),
        );
        let (shell, stop) = super::watcher_shell(&script);
        self.running = Some(Watcher { shell, stop });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "Redis did not start: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a `PING` on the port is answered `+PONG`.
    fn answers(&self) -> bool {
        use std::io::Read;
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Runs `redis-cli` with `args` against the server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new(which("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("cannot run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis program, which `make setup` installs (Debian's `redis-server`).
fn which(program: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = format!("{dir}/{program}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{program} is not installed: `make setup` installs redis-server");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A TCP link to the server that can be cut for one host alone, as a
/// network partition would, while others keep their own connections.
pub struct Link {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Link {
    /// A link to `redis`, forwarding each connection made to it.
    pub fn to(redis: &Redis) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Self {
            port,
            cut: Default::default(),
            open: Default::default(),
        };
        let (cut, open, target) = (link.cut.clone(), link.open.clone(), redis.port);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = match TcpStream::connect(("127.0.0.1", target)) {
                    Ok(server) if !cut.load(Ordering::Acquire) => server,
                    _ => continue,
                };
                let mut kept = open.lock().unwrap();
                kept.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        link
    }

    /// The URL for the host's `[cluster] redis`, through this link.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Cuts every connection through the link, and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn mend(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Release);
    }
}
