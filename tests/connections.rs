//! Connections under attack, over real sockets against the real host:
//! slowloris clients are closed after the header timeout, idle connections
//! after the idle timeout, and one address cannot hold more connections
//! than its cap while everyone else is still served.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Components, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The Rust hello, served with `[server]` settings.
fn serve(server: &str) -> Host {
    let components = Components::new()
        .with("hello-rust")
        .with_file("host-config.toml", format!("[server]\n{server}").as_bytes());
    let config = components.path().join("host-config.toml");
    components.serve_with(&["--config", config.to_str().unwrap()])
}

/// The testbed, served with `[server]` settings.
fn serve_testbed(server: &str) -> Host {
    let components = Components::new()
        .with("testbed")
        .with_file("host-config.toml", format!("[server]\n{server}").as_bytes());
    let config = components.path().join("host-config.toml");
    components.serve_with(&["--config", config.to_str().unwrap()])
}

/// How long the host took to close `stream`, reading (and dropping) what
/// it sends; `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        let left = within.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// One HTTP/1.1 GET on `stream`, kept alive; the response read whole.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("a response within 30 s")
            .unwrap();
        assert!(n > 0, "closed before the response ended");
        response.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text.into_owned();
            }
        }
    }
}

/// A connection to `host` from `source` (any 127.x.y.z: Linux answers on
/// the whole loopback network).
async fn connect_from(source: &str, host: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(host).await.unwrap()
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    let host = serve("header-timeout-s = 1\nidle-timeout-s = 60\n");
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(host.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A byte now and then, never the end of the headers.
    let dribble = {
        let addr = host.addr;
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            let started = Instant::now();
            for _ in 0..100 {
                if stream.write_all(b"X").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
            started.elapsed()
        })
    };
    // Everyone else is served meanwhile.
    assert_eq!(host.get("/").await.body, "Hello from Rust!");
    for stream in &mut slow {
        let closed = closed_within(stream, Duration::from_secs(15)).await;
        let closed = closed.expect("a slowloris connection still open after 15 s");
        assert!(closed < Duration::from_secs(10), "closed after {closed:?}");
    }
    let dribbled = dribble.await.unwrap();
    assert!(
        dribbled < Duration::from_secs(12),
        "a dribbling client lasted {dribbled:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let host = serve("header-timeout-s = 60\nidle-timeout-s = 1\n");
    let mut stream = TcpStream::connect(host.addr).await.unwrap();
    assert!(get_on(&mut stream, "/").await.ends_with("Hello from Rust!"));
    // Used again within the timeout, it is still open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(get_on(&mut stream, "/").await.ends_with("Hello from Rust!"));
    let closed = closed_within(&mut stream, Duration::from_secs(15)).await;
    let closed = closed.expect("an idle connection still open after 15 s");
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_secs(10),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_until_the_idle_one() {
    let host = serve("header-timeout-s = 1\nidle-timeout-s = 60\n");
    let mut stream = TcpStream::connect(host.addr).await.unwrap();
    assert!(get_on(&mut stream, "/").await.ends_with("Hello from Rust!"));
    // Three header timeouts later, the idle timeout still holds it open.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(get_on(&mut stream, "/").await.ends_with("Hello from Rust!"));
}

#[tokio::test]
async fn an_http2_connection_that_sends_no_request_is_closed() {
    let host = serve("header-timeout-s = 1\nidle-timeout-s = 60\n");
    let mut stream = TcpStream::connect(host.addr).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(15)).await;
    let closed = closed.expect("an HTTP/2 connection with no request still open after 15 s");
    assert!(closed < Duration::from_secs(10), "closed after {closed:?}");
}

#[tokio::test]
async fn an_address_over_its_connection_cap_is_refused_while_others_are_served() {
    let host = serve("header-timeout-s = 60\nmax-connections-per-ip = 3\n");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", host.addr).await);
    }
    // The fourth from the same address is closed at once.
    let mut over = connect_from("127.0.0.1", host.addr).await;
    let closed = closed_within(&mut over, Duration::from_secs(5)).await;
    assert!(
        closed.is_some(),
        "the connection over the cap was kept open"
    );
    // The ones it holds still work, and so does another address.
    assert!(
        get_on(&mut held[0], "/")
            .await
            .ends_with("Hello from Rust!")
    );
    let mut other = connect_from("127.0.0.2", host.addr).await;
    assert!(get_on(&mut other, "/").await.ends_with("Hello from Rust!"));
    // Closing one gives its place back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = connect_from("127.0.0.1", host.addr).await;
    assert!(get_on(&mut again, "/").await.ends_with("Hello from Rust!"));
    let log = host.wait_for_log("max-connections-per-ip").await;
    assert!(log.contains("connection refused"), "{log}");
}

#[tokio::test]
async fn a_request_body_sent_a_byte_at_a_time_is_cut_off_at_the_timeout() {
    let host = Components::new()
        .with_sidecar("testbed", "[limits]\ntimeout-ms = 1000\n")
        .serve();
    let stream = TcpStream::connect(host.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nx")
        .await
        .unwrap();
    let started = Instant::now();
    // A byte every 200 ms: the 100 bytes would take 20 s.
    let dribble = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let mut response = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(15), read.read(&mut response))
        .await
        .expect("an answer while the body still dribbles in")
        .unwrap();
    let answer = String::from_utf8_lossy(&response[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    dribble.abort();
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off_once_idle() {
    let host = serve_testbed("header-timeout-s = 1\nidle-timeout-s = 1\n");
    let socket = TcpSocket::new_v4().unwrap();
    // A small window, so the host cannot push the whole response at once.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(host.addr).await.unwrap();
    // 6 bytes times four million: 24 MB, more than socket buffers hold.
    stream
        .write_all(b"GET /big/4000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // Not reading for a while: the host gives up on the connection.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut rest)).await;
    assert!(
        rest.len() + n < 24_000_000,
        "the whole response was kept for a client that stopped reading"
    );
}

#[test]
fn a_zero_connection_setting_stops_the_start_naming_the_field() {
    let components = Components::new()
        .with("hello-rust")
        .with_file("host-config.toml", b"[server]\nmax-connections = 0\n");
    let config = components.path().join("host-config.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cello-host"))
        .args(["serve", components.path().to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("[server] max-connections must be at least 1"),
        "{text}"
    );
}
