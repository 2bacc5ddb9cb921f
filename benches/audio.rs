//! NPC voice costs: the audio thread's work per 128-frame block with N voices playing (kira's
//! renderer through the offline backend: ring reads, jitter buffer, meters, occlusion filter,
//! spatialization, mixing), and the resampler the session task runs on model audio.
//!
//! `cargo bench --bench audio -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bevy::math::{Quat, Vec3};
use bevy_live_npc::audio::{
    AudioBackendChoice, NpcAudioOutput, NpcAudioSettings, NpcVoice, NpcVoiceSettings, OfflineOutput, SpeechResampler,
    VoiceSink,
};
use bevy_live_npc::session::AudioSink;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const RATE: u32 = 48_000;
const BLOCK: usize = 128;

fn speechlike(secs: f32) -> Vec<i16> {
    // A buzzy, amplitude-modulated tone: the renderer's cost does not depend on the content.
    let n = (secs * 24_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            let env = 0.5 + 0.5 * (t * 4.0 * std::f32::consts::TAU).sin();
            ((t * 180.0 * std::f32::consts::TAU).sin() * env * 8000.0) as i16
        })
        .collect()
}

fn render_voices(c: &mut Criterion) {
    let mut group = c.benchmark_group("audio_thread_block_128");
    group.throughput(Throughput::Elements(BLOCK as u64));
    let chunk = speechlike(2.0);
    // 64 is the design target: that many voices must fit in a fraction of one of two cores.
    for n in [0usize, 1, 4, 8, 16, 64] {
        let out = OfflineOutput::manual(RATE);
        let mut output = NpcAudioOutput::new(&AudioBackendChoice::Offline(out.clone()), &NpcAudioSettings::default());
        output.set_listener(Vec3::ZERO, Quat::IDENTITY, Duration::ZERO);
        let mut voices: Vec<(VoiceSink, NpcVoice)> = (0..n)
            .filter_map(|i| {
                let angle = i as f32 * 0.7;
                let at = Vec3::new(angle.cos() * 4.0, 0.0, angle.sin() * 4.0);
                output.spawn_voice(at, &NpcVoiceSettings::default())
            })
            .collect();
        for (i, (_, voice)) in voices.iter_mut().enumerate() {
            // Half the voices behind a wall: the low-pass filter runs.
            let occlusion = if i % 2 == 0 { 0.6 } else { 0.0 };
            voice.apply(&NpcVoiceSettings::default(), occlusion);
        }
        let mut buf = vec![0.0f32; BLOCK * 2];
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Keep every voice fed (outside the timing: that is the session task's work).
                    for (sink, voice) in &mut voices {
                        if voice.buffered() < Duration::from_millis(500) {
                            sink.push(&chunk);
                        }
                    }
                    let t = Instant::now();
                    out.render_into(&mut buf);
                    total += t.elapsed();
                    black_box(&buf);
                }
                total
            });
        });
        assert!(voices.iter().all(|(_, v)| v.stats().underruns == 0));
    }
    group.finish();
}

fn resampler(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_40ms_chunk");
    let chunk = speechlike(0.04);
    group.throughput(Throughput::Elements(chunk.len() as u64));
    for out_rate in [48_000u32, 44_100] {
        let Ok(mut r) = SpeechResampler::new(24_000, out_rate) else {
            continue;
        };
        group.bench_with_input(BenchmarkId::from_parameter(out_rate), &out_rate, |b, _| {
            b.iter(|| {
                let mut n = 0;
                r.process(black_box(&chunk), |out| n += out.len());
                black_box(n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, render_voices, resampler);
criterion_main!(benches);
