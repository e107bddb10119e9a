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

/// Starts the binary on a free loopback port; returns it and its address.
fn start(file: &str) -> (Child, String) {
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
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    // The "listening" line says the socket is bound.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("\"listening\"") {
            break;
        }
    }
    // Keep reading so the gateway's later log lines do not hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, format!("127.0.0.1:{port}"))
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

#[test]
fn serves_then_exits_zero_on_sigterm() {
    let file = std::env::temp_dir().join(format!("gateway-bin-{}.ndjson", std::process::id()));
    let (mut child, addr) = start(file.to_str().unwrap());

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
    panic!("the gateway did not exit within 5 s of SIGTERM");
}
