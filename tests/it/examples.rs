//! The example programs as processes, against `live-sim` as a process: their stdout contracts.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// A running `live-sim`, killed on drop.
struct SimProcess {
    child: Child,
    url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn live_sim(extra: &[&str]) -> SimProcess {
    let mut child = Command::new(crate::support::live_sim_exe())
        .args(["--addr", "127.0.0.1:0", "--pace", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("live-sim starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("first line");
    let url = first.trim().strip_prefix("listening on ").expect("the contract's first line").to_owned();
    SimProcess { child, url }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn headless_chat(args: &[&str], key: Option<&str>, input: &str) -> Run {
    let mut cmd = Command::new(crate::support::example("headless_chat"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("GEMINI_API_KEY").env_remove("LIVE_NPC_ENDPOINT").env_remove("LIVE_NPC_MODEL");
    if let Some(k) = key {
        cmd.env("GEMINI_API_KEY", k);
    }
    let mut child = cmd.spawn().expect("headless_chat starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("stderr")));
    // A guard, not a timing assertion: a hung program fails the test instead of hanging it.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(90) {
            let _ = child.kill();
            panic!("headless_chat {args:?} did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run { code: status.code(), stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

#[test]
fn headless_chat_talks_and_runs_tools() {
    let sim = live_sim(&[]);
    let run = headless_chat(
        &["--endpoint", &format!("{}/", sim.url), "--npc", "Bram", "--voice", "Charon"],
        None,
        "Hello there!\nCould you check inventory for me?\nPlease give item 'sword' count=2\n",
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.stdout);
    assert!(lines[0].starts_with("Bram: ") && lines[0].len() > 6, "{}", lines[0]);
    assert_eq!(
        lines[1],
        r#"[tool] check_inventory({}) -> {"output":[{"count":1,"item":"torch"},{"count":2,"item":"bread"},{"count":12,"item":"coins"}]}"#
    );
    assert!(lines[2].starts_with("Bram: "), "{}", lines[2]);
    assert_eq!(lines[3], r#"[tool] give_item({"count":2,"item":"sword"}) -> {"output":{"count":2,"gave":"sword"}}"#);
    assert!(lines[4].starts_with("Bram: "), "{}", lines[4]);
    for line in &lines {
        assert_eq!(line.trim(), *line, "lines are trimmed");
    }
}

#[test]
fn headless_chat_reports_a_fatal_error_and_exits_2() {
    let sim = live_sim(&["--api-key", "the-right-key"]);
    let run = headless_chat(&["--endpoint", &sim.url], Some("a-wrong-key"), "Hello?\nAre you there?\n");
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let error_lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(error_lines, ["error: 1007 API key not valid. Please pass a valid API key."]);
    assert!(!run.stderr.contains("a-wrong-key"), "the key never appears: {}", run.stderr);
}

#[test]
fn headless_chat_rejects_bad_arguments() {
    let run = headless_chat(&["--bogus"], None, "");
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("usage"), "{}", run.stderr);
    let run = headless_chat(&["--endpoint", "http://example"], None, "");
    assert_eq!(run.code, Some(1));
}

#[test]
fn headless_chat_exits_at_end_of_input() {
    let sim = live_sim(&[]);
    let run = headless_chat(&["--endpoint", &sim.url], None, "");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

/// RMS of the left and right channels of a stereo 16-bit WAV.
fn channel_rms(path: &std::path::Path) -> (f64, f64, u32) {
    let mut reader = hound::WavReader::open(path).expect("a WAV was written");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (2, 16));
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.expect("sample")).collect();
    let rms = |ch: usize| {
        let sum: f64 = samples.iter().skip(ch).step_by(2).map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / (samples.len() / 2).max(1) as f64).sqrt()
    };
    (rms(0), rms(1), spec.sample_rate)
}

#[test]
fn headless_chat_records_the_voice_where_the_listener_stands() {
    let sim = live_sim(&[]);
    let dir = std::env::temp_dir().join(format!("bln-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // The listener looks along -Z: at x = +3 the NPC (at the origin) is on its left.
    for (args, left_louder) in [
        (vec!["--listener-offset".to_string(), "3,0,0".to_string()], true),
        (vec!["--listener-offset=-3,0,0".to_string()], false),
    ] {
        let wav = dir.join(format!("{left_louder}.wav"));
        let mut all = vec!["--endpoint".to_string(), sim.url.clone(), "--wav".into(), wav.display().to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = headless_chat(&refs, None, "Hello there!\n");
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(run.stdout.starts_with("Mira: "), "{}", run.stdout);
        let (l, r, rate) = channel_rms(&wav);
        assert!(rate >= 8_000);
        assert!(l.max(r) > 100.0, "the voice is audible: L {l:.0} R {r:.0}");
        if left_louder {
            assert!(l > 2.0 * r, "L {l:.0} R {r:.0}");
        } else {
            assert!(r > 2.0 * l, "L {l:.0} R {r:.0}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads the `listening on URL` first line of a child process.
fn first_line_url(child: &mut Child) -> String {
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("first line");
    first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {first:?}")).to_owned()
}

#[test]
fn token_server_hands_out_tokens_that_open_sessions() {
    use bevy_live_npc::protocol::{AuthToken, Setup};
    use bevy_live_npc::session::{Auth, LiveRuntime, NullSink, Secret, SessionConfig, SessionEvent};

    let sim = live_sim(&["--api-key", "dev-key"]);
    let rest = sim.url.replacen("ws://", "http://", 1);
    let mut server = Command::new(crate::support::example("token_server"))
        .args(["--addr", "127.0.0.1:0", "--endpoint", &rest, "--api-key", "dev-key"])
        .env_remove("GEMINI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("token_server starts");
    let url = first_line_url(&mut server);
    let guard = SimProcess { child: server, url: url.clone() };

    // A game client asks for a token: plain HTTP POST.
    let hostport = url.trim_start_matches("http://").split('/').next().expect("host:port").to_owned();
    let mut stream = std::net::TcpStream::connect(&hostport).expect("connect");
    write!(stream, "POST /token HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).expect("a body");
    let token: AuthToken = serde_json::from_str(body).expect("a token");
    assert!(token.name.starts_with("auth_tokens/"));
    assert!(!format!("{token:?}").contains(&token.name[12..]), "Debug hides the token");

    // The token opens a session on the simulator without the API key.
    let runtime = LiveRuntime::new().expect("runtime");
    let setup = Setup { model: "models/gemini-2.5-flash-native-audio-preview-12-2025".into(), ..Default::default() };
    let session =
        runtime.spawn(SessionConfig::new(sim.url.clone(), Auth::Token(Secret::new(token.name)), setup), NullSink);
    let start = std::time::Instant::now();
    let mut ready = false;
    while !ready && start.elapsed() < std::time::Duration::from_secs(20) {
        ready = matches!(session.recv_timeout(std::time::Duration::from_millis(100)), Some(SessionEvent::Ready { .. }));
    }
    assert!(ready, "a session opened with the minted token");
    drop(guard);
}

fn hostile_fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile").join(name);
    path.display().to_string()
}

/// stdout keeps its contract: only `NAME: text` and `[tool] ...` lines.
fn keeps_the_stdout_contract(run: &Run) {
    for line in run.stdout.lines() {
        assert!(line.starts_with("Mira: ") || line.starts_with("[tool] "), "{line:?} in {}", run.stdout);
    }
}

#[test]
fn headless_chat_survives_every_hostile_server_frame() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/hostile")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let sim = live_sim(&["--script", &hostile_fixture(name)]);
        // Two lines: a hostile frame may end a (silent) model turn before the first answer.
        let run = headless_chat(&["--endpoint", &sim.url], None, "Hello there!\nHow are you today?\n");
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
        keeps_the_stdout_contract(&run);
        // The audio fixtures end a (silent) model turn of their own before the player speaks,
        // which headless_chat may take as the first answer; the others leave turns alone.
        let own_turn = name.starts_with("audio_");
        assert!(
            own_turn || run.stdout.lines().any(|l| l.starts_with("Mira: ") && l.len() > 6),
            "{name}: the NPC still answers: {}",
            run.stdout
        );
        let tools = |tool: &str| run.stdout.lines().filter(|l| l.starts_with(&format!("[tool] {tool}("))).count();
        match name.as_str() {
            // Delivered twice with one id: the item is given once, the repeat is answered from
            // the conversation's cache.
            "repeated_call_id.json" => assert_eq!(tools("give_item"), 1, "{}", run.stdout),
            // 100 calls in one message: at most 32 run, the rest are answered with an error.
            "tool_call_flood.json" => assert!((1..=32).contains(&tools("check_inventory")), "{}", run.stdout),
            _ => {}
        }
    }
}

#[test]
fn headless_chat_prints_no_credential_even_at_trace_level() {
    const KEY: &str = "AIzaTRACE-SECRET-0123456789";
    let sim = live_sim(&["--api-key", KEY]);
    let mut cmd = Command::new(crate::support::example("headless_chat"));
    cmd.args(["--endpoint", &sim.url]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("LIVE_NPC_ENDPOINT").env_remove("LIVE_NPC_MODEL").env("GEMINI_API_KEY", KEY);
    cmd.env("RUST_LOG", "trace");
    let mut child = cmd.spawn().expect("headless_chat starts");
    child.stdin.take().expect("stdin").write_all(b"Hello there!\n").expect("write stdin");
    let out = child.wait_with_output().expect("headless_chat runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", stderr.lines().rev().take(30).collect::<Vec<_>>().join("\n"));
    assert!(stdout.starts_with("Mira: "), "{stdout}");
    // The trace log is on (the WebSocket frames are logged), and the key is nowhere in it.
    assert!(stderr.contains("TRACE"), "trace logging is on");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "the key leaked");
    assert!(!stderr.contains("TRACE-SECRET"), "not even in part");
}
