//! Microphone pipeline cost per second of audio: conversion to 16 kHz mono, the local voice gate
//! (earshot), and echo cancellation (AEC3), as the capture thread runs them.
//!
//! Input is one second of 44.1 kHz stereo `f32` (the common laptop format), fed in 10 ms
//! callbacks; the echo reference is one second of 48 kHz mono. The figure is the time to process
//! one second of audio: divide by 1 s for the share of one core.

use std::hint::black_box;

use bevy_live_npc::audio::capture::{MicPipeline, PlayerMic};
use criterion::{Criterion, criterion_group, criterion_main};

/// A voiced, speech-like signal (a 140 Hz buzz with formant-ish harmonics, syllable-modulated).
fn voice(rate: u32, secs: f32) -> Vec<f32> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let env = 0.5 + 0.5 * (std::f32::consts::TAU * 4.0 * t).sin();
            let f0 = 140.0;
            let s: f32 = [1.0, 0.6, 0.4, 0.3, 0.2]
                .iter()
                .enumerate()
                .map(|(h, a)| a * (std::f32::consts::TAU * f0 * (h + 1) as f32 * t).sin())
                .sum();
            0.15 * env * s
        })
        .collect()
}

fn stereo(x: &[f32]) -> Vec<f32> {
    x.iter().flat_map(|&s| [s, s]).collect()
}

/// One second through a fresh pipeline state (warmed over a first second so AEC3 has adapted).
fn run(p: &mut MicPipeline, input: &[f32], reference: Option<&[f32]>) -> usize {
    let mut n = 0;
    for (k, chunk) in input.chunks(882).enumerate() {
        if let Some(r) = reference {
            p.push_reference(&r[(k * 480).min(r.len())..((k + 1) * 480).min(r.len())]);
        }
        p.push_capture(chunk, |f| n += f.pcm.len());
    }
    n
}

fn bench(c: &mut Criterion) {
    let speech = stereo(&voice(44_100, 1.0));
    let silence = vec![0.0f32; 88_200];
    let reference = voice(48_000, 1.0);
    let mut g = c.benchmark_group("mic pipeline, 1 s of 44.1 kHz stereo");
    g.sample_size(20);

    let ptt = PlayerMic::push_to_talk(bevy::input::keyboard::KeyCode::KeyV).echo_cancellation(false);
    let mut p = MicPipeline::new(&ptt, 44_100, 2);
    g.bench_function("resample + gate, silence", |b| b.iter(|| black_box(run(&mut p, black_box(&silence), None))));
    let mut p = MicPipeline::new(&ptt, 44_100, 2);
    g.bench_function("resample + gate, speech", |b| b.iter(|| black_box(run(&mut p, black_box(&speech), None))));

    let open = PlayerMic::open_mic();
    let mut p = MicPipeline::new(&open, 44_100, 2);
    p.set_reference_format(48_000, 1);
    run(&mut p, &speech, Some(&reference));
    g.bench_function("resample + gate + AEC3, speech and echo", |b| {
        b.iter(|| black_box(run(&mut p, black_box(&speech), Some(&reference))))
    });
    let mut p = MicPipeline::new(&open, 44_100, 2);
    p.set_reference_format(48_000, 1);
    run(&mut p, &silence, Some(&reference));
    g.bench_function("resample + gate + AEC3, silent mic while the NPC plays", |b| {
        b.iter(|| black_box(run(&mut p, black_box(&silence), Some(&reference))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
