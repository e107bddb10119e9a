//! The release contract of the binary itself: configured by environment
//! variables, serves, refuses bad configuration with the variable's name, and
//! exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_clickstream-gateway");

fn gateway(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    // A clean environment: no .env or AWS settings of the machine leak in.
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command.current_dir(std::env::temp_dir());
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// Starts the binary on a free loopback port with `threads` worker
/// threads; returns it, its address and its "listening" log line.
fn start(file: &str, threads: &str) -> (Child, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut child = gateway(&[
        ("HOST", "127.0.0.1"),
        ("PORT", &port),
        ("FILE_SINK_PATH", file),
        ("LOG_FORMAT", "json"),
        ("WORKER_THREADS", threads),
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // The "listening" line says the socket is bound.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("\"listening\""))
        .expect("a listening line");
    // Keep reading so the gateway's later log lines do not hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, format!("127.0.0.1:{port}"), listening)
}

#[test]
fn an_invalid_variable_stops_start_up_naming_it() {
    let output = gateway(&[("PORT", "eighty")]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PORT=\"eighty\""), "{stderr}");
}

#[test]
fn sink_kinesis_without_a_stream_fails_fast() {
    let output = gateway(&[("SINK", "kinesis")]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("KINESIS_STREAM_NAME"));
}

/// On one worker thread (the single-threaded scheduler) and on several.
#[test]
fn serves_then_exits_zero_on_sigterm() {
    for threads in ["1", "2"] {
        serves_then_exits_zero_on_sigterm_with(threads);
    }
}

fn serves_then_exits_zero_on_sigterm_with(threads: &str) {
    let file = std::env::temp_dir().join(format!("gateway-bin-{}-{threads}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let (mut child, addr, listening) = start(file.to_str().unwrap(), threads);
    assert!(
        listening.contains(&format!("\"worker_threads\":{threads}")),
        "{listening}"
    );

    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut socket,
        b"POST /import HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut socket, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("\"Data\":\"aGk=\""));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            let _ = std::fs::remove_file(&file);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("the gateway ({threads} threads) did not exit within 5 s of SIGTERM");
}

/// Runs the binary until it exits or `within` passes (then kills it), and
/// returns its exit status (None when killed) and everything it printed.
fn run_for(vars: &[(&str, &str)], within: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = gateway(vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > within {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status, printed)
}

/// A free loopback port, as text.
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

#[test]
fn start_up_refuses_settings_no_request_could_pass_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("gateway-bin-checks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let spill = dir.join("spill");
    let port = free_port();
    let base = [("HOST", "127.0.0.1"), ("PORT", port.as_str())];
    let kinesis = [
        ("SINK", "kinesis"),
        ("KINESIS_STREAM_NAME", "clicks"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        // Nothing listens there: the check must come before any call.
        ("KINESIS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("BATCH_MAX_RECORDS", "501")], "BATCH_MAX_RECORDS"),
        (vec![("WORKER_THREADS", "0")], "WORKER_THREADS"),
        (vec![("MAX_IN_FLIGHT_BODY_BYTES", "1")], "MAX_IN_FLIGHT_BODY_BYTES"),
        (
            vec![("SPILL_DIR", spill.to_str().unwrap()), ("SPILL_MAX_BYTES", "1")],
            "SPILL_MAX_BYTES",
        ),
        (vec![("SPILL_DIR", file.to_str().unwrap())], "SPILL_DIR"),
        // A directory no process may write, root included.
        (vec![("SPILL_DIR", "/proc/self/fdinfo")], "SPILL_DIR"),
    ];
    for (vars, variable) in cases {
        let all: Vec<(&str, &str)> = base.iter().chain(&kinesis).chain(&vars).copied().collect();
        let (status, printed) = run_for(&all, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("{vars:?}: still running after 20 s: {printed}"));
        assert!(!status.success(), "{vars:?}: {printed}");
        assert!(printed.contains(variable), "{vars:?} must name {variable}: {printed}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_secret_reaches_the_output() {
    const SECRET: &str = "SuperSecret123";
    let port = free_port();
    for property in [
        "KAFKA_PROPERTY_SASL_OAUTHBEARER_CLIENT_SECRET",
        "KAFKA_PROPERTY_SASL_PASSWROD",
        "KAFKA_PROPERTY_SASL_MECHANISM",
    ] {
        let vars = [
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("SINK", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9"),
            ("KAFKA_TOPIC", "t"),
            (property, SECRET),
        ];
        let (_, printed) = run_for(&vars, Duration::from_secs(8));
        assert!(!printed.contains(SECRET), "{property} leaked: {printed}");
        assert!(!printed.is_empty(), "{property}: the gateway said nothing");
    }
    // A credential-like variable that does not parse is named, not shown.
    let (status, printed) = run_for(&[("API_KEYS", SECRET), ("PORT", SECRET)], Duration::from_secs(8));
    assert!(!status.unwrap().success());
    assert!(printed.contains("PORT"), "{printed}");
}
