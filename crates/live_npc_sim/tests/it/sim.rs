//! Core behaviour: handshake, paths and auth, protocol errors, turns, audio input and VAD,
//! barge-in, tools, resumption, `goAway`, TLS and the `live-sim` program.

use super::*;

// ---------------------------------------------------------------- handshake, paths, auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_complete_comes_in_a_binary_frame() {
    let sim = start(base()).await;
    assert!(sim.base_url().starts_with("ws://127.0.0.1:"));
    assert!(!sim.base_url().ends_with('/'));
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({}))).await;
    match c.raw().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], br#"{"setupComplete":{}}"#),
        other => panic!("expected a binary setupComplete, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_variant_works() {
    let sim = start(base()).await;
    let b = sim.base_url();
    let paths = [
        ws_path("v1", false),
        ws_path("v1beta", false),
        ws_path("v1alpha", false),
        ws_path("v1alpha", true),
        ws_path("v1beta", true),
        format!("/{}", ws_path("v1beta", false)),
        format!("/{}", ws_path("v1alpha", true)),
    ];
    for path in paths {
        let mut c = Client::connect(&format!("{b}{path}?key=anything")).await;
        c.setup(json!({})).await;
        c.close().await;
    }
    // The model id works without the `models/` prefix too.
    let mut c = Client::connect(&sim.url("v1")).await;
    c.send(&json!({"setup": {"model": "gemini-3.8-live"}})).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404() {
    let sim = start(base()).await;
    let b = sim.base_url();
    for path in [
        "/".to_owned(),
        "/ws".to_owned(),
        ws_path("v2", false),
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.StreamGenerateContent".to_owned(),
        format!("//{}", ws_path("v1beta", false)),
    ] {
        match connect_async(format!("{b}{path}")).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 404, "{path}"),
            other => panic!("{path}: expected 404, got {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_in_each_place_and_bad_keys() {
    let sim = start(base().api_key(Some("secret".into()))).await;
    let url = sim.url("v1beta");
    let constrained = format!("{}{}", sim.base_url(), ws_path("v1alpha", true));
    let header = |url: &str, name: &'static str, value: &str| {
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert(name, value.parse().expect("header"));
        req
    };
    let mut ok = vec![
        Client::connect(&format!("{url}?key=secret")).await,
        Client::connect_req(header(&url, "x-goog-api-key", "secret")).await,
        Client::connect(&format!("{constrained}?access_token=secret")).await,
        Client::connect_req(header(&constrained, "authorization", "Token secret")).await,
    ];
    for c in &mut ok {
        c.setup(json!({})).await;
    }
    let mut wrong = Client::connect(&format!("{url}?key=nope")).await;
    wrong.send(&setup_value(json!({}))).await;
    assert_eq!(wrong.closed().await, (1007, reasons::API_KEY_INVALID.to_owned()));
    let mut wrong = Client::connect_req(header(&url, "x-goog-api-key", "nope")).await;
    wrong.send(&setup_value(json!({}))).await;
    assert_eq!(wrong.closed().await, (1007, reasons::API_KEY_INVALID.to_owned()));
    let mut missing = Client::connect(&url).await;
    missing.send(&setup_value(json!({}))).await;
    assert_eq!(missing.closed().await, (1008, reasons::UNREGISTERED_CALLER.to_owned()));
}

// ---------------------------------------------------------------- protocol errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_closes_with_1007_and_the_exact_text() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&json!({"setup": {"model": MODEL, "responseModalities": ["AUDIO"]}})).await;
    let expected = "Invalid JSON payload received. Unknown name \"responseModalities\" at 'setup': Cannot find field.";
    assert_eq!(c.closed().await, (1007, expected.to_owned()));
    // Snake case is the same field; deeper unknown names are reported with their path.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&json!({"realtime_input": {"audio_chunk": {}}})).await;
    let expected =
        "Invalid JSON payload received. Unknown name \"audio_chunk\" at 'realtime_input': Cannot find field.";
    assert_eq!(c.closed().await, (1007, expected.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_mode_ignores_unknown_fields() {
    let sim = start(base().strict(false)).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&json!({"setup": {"model": MODEL, "responseModalities": ["AUDIO"], "futureField": 1}})).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    c.send(&json!({"realtimeInput": {"text": "hello", "futureField": true}})).await;
    assert_eq!(c.turn().await.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_enum_closes_with_1007() {
    let sim = start(base()).await;
    let bad = json!({"setup": {"model": MODEL, "generationConfig": {"responseModalities": ["SMELL"]}}}).to_string();
    let expected = ClientMessage::from_slice_strict(bad.as_bytes()).expect_err("rejected").server_reason();
    assert!(expected.starts_with("Invalid value at 'setup.generation_config.response_modalities[0]'"), "{expected}");
    assert!(expected.contains("\"SMELL\"") && expected.len() <= 123, "{expected}");
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send_text(bad).await;
    assert_eq!(c.closed().await, (1007, expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_before_setup_and_second_setup_are_invalid_arguments() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&text_turn("hello")).await;
    assert_eq!(c.closed().await, (1007, reasons::INVALID_ARGUMENT.to_owned()));
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&setup_value(json!({}))).await;
    assert_eq!(c.closed().await, (1007, reasons::INVALID_ARGUMENT.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_closes_with_1008_naming_the_version() {
    let sim = start(base()).await;
    for (version, model) in [("v1beta", "models/gemini-x"), ("v1alpha", "gemini-2.0-flash-live-001")] {
        let mut c = Client::connect(&sim.url(version)).await;
        c.send(&json!({"setup": {"model": model}})).await;
        let expected = reasons::model_not_found(&model_resource(model), version);
        assert!(expected.starts_with(&format!("{} is not found for API version {version}", model_resource(model))));
        assert_eq!(c.closed().await, (1008, expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_own_session() {
    let sim = start(base()).await;
    let url = sim.url("v1beta");
    let mut good = Client::connect(&url).await;
    good.setup(json!({})).await;
    // A client that never reads: the server must not wedge or grow without bound for it.
    let mut deaf = Client::connect(&url).await;
    deaf.send(&setup_value(json!({}))).await;
    for _ in 0..5 {
        deaf.send(&text_turn("tell me everything")).await;
    }

    let mut rng = fastrand::Rng::with_seed(3);
    let random: Vec<u8> = (0..512).map(|_| rng.u8(..)).collect();
    let cases: Vec<(bool, Message)> = vec![
        (false, Message::binary(random)),
        (false, Message::text("{\"setup\": {\"model\": ")),
        (false, Message::text("[1, 2, 3]")),
        (
            false,
            Message::text(format!(
                "{{\"setup\": {{\"model\": \"{MODEL}\", \"generationConfig\": {{\"topK\": 1e400}}}}}}"
            )),
        ),
        (
            false,
            Message::text(format!(
                "{{\"setup\": {{\"model\": \"{MODEL}\", \"generationConfig\": {{\"topK\": 99999999999999999999}}}}}}"
            )),
        ),
        (
            true,
            Message::text(
                "{\"realtimeInput\": {\"audio\": {\"data\": \"!!!!\", \"mimeType\": \"audio/pcm;rate=16000\"}}}",
            ),
        ),
        (
            true,
            Message::text(
                "{\"realtimeInput\": {\"audio\": {\"data\": \"AA==\", \"mimeType\": \"audio/pcm;rate=16000\"}}}",
            ),
        ),
        (
            true,
            Message::text(
                "{\"realtimeInput\": {\"audio\": {\"data\": \"AAAA\", \"mimeType\": \"audio/pcm;rate=99999999999\"}}}",
            ),
        ),
        (true, Message::text("{\"clientContent\": {\"turns\": 5}}")),
        (true, Message::text("{\"toolResponse\": {\"functionResponses\": [{\"id\": 1}]}}")),
        (true, Message::text("{}")),
    ];
    for (after_setup, frame) in cases {
        let shown = format!("{frame:?}").chars().take(80).collect::<String>();
        let mut bad = Client::connect(&url).await;
        if after_setup {
            bad.setup(json!({})).await;
        }
        bad.ws.send(frame).await.expect("send");
        let (code, reason) = bad.closed().await;
        assert_eq!(code, 1007, "{shown}: {reason}");
        assert!(!reason.is_empty() && reason.len() <= 123, "{shown}: {reason}");
    }
    // Odd but valid audio rates are fine.
    let mut odd = Client::connect(&url).await;
    odd.setup(json!({})).await;
    odd.send_text(audio_json(&[i16::MAX, i16::MIN, 0, 1], 1)).await;
    odd.send(&text_turn("hello")).await;
    assert_eq!(odd.turn().await.shape(), reply_shape());

    good.send(&text_turn("Who are you?")).await;
    let turn = good.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    assert!(turn.transcript().contains("Mira"));
}

// ---------------------------------------------------------------- turns and output

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_turn_gives_the_exact_message_sequence() {
    let reply = "Welcome to my forge, traveller. Mind the sparks, they fly further than you think.";
    let sim = start(base().script(scenario(json!({"rules": [{"when": "hello", "reply": reply}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Hello!")).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    assert_eq!(turn.input(), ["Hello!"]);
    assert_eq!(turn.transcript(), reply);
    turn.check_speech();
    // The audio is the voice speaking the reply: 2–8 s of it.
    let secs = turn.audio().len() as f64 / 24_000.0;
    assert!((2.0..=8.0).contains(&secs), "{secs} s");
    let usage = turn.usage();
    let response = usage.response_token_count.expect("response tokens");
    assert!((secs * 25.0 - 2.0..=secs * 25.0 + 2.0).contains(&f64::from(response)), "{usage:?}");
    assert_eq!(usage.total_token_count, Some(usage.prompt_token_count.unwrap_or(0) + response));

    // realtimeInput.text is a complete turn too; the same reply is deterministic per seed.
    c.send(&json!({"realtimeInput": {"text": "hello again"}})).await;
    let again = c.turn().await;
    assert_eq!(again.shape(), reply_shape());
    assert_eq!(again.transcript(), reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_session() {
    let run = || async {
        let sim = start(base()).await;
        let mut c = Client::connect(&sim.url("v1beta")).await;
        c.setup(json!({})).await;
        let mut out = Vec::new();
        for text in ["Hello!", "What do you sell?", "Goodbye"] {
            c.send(&text_turn(text)).await;
            let turn = c.turn().await;
            out.push((turn.transcript(), turn.audio()));
        }
        out
    };
    let (a, b) = (run().await, run().await);
    assert!(a == b, "two runs with the same seed differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_modality_streams_text_parts() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({"generationConfig": {"responseModalities": ["TEXT"]}})).await;
    c.send(&text_turn("Who are you?")).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), s(&["in", "text", "generationComplete", "turnComplete+usage"]));
    let text = turn.text();
    assert!(text.contains("Mira"), "{text}");
    assert!(turn.audio().is_empty() && turn.transcript().is_empty());
    let tokens: Vec<String> = turn.0.iter().map(token).collect();
    assert!(tokens.iter().filter(|t| *t == "text").count() > 1, "streamed in fragments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persona_and_facts() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Hello there! Who are you?")).await;
    let who = c.turn().await.transcript();
    assert!(who.contains("Mira"), "{who}");
    c.send(&text_turn("My favourite metal is bronze.")).await;
    c.turn().await;
    c.send(&text_turn("What is my favourite metal?")).await;
    let recall = c.turn().await.transcript();
    assert!(recall.contains("bronze"), "{recall}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_voices_differ() {
    let (kore, puck) = (Voice::for_name("Kore"), Voice::for_name("Puck"));
    let ratio = f64::from(kore.f0_hz().max(puck.f0_hz()) / kore.f0_hz().min(puck.f0_hz()));
    assert!(ratio >= 1.2, "f0 ratio {ratio}");
    let sim = start(base()).await;
    let mut audio = Vec::new();
    for voice in ["Kore", "Puck"] {
        let mut c = Client::connect(&sim.url("v1beta")).await;
        c.setup(json!({"generationConfig": {"speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": voice}}}}}))
            .await;
        c.send(&text_turn("Who are you?")).await;
        audio.push(c.turn().await.audio());
    }
    assert_ne!(audio[0], audio[1]);
}

// ---------------------------------------------------------------- audio input, VAD, barge-in

fn marker_secs(text: &str) -> f64 {
    text.strip_prefix("[speech ")
        .and_then(|t| t.strip_suffix("s]"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a speech marker: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_sample_makes_a_vad_turn() {
    let sim = start(base().script(scenario(json!({"rules": [
        {"audio_turn": 2, "audio_transcript": "Hello there! Who are you?"}
    ]}))))
    .await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    let (hello, rate) = wav("player-hello-16k.wav");
    let silence = vec![0i16; rate as usize];
    // Silence and noise first: nothing happens (the next message is the speech turn's).
    c.send_audio(&silence, rate).await;
    let mut rng = fastrand::Rng::with_seed(1);
    let noise: Vec<i16> = (0..rate).map(|_| rng.i16(-2000..2000)).collect();
    c.send_audio(&noise, rate).await;
    c.send_audio(&hello, rate).await;
    c.send_audio(&silence, rate).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    let heard = marker_secs(&turn.input()[0]);
    let total = hello.len() as f64 / f64::from(rate);
    assert!(heard >= 0.8 && heard <= total + 0.05, "heard {heard} s of {total} s");
    let usage = turn.usage();
    let audio_tokens = usage.prompt_tokens_details.iter().flatten().find(|d| d.modality == Some(Modality::Audio));
    assert!(audio_tokens.and_then(|d| d.token_count).is_some_and(|n| n >= 20), "{usage:?}");

    // The second audio turn, at 24 kHz this time, is mapped to text by the scenario.
    let (hello24, rate24) = (upsample_3_2(&hello), 24_000);
    c.send_audio(&hello24, rate24).await;
    c.send_audio(&vec![0; rate24 as usize], rate24).await;
    let turn = c.turn().await;
    assert_eq!(turn.input(), ["Hello there! Who are you?"]);
    assert!(turn.transcript().contains("Mira"), "{}", turn.transcript());
}

/// 16 kHz → 24 kHz by linear interpolation (good enough for a detector test).
fn upsample_3_2(x: &[i16]) -> Vec<i16> {
    (0..x.len() * 3 / 2)
        .map(|i| {
            let pos = i as f64 * 2.0 / 3.0;
            let (k, frac) = (pos as usize, pos.fract());
            let a = f64::from(x[k]);
            let b = f64::from(*x.get(k + 1).unwrap_or(&x[k]));
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_barges_in_on_a_long_reply() {
    let sim =
        start(base().pace(0.3).script(scenario(json!({"rules": [{"when": "story", "reply": LONG_REPLY}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("Tell me a story")).await;
    let first = c.until("audio").await;
    assert_eq!(first.shape(), s(&["in", "speech"]));
    let (interrupt, rate) = wav("player-interrupt-16k.wav");
    c.send_audio(&interrupt, rate).await;
    c.send_audio(&vec![0; rate as usize], rate).await;
    let rest = c.turn().await;
    let cut = Turn(first.0.into_iter().chain(rest.0).collect());
    assert_eq!(cut.shape(), s(&["in", "speech", "interrupted", "turnComplete+usage"]));
    let said = cut.transcript();
    assert!(LONG_REPLY.starts_with(&said) && said.len() < LONG_REPLY.len(), "{said}");
    // Then the user's interruption is a turn of its own.
    let next = c.turn().await;
    assert_eq!(next.shape(), reply_shape());
    assert!(marker_secs(&next.input()[0]) > 0.8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_interruption_lets_the_model_finish() {
    let reply = "Just a moment, I am nearly finished with this horseshoe, then I am all yours.";
    let sim = start(base().pace(0.3).script(scenario(json!({"rules": [{"when": "shoe", "reply": reply}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({"realtimeInputConfig": {"activityHandling": "NO_INTERRUPTION"}})).await;
    c.send(&text_turn("Is my horse shoe ready?")).await;
    let first = c.until("audio").await;
    let (interrupt, rate) = wav("player-interrupt-16k.wav");
    c.send_audio(&interrupt, rate).await;
    c.send_audio(&vec![0; rate as usize], rate).await;
    let rest = c.turn().await;
    let whole = Turn(first.0.into_iter().chain(rest.0).collect());
    assert_eq!(whole.shape(), reply_shape());
    assert_eq!(whole.transcript(), reply);
    // The speech heard meanwhile is answered after.
    let next = c.turn().await;
    assert_eq!(next.shape(), reply_shape());
    assert!(marker_secs(&next.input()[0]) > 0.8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_activity_delimits_turns() {
    let sim =
        start(base().pace(0.3).script(scenario(json!({"rules": [{"when": "story", "reply": LONG_REPLY}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({"realtimeInputConfig": {"automaticActivityDetection": {"disabled": true}}})).await;
    let (hello, rate) = wav("player-hello-16k.wav");
    let (interrupt, _) = wav("player-interrupt-16k.wav");
    // Speech outside an activity starts nothing; audioStreamEnd does nothing either.
    c.send_audio(&hello, rate).await;
    c.send(&json!({"realtimeInput": {"audioStreamEnd": true}})).await;
    c.send(&json!({"realtimeInput": {"activityStart": {}}})).await;
    c.send_audio(&interrupt, rate).await;
    c.send(&json!({"realtimeInput": {"activityEnd": {}}})).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    assert_eq!(turn.input(), [format!("[speech {:.1}s]", interrupt.len() as f64 / f64::from(rate))]);

    // activityStart during output is a barge-in.
    c.send(&text_turn("a story, please")).await;
    let first = c.until("audio").await;
    c.send(&json!({"realtimeInput": {"activityStart": {}}})).await;
    let rest = c.turn().await;
    let cut = Turn(first.0.into_iter().chain(rest.0).collect());
    assert_eq!(cut.shape(), s(&["in", "speech", "interrupted", "turnComplete+usage"]));
    // An activity without audio is no turn: the next turn is the text one.
    c.send(&json!({"realtimeInput": {"activityEnd": {}}})).await;
    c.send(&text_turn("hello")).await;
    let next = c.turn().await;
    assert_eq!(next.input(), ["hello"]);
}

// ---------------------------------------------------------------- tools

fn gate_tools(behavior: Option<&str>) -> Value {
    let mut decl = json!({
        "name": "open_gate",
        "description": "Opens a gate.",
        "parameters": {"type": "OBJECT", "properties": {"gate": {"type": "STRING"}}, "required": ["gate"]}
    });
    if let Some(b) = behavior {
        decl["behavior"] = json!(b);
    }
    json!({"tools": [{"functionDeclarations": [decl]}]})
}

fn tool_response(id: &str, response: Value, scheduling: Option<&str>, will_continue: Option<bool>) -> Value {
    let mut fr = json!({"id": id, "name": "open_gate", "response": response});
    if let Some(s) = scheduling {
        fr["scheduling"] = json!(s);
    }
    if let Some(w) = will_continue {
        fr["willContinue"] = json!(w);
    }
    json!({"toolResponse": {"functionResponses": [fr]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoken_request_calls_a_tool() {
    let transcript = "Could you please open the north gate for me?";
    let rules = json!({"rules": [{"audio_turn": 1, "audio_transcript": transcript}]});
    let sim = start(base().script(scenario(rules))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(Some("NON_BLOCKING"))).await;
    let (gate, rate) = wav("player-open-gate-16k.wav");
    c.send_audio(&gate, rate).await;
    c.send_audio(&vec![0; rate as usize], rate).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), s(&["in", "toolCall", "speech", "generationComplete", "turnComplete+usage"]));
    assert_eq!(turn.input(), [transcript]);
    let expected =
        FunctionCall { id: Some("fc-1".into()), name: "open_gate".into(), args: Some(args(json!({"gate": "north"}))) };
    assert_eq!(turn.tool_calls(), [expected]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_call_holds_the_turn() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(None)).await;
    c.send(&text_turn("Could you please open the north gate?")).await;
    let call = c.until("toolCall").await;
    assert_eq!(call.shape(), s(&["in", "toolCall"]));
    let expected =
        FunctionCall { id: Some("fc-1".into()), name: "open_gate".into(), args: Some(args(json!({"gate": "north"}))) };
    assert_eq!(call.tool_calls(), [expected]);
    c.send(&tool_response("fc-1", json!({"output": "the north gate is open"}), None, None)).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
    assert!(turn.transcript().contains("Done: the north gate is open."), "{}", turn.transcript());

    // An error is apologised for.
    c.send(&text_turn("open the east gate")).await;
    let call = c.until("toolCall").await;
    assert_eq!(call.tool_calls()[0].args, Some(args(json!({"gate": "east"}))));
    c.send(&tool_response("fc-2", json!({"error": "the bar is stuck"}), None, None)).await;
    let turn = c.turn().await;
    assert!(
        turn.transcript().contains("sorry") && turn.transcript().contains("the bar is stuck"),
        "{}",
        turn.transcript()
    );

    // Audio while a BLOCKING call is pending: 1008, as the service does.
    c.send(&text_turn("open the west gate")).await;
    c.until("toolCall").await;
    c.send_text(audio_json(&[0; 640], 16_000)).await;
    assert_eq!(c.closed().await, (1008, reasons::NOT_IMPLEMENTED.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_blocking_when_idle_and_silent() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(Some("NON_BLOCKING"))).await;
    c.send(&text_turn("please open the north gate")).await;
    // The model keeps talking while the call runs.
    let ack = c.turn().await;
    assert_eq!(ack.shape(), s(&["in", "toolCall", "speech", "generationComplete", "turnComplete+usage"]));
    // WHEN_IDLE while idle: spoken right away, as a turn of its own.
    c.send(&tool_response("fc-1", json!({"output": "opened"}), Some("WHEN_IDLE"), None)).await;
    let result = c.turn().await;
    assert_eq!(result.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
    assert!(result.transcript().contains("Done: opened."), "{}", result.transcript());

    // willContinue: a partial result is spoken, the call stays open; SILENT is only remembered;
    // an empty final response ends the call silently.
    c.send(&text_turn("open the south gate")).await;
    c.turn().await;
    c.send(&tool_response("fc-2", json!({"output": "halfway"}), None, Some(true))).await;
    assert!(c.turn().await.transcript().contains("Done: halfway."));
    c.send(&tool_response("fc-2", json!({"output": "fully open"}), Some("SILENT"), Some(true))).await;
    c.send(&tool_response("fc-2", json!({}), None, Some(false))).await;
    c.send(&text_turn("hello")).await;
    let next = c.turn().await;
    assert_eq!(next.shape(), reply_shape());
    assert_eq!(next.input(), ["hello"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_blocking_while_speaking_when_idle_and_interrupt() {
    let sim = start(base().pace(0.3)).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(Some("NON_BLOCKING"))).await;
    // WHEN_IDLE during the acknowledgement: after it.
    c.send(&text_turn("please open the north gate")).await;
    c.until("toolCall").await;
    c.send(&tool_response("fc-1", json!({"output": "opened"}), Some("WHEN_IDLE"), None)).await;
    let ack = c.turn().await;
    assert_eq!(ack.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
    let result = c.turn().await;
    assert_eq!(result.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
    assert!(result.transcript().contains("Done: opened."));

    // INTERRUPT during the acknowledgement: cut it, speak now; the call is not cancelled.
    c.send(&text_turn("please open the east gate")).await;
    c.until("audio").await;
    c.send(&tool_response("fc-2", json!({"output": "opened wide"}), Some("INTERRUPT"), None)).await;
    let cut = c.turn().await;
    assert_eq!(cut.shape().last().map(String::as_str), Some("turnComplete+usage"));
    assert!(cut.shape().contains(&"interrupted".to_owned()) && cut.cancelled().is_empty(), "{:?}", cut.shape());
    let result = c.turn().await;
    assert_eq!(result.shape(), s(&["speech", "generationComplete", "turnComplete+usage"]));
    assert!(result.transcript().contains("Done: opened wide."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_cancels_the_turns_pending_calls() {
    let sim = start(base().pace(0.3)).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(Some("NON_BLOCKING"))).await;
    c.send(&text_turn("please open the north gate")).await;
    c.until("audio").await;
    let (interrupt, rate) = wav("player-interrupt-16k.wav");
    c.send_audio(&interrupt, rate).await;
    c.send_audio(&vec![0; rate as usize], rate).await;
    let cut = c.turn().await;
    let next = c.msg().await;
    assert_eq!(token(&next), "toolCallCancellation");
    assert_eq!(Turn(vec![next]).cancelled(), ["fc-1"]);
    assert_eq!(cut.shape().iter().rev().take(2).collect::<Vec<_>>(), ["turnComplete+usage", "interrupted"]);
    // A response for the cancelled call is ignored; the user's speech gets its turn.
    c.send(&tool_response("fc-1", json!({"output": "opened"}), None, None)).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), reply_shape());
    assert!(marker_secs(&turn.input()[0]) > 0.8);

    // A text turn during a BLOCKING wait cancels the held call too.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(gate_tools(None)).await;
    c.send(&text_turn("open the north gate")).await;
    c.until("toolCall").await;
    c.send(&text_turn("never mind")).await;
    let cut = c.until("toolCallCancellation").await;
    assert_eq!(cut.shape(), s(&["interrupted", "turnComplete+usage", "toolCallCancellation"]));
    assert_eq!(cut.cancelled(), ["fc-1"]);
    assert_eq!(c.turn().await.input(), ["never mind"]);
}

// ---------------------------------------------------------------- sessions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_restores_the_conversation() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let first = c.setup(json!({"sessionResumption": {}})).await;
    assert!(first.is_some());
    c.send(&text_turn("Hi! My name is Ada.")).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), s(&["in", "notResumable", "speech", "generationComplete", "turnComplete+usage"]));
    let update = c.msg().await;
    assert_eq!(token(&update), "resumable");
    let handle = handle_of(&update).expect("handle");

    // Resuming while the old connection is open: 1011.
    let mut early = Client::connect(&sim.url("v1beta")).await;
    early.send(&setup_value(json!({"sessionResumption": {"handle": handle}}))).await;
    assert_eq!(early.closed().await, (1011, reasons::INTERNAL.to_owned()));

    c.close().await;
    // A new persona is fine; the model must stay the same.
    let mut r = Client::connect(&sim.url("v1beta")).await;
    let persona = json!({"parts": [{"text": "You are Mira, the blacksmith, now at the market."}]});
    r.setup(json!({"sessionResumption": {"handle": handle}, "systemInstruction": persona})).await;
    r.send(&text_turn("What is my name?")).await;
    let turn = r.turn().await;
    assert!(turn.transcript().contains("Ada"), "{}", turn.transcript());
    assert_eq!(token(&r.msg().await), "resumable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handles_and_model_changes() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&setup_value(json!({"sessionResumption": {"handle": "no-such-handle"}}))).await;
    assert_eq!(c.closed().await, (1008, reasons::SESSION_NOT_FOUND.to_owned()));

    let mut c = Client::connect(&sim.url("v1beta")).await;
    let handle = c.setup(json!({"sessionResumption": {}})).await.expect("handle");
    c.close().await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.send(&json!({"setup": {"model": "models/gemini-3.8-live", "sessionResumption": {"handle": handle}}})).await;
    assert_eq!(c.closed().await, (1007, reasons::INVALID_ARGUMENT.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_away_then_deadline_close() {
    let sim =
        start(base().connection_lifetime(Duration::from_millis(1500)).go_away_notice(Duration::from_secs(1))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    let started = std::time::Instant::now();
    c.setup(json!({})).await;
    let m = c.msg().await;
    let ServerPayload::GoAway(GoAway { time_left: Some(left) }) = m.payload else {
        panic!("expected goAway, got {m:?}");
    };
    assert!(left <= Duration::from_secs(1) && left > Duration::from_millis(500), "{left:?}");
    assert_eq!(c.closed().await, (1011, reasons::DEADLINE_EXPIRED.to_owned()));
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

// ---------------------------------------------------------------- faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_drop_after_messages() {
    let sim = start(base().script(scenario(json!({"faults": [{"after_messages": 3, "action": "drop"}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("hello")).await;
    assert_eq!(token(&c.msg().await), "in");
    assert_eq!(token(&c.msg().await), "out");
    assert!(matches!(c.next().await, Ev::Dropped(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_drop_inside_a_turn_only_on_the_first_connection() {
    let faults = json!({"faults": [{"turn": 2, "after_chunks": 5, "connection": 1, "action": "drop"}]});
    let sim = start(base().script(scenario(faults))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("hello")).await;
    assert_eq!(c.turn().await.shape(), reply_shape());
    c.send(&text_turn("hello again")).await;
    let mut chunks = 0;
    loop {
        match c.next().await {
            Ev::Msg(m) if token(&m) == "audio" => chunks += 1,
            Ev::Msg(m) => assert!(["in", "out"].contains(&token(&m).as_str()), "{m:?}"),
            Ev::Dropped(_) => break,
            Ev::Close(code, reason) => panic!("close {code} {reason} instead of a drop"),
        }
    }
    assert_eq!(chunks, 5);
    // The second connection is not affected.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    for text in ["hello", "hello again"] {
        c.send(&text_turn(text)).await;
        assert_eq!(c.turn().await.shape(), reply_shape());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_close_with_any_code() {
    let faults = json!({"faults": [{"after_messages": 1, "action": {"close": {"code": 1011, "reason": "The service is currently unavailable."}}}]});
    let sim = start(base().script(scenario(faults))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    assert_eq!(c.closed().await, (1011, reasons::UNAVAILABLE.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_go_away_in_a_turn() {
    let faults = json!({"faults": [{"turn": 1, "action": {"go_away": {"time_left_ms": 400}}}]});
    let sim = start(base().script(scenario(faults))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    c.send(&text_turn("hello")).await;
    let turn = c.turn().await;
    assert_eq!(turn.shape(), s(&["in", "goAway", "speech", "generationComplete", "turnComplete+usage"]));
    assert!(
        turn.0
            .iter()
            .any(|m| m.payload == ServerPayload::GoAway(GoAway { time_left: Some(Duration::from_millis(400)) }))
    );
    assert_eq!(c.closed().await, (1011, reasons::DEADLINE_EXPIRED.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_malformed_frame() {
    let sim =
        start(base().script(scenario(json!({"faults": [{"after_messages": 1, "action": "malformed_frame"}]})))).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    match c.raw().await {
        Some(Ok(Message::Binary(b))) => assert!(ServerMessage::from_slice(&b).is_err()),
        other => panic!("expected the malformed frame, got {other:?}"),
    }
    c.send(&text_turn("hello")).await;
    assert_eq!(c.turn().await.shape(), reply_shape());
}

// ---------------------------------------------------------------- SDK captures

/// Sends the fixture messages `from..` of an SDK capture, in order, as text frames.
async fn send_fixtures(c: &mut Client, dir: &str, names: &[&str]) {
    for name in names {
        c.send_text(String::from_utf8(fixture(&format!("{dir}/{name}"))).expect("utf-8")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_session() {
    let connect = fixture_json("sdk-python/00-connect.json");
    let key = connect["headers"]["x-goog-api-key"].as_str().expect("key").to_owned();
    let rules = json!({"rules": [{"when": "sell", "reply": "Blades, hinges and horseshoes. I'll open the gate so you can see them.",
        "tool_calls": [{"name": "open_gate", "args": {"gate": "north"}}]}]});
    let sim = start(base().api_key(Some(key.clone())).script(scenario(rules))).await;
    let url = format!("{}{}", sim.base_url(), connect["path"].as_str().expect("path"));
    let request = || {
        let mut req = url.as_str().into_client_request().expect("request");
        req.headers_mut().insert("x-goog-api-key", key.parse().expect("header"));
        req
    };

    // The captured setup resumes "previous-handle", which this simulator never issued.
    let mut c = Client::connect_req(request()).await;
    send_fixtures(&mut c, "sdk-python", &["01-setup.json"]).await;
    assert_eq!(c.closed().await, (1008, reasons::SESSION_NOT_FOUND.to_owned()));

    let mut setup = fixture_json("sdk-python/01-setup.json");
    setup["setup"]["sessionResumption"] = json!({});
    let mut c = Client::connect_req(request()).await;
    c.send(&setup).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    assert_eq!(token(&c.msg().await), "resumable");
    // Audio (16 ms of a ramp), a video frame and a text turn.
    send_fixtures(
        &mut c,
        "sdk-python",
        &["02-realtime_input-audio.json", "03-realtime_input-video.json", "04-realtime_input-text.json"],
    )
    .await;
    let hello = c.until("resumable").await;
    let turn_shape = s(&["in", "notResumable", "speech", "generationComplete", "turnComplete+usage", "resumable"]);
    assert_eq!(hello.shape(), turn_shape);
    assert_eq!(hello.input(), ["Hello there"]);
    assert!(hello.transcript().contains("Mira"));
    // activityStart/End with automatic VAD on are ignored; audioStreamEnd flushes nothing.
    let rest = [
        "05-realtime_input-activityStart.json",
        "06-realtime_input-activityEnd.json",
        "07-realtime_input-audioStreamEnd.json",
        "08-client_content.json",
    ];
    send_fixtures(&mut c, "sdk-python", &rest).await;
    let sell = c.until("notResumable").await;
    let sell = Turn(sell.0.into_iter().chain(c.until("notResumable").await.0).collect());
    assert_eq!(
        sell.shape(),
        s(&["in", "notResumable", "toolCall", "speech", "generationComplete", "turnComplete+usage", "notResumable"])
    );
    assert_eq!(sell.tool_calls()[0].id.as_deref(), Some("fc-1"));
    // The NON_BLOCKING call's WHEN_IDLE result is spoken when idle.
    send_fixtures(&mut c, "sdk-python", &["09-tool_response.json"]).await;
    let result = c.until("resumable").await;
    assert_eq!(result.shape(), turn_shape[1..]);
    assert!(result.transcript().contains("Done: opened."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_sdk_session() {
    let connect = fixture_json("sdk-js/00-connect.json");
    let path = connect["url"].as_str().expect("url");
    assert!(path.starts_with("//ws/"));
    let rules = json!({"rules": [{"when": "hello", "tool_calls": [{"name": "open_gate", "args": {"gate": "north"}}]}]});
    let sim = start(base().api_key(Some("REDACTED".into())).script(scenario(rules))).await;
    let mut c = Client::connect(&format!("{}{path}", sim.base_url())).await;
    send_fixtures(&mut c, "sdk-js", &["01-setup.json"]).await;
    assert_eq!(token(&c.msg().await), "setupComplete");
    assert_eq!(token(&c.msg().await), "resumable");
    // Audio outside an activity and an empty activity start nothing; the text turn calls the
    // (BLOCKING) function, the response releases the turn.
    let names = [
        "02-realtimeInput-audio.json",
        "03-realtimeInput-activityStart.json",
        "04-realtimeInput-activityEnd.json",
        "05-clientContent.json",
    ];
    send_fixtures(&mut c, "sdk-js", &names).await;
    let call = c.until("toolCall").await;
    assert_eq!(call.shape(), s(&["in", "notResumable", "toolCall"]));
    assert_eq!(call.input(), ["Hello"]);
    send_fixtures(&mut c, "sdk-js", &["06-toolResponse.json"]).await;
    let turn = c.until("resumable").await;
    assert_eq!(turn.shape(), s(&["speech", "generationComplete", "turnComplete+usage", "resumable"]));
    assert!(turn.transcript().contains("Done: opened."));
}

// ---------------------------------------------------------------- TLS, background, program

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_generated_ca() {
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use tokio_tungstenite::{Connector, connect_async_tls_with_config};

    let sim = start(base().tls(true)).await;
    assert!(sim.base_url().starts_with("wss://127.0.0.1:"));
    let path = sim.ca_path().expect("ca path").to_owned();
    let pem = std::fs::read(&path).expect("ca file");
    assert_eq!(pem, sim.ca_pem().expect("pem").as_bytes());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&pem).expect("pem")).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = Connector::Rustls(Arc::new(config));
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}{}", sim.addr().port(), ws_path("v1beta", false));
        let (ws, _) = connect_async_tls_with_config(url, None, false, Some(connector.clone())).await.expect("wss");
        let mut c = Client { ws };
        c.setup(json!({})).await;
        c.send(&text_turn("hello")).await;
        assert_eq!(c.turn().await.shape(), reply_shape());
    }
    drop(sim);
    assert!(!path.exists(), "the CA file is removed with the simulator");
}

#[test]
fn background_simulator_for_sync_callers() {
    let sim = LiveSim::start_in_background(base()).expect("background start");
    let url = sim.url("v1beta");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = Client::connect(&url).await;
        c.setup(json!({})).await;
        drop(sim);
        assert!(matches!(c.next().await, Ev::Dropped(_) | Ev::Close(..)));
    });
}

#[test]
fn live_sim_program() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let exe = env!("CARGO_BIN_EXE_live-sim");
    let bad = Command::new(exe).arg("--bogus").output().expect("run live-sim");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bogus"));
    let help = Command::new(exe).arg("--help").output().expect("run live-sim");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for flag in ["--addr", "--api-key", "--pace", "--seed", "--script", "--tls", "--lifetime", "--help"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }

    let mut child = Command::new(exe)
        .args(["--addr", "127.0.0.1:0", "--pace", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn live-sim");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    let url = line.strip_suffix('\n').expect("a whole line").strip_prefix("listening on ").expect("prefix").to_owned();
    let port = url.strip_prefix("ws://127.0.0.1:").expect("ws://127.0.0.1:PORT");
    assert!(!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()), "{line:?}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = Client::connect(&format!("{url}{}", ws_path("v1beta", false))).await;
        c.setup(json!({})).await;
        c.send(&text_turn("Who are you?")).await;
        let turn = c.turn().await;
        assert_eq!(turn.shape(), reply_shape());
        assert!(turn.transcript().contains("Mira"));
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_frames_from_the_client_are_fine() {
    let sim = start(base()).await;
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    let frame = CloseFrame { code: 1000.into(), reason: "bye".into() };
    c.ws.close(Some(frame)).await.expect("close");
    assert!(matches!(c.next().await, Ev::Close(1000, _) | Ev::Dropped(_)));
    // The simulator still serves.
    let mut c = Client::connect(&sim.url("v1beta")).await;
    c.setup(json!({})).await;
    assert_eq!(sim.connections(), 2);
}
