//! The wire protocol: what the official SDKs send parses into the right values, what we emit
//! is canonical, and bad input is a typed error.

use std::time::Duration;

use live_npc_client::protocol::*;
use live_npc_dev::fixture;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Parses a client fixture both leniently and strictly; both must agree.
fn client(path: &str) -> ClientMessage<'static> {
    let bytes = fixture(path);
    let lenient = ClientMessage::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}")).into_owned();
    let strict = ClientMessage::from_slice_strict(&bytes).unwrap_or_else(|e| panic!("{path} strict: {e}")).into_owned();
    assert_eq!(lenient, strict, "{path}");
    lenient
}

fn setup_of(msg: ClientMessage<'static>) -> Setup<'static> {
    match msg {
        ClientMessage::Setup(s) => s,
        other => panic!("expected setup, got {}", other.kind()),
    }
}

fn realtime_of(msg: ClientMessage<'static>) -> RealtimeInput<'static> {
    match msg {
        ClientMessage::RealtimeInput(r) => r,
        other => panic!("expected realtimeInput, got {}", other.kind()),
    }
}

#[test]
fn python_sdk_setup_values() {
    let s = setup_of(client("sdk-python/01-setup.json"));
    assert_eq!(s.model, "models/gemini-2.5-flash-native-audio-preview-12-2025");
    let g = s.generation_config.as_ref().unwrap();
    assert_eq!(g.response_modalities.as_deref(), Some(&[Modality::Audio][..]));
    assert_eq!(g.temperature, Some(0.8));
    let speech = g.speech_config.as_ref().unwrap();
    assert_eq!(speech.voice_name(), Some("Kore"));
    assert_eq!(speech.language_code.as_deref(), Some("en-US"));
    assert_eq!(g.enable_affective_dialog, Some(true));
    assert_eq!(s.system_text(), "You are Mira, the village blacksmith.");
    assert_eq!(s.system_instruction.as_ref().unwrap().role, Some(Role::User));

    let tools = s.tools.as_ref().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].google_search, Some(Empty {}));
    let decls: Vec<_> = s.function_declarations().collect();
    assert_eq!(decls.len(), 2);
    assert_eq!(decls[0].name, "open_gate");
    assert_eq!(decls[0].description.as_deref(), Some("Opens a gate."));
    assert_eq!(decls[0].behavior, Some(Behavior::NonBlocking));
    assert_eq!(decls[0].parameters.as_ref().unwrap()["properties"]["gate"]["type"], "STRING");
    assert_eq!(decls[1].name, "give_item");
    assert_eq!(decls[1].behavior, None);
    let schema = decls[1].parameter_schema().unwrap();
    assert_eq!(schema["properties"]["count"]["type"], "integer");
    assert_eq!(schema["required"], json!(["item"]));

    assert_eq!(s.session_resumption.as_ref().unwrap().handle.as_deref(), Some("previous-handle"));
    assert_eq!(s.input_audio_transcription, Some(AudioTranscriptionConfig::default()));
    assert_eq!(s.output_audio_transcription, Some(AudioTranscriptionConfig::default()));

    let rt = s.realtime_input_config.as_ref().unwrap();
    let vad = rt.automatic_activity_detection.as_ref().unwrap();
    assert_eq!(vad.disabled, Some(false));
    assert_eq!(vad.start_of_speech_sensitivity, Some(StartSensitivity::Low));
    assert_eq!(vad.end_of_speech_sensitivity, Some(EndSensitivity::High));
    assert_eq!(vad.prefix_padding_ms, Some(20));
    assert_eq!(vad.silence_duration_ms, Some(500));
    assert_eq!(rt.activity_handling, Some(ActivityHandling::StartOfActivityInterrupts));
    assert_eq!(rt.turn_coverage, Some(TurnCoverage::IncludesOnlyActivity));

    let cwc = s.context_window_compression.as_ref().unwrap();
    assert_eq!(cwc.trigger_tokens, Some(25600));
    assert_eq!(cwc.sliding_window.as_ref().unwrap().target_tokens, Some(12800));
    assert_eq!(s.proactivity.as_ref().unwrap().proactive_audio, Some(true));
}

#[test]
fn python_sdk_realtime_inputs() {
    // URL-safe base64 of bytes 0..=255 twice: 256 little-endian samples.
    let r = realtime_of(client("sdk-python/02-realtime_input-audio.json"));
    let audio = r.audio.as_ref().unwrap();
    assert_eq!(audio.mime().unwrap(), MimeType { essence: "audio/pcm".into(), rate: Some(16_000) });
    let bytes = audio.data.decode().unwrap();
    let expected: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    assert_eq!(bytes, expected);
    let mut pcm = Vec::new();
    audio.data.decode_pcm16_into(&mut pcm).unwrap();
    assert_eq!(pcm.len(), 256);
    assert_eq!(pcm[0], i16::from_le_bytes([0, 1]));
    assert_eq!(pcm[255], i16::from_le_bytes([254, 255]));
    assert_eq!(r.audio_blob().map(|b| b.mime_type.as_str()), Some("audio/pcm;rate=16000"));

    let r = realtime_of(client("sdk-python/03-realtime_input-video.json"));
    let video = r.video.as_ref().unwrap();
    assert_eq!(video.mime_type, "image/jpeg");
    assert_eq!(video.data.decode().unwrap(), b"\xff\xd8\xff\xe0fakejpeg\xff\xd9");
    assert!(r.audio_blob().is_none());

    assert_eq!(realtime_of(client("sdk-python/04-realtime_input-text.json")).text.as_deref(), Some("Hello there"));
    assert_eq!(
        realtime_of(client("sdk-python/05-realtime_input-activityStart.json")).activity_start,
        Some(ActivityMarker {})
    );
    assert_eq!(
        realtime_of(client("sdk-python/06-realtime_input-activityEnd.json")).activity_end,
        Some(ActivityMarker {})
    );
    assert_eq!(realtime_of(client("sdk-python/07-realtime_input-audioStreamEnd.json")).audio_stream_end, Some(true));
}

#[test]
fn python_sdk_content_and_tool_response() {
    match client("sdk-python/08-client_content.json") {
        ClientMessage::ClientContent(c) => {
            assert_eq!(c.turn_complete, Some(true));
            assert_eq!(c.turns.len(), 1);
            assert_eq!(c.turns[0].role, Some(Role::User));
            assert_eq!(c.turns[0].joined_text(), "What do you sell?");
        }
        other => panic!("{}", other.kind()),
    }
    match client("sdk-python/09-tool_response.json") {
        ClientMessage::ToolResponse(t) => {
            let r = &t.function_responses[0];
            assert_eq!(r.id.as_deref(), Some("fc-1"));
            assert_eq!(r.name, "open_gate");
            assert_eq!(r.scheduling, Some(Scheduling::WhenIdle));
            assert_eq!(r.response.as_ref().unwrap()["output"], "opened");
            assert_eq!(r.will_continue, None);
        }
        other => panic!("{}", other.kind()),
    }
}

#[test]
fn js_sdk_messages() {
    let connect: Value = serde_json::from_slice(&fixture("sdk-js/00-connect.json")).unwrap();
    let url = connect["url"].as_str().unwrap();
    // The JS SDK doubles the leading slash; the path itself is the v1beta method.
    assert_eq!(url.trim_start_matches('/').split('?').next(), Some(&ws_path("v1beta", false)[1..]));

    let s = setup_of(client("sdk-js/01-setup.json"));
    assert_eq!(s.model, "models/gemini-2.5-flash-native-audio-preview-12-2025");
    assert_eq!(s.generation_config.as_ref().unwrap().speech_config.as_ref().unwrap().voice_name(), Some("Kore"));
    assert_eq!(s.system_text(), "You are Mira.");
    let decl = s.function_declarations().next().unwrap();
    assert_eq!(decl.name, "open_gate");
    assert_eq!(decl.parameters_json_schema.as_ref().unwrap()["properties"]["gate"]["type"], "string");
    assert_eq!(s.session_resumption, Some(SessionResumptionConfig::default()));
    let vad = s.realtime_input_config.as_ref().unwrap().automatic_activity_detection.as_ref().unwrap();
    assert_eq!(vad.disabled, Some(true));

    let r = realtime_of(client("sdk-js/02-realtimeInput-audio.json"));
    let mut pcm = vec![7i16; 3];
    r.audio.as_ref().unwrap().data.decode_pcm16_into(&mut pcm).unwrap();
    assert_eq!(pcm, vec![0i16; 320], "20 ms of silence at 16 kHz");

    assert_eq!(
        realtime_of(client("sdk-js/03-realtimeInput-activityStart.json")).activity_start,
        Some(ActivityMarker {})
    );
    assert_eq!(realtime_of(client("sdk-js/04-realtimeInput-activityEnd.json")).activity_end, Some(ActivityMarker {}));
    match client("sdk-js/05-clientContent.json") {
        ClientMessage::ClientContent(c) => {
            assert_eq!(c.turns[0].joined_text(), "Hello");
            assert_eq!(c.turn_complete, Some(true));
        }
        other => panic!("{}", other.kind()),
    }
    match client("sdk-js/06-toolResponse.json") {
        ClientMessage::ToolResponse(t) => {
            assert_eq!(t.function_responses[0].id.as_deref(), Some("fc-1"));
            assert_eq!(t.function_responses[0].response.as_ref().unwrap()["output"], "opened");
            assert_eq!(t.function_responses[0].scheduling, None);
        }
        other => panic!("{}", other.kind()),
    }
}

/// The maximal setup of live-protocol.md §3.1, built from typed fields.
fn maximal_setup() -> Setup<'static> {
    Setup {
        model: "models/gemini-2.5-flash-native-audio-preview-12-2025".into(),
        generation_config: Some(GenerationConfig {
            response_modalities: Some(vec![Modality::Audio]),
            temperature: Some(0.7),
            top_p: Some(0.95),
            top_k: Some(40),
            max_output_tokens: Some(1024),
            seed: Some(7),
            media_resolution: Some(MediaResolution::Low),
            speech_config: Some(SpeechConfig { language_code: Some("en-US".into()), ..SpeechConfig::voice("Kore") }),
            thinking_config: Some(ThinkingConfig {
                thinking_budget: Some(1024),
                include_thoughts: Some(true),
                ..Default::default()
            }),
            enable_affective_dialog: Some(true),
            ..Default::default()
        }),
        system_instruction: Some(Content::user_text("You are helpful.")),
        tools: Some(vec![
            Tool::functions(vec![
                FunctionDeclaration {
                    name: "turn_on".into(),
                    description: Some("Turn on lights".into()),
                    behavior: Some(Behavior::NonBlocking),
                    parameters: Some(
                        json!({"type": "OBJECT", "properties": {"room": {"type": "STRING"}}, "required": ["room"]}),
                    ),
                    ..Default::default()
                },
                FunctionDeclaration {
                    name: "get_weather".into(),
                    parameters_json_schema: Some(
                        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                    ),
                    response_json_schema: Some(json!({"type": "string"})),
                    ..Default::default()
                },
            ]),
            Tool { google_search: Some(Empty {}), ..Default::default() },
            Tool { code_execution: Some(Empty {}), ..Default::default() },
        ]),
        realtime_input_config: Some(RealtimeInputConfig {
            automatic_activity_detection: Some(AutomaticActivityDetection {
                disabled: Some(false),
                start_of_speech_sensitivity: Some(StartSensitivity::Low),
                end_of_speech_sensitivity: Some(EndSensitivity::High),
                prefix_padding_ms: Some(20),
                silence_duration_ms: Some(100),
            }),
            activity_handling: Some(ActivityHandling::StartOfActivityInterrupts),
            turn_coverage: Some(TurnCoverage::IncludesOnlyActivity),
        }),
        input_audio_transcription: Some(Default::default()),
        output_audio_transcription: Some(Default::default()),
        session_resumption: Some(SessionResumptionConfig { handle: Some("previous-handle".into()), transparent: None }),
        context_window_compression: Some(ContextWindowCompressionConfig {
            trigger_tokens: Some(25600),
            sliding_window: Some(SlidingWindow { target_tokens: Some(12800) }),
        }),
        proactivity: Some(ProactivityConfig { proactive_audio: Some(true), proactive_video: None }),
        ..Default::default()
    }
}

#[test]
fn maximal_setup_matches_the_reference_layout() {
    let emitted: Value = serde_json::from_str(&ClientMessage::Setup(maximal_setup()).to_json()).unwrap();
    // live-protocol.md §3.1, with int64 fields as proto3 JSON emits them (strings).
    let reference = json!({"setup": {
      "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
      "generationConfig": {
        "responseModalities": ["AUDIO"],
        "temperature": 0.7, "topP": 0.95, "topK": 40, "maxOutputTokens": 1024, "seed": 7,
        "mediaResolution": "MEDIA_RESOLUTION_LOW",
        "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}, "languageCode": "en-US"},
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true},
        "enableAffectiveDialog": true
      },
      "systemInstruction": {"role": "user", "parts": [{"text": "You are helpful."}]},
      "tools": [
        {"functionDeclarations": [
          {"name": "turn_on", "description": "Turn on lights", "behavior": "NON_BLOCKING",
           "parameters": {"type": "OBJECT", "properties": {"room": {"type": "STRING"}}, "required": ["room"]}},
          {"name": "get_weather",
           "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "responseJsonSchema": {"type": "string"}}]},
        {"googleSearch": {}},
        {"codeExecution": {}}
      ],
      "realtimeInputConfig": {
        "automaticActivityDetection": {"disabled": false,
          "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
          "endOfSpeechSensitivity": "END_SENSITIVITY_HIGH",
          "prefixPaddingMs": 20, "silenceDurationMs": 100},
        "activityHandling": "START_OF_ACTIVITY_INTERRUPTS",
        "turnCoverage": "TURN_INCLUDES_ONLY_ACTIVITY"
      },
      "inputAudioTranscription": {},
      "outputAudioTranscription": {},
      "sessionResumption": {"handle": "previous-handle"},
      "contextWindowCompression": {"triggerTokens": "25600", "slidingWindow": {"targetTokens": "12800"}},
      "proactivity": {"proactiveAudio": true}
    }});
    // f32 fields round to the nearest f32; compare them as f32.
    let (mut e, mut r) = (emitted, reference);
    for v in [&mut e, &mut r] {
        let g = &mut v["setup"]["generationConfig"];
        for k in ["temperature", "topP"] {
            g[k] = json!(g[k].as_f64().unwrap() as f32 as f64);
        }
    }
    assert_eq!(e, r);
    // And the reference itself (numbers for int64) parses back to the same setup.
    let doc_form = br#"{"setup":{"model":"m","contextWindowCompression":{"triggerTokens":25600,"slidingWindow":{"targetTokens":12800}}}}"#;
    let s = setup_of(ClientMessage::from_slice_strict(doc_form).unwrap().into_owned());
    assert_eq!(s.context_window_compression.unwrap().trigger_tokens, Some(25600));
}

fn server_roundtrip(msg: ServerMessage<'_>) {
    let bytes = msg.to_vec();
    let back = ServerMessage::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bytes)));
    assert_eq!(back, msg, "{}", String::from_utf8_lossy(&bytes));
}

fn client_roundtrip(msg: ClientMessage<'_>) {
    let json = msg.to_json();
    let back = ClientMessage::from_slice_strict(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(back, msg, "{json}");
}

#[test]
fn every_client_message_kind_round_trips() {
    client_roundtrip(ClientMessage::Setup(maximal_setup()));
    client_roundtrip(ClientMessage::Setup(Setup { model: "models/gemini-3.8-live".into(), ..Default::default() }));
    client_roundtrip(ClientMessage::user_turn("Hello"));
    client_roundtrip(ClientMessage::ClientContent(ClientContent {
        turns: vec![Content::user_text("Capital of France?"), Content::model_text("Paris")],
        turn_complete: Some(false),
    }));
    client_roundtrip(ClientMessage::ClientContent(ClientContent { turns: vec![], turn_complete: Some(true) }));
    client_roundtrip(ClientMessage::audio(&[0, 1, -1, i16::MAX, i16::MIN], 16_000));
    client_roundtrip(ClientMessage::RealtimeInput(RealtimeInput {
        video: Some(Blob::new("image/jpeg", b"\xff\xd8\xff\xd9")),
        ..Default::default()
    }));
    client_roundtrip(ClientMessage::realtime_text("hello"));
    client_roundtrip(ClientMessage::activity_start());
    client_roundtrip(ClientMessage::activity_end());
    client_roundtrip(ClientMessage::audio_stream_end());
    client_roundtrip(ClientMessage::RealtimeInput(RealtimeInput {
        media_chunks: Some(vec![Blob::pcm16(&[5, 6], 16_000)]),
        ..Default::default()
    }));
    client_roundtrip(ClientMessage::ToolResponse(ToolResponse {
        function_responses: vec![
            FunctionResponse::output(Some("fc-1".into()), "turn_on", json!("ok"))
                .with_scheduling(Scheduling::Interrupt),
            FunctionResponse {
                will_continue: Some(true),
                scheduling: Some(Scheduling::Silent),
                ..FunctionResponse::error(Some("fc-2".into()), "get_weather", "no such city")
            },
        ],
    }));
    client_roundtrip(ClientMessage::ContextUpdate(ContextUpdate {
        system_instruction: Some(Content::user_text("Be concise.")),
        tools: Some(ToolsUpdate { tools: vec![Tool::functions(vec![])] }),
    }));
}

#[test]
fn tool_response_scheduling_is_a_sibling_of_response() {
    let msg = ClientMessage::ToolResponse(ToolResponse {
        function_responses: vec![
            FunctionResponse::output(Some("fc-1".into()), "open_gate", json!("opened"))
                .with_scheduling(Scheduling::WhenIdle),
        ],
    });
    let v: Value = serde_json::from_str(&msg.to_json()).unwrap();
    assert_eq!(
        v,
        json!({"toolResponse": {"functionResponses": [
            {"id": "fc-1", "name": "open_gate", "response": {"output": "opened"}, "scheduling": "WHEN_IDLE"}]}})
    );
}

#[test]
fn every_server_message_kind_round_trips() {
    server_roundtrip(ServerPayload::SetupComplete(SetupComplete::default()).into());
    server_roundtrip(
        ServerPayload::ServerContent(ServerContent {
            model_turn: Some(Content {
                role: Some(Role::Model),
                parts: vec![
                    Part::inline(Blob::pcm16(&[1, -2, 3], 24_000)),
                    Part::text("Paris is"),
                    Part { thought: Some(true), ..Part::text("thinking") },
                    Part {
                        executable_code: Some(ExecutableCode {
                            language: Some(CodeLanguage::Python),
                            code: Some("1+1".into()),
                        }),
                        ..Default::default()
                    },
                    Part {
                        code_execution_result: Some(CodeExecutionResult {
                            outcome: Some(CodeOutcome::Ok),
                            output: Some("2".into()),
                        }),
                        ..Default::default()
                    },
                ],
            }),
            generation_complete: Some(true),
            turn_complete: Some(true),
            interrupted: Some(false),
            turn_complete_reason: Some(TurnCompleteReason::NeedMoreInput),
            waiting_for_input: Some(false),
            input_transcription: Some(Transcription {
                text: Some("what's the".into()),
                finished: Some(false),
                language_code: None,
            }),
            output_transcription: Some(Transcription {
                text: Some("Paris is".into()),
                finished: Some(true),
                language_code: Some("en".into()),
            }),
            grounding_metadata: Some(json!({})),
            url_context_metadata: Some(json!({"urlMetadata": []})),
        })
        .into(),
    );
    server_roundtrip(
        ServerPayload::ToolCall(ToolCall {
            function_calls: vec![FunctionCall {
                id: Some("function-call-123".into()),
                name: "turn_on".into(),
                args: json!({"room": "kitchen"}).as_object().cloned(),
            }],
        })
        .into(),
    );
    server_roundtrip(
        ServerPayload::ToolCallCancellation(ToolCallCancellation { ids: vec!["a".into(), "b".into()] }).into(),
    );
    server_roundtrip(ServerPayload::GoAway(GoAway { time_left: Some(Duration::from_millis(50_500)) }).into());
    server_roundtrip(
        ServerPayload::SessionResumptionUpdate(SessionResumptionUpdate {
            new_handle: Some("CiQ".into()),
            resumable: Some(true),
            last_consumed_client_message_index: Some(17),
        })
        .into(),
    );
    server_roundtrip(
        ServerPayload::VoiceActivity(VoiceActivity {
            activity_type: Some(VoiceActivityType::ActivityStart),
            audio_offset: Some(Duration::from_millis(1500)),
        })
        .into(),
    );
    server_roundtrip(
        ServerPayload::VoiceActivityDetectionSignal(VoiceActivityDetectionSignal {
            vad_signal_type: Some(VadSignalType::Eos),
        })
        .into(),
    );
    server_roundtrip(ServerMessage {
        payload: ServerPayload::ServerContent(ServerContent { turn_complete: Some(true), ..Default::default() }),
        usage_metadata: Some(UsageMetadata {
            prompt_token_count: Some(120),
            response_token_count: Some(85),
            total_token_count: Some(217),
            prompt_tokens_details: Some(vec![ModalityTokenCount {
                modality: Some(Modality::Audio),
                token_count: Some(100),
            }]),
            ..Default::default()
        }),
    });
    server_roundtrip(ServerMessage {
        payload: ServerPayload::UsageOnly,
        usage_metadata: Some(UsageMetadata::default()),
    });
}

#[test]
fn server_wire_forms_parse_to_the_right_values() {
    let m = ServerMessage::from_slice(br#"{"goAway":{"timeLeft":"50s"}}"#).unwrap();
    assert_eq!(m.payload, ServerPayload::GoAway(GoAway { time_left: Some(Duration::from_secs(50)) }));

    // int64 as a string or as a number; snake_case names.
    for text in [
        r#"{"sessionResumptionUpdate":{"newHandle":"h","resumable":true,"lastConsumedClientMessageIndex":"42"}}"#,
        r#"{"session_resumption_update":{"new_handle":"h","resumable":true,"last_consumed_client_message_index":42}}"#,
    ] {
        let m = ServerMessage::from_slice(text.as_bytes()).unwrap();
        match m.payload {
            ServerPayload::SessionResumptionUpdate(u) => {
                assert_eq!(u.resumable_handle(), Some("h"));
                assert_eq!(u.last_consumed_client_message_index, Some(42));
            }
            other => panic!("{other:?}"),
        }
    }
    // Vertex usage names, usage next to a payload.
    let m = ServerMessage::from_slice(
        br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"candidatesTokenCount":9,"totalTokenCount":12}}"#,
    )
    .unwrap();
    let u = m.usage_metadata.unwrap();
    assert_eq!((u.response_token_count, u.total_token_count), (Some(9), Some(12)));

    // Unknown kinds and fields are tolerated; unknown enum values are kept.
    let m = ServerMessage::from_slice(br#"{"holodeck":{"x":1},"futureField":2}"#).unwrap();
    assert_eq!(m.payload, ServerPayload::Unknown("holodeck".into()));
    let m = ServerMessage::from_slice(
        br#"{"serverContent":{"turnComplete":true,"turnCompleteReason":"NEW_REASON","sparkle":1}}"#,
    )
    .unwrap();
    let c = m.server_content().unwrap();
    assert_eq!(c.turn_complete_reason, Some(TurnCompleteReason::Other("NEW_REASON".into())));

    // URL-safe audio from a server, several parts in one message (3.x combines them).
    let m = ServerMessage::from_slice(
        br#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"__s="}},{"inlineData":{"mime_type":"audio/pcm;rate=24000","data":"AQA="}}]},"outputTranscription":{"text":"Hi"}}}"#,
    )
    .unwrap();
    let c = m.server_content().unwrap();
    let mut pcm = vec![];
    assert_eq!(c.append_audio(&mut pcm).unwrap(), 2);
    assert_eq!(pcm, vec![i16::from_le_bytes([0xff, 0xfb]), 1]);
    assert_eq!(c.audio_rate(), Some(24_000));
    assert_eq!(c.output_transcription.as_ref().unwrap().text.as_deref(), Some("Hi"));
}

#[test]
fn audio_is_borrowed_from_the_frame() {
    let frame = ServerMessage::from(ServerPayload::ServerContent(ServerContent {
        model_turn: Some(Content { role: None, parts: vec![Part::inline(Blob::pcm16(&[9; 480], 24_000))] }),
        ..Default::default()
    }))
    .to_vec();
    let m = ServerMessage::from_slice(&frame).unwrap();
    let data =
        m.server_content().unwrap().model_turn.as_ref().unwrap().parts[0].inline_data.as_ref().unwrap().data.as_str();
    let range = frame.as_ptr_range();
    assert!(range.contains(&data.as_ptr()), "base64 text must point into the frame, not a copy");
    let mut pcm = Vec::with_capacity(480);
    let cap = pcm.capacity();
    m.server_content().unwrap().append_audio(&mut pcm).unwrap();
    assert_eq!(pcm, vec![9; 480]);
    assert_eq!(pcm.capacity(), cap, "decoding reuses the buffer");
}

#[test]
fn strict_mode_names_what_it_rejects() {
    let err =
        ClientMessage::from_slice_strict(br#"{"setup":{"model":"m","responseModalities":["AUDIO"]}}"#).unwrap_err();
    assert_eq!(
        err.server_reason(),
        "Invalid JSON payload received. Unknown name \"responseModalities\" at 'setup': Cannot find field."
    );
    let err = ClientMessage::from_slice_strict(
        br#"{"setup":{"model":"m","generationConfig":{"speechConfig":{"voice_config":{"bogus":1}}}}}"#,
    )
    .unwrap_err();
    // Longer than a close frame allows: truncated to 123 bytes, as the real server does.
    assert_eq!(
        err.server_reason(),
        truncate_reason(
            "Invalid JSON payload received. Unknown name \"bogus\" at 'setup.generation_config.speech_config.voice_config': Cannot find field."
        )
    );
    let err = ClientMessage::from_slice_strict(
        br#"{"setup":{"model":"m","generationConfig":{"responseModalities":["AUDIO","SMELL"]}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.server_reason(),
        "Invalid value at 'setup.generation_config.response_modalities[1]' (Modality), \"SMELL\""
    );
    let err = ClientMessage::from_slice_strict(br#"{"bogus":{}}"#).unwrap_err();
    assert!(err.server_reason().contains("Unknown name \"bogus\""), "{}", err.server_reason());
    // Lenient parsing keeps the unknown value instead.
    let ok = ClientMessage::from_slice(
        br#"{"setup":{"model":"m","generationConfig":{"responseModalities":["SMELL"]},"extra":1}}"#,
    )
    .unwrap();
    let s = setup_of(ok.into_owned());
    assert_eq!(s.generation_config.unwrap().response_modalities.unwrap(), vec![Modality::Other("SMELL".into())]);
    // Every reason fits a close frame.
    let long = format!(r#"{{"setup":{{"model":"m","{}":1}}}}"#, "x".repeat(300));
    assert!(ClientMessage::from_slice_strict(long.as_bytes()).unwrap_err().server_reason().len() <= 123);
}

#[test]
fn malformed_input_is_a_typed_error() {
    let cases: &[&[u8]] = &[
        b"",
        b"{",
        br#"{"setup":{"model":"m""#,
        b"[1,2,3]",
        b"null",
        br#"{"setup":{"model":42}}"#,
        br#"{"setup":"x"}"#,
        br#"{"realtimeInput":{"audio":{"data":7}}}"#,
        br#"{"setup":{"model":"m","generationConfig":{"topK":1e400}}}"#,
        br#"{"setup":{"model":"m","generationConfig":{"topK":99999999999999999999}}}"#,
        br#"{"setup":{"model":"m","contextWindowCompression":{"triggerTokens":"12x"}}}"#,
        br#"{"setup":{"model":"m"},"clientContent":{}}"#,
        b"\xff\xfe\x00garbage",
    ];
    for case in cases {
        assert!(ClientMessage::from_slice(case).is_err(), "{}", String::from_utf8_lossy(case));
        assert!(ClientMessage::from_slice_strict(case).is_err(), "{}", String::from_utf8_lossy(case));
    }
    let server_cases: &[&[u8]] =
        &[b"", b"{", b"{}", br#"{"goAway":{"timeLeft":"soon"}}"#, br#"{"toolCall":{"functionCalls":7}}"#];
    for case in server_cases {
        assert!(ServerMessage::from_slice(case).is_err(), "{}", String::from_utf8_lossy(case));
    }
    let truncated = ServerMessage::from_slice(br#"{"serverContent":{"turnComplete":tr"#).unwrap_err();
    assert!(matches!(truncated, DecodeError::Json { category: "eof" | "syntax", .. }), "{truncated:?}");

    // Invalid base64 and odd PCM byte counts.
    let bad = Base64Data::from_base64("abc$");
    assert_eq!(bad.decode(), Err(DecodeError::Base64 { len: 4 }));
    let odd = Base64Data::encode(&[1, 2, 3]);
    let mut pcm = vec![];
    assert_eq!(odd.decode_pcm16_into(&mut pcm), Err(DecodeError::OddPcmLength { bytes: 3 }));
    assert_eq!(odd.append_pcm16(&mut pcm), Err(DecodeError::OddPcmLength { bytes: 3 }));
    assert!(pcm.is_empty());

    // Media types.
    assert_eq!(MimeType::parse("audio/pcm;rate=16000").unwrap().rate, Some(16_000));
    assert_eq!(
        MimeType::parse("Audio/PCM ; rate = 24000").unwrap(),
        MimeType { essence: "audio/pcm".into(), rate: Some(24_000) }
    );
    assert_eq!(MimeType::parse("audio/pcm").unwrap().rate, None);
    assert!(MimeType::parse("audio/pcm;rate=fast").is_err());
    assert!(MimeType::parse("audio/pcm;rate=0").is_err());
    assert!(MimeType::parse("audio/pcm;rate=99999999999").is_err());
    assert!(MimeType::parse("pcm").is_err());
    assert_eq!(MimeType::pcm(16_000), "audio/pcm;rate=16000");
}

#[test]
fn close_codes_are_typed_errors_without_secrets() {
    let e = LiveError::from_close(1007, reasons::API_KEY_INVALID);
    assert_eq!((e.code, e.retry), (CloseCode::InvalidArgument, Retry::Never));
    assert_eq!(e.to_string(), "1007 API key not valid. Please pass a valid API key.");
    assert_eq!(LiveError::from_close(1008, reasons::SESSION_NOT_FOUND).retry, Retry::Fresh);
    assert_eq!(LiveError::from_close(1011, reasons::DEADLINE_EXPIRED).retry, Retry::Resume);
    assert_eq!(LiveError::from_close(1011, reasons::QUOTA).retry, Retry::Never);
    assert_eq!(LiveError::from_close(4000, "custom").code, CloseCode::Other(4000));
    assert!(reasons::model_not_found("models/nope", "v1beta").len() <= 123);
    assert!(reasons::UNREGISTERED_CALLER.len() <= 123);

    let e = LiveError::dropped("connect to wss://host/ws/x?key=AIzaTopSecret9 failed");
    assert!(!format!("{e}{e:?}").contains("TopSecret"));
    let token = AuthToken { name: "auth_tokens/very-secret".into(), ..Default::default() };
    assert!(!format!("{token:?}").contains("very-secret"));
}

#[test]
fn helpers_for_paths_and_models() {
    assert_eq!(
        ws_path("v1beta", false),
        "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
    );
    assert_eq!(
        ws_path("v1alpha", true),
        "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
    );
    assert_eq!(model_resource("gemini-3.8-live"), "models/gemini-3.8-live");
    assert_eq!(model_resource("models/gemini-3.8-live"), "models/gemini-3.8-live");
}

// ---- property tests: serialize → parse is the identity ----

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 ,.?!'\"\\\\/é漢🙂-]{0,40}", Just(String::new()), "\\PC{0,20}",]
}

fn pcm() -> impl Strategy<Value = Vec<i16>> {
    prop::collection::vec(any::<i16>(), 0..400)
}

fn modality() -> impl Strategy<Value = Modality> {
    prop_oneof![Just(Modality::Audio), Just(Modality::Text), "[A-Z_]{1,12}".prop_map(|s| Modality::from_wire(&s))]
}

prop_compose! {
    fn arb_setup()(
        model in "[a-z0-9.-]{1,30}",
        temperature in prop::option::of(0.0f32..2.0),
        top_k in prop::option::of(any::<i32>()),
        modalities in prop::option::of(prop::collection::vec(modality(), 0..3)),
        voice in prop::option::of("[A-Z][a-z]{2,10}"),
        persona in prop::option::of(text()),
        trigger in prop::option::of(any::<i64>()),
        silence in prop::option::of(any::<i32>()),
        disabled in prop::option::of(any::<bool>()),
        fns in prop::collection::vec(("[a-z_]{1,12}", prop::option::of(text())), 0..3),
        handle in prop::option::of(text()),
    ) -> Setup<'static> {
        Setup {
            model: format!("models/{model}"),
            generation_config: Some(GenerationConfig {
                temperature, top_k, response_modalities: modalities,
                speech_config: voice.map(SpeechConfig::voice),
                ..Default::default()
            }),
            system_instruction: persona.map(Content::user_text),
            tools: if fns.is_empty() { None } else {
                Some(vec![Tool::functions(fns.into_iter().map(|(name, description)| FunctionDeclaration {
                    name, description, parameters_json_schema: Some(json!({"type": "object"})), ..Default::default()
                }).collect())])
            },
            realtime_input_config: Some(RealtimeInputConfig {
                automatic_activity_detection: Some(AutomaticActivityDetection {
                    disabled, silence_duration_ms: silence, ..Default::default()
                }),
                ..Default::default()
            }),
            context_window_compression: trigger.map(|t| ContextWindowCompressionConfig {
                trigger_tokens: Some(t), sliding_window: Some(SlidingWindow { target_tokens: Some(t / 2) }),
            }),
            session_resumption: Some(SessionResumptionConfig { handle, transparent: None }),
            ..Default::default()
        }
    }
}

fn arb_client() -> impl Strategy<Value = ClientMessage<'static>> {
    prop_oneof![
        arb_setup().prop_map(ClientMessage::Setup),
        (pcm(), prop_oneof![Just(16_000u32), Just(24_000), 1u32..200_000])
            .prop_map(|(s, r)| ClientMessage::audio(&s, r)),
        text().prop_map(ClientMessage::realtime_text),
        text().prop_map(ClientMessage::user_turn),
        Just(ClientMessage::activity_start()),
        Just(ClientMessage::activity_end()),
        Just(ClientMessage::audio_stream_end()),
        (text(), "[a-z_]{1,10}", text()).prop_map(|(id, name, out)| ClientMessage::ToolResponse(ToolResponse {
            function_responses: vec![FunctionResponse::output(Some(id), name, json!({"text": out}))],
        })),
        text().prop_map(|t| ClientMessage::ContextUpdate(ContextUpdate {
            system_instruction: Some(Content::user_text(t)),
            tools: None,
        })),
    ]
}

fn arb_server() -> impl Strategy<Value = ServerMessage<'static>> {
    let content = (pcm(), prop::option::of(text()), prop::option::of(any::<bool>()), prop::option::of(any::<bool>()))
        .prop_map(|(pcm, t, tc, intr)| {
            ServerPayload::ServerContent(ServerContent {
                model_turn: if pcm.is_empty() {
                    None
                } else {
                    Some(Content { role: None, parts: vec![Part::inline(Blob::pcm16(&pcm, 24_000))] })
                },
                output_transcription: t.map(|t| Transcription { text: Some(t), ..Default::default() }),
                turn_complete: tc,
                interrupted: intr,
                ..Default::default()
            })
        });
    let payload = prop_oneof![
        content,
        (0u64..100_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| ServerPayload::GoAway(GoAway { time_left: Some(Duration::new(s, n)) })),
        (text(), any::<bool>(), prop::option::of(any::<i64>())).prop_map(|(h, r, i)| {
            ServerPayload::SessionResumptionUpdate(SessionResumptionUpdate {
                new_handle: Some(h),
                resumable: Some(r),
                last_consumed_client_message_index: i,
            })
        }),
        prop::collection::vec(text(), 0..4)
            .prop_map(|ids| ServerPayload::ToolCallCancellation(ToolCallCancellation { ids })),
        ("[a-z_]{1,10}", text()).prop_map(|(name, v)| ServerPayload::ToolCall(ToolCall {
            function_calls: vec![FunctionCall {
                id: Some("c".into()),
                name,
                args: json!({"v": v}).as_object().cloned()
            }],
        })),
    ];
    (payload, prop::option::of(any::<i32>())).prop_map(|(payload, total)| ServerMessage {
        payload,
        usage_metadata: total.map(|t| UsageMetadata { total_token_count: Some(t), ..Default::default() }),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn client_serialize_parse_is_identity(msg in arb_client()) {
        let json = msg.to_json();
        // Lenient: generated enums include values this crate does not know (kept as `Other`).
        let back = ClientMessage::from_slice(json.as_bytes()).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn server_serialize_parse_is_identity(msg in arb_server()) {
        let bytes = msg.to_vec();
        let back = ServerMessage::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn pcm_base64_round_trips(samples in pcm()) {
        let b = Base64Data::encode_pcm16(&samples);
        let mut out = vec![1i16; 3];
        b.decode_pcm16_into(&mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(out, samples);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ClientMessage::from_slice(&bytes);
        let _ = ClientMessage::from_slice_strict(&bytes);
        let _ = ServerMessage::from_slice(&bytes);
        let _ = Base64Data::from_base64(String::from_utf8_lossy(&bytes).into_owned()).decode();
    }

    #[test]
    fn durations_round_trip(secs in 0u64..1_000_000, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        prop_assert_eq!(parse_duration(&format_duration(d)), Some(d));
    }
}
