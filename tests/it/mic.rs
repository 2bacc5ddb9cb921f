//! The player's microphone: conversion, push-to-talk, the open-mic gate, the local duck, echo
//! cancellation in a simulated room, device loss. No sound card: a `TestMic` is fed exactly as a
//! capture callback would be.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bevy::input::ButtonInput;
use bevy::input::keyboard::KeyCode;
use bevy::prelude::*;
use bevy::transform::TransformPlugin;
use bevy_live_npc::audio::capture::{
    MicEchoReference, MicFrame, MicPipeline, MicState, MicStatus, NpcVoiceDuck, PlayerMic, ReferenceRing, TestMic,
    TestMicFeeder, VoiceDuck,
};
use bevy_live_npc::conversation::NpcConversation;
use bevy_live_npc::prelude::*;
use bevy_live_npc::sim::Scenario;
use bevy_live_npc::testing::{TestApp, sim_plugin};
use futures_util::StreamExt;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- signals

fn sine(freq: f32, rate: u32, secs: f32, amp: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| amp * (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin())
        .collect()
}

fn to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Offline resampling with rubato (the test's own "sound card"), delay removed.
fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut r = Fft::<f32>::new(from as usize, to as usize, (from / 100) as usize, 1, FixedSync::Both).unwrap();
    let input = InterleavedSlice::new(x, 1, x.len()).unwrap();
    let mut out = r.process_all(&input, x.len(), None).unwrap().take_data();
    out.truncate((x.len() as u64 * u64::from(to) / u64::from(from)) as usize);
    out
}

fn stereo(x: &[f32]) -> Vec<f32> {
    x.iter().flat_map(|&s| [s, s]).collect()
}

fn delay_gain(x: &[f32], delay: usize, gain: f32) -> Vec<f32> {
    let mut out = vec![0.0; delay];
    out.extend(x.iter().map(|s| s * gain));
    out
}

fn mix(a: &[f32], b: &[f32], b_at: usize) -> Vec<f32> {
    let mut out = a.to_vec();
    out.resize(out.len().max(b_at + b.len()), 0.0);
    for (i, s) in b.iter().enumerate() {
        out[b_at + i] += s;
    }
    out
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

fn db(ratio: f32) -> f32 {
    20.0 * ratio.max(1e-12).log10()
}

/// Magnitude of `freq` in `x` (Goertzel), normalized so a sine of amplitude A gives A.
fn tone(x: &[f32], rate: u32, freq: f32) -> f32 {
    let w = std::f32::consts::TAU * freq / rate as f32;
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f32
}

/// The strongest frequency in `x` between 50 Hz and 7.95 kHz, to 1 Hz.
fn dominant(x: &[f32], rate: u32) -> f32 {
    let coarse =
        (5..795).map(|k| k as f32 * 10.0).max_by(|a, b| tone(x, rate, *a).total_cmp(&tone(x, rate, *b))).unwrap();
    ((coarse - 10.0) as i32..=(coarse + 10.0) as i32)
        .map(|f| f as f32)
        .max_by(|a, b| tone(x, rate, *a).total_cmp(&tone(x, rate, *b)))
        .unwrap()
}

/// Runs a whole capture signal (and an optional reference, same timeline) through a pipeline in
/// 10 ms blocks, reference first as an output callback would produce it.
fn run_pipeline(
    mic: &PlayerMic,
    input: &[f32],
    rate: u32,
    channels: u16,
    reference: Option<(&[f32], u32)>,
    mut each: impl FnMut(&MicFrame<'_>),
) -> MicPipeline {
    let mut p = MicPipeline::new(mic, rate, channels);
    if let Some((_, ref_rate)) = reference {
        p.set_reference_format(ref_rate, 1);
    }
    let block = (rate / 100) as usize * usize::from(channels);
    for (k, chunk) in input.chunks(block).enumerate() {
        if let Some((r, ref_rate)) = reference {
            let rb = (ref_rate / 100) as usize;
            let start = (k * rb).min(r.len());
            p.push_reference(&r[start..((k + 1) * rb).min(r.len())]);
        }
        p.push_capture(chunk, &mut each);
    }
    p
}

// ---------------------------------------------------------------- conversion

#[test]
fn stereo_44k1_float_becomes_16k_mono_without_aliasing() {
    let mic = PlayerMic::push_to_talk(KeyCode::KeyV).echo_cancellation(false);
    for freq in [440.0f32, 1000.0, 3000.0, 7000.0] {
        let input = stereo(&sine(freq, 44_100, 1.0, 0.5));
        let mut out = Vec::new();
        run_pipeline(&mic, &input, 44_100, 2, None, |f| out.extend(f.pcm.iter().map(|&s| f32::from(s) / 32768.0)));
        assert!((15_500..=16_000).contains(&out.len()), "{} samples", out.len());
        let steady = &out[1600..];
        let measured = dominant(steady, 16_000);
        assert!((measured - freq).abs() <= 1.0, "{freq} Hz came out at {measured} Hz");
        let level = tone(steady, 16_000, freq);
        assert!((db(level / 0.5)).abs() < 1.0, "{freq} Hz: level {level}");
    }
    // 12 kHz cannot exist at 16 kHz; it must not fold back to 4 kHz.
    for freq in [9_000.0f32, 12_000.0, 15_000.0] {
        let input = stereo(&sine(freq, 44_100, 1.0, 0.5));
        let mut out = Vec::new();
        run_pipeline(&mic, &input, 44_100, 2, None, |f| out.extend(f.pcm.iter().map(|&s| f32::from(s) / 32768.0)));
        let steady = &out[1600..];
        let alias = tone(steady, 16_000, 16_000.0 - freq).max(rms(steady) * std::f32::consts::SQRT_2);
        let attenuation = -db(alias / 0.5);
        println!("{freq} Hz at 44.1 kHz: attenuated by {attenuation:.1} dB");
        assert!(attenuation >= 40.0, "{freq} Hz leaks: {attenuation:.1} dB");
    }
}

#[test]
fn other_formats_convert_too() {
    let mic = PlayerMic::open_mic().echo_cancellation(false);
    for (rate, channels) in [(48_000u32, 1u16), (22_050, 2), (8_000, 1), (96_000, 4), (16_000, 2), (44_101, 1)] {
        let mono = sine(1000.0, rate, 1.0, 0.5);
        let input: Vec<f32> = mono.iter().flat_map(|&s| std::iter::repeat_n(s, usize::from(channels))).collect();
        let mut out = Vec::new();
        run_pipeline(&mic, &input, rate, channels, None, |f| out.extend(f.pcm.iter().map(|&s| f32::from(s) / 32768.0)));
        let steady = &out[3200..];
        let measured = dominant(steady, 16_000);
        assert!((measured - 1000.0).abs() <= 1.0, "{rate} Hz × {channels}: {measured} Hz");
    }
}

// ---------------------------------------------------------------- the room

/// The NPC's voice through speakers into the microphone: a 50 ms path at −9 dB with two weaker
/// reflections, plus a faint noise floor.
struct Room {
    /// What the plugin plays (the echo reference), mono at 48 kHz.
    reference: Vec<f32>,
    /// What the microphone hears, stereo at 44.1 kHz.
    mic: Vec<f32>,
    /// Where the player's speech starts and ends in the mic signal (44.1 kHz frames).
    player: Option<(usize, usize)>,
}

const ECHO_DELAY_MS: usize = 50;
const ECHO_GAIN_DB: f32 = -9.0;

fn room(npc_secs: f32, player: Option<(&str, f32)>) -> Room {
    let voice = to_f32(&crate::support::wav("npc-mira-24k.wav"));
    let voice = &voice[..((24_000.0 * npc_secs) as usize).min(voice.len())];
    let reference = resample(voice, 24_000, 48_000);
    let heard = resample(voice, 24_000, 44_100);
    let g = |db: f32| 10f32.powf(db / 20.0);
    let d = |ms: usize| ms * 441 / 10;
    let mut echo = delay_gain(&heard, d(ECHO_DELAY_MS), g(ECHO_GAIN_DB));
    echo = mix(&echo, &delay_gain(&heard, 0, g(ECHO_GAIN_DB - 7.0)), d(ECHO_DELAY_MS + 7));
    echo = mix(&echo, &delay_gain(&heard, 0, g(ECHO_GAIN_DB - 13.0)), d(ECHO_DELAY_MS + 19));
    let mut rng = fastrand::Rng::with_seed(3);
    for s in &mut echo {
        *s += (rng.f32() - 0.5) * 0.001;
    }
    let mut span = None;
    if let Some((name, at)) = player {
        let speech = resample(&to_f32(&crate::support::wav(name)), 16_000, 44_100);
        let start = (44_100.0 * at) as usize;
        span = Some((start, start + speech.len()));
        echo = mix(&echo, &speech, start);
    }
    Room { reference, mic: stereo(&echo), player: span }
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn echo_cancellation_removes_the_npc_voice_and_keeps_the_player() {
    let r = room(8.0, None);
    let mic = PlayerMic::open_mic();
    let (mut e_in, mut e_out, mut opened) = (0.0f64, 0.0f64, 0usize);
    let mut k = 0usize;
    let p = run_pipeline(&mic, &r.mic, 44_100, 2, Some((&r.reference, 48_000)), |f| {
        // Converged region: after the first second.
        if k >= 100 {
            e_in += f64::from(f.input_rms).powi(2);
            e_out += f64::from(f.rms).powi(2);
        }
        opened += usize::from(f.onset.is_some());
        k += 1;
    });
    let erle = 10.0 * (e_in / e_out.max(1e-20)).log10();
    let (aec_erle, aec_delay) = p.echo_metrics().unwrap();
    println!("echo only: ERLE {erle:.1} dB measured (AEC3 estimate {aec_erle:.1} dB, delay {aec_delay} ms)");
    assert!(erle >= 20.0, "ERLE {erle:.1} dB");
    assert_eq!(opened, 0, "the NPC's own voice opened the gate");

    // Double talk: the player speaks over the echo and comes through.
    let r = room(8.0, Some(("player-interrupt-16k.wav", 4.0)));
    let (start, end) = r.player.unwrap();
    let (b0, b1) = (start / 441, end / 441);
    let near = resample(&to_f32(&crate::support::wav("player-interrupt-16k.wav")), 16_000, 16_000);
    let (mut out_speech, mut onset_at) = (0.0f64, None);
    let mut k = 0usize;
    run_pipeline(&mic, &r.mic, 44_100, 2, Some((&r.reference, 48_000)), |f| {
        if (b0..b1).contains(&k) {
            out_speech += f64::from(f.rms).powi(2) * 160.0;
        }
        if f.onset.is_some() && onset_at.is_none() {
            onset_at = Some(k);
        }
        k += 1;
    });
    let kept = 10.0 * (out_speech / near.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>()).log10();
    println!(
        "double talk: the player's speech comes out at {kept:.1} dB; gate opened at block {onset_at:?} (speech from {b0})"
    );
    let onset = onset_at.expect("the player's speech opens the gate");
    assert!(onset >= b0 && onset <= b0 + 30, "onset at block {onset}, speech from {b0}");
    assert!(kept > -10.0, "the player's speech was suppressed: {kept:.1} dB");
}

// ---------------------------------------------------------------- a recording server

/// A Live endpoint that completes the setup and records every client message with its arrival
/// time: exactly what went over the wire, in order.
struct Recorder {
    url: String,
    messages: Arc<Mutex<Vec<(Instant, Value)>>>,
    _rt: tokio::runtime::Runtime,
}

impl Recorder {
    fn start() -> Recorder {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let log = messages.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let (mut tx, mut rx) = ws.split();
                    while let Some(Ok(msg)) = rx.next().await {
                        let text = match msg {
                            Message::Text(t) => t.to_string(),
                            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                            _ => continue,
                        };
                        let Ok(v) = serde_json::from_str::<Value>(&text) else {
                            continue;
                        };
                        if v.get("setup").is_some() {
                            let _ = tx.send(Message::Text(r#"{"setupComplete":{}}"#.into())).await;
                        }
                        log.lock().unwrap().push((Instant::now(), v));
                    }
                });
            }
        });
        Recorder { url: format!("ws://{addr}"), messages, _rt: rt }
    }

    /// (arrival, kind, 16 kHz samples for audio)
    fn log(&self) -> Vec<(Instant, &'static str, Vec<i16>)> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(at, v)| {
                let ri = v.get("realtimeInput")?;
                if let Some(data) = ri.pointer("/audio/data").and_then(Value::as_str) {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
                    let pcm = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                    return Some((*at, "audio", pcm));
                }
                let kind =
                    ["activityStart", "activityEnd", "audioStreamEnd"].into_iter().find(|k| ri.get(*k).is_some())?;
                Some((*at, kind, Vec::new()))
            })
            .collect()
    }
}

fn app(plugin: LiveNpcPlugin, mic: &TestMic) -> App {
    #[cfg(feature = "audio")]
    let plugin = plugin.audio(bevy_live_npc::audio::AudioBackendChoice::Disabled);
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, plugin.auto_engage(false)));
    app.insert_resource(mic.factory()).init_resource::<ButtonInput<KeyCode>>();
    app
}

/// Spawns the NPC (focused, conversation open) and the player's mic; waits until the mic is
/// capturing and audio would reach the NPC's session.
fn ready(app: &mut App, npc: LiveNpc, mic: PlayerMic, feeder: &TestMicFeeder) -> Entity {
    let npc = app.world_mut().spawn(npc).id();
    app.world_mut().spawn((NpcListener, Transform::default(), mic));
    app.finish();
    app.cleanup();
    app.world_mut().commands().entity(npc).start_conversation().focus_npc();
    let route = app.world().resource::<MicRoute>().clone();
    assert!(app.update_while_not(WAIT, |w| {
        w.get::<NpcConversation>(npc).is_some_and(NpcConversation::is_ready)
            && route.get().is_some_and(|(e, _)| e == npc)
    }));
    assert!(feeder.wait_open(WAIT));
    assert!(
        app.update_while_not(WAIT, |w| { w.query::<&MicStatus>().iter(w).any(|s| s.state == MicState::Capturing) })
    );
    npc
}

/// Streams `signal` (interleaved) into the test mic in real time, 10 ms per buffer, like a
/// device callback; optionally the speaker reference alongside. Returns when started.
struct Stream {
    start: Instant,
    done: Arc<AtomicBool>,
}

fn stream(
    feeder: TestMicFeeder,
    signal: Vec<f32>,
    rate: u32,
    channels: u16,
    reference: Option<(rtrb::Producer<f32>, Vec<f32>, u32)>,
) -> Stream {
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let flag = done.clone();
    std::thread::spawn(move || {
        let block = (rate / 100) as usize * usize::from(channels);
        let mut reference = reference;
        for (k, chunk) in signal.chunks(block).enumerate() {
            let due = start + Duration::from_millis(10 * k as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if let Some((producer, r, ref_rate)) = &mut reference {
                let rb = (*ref_rate / 100) as usize;
                let from = (k * rb).min(r.len());
                let _ = producer.push_partial_slice(&r[from..((k + 1) * rb).min(r.len())]);
            }
            feeder.push(chunk);
        }
        flag.store(true, Ordering::Release);
    });
    Stream { start, done }
}

/// Updates the app until `secs` after the stream started, calling `at` with the elapsed time.
fn drive(app: &mut App, s: &Stream, secs: f32, mut at: impl FnMut(&mut App, f32)) {
    while s.start.elapsed().as_secs_f32() < secs || !s.done.load(Ordering::Acquire) {
        let t = s.start.elapsed().as_secs_f32();
        at(app, t);
        app.update();
        std::thread::sleep(Duration::from_millis(2));
        assert!(t < secs + 20.0, "the stream never finished");
    }
}

fn since(s: &Stream, t: Instant) -> f32 {
    t.saturating_duration_since(s.start).as_secs_f32()
}

// ---------------------------------------------------------------- push-to-talk

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn push_to_talk_sends_activity_markers_and_nothing_outside_them() {
    let server = Recorder::start();
    let (mic, feeder) = TestMic::new(44_100, 2);
    let mut app = app(LiveNpcPlugin::default().endpoint(&server.url), &mic);
    ready(&mut app, LiveNpc::new("Ada").vad(VadSettings::manual()), PlayerMic::push_to_talk(KeyCode::KeyV), &feeder);
    // A 440 Hz tone the whole time; the key is held from 0.5 s to 2.0 s.
    let s = stream(feeder, stereo(&sine(440.0, 44_100, 3.0, 0.3)), 44_100, 2, None);
    let (mut down, mut up) = (None, None);
    drive(&mut app, &s, 3.5, |app, t| {
        let mut keys = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
        if t >= 0.5 && down.is_none() {
            keys.press(KeyCode::KeyV);
            down = Some(t);
        }
        if t >= 2.0 && up.is_none() {
            keys.release(KeyCode::KeyV);
            up = Some(t);
        }
    });
    let log = server.log();
    let kinds: Vec<&str> = log.iter().map(|(_, k, _)| *k).collect();
    let first_audio = kinds.iter().position(|k| *k == "audio").expect("audio was sent");
    let last_audio = kinds.iter().rposition(|k| *k == "audio").unwrap();
    assert_eq!(kinds[..first_audio], ["activityStart"], "{kinds:?}");
    assert_eq!(kinds[last_audio + 1..], ["activityEnd"], "{kinds:?}");
    assert!(kinds[first_audio..=last_audio].iter().all(|k| *k == "audio"), "{kinds:?}");
    let pcm: Vec<f32> = log.iter().flat_map(|(_, _, p)| p.iter().map(|&s| f32::from(s) / 32768.0)).collect();
    let held = up.unwrap() - down.unwrap();
    let sent = pcm.len() as f32 / 16_000.0;
    println!("held {held:.2} s, sent {sent:.2} s in {} chunks", last_audio - first_audio + 1);
    assert!((sent - held).abs() < 0.12, "held {held:.2} s, sent {sent:.2} s");
    // Every chunk is 20 ms but the last.
    assert!(log[first_audio..last_audio].iter().all(|(_, _, p)| p.len() == 320));
    // What went out is the tone, as 16 kHz mono.
    let measured = dominant(&pcm[800..], 16_000);
    assert!((measured - 440.0).abs() <= 1.0, "{measured} Hz");
}

// ---------------------------------------------------------------- open mic

/// 1 s silence, 1 s white noise (−29 dBFS), the player's sentence, 1.5 s silence; mono 48 kHz.
fn open_mic_signal() -> (Vec<f32>, f32, f32) {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut x = vec![0.0f32; 48_000];
    x.extend((0..48_000).map(|_| rng.f32() * 0.12 - 0.06));
    let speech = resample(&to_f32(&crate::support::wav("player-open-gate-16k.wav")), 16_000, 48_000);
    let (from, to) = (2.0, 2.0 + speech.len() as f32 / 48_000.0);
    x.extend(speech);
    x.extend(vec![0.0; 72_000]);
    (x, from, to)
}

#[derive(Default)]
struct DuckLog(Mutex<Vec<(Instant, f32)>>);

impl VoiceDuck for DuckLog {
    fn duck(&self, gain: f32) {
        self.0.lock().unwrap().push((Instant::now(), gain));
    }
}

fn open_mic_run(duck: Option<Arc<DuckLog>>) -> (Recorder, Stream, f32, f32) {
    let server = Recorder::start();
    let (mic, feeder) = TestMic::new(48_000, 1);
    let mut app = app(LiveNpcPlugin::default().endpoint(&server.url), &mic);
    let npc = ready(&mut app, LiveNpc::new("Bo"), PlayerMic::open_mic(), &feeder);
    if let Some(d) = duck {
        app.world_mut().entity_mut(npc).insert(NpcVoiceDuck(d));
    }
    app.update();
    let (signal, from, to) = open_mic_signal();
    let s = stream(feeder, signal, 48_000, 1, None);
    drive(&mut app, &s, to + 1.5, |_, _| {});
    (server, s, from, to)
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn open_mic_sends_speech_and_not_silence_or_noise() {
    let (server, s, from, to) = open_mic_run(None);
    let log = server.log();
    let kinds: Vec<&str> = log.iter().map(|(_, k, _)| *k).collect();
    let audio: Vec<_> = log.iter().filter(|(_, k, _)| *k == "audio").collect();
    assert!(!audio.is_empty(), "the speech was not sent");
    let first = since(&s, audio[0].0);
    assert!(first >= from, "audio went out at {first:.2} s, before the speech at {from:.2} s");
    let sent = audio.iter().map(|(_, _, p)| p.len()).sum::<usize>() as f32 / 16_000.0;
    println!("speech {from:.2}–{to:.2} s; first audio at {first:.2} s; sent {sent:.2} s in {} chunks", audio.len());
    assert!(sent >= 0.8 * (to - from) && sent <= (to - from) + 1.2, "sent {sent:.2} s of {:.2} s", to - from);
    // One utterance: audio, then audioStreamEnd after the pause, nothing after it.
    assert_eq!(kinds.last(), Some(&"audioStreamEnd"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "audioStreamEnd").count(), 1, "{kinds:?}");
    assert!(kinds.iter().all(|k| *k == "audio" || *k == "audioStreamEnd"), "{kinds:?}");
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn the_local_duck_fires_on_speech_onset() {
    let duck = Arc::new(DuckLog::default());
    let (server, s, from, to) = open_mic_run(Some(duck.clone()));
    let calls = duck.0.lock().unwrap().clone();
    let times: Vec<(f32, f32)> = calls.iter().map(|(t, g)| (since(&s, *t), *g)).collect();
    println!("duck calls (s, gain): {times:?}; speech {from:.2}–{to:.2} s");
    let (down_at, gain) = times.first().copied().expect("the NPC was ducked");
    assert!(gain < 1.0);
    assert!(down_at >= from && down_at <= from + 0.2, "ducked at {down_at:.3} s, speech at {from:.2} s");
    // Before the first audio reached the server: the duck does not wait for anyone.
    let first_audio = server.log().iter().find(|(_, k, _)| *k == "audio").map(|(t, _, _)| since(&s, *t)).unwrap();
    assert!(down_at <= first_audio, "ducked at {down_at:.3} s, first audio sent at {first_audio:.3} s");
    // Back to full gain after the player stops.
    let (up_at, gain) = *times.last().unwrap();
    assert_eq!(gain, 1.0);
    assert!(up_at > to, "unducked at {up_at:.2} s, speech until {to:.2} s");
    assert_eq!(times.len(), 2, "{times:?}");
}

// ---------------------------------------------------------------- the room, with the simulator

const STORY: &str = "Long ago, before the walls were built, the village was only a ring of huts by the river. \
    Every spring the water rose and every autumn it fell, and the people learned to read the river like a book. \
    My grandmother said the first smith came from the mountains with nothing but a hammer and a song. \
    She built the forge where it still stands, and the whole village gathered to watch the first fire. \
    That fire has not gone out in three hundred years, and I intend to keep it burning for three hundred more.";

#[derive(Resource, Default)]
struct Interrupts(Vec<Instant>);

fn record_interrupts(mut seen: MessageReader<NpcInterrupted>, mut log: ResMut<Interrupts>) {
    log.0.extend(seen.read().map(|_| Instant::now()));
}

struct RoomRun {
    /// Seconds (from the stream's start) of each interruption.
    interrupts: Vec<f32>,
    /// Chunks sent before the player spoke (or in total, without a player).
    chunks_before_player: u64,
    player_at: Option<f32>,
}

/// The NPC tells a long story (real-time simulator); its voice comes back into the microphone
/// through the room, with the player speaking over it from `player_at` seconds.
fn room_run(mic: PlayerMic, player_at: Option<f32>) -> RoomRun {
    let scenario =
        Scenario::from_json_str(&serde_json::json!({"rules": [{"when": "story", "reply": STORY}]}).to_string())
            .unwrap();
    let plugin = LiveNpcPlugin::default().simulator(SimulatorSettings { pace: 1.0, seed: 5, scenario: Some(scenario) });
    let (test_mic, feeder) = TestMic::new(44_100, 2);
    let mut app = app(plugin, &test_mic);
    let (producer, consumer) = rtrb::RingBuffer::new(48_000);
    app.insert_resource(MicEchoReference::new(ReferenceRing::new(consumer, 48_000, 1)))
        .init_resource::<Interrupts>()
        .add_systems(Update, record_interrupts);
    let npc = ready(&mut app, LiveNpc::new("Mira"), mic, &feeder);
    app.world_mut().write_message(SayToNpc { npc, text: "Tell me a story.".into() });
    app.update_until::<NpcSpeechStarted>(|e| e.entity == npc).expect("the NPC starts talking");
    let r = room(7.0, player_at.map(|t| ("player-interrupt-16k.wav", t)));
    let s = stream(feeder, r.mic, 44_100, 2, Some((producer, r.reference, 48_000)));
    let mut chunks_before_player = None;
    let end = player_at.map_or(7.5, |t| t + 3.0);
    drive(&mut app, &s, end, |app, t| {
        if player_at.is_some_and(|p| t >= p) && chunks_before_player.is_none() {
            let w = app.world_mut();
            chunks_before_player = w.query::<&MicStatus>().iter(w).next().map(|st| st.chunks_sent);
        }
    });
    let w = app.world_mut();
    let total = w.query::<&MicStatus>().iter(w).next().map(|st| st.chunks_sent).unwrap_or(0);
    let interrupts = app.world().resource::<Interrupts>().0.iter().map(|t| since(&s, *t)).collect();
    RoomRun { interrupts, chunks_before_player: chunks_before_player.unwrap_or(total), player_at }
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn room_echo_does_not_barge_in_but_the_player_does() {
    let run = room_run(PlayerMic::open_mic(), Some(4.5));
    let player_at = run.player_at.unwrap();
    println!(
        "echo cancellation on: interruptions at {:?} s; chunks sent before the player spoke: {}",
        run.interrupts, run.chunks_before_player
    );
    assert!(run.interrupts.iter().all(|t| *t >= player_at), "the NPC interrupted itself: {:?}", run.interrupts);
    assert_eq!(run.chunks_before_player, 0, "the NPC's own voice was sent");
    let cut = run.interrupts.first().copied().expect("the player's barge-in interrupts the NPC");
    assert!(cut < player_at + 2.5, "interrupted at {cut:.2} s, the player spoke at {player_at} s");
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn room_echo_barges_in_without_echo_cancellation() {
    // The control: the same room without cancellation fools the server's VAD.
    let run = room_run(PlayerMic::open_mic().echo_cancellation(false), None);
    println!(
        "echo cancellation off: interruptions at {:?} s; chunks sent: {}",
        run.interrupts, run.chunks_before_player
    );
    assert!(run.chunks_before_player > 0);
    assert!(!run.interrupts.is_empty(), "expected the echo to interrupt the NPC");
}

#[test]
#[ignore = "real time: scripts/test.sh runs it alone, without other load"]
fn half_duplex_keeps_the_mic_closed_while_the_npc_talks() {
    let run = room_run(PlayerMic::open_mic().echo_cancellation(false).half_duplex(true), None);
    println!("half duplex: interruptions at {:?} s; chunks sent: {}", run.interrupts, run.chunks_before_player);
    assert!(run.interrupts.is_empty(), "{:?}", run.interrupts);
    assert_eq!(run.chunks_before_player, 0);
}

// ---------------------------------------------------------------- devices

fn status(app: &mut App) -> MicStatus {
    let w = app.world_mut();
    w.query::<&MicStatus>().iter(w).next().cloned().unwrap_or_default()
}

#[test]
fn no_device_one_warning_text_still_works_then_loss_and_change_reopen() {
    let logs = crate::support::capture_logs();
    let (mic, feeder) = TestMic::new(48_000, 2);
    feeder.set_available(false);
    let mut app = app(sim_plugin(None), &mic);
    let npc = app.world_mut().spawn(LiveNpc::new("Mira")).id();
    app.world_mut().spawn((NpcListener, Transform::default(), PlayerMic::open_mic()));
    app.finish();
    app.cleanup();
    // Several reopen attempts fail meanwhile; typed text goes on working.
    app.world_mut().write_message(SayToNpc { npc, text: "Hello!".into() });
    let reply = app.update_until::<NpcTranscript>(|t| t.entity == npc && t.speaker == Speaker::Npc && t.is_final);
    assert!(reply.is_some_and(|r| !r.text.is_empty()));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        app.update();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(status(&mut app).state, MicState::NoDevice);
    let warnings = logs.lock().unwrap().matches("no microphone (no input device)").count();
    assert_eq!(warnings, 1);

    // Plugged in: opened.
    feeder.set_available(true);
    assert!(
        app.update_while_not(WAIT, |w| { w.query::<&MicStatus>().iter(w).any(|s| s.state == MicState::Capturing) })
    );
    assert_eq!(feeder.times_opened(), 1);
    // Unplugged while capturing: a warning, then reopened when it is back.
    feeder.set_available(false);
    assert!(
        app.update_while_not(WAIT, |w| { w.query::<&MicStatus>().iter(w).any(|s| s.state != MicState::Capturing) })
    );
    assert!(logs.lock().unwrap().contains("the microphone stopped: `test mic` was disconnected"));
    feeder.set_available(true);
    assert!(
        app.update_while_not(WAIT, |w| { w.query::<&MicStatus>().iter(w).any(|s| s.state == MicState::Capturing) })
    );
    assert_eq!(feeder.times_opened(), 2);
    // The system's default input changes: the mic follows it.
    feeder.set_default_device("USB headset");
    assert!(app.update_while_not(WAIT, |w| {
        w.query::<&MicStatus>().iter(w).any(|s| s.format.as_ref().is_some_and(|f| f.device == "USB headset"))
    }));
    assert_eq!(feeder.times_opened(), 3);
    assert_eq!(status(&mut app).state, MicState::Capturing);
}
