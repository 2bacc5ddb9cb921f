//! Ephemeral tokens end to end: minting over HTTP on the simulator's port, the constrained
//! method's checks (uses, expiry, new-session deadline), setup constraints with field masks,
//! the token server. The plugin's token-server backend is tested with the plugin.

use std::time::Duration;

use live_npc_client::protocol::{AuthToken, CreateAuthTokenRequest, ws_path};
use live_npc_client::session::Secret;
use live_npc_client::token::{TokenClient, TokenError, format_rfc3339};
use live_npc_sim::{TOKEN_EXPIRED, TOKEN_NEW_SESSIONS_EXPIRED, TOKEN_USED_UP};

use super::*;

const KEY: &str = "sim-key";

async fn mint(sim: &LiveSim, request: Value) -> AuthToken {
    let request: CreateAuthTokenRequest = serde_json::from_value(request).expect("request");
    TokenClient::default().mint(&sim.rest_url(), &Secret::new(KEY), &request).await.expect("minted")
}

fn constrained(sim: &LiveSim) -> String {
    format!("{}{}", sim.base_url(), ws_path("v1alpha", true))
}

/// Connects to the constrained method the way the SDKs do (`Authorization: Token ...`).
async fn connect_token(sim: &LiveSim, token: &str) -> Client {
    let mut req = constrained(sim).into_client_request().expect("request");
    req.headers_mut().insert("authorization", format!("Token {token}").parse().expect("header"));
    Client::connect_req(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mint_connect_resume_expire() {
    let sim = start(base().api_key(Some(KEY.into()))).await;
    let tok = mint(&sim, json!({"uses": 1})).await;
    assert!(tok.name.starts_with("auth_tokens/"));
    assert!(!format!("{tok:?}").contains(&tok.name), "Debug hides the token");
    assert_eq!(tok.uses, Some(1));
    assert!(tok.expire_time.is_some() && tok.new_session_expire_time.is_some());

    // First session: consumes the only use.
    let mut c = connect_token(&sim, &tok.name).await;
    let handle = c.setup(json!({"sessionResumption": {}})).await.expect("a handle");
    c.send(&text_turn("My name is Ada.")).await;
    let handle = handle_of(c.until("resumable").await.0.last().expect("update")).unwrap_or(handle);
    c.close().await;

    // A second new session: no uses left.
    let mut c = connect_token(&sim, &tok.name).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(c.closed().await, (1008, TOKEN_USED_UP.to_owned()));

    // Resumption does not consume a use, and works after the new-session deadline.
    sim.advance_clock(Duration::from_secs(61));
    let mut c = connect_token(&sim, &tok.name).await;
    c.send(&setup_value(json!({"sessionResumption": {"handle": handle}}))).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    let h = handle_of(&c.msg().await).expect("a new handle");
    c.send(&text_turn("What is my name?")).await;
    assert!(c.until("resumable").await.transcript().contains("Ada"));

    // Past expireTime: the next message is refused, and so is resuming.
    sim.advance_clock(Duration::from_secs(30 * 60));
    c.send(&text_turn("Still there?")).await;
    assert_eq!(c.closed().await, (1008, TOKEN_EXPIRED.to_owned()));
    let mut c = connect_token(&sim, &tok.name).await;
    c.send(&setup_value(json!({"sessionResumption": {"handle": h}}))).await;
    assert_eq!(c.closed().await, (1008, TOKEN_EXPIRED.to_owned()));

    // Unlimited uses, but no new session after newSessionExpireTime.
    let unlimited = mint(&sim, json!({"uses": 0})).await;
    for _ in 0..3 {
        let mut c = connect_token(&sim, &unlimited.name).await;
        c.setup(json!({})).await;
        c.close().await;
    }
    sim.advance_clock(Duration::from_secs(61));
    let mut c = connect_token(&sim, &unlimited.name).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(c.closed().await, (1008, TOKEN_NEW_SESSIONS_EXPIRED.to_owned()));

    // ?access_token= works too.
    let other = mint(&sim, json!({})).await;
    let mut c = Client::connect(&format!("{}?access_token={}", constrained(&sim), other.name)).await;
    c.setup(json!({})).await;
    let m = sim.metrics();
    assert_eq!(m.tokens_minted, 3);
    assert!(m.token_refusals >= 4, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_errors_speak_like_the_service() {
    let sim = start(base().api_key(Some(KEY.into()))).await;
    let client = TokenClient::default();
    let req = CreateAuthTokenRequest::default();
    let err = |r: Result<AuthToken, TokenError>| match r {
        Err(TokenError::Http { status, message }) => (status, message),
        other => panic!("expected an HTTP error, got {other:?}"),
    };
    let (status, message) = err(client.mint(&sim.rest_url(), &Secret::new("nope"), &req).await);
    assert_eq!((status, message.as_str()), (400, reasons::API_KEY_INVALID));
    let (status, message) = err(client.mint(&sim.rest_url(), &Secret::new(""), &req).await);
    assert_eq!((status, message.as_str()), (403, reasons::UNREGISTERED_CALLER));
    let far = format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(21 * 3600));
    let late = CreateAuthTokenRequest { expire_time: Some(far), ..Default::default() };
    let (status, message) = err(client.mint(&sim.rest_url(), &Secret::new(KEY), &late).await);
    assert_eq!(status, 400);
    assert!(message.contains("20 hours"), "{message}");
    let masked = CreateAuthTokenRequest { field_mask: Some("nonsense".into()), ..Default::default() };
    assert_eq!(err(client.mint(&sim.rest_url(), &Secret::new(KEY), &masked).await).0, 400);

    // Raw HTTP: the SDK's Python name for the constraints is refused, strictly.
    let (status, body) =
        raw_post(&sim, "POST /v1alpha/auth_tokens?key=sim-key", br#"{"liveConnectConstraints": {}}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains(r#"Unknown name \"liveConnectConstraints\""#), "{body}");
    let (status, _) = raw_post(&sim, "GET /v1alpha/auth_tokens?key=sim-key", b"").await;
    assert_eq!(status, 405);
    // A token cannot mint tokens.
    let tok = mint(&sim, json!({})).await;
    let (status, _) = raw_post(&sim, &format!("POST /v1alpha/auth_tokens?key={}", tok.name), b"{}").await;
    assert_eq!(status, 400);
    // The WebSocket side is unaffected.
    let mut c = Client::connect(&format!("{}?key={KEY}", sim.url("v1beta"))).await;
    c.setup(json!({})).await;
}

/// One raw HTTP/1.1 exchange with the simulator's port: (status, body).
async fn raw_post(sim: &LiveSim, request_line: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(sim.addr()).await.expect("connect");
    let head = format!(
        "{request_line} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    tcp.write_all(body).await.expect("write");
    let mut out = Vec::new();
    timeout(GUARD, tcp.read_to_end(&mut out)).await.expect("guard").expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_only_on_the_constrained_method() {
    let sim = start(base()).await;
    let tok = mint(&sim, json!({"uses": 0})).await;
    // A token on the plain method is no API key, even on a simulator that accepts any key.
    let mut c = Client::connect(&format!("{}?key={}", sim.url("v1beta"), tok.name)).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(c.closed().await, (1007, reasons::API_KEY_INVALID.to_owned()));
    // A token this simulator never minted.
    let mut c = connect_token(&sim, "auth_tokens/forged").await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(c.closed().await, (1007, reasons::API_KEY_INVALID.to_owned()));
    // An API key on the constrained method works as on the plain one (no constraints).
    let mut c = Client::connect(&format!("{}?key=anything", constrained(&sim))).await;
    c.setup(json!({})).await;
    // The real token works.
    let mut c = connect_token(&sim, &tok.name).await;
    c.setup(json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_override_the_clients_setup() {
    let sim = start(base()).await;
    let bram = json!({"model": MODEL, "systemInstruction": {"parts": [{"text": "You are Bram, the ferryman."}]}});

    // No field mask: the token's setup replaces the client's (no output transcription now).
    let whole = mint(&sim, json!({"uses": 0, "bidiGenerateContentSetup": bram})).await;
    assert!(whole.bidi_generate_content_setup.is_some());
    let mut c = connect_token(&sim, &whole.name).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert!(turn.transcript().is_empty(), "the client's outputAudioTranscription was replaced");
    assert!(turn.input().is_empty(), "so was inputAudioTranscription");
    assert!(!turn.audio().is_empty());

    // A mask: only the persona is locked; the client's transcription settings stay.
    let persona =
        mint(&sim, json!({"uses": 0, "bidiGenerateContentSetup": bram, "fieldMask": "system_instruction"})).await;
    let mut c = connect_token(&sim, &persona.name).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert!(turn.transcript().contains("Bram"), "{}", turn.transcript());
    assert!(!turn.transcript().contains("Mira"));

    // A masked field locks the model: the client cannot pick another one.
    let locked = json!({"model": "models/gemini-9-imaginary"});
    let model = mint(&sim, json!({"bidiGenerateContentSetup": locked, "fieldMask": "model"})).await;
    let mut c = connect_token(&sim, &model.name).await;
    c.send(&setup_value(json!({}))).await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("models/gemini-9-imaginary is not found"), "{reason}");

    // A masked field the token's setup lacks is cleared from the client's.
    let clear = mint(
        &sim,
        json!({"uses": 0, "bidiGenerateContentSetup": {"model": MODEL}, "fieldMask": "outputAudioTranscription"}),
    )
    .await;
    let mut c = connect_token(&sim, &clear.name).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert!(turn.transcript().is_empty());
    assert_eq!(turn.input(), ["Who are you?"], "the unmasked fields stay the client's");
}
