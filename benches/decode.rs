//! Server-message decoding throughput, in MB/s of JSON.
//!
//! The frames are what a Live session mostly receives: `serverContent` audio chunks of 20 to
//! 100 ms at 24 kHz, plus small control messages. Decoding means parsing the frame and
//! base64-decoding every audio part into a reused `i16` buffer.

use std::hint::black_box;

use bevy_live_npc::protocol::{
    Blob, Content, Part, ServerContent, ServerMessage, ServerPayload, Transcription, UsageMetadata,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn audio_frame(ms: usize) -> Vec<u8> {
    let samples: Vec<i16> = (0..24 * ms).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect();
    let msg = ServerMessage::from(ServerPayload::ServerContent(ServerContent {
        model_turn: Some(Content { role: None, parts: vec![Part::inline(Blob::pcm16(&samples, 24_000))] }),
        ..Default::default()
    }));
    msg.to_vec()
}

fn control_frames() -> Vec<Vec<u8>> {
    let transcript = ServerMessage::from(ServerPayload::ServerContent(ServerContent {
        output_transcription: Some(Transcription { text: Some("Welcome to the forge, ".into()), ..Default::default() }),
        ..Default::default()
    }));
    let done = ServerMessage {
        payload: ServerPayload::ServerContent(ServerContent { turn_complete: Some(true), ..Default::default() }),
        usage_metadata: Some(UsageMetadata {
            prompt_token_count: Some(120),
            total_token_count: Some(217),
            ..Default::default()
        }),
    };
    vec![transcript.to_vec(), done.to_vec()]
}

fn decode(frame: &[u8], pcm: &mut Vec<i16>) -> usize {
    let msg = ServerMessage::from_slice(frame).expect("valid frame");
    pcm.clear();
    match &msg.payload {
        ServerPayload::ServerContent(c) => c.append_audio(pcm).expect("valid audio"),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_server");
    let mut pcm = Vec::with_capacity(4096);
    for ms in [20usize, 40, 100] {
        let frame = audio_frame(ms);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(format!("audio_{ms}ms"), |b| b.iter(|| decode(black_box(&frame), &mut pcm)));
    }
    // A realistic mix: 40 ms chunks with a transcript fragment every 10 chunks and a turn end.
    let mut mix: Vec<Vec<u8>> = (0..10).map(|_| audio_frame(40)).collect();
    mix.extend(control_frames());
    let total: usize = mix.iter().map(Vec::len).sum();
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("session_mix", |b| {
        b.iter(|| {
            for f in &mix {
                black_box(decode(black_box(f), &mut pcm));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
