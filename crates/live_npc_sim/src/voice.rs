//! The simulator's built-in "model voice": a small, deterministic formant synthesizer.
//!
//! It is a classic source-filter design. A Rosenberg glottal pulse train at the voice's
//! fundamental frequency (with declination over each phrase, pitch accents, a final rise on
//! questions, and seeded jitter, shimmer and drift) plus aspiration noise excites a cascade of five
//! two-pole formant resonators (F1–F3 move, F4 and F5 are fixed per voice). The formant targets
//! follow the letters of the text (vowel formant tables, consonant loci), with smooth transitions;
//! consonants add noise bursts and fricative noise through a band-pass filter; spaces and
//! punctuation become short pauses (comma 150 ms, sentence end 300 ms). It does not pronounce
//! words, but it has the rhythm, pitch movement and spectrum of speech, and speech detectors treat
//! it as speech.
//!
//! Output is 24 kHz mono i16, peak-normalized to -6 dBFS with 10 ms fades at both ends. The length
//! depends only on the voice and the text (about 12–15 characters per second), never on the seed.

use std::f32::consts::PI;
use std::time::Duration;

/// The synthesizer's output rate (the Live API's output rate).
pub const VOICE_SAMPLE_RATE: u32 = 24_000;

/// Characters of text that are synthesized; the rest is ignored (about 5 minutes of speech).
pub const MAX_TEXT_CHARS: usize = 4_096;

const SR: f32 = VOICE_SAMPLE_RATE as f32;
/// Peak output level: -6 dBFS.
const PEAK: f32 = 0.5;
/// Fade-in and fade-out length (10 ms).
const FADE: usize = 240;
/// Formant filters and slow parameters are updated every this many samples.
const BLOCK: usize = 16;

/// A prebuilt voice's parameters.
struct Preset {
    name: &'static str,
    /// Base fundamental frequency (Hz).
    f0: f32,
    /// Formant frequencies are multiplied by this (vocal tract length).
    formant_scale: f32,
    /// Aspiration noise mixed into voicing, 0–1.
    breathiness: f32,
    /// Glottal open quotient: higher is softer, lower is pressed and brighter.
    open_quotient: f32,
    /// Duration multiplier (speaking rate).
    tempo: f32,
    /// Jitter amount (period-to-period pitch variation).
    roughness: f32,
}

const fn preset(
    name: &'static str,
    f0: f32,
    formant_scale: f32,
    breathiness: f32,
    open_quotient: f32,
    tempo: f32,
    roughness: f32,
) -> Preset {
    Preset { name, f0, formant_scale, breathiness, open_quotient, tempo, roughness }
}

/// The 30 prebuilt Gemini voices, loosely after their published characters
/// (e.g. Charon "informative", deep; Puck "upbeat"; Kore "firm"; Enceladus "breathy").
const PRESETS: [Preset; 30] = [
    preset("Zephyr", 225.0, 1.12, 0.15, 0.55, 1.00, 0.008),
    preset("Puck", 128.0, 0.97, 0.10, 0.55, 0.95, 0.008),
    preset("Charon", 92.0, 0.88, 0.12, 0.60, 1.05, 0.008),
    preset("Kore", 205.0, 1.10, 0.08, 0.50, 1.00, 0.006),
    preset("Fenrir", 135.0, 0.98, 0.12, 0.52, 0.93, 0.010),
    preset("Leda", 250.0, 1.18, 0.15, 0.55, 0.97, 0.006),
    preset("Orus", 105.0, 0.92, 0.08, 0.52, 1.02, 0.008),
    preset("Aoede", 215.0, 1.12, 0.30, 0.62, 1.00, 0.006),
    preset("Callirrhoe", 195.0, 1.08, 0.20, 0.60, 1.04, 0.006),
    preset("Autonoe", 230.0, 1.14, 0.12, 0.55, 0.98, 0.006),
    preset("Enceladus", 112.0, 0.93, 0.40, 0.65, 1.05, 0.010),
    preset("Iapetus", 118.0, 0.95, 0.10, 0.55, 1.00, 0.008),
    preset("Umbriel", 110.0, 0.94, 0.20, 0.60, 1.04, 0.008),
    preset("Algieba", 100.0, 0.92, 0.18, 0.60, 1.03, 0.008),
    preset("Despina", 210.0, 1.10, 0.18, 0.60, 1.02, 0.006),
    preset("Erinome", 220.0, 1.12, 0.10, 0.55, 1.00, 0.006),
    preset("Algenib", 88.0, 0.87, 0.25, 0.50, 1.03, 0.020),
    preset("Rasalgethi", 115.0, 0.95, 0.12, 0.55, 1.00, 0.008),
    preset("Laomedeia", 240.0, 1.15, 0.12, 0.53, 0.95, 0.006),
    preset("Achernar", 200.0, 1.08, 0.35, 0.65, 1.05, 0.006),
    preset("Alnilam", 98.0, 0.90, 0.08, 0.52, 1.00, 0.008),
    preset("Schedar", 108.0, 0.93, 0.12, 0.56, 1.02, 0.008),
    preset("Gacrux", 180.0, 1.04, 0.15, 0.57, 1.05, 0.010),
    preset("Pulcherrima", 228.0, 1.13, 0.10, 0.52, 0.97, 0.006),
    preset("Achird", 122.0, 0.96, 0.15, 0.57, 1.00, 0.008),
    preset("Zubenelgenubi", 116.0, 0.95, 0.18, 0.58, 1.02, 0.008),
    preset("Vindemiatrix", 198.0, 1.07, 0.28, 0.63, 1.05, 0.006),
    preset("Sadachbia", 130.0, 0.98, 0.12, 0.54, 0.95, 0.008),
    preset("Sadaltager", 102.0, 0.92, 0.12, 0.56, 1.02, 0.008),
    preset("Sulafat", 190.0, 1.06, 0.20, 0.60, 1.02, 0.006),
];

/// A synthetic voice. 24 kHz mono i16 output.
#[derive(Clone, Debug, PartialEq)]
pub struct Voice {
    name: String,
    f0: f32,
    formant_scale: f32,
    breathiness: f32,
    open_quotient: f32,
    tempo: f32,
    roughness: f32,
    /// Hash of the lowercased name, mixed into the seed so voices do not share noise.
    id: u64,
}

/// FNV-1a, for a stable name hash (std's hasher may change between releases).
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// 16 bits of `h` starting at bit `shift`, as a fraction in [0, 1].
fn unit(h: u64, shift: u32) -> f32 {
    ((h >> shift) & 0xffff) as f32 / 65535.0
}

impl Voice {
    /// The voice for a prebuilt voice name (any of the 30 Gemini names: Zephyr, Puck, Charon,
    /// Kore, Fenrir, Leda, Orus, Aoede, Callirrhoe, Autonoe, Enceladus, Iapetus, Umbriel, Algieba,
    /// Despina, Erinome, Algenib, Rasalgethi, Laomedeia, Achernar, Alnilam, Schedar, Gacrux,
    /// Pulcherrima, Achird, Zubenelgenubi, Vindemiatrix, Sadachbia, Sadaltager, Sulafat); unknown
    /// names map deterministically (hash) onto the same parameter space; case-insensitive.
    pub fn for_name(name: &str) -> Voice {
        let key = name.trim();
        let id = fnv1a(key.bytes().map(|b| b.to_ascii_lowercase()));
        if let Some(p) = PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(key)) {
            return Voice {
                name: name.to_owned(),
                f0: p.f0,
                formant_scale: p.formant_scale,
                breathiness: p.breathiness,
                open_quotient: p.open_quotient,
                tempo: p.tempo,
                roughness: p.roughness,
                id,
            };
        }
        // Unknown: pitch anywhere in 85–260 Hz, with a vocal tract that fits the pitch.
        let pitch = unit(id, 0);
        Voice {
            name: name.to_owned(),
            f0: 85.0 + 175.0 * pitch,
            formant_scale: (0.87 + 0.28 * pitch + 0.06 * (unit(id, 16) - 0.5)).clamp(0.85, 1.2),
            breathiness: 0.05 + 0.3 * unit(id, 32),
            open_quotient: 0.5 + 0.15 * unit(id, 48),
            tempo: 0.95 + 0.1 * unit(id.rotate_left(8), 0),
            roughness: 0.006 + 0.008 * unit(id.rotate_left(24), 0),
            id,
        }
    }

    /// The voice's base fundamental frequency in Hz.
    pub fn f0_hz(&self) -> f32 {
        self.f0
    }

    /// The voice name it was created for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Synthesizes `text` as speech-like audio at 24 kHz. Deterministic for (voice, text, seed).
    ///
    /// Text without anything to pronounce gives no samples. Only the first [`MAX_TEXT_CHARS`]
    /// characters are used.
    pub fn synthesize(&self, text: &str, seed: u64) -> Vec<i16> {
        let plan = self.plan(text);
        let mut out = vec![0.0f32; plan.total];
        Renderer::new(self, seed).render(&plan.segs, &mut out);

        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let gain = if peak > 1e-9 { PEAK * 32767.0 / peak } else { 0.0 };
        let n = out.len();
        let fade = FADE.min(n / 2);
        out.iter()
            .enumerate()
            .map(|(i, &v)| {
                let edge = i.min(n - 1 - i);
                let g = if edge < fade {
                    // Raised cosine: no click at either end.
                    0.5 - 0.5 * (PI * edge as f32 / fade as f32).cos()
                } else {
                    1.0
                };
                (v * gain * g).round().clamp(-32767.0, 32767.0) as i16
            })
            .collect()
    }

    /// Duration the synthesizer will produce for `text`, without synthesizing (same value as
    /// `synthesize().len() / 24000`).
    pub fn duration_of(&self, text: &str) -> Duration {
        Duration::from_secs_f64(self.plan(text).total as f64 / f64::from(VOICE_SAMPLE_RATE))
    }

    fn plan(&self, text: &str) -> Plan {
        Planner::new(self).run(&normalize(text))
    }
}

// ---------------------------------------------------------------------------------------------
// Text to segments

/// Base formant frequencies (F1, F2, F3) of an adult male-ish tract; voices scale them.
type Formants = [f32; 3];
const A: Formants = [730.0, 1200.0, 2550.0];
const E: Formants = [530.0, 1750.0, 2500.0];
const I: Formants = [400.0, 2000.0, 2600.0];
const O: Formants = [560.0, 880.0, 2450.0];
const U: Formants = [420.0, 1100.0, 2300.0];
const IY: Formants = [300.0, 2250.0, 2900.0];
const UW: Formants = [330.0, 900.0, 2300.0];
const AO: Formants = [620.0, 950.0, 2500.0];
const SCHWA: Formants = [500.0, 1450.0, 2500.0];

/// Consonant places of articulation: (burst centre Hz, burst bandwidth Hz, formant locus).
const LABIAL: (f32, f32, Formants) = (1500.0, 2500.0, [300.0, 900.0, 2300.0]);
const ALVEOLAR: (f32, f32, Formants) = (4500.0, 3000.0, [350.0, 1750.0, 2700.0]);
const VELAR: (f32, f32, Formants) = (2400.0, 1500.0, [350.0, 1900.0, 2400.0]);

const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// Folds text to what the planner knows: lowercase ASCII letters, whitespace, punctuation.
/// Digits become words; accented Latin letters lose their accents; other scripts become one
/// hashed consonant-vowel syllable per character.
fn normalize(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len().min(MAX_TEXT_CHARS) + 8);
    let mut chars = text.chars().take(MAX_TEXT_CHARS).peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10).filter(|_| c.is_ascii_digit()) {
            out.extend(DIGITS[d as usize].chars());
            if chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                out.push(' ');
            }
            continue;
        }
        for l in c.to_lowercase() {
            match l {
                'a'..='z' | ',' | ';' | ':' | '.' | '!' | '?' | '\n' | '-' => out.push(l),
                '…' => out.push('.'),
                '–' | '—' => out.push('-'),
                c if c.is_whitespace() => out.push(' '),
                'à'..='å' | 'æ' => out.push('a'),
                'ç' => out.push('c'),
                'è'..='ë' => out.push('e'),
                'ì'..='ï' => out.push('i'),
                'ñ' => out.push('n'),
                'ò'..='ö' | 'ø' => out.push('o'),
                'ù'..='ü' => out.push('u'),
                'ý' | 'ÿ' => out.push('y'),
                'ß' => out.push('s'),
                c if c.is_alphabetic() => {
                    let h = fnv1a(u32::from(c).to_le_bytes());
                    out.push(['m', 'n', 'l', 't', 'k', 's', 'r', 'p', 'd', 'b'][(h % 10) as usize]);
                    out.push(['a', 'e', 'i', 'o', 'u'][((h / 10) % 5) as usize]);
                }
                // Apostrophes, quotes, symbols: silent.
                _ => {}
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Vowel {
        accent: bool,
    },
    Consonant,
    /// Between words.
    Gap,
    /// Punctuation.
    Pause,
}

/// How a phrase ends, for its intonation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Terminal {
    Comma,
    Period,
    Question,
    Exclaim,
}

/// A stretch of constant targets (the renderer glides between them).
#[derive(Clone, Copy, Debug)]
struct Seg {
    len: u32,
    kind: Kind,
    /// Voicing amplitude.
    voice: f32,
    /// Aspiration noise through the formants.
    asp: f32,
    /// Frication noise through the band-pass.
    fric: f32,
    fric_f: f32,
    fric_bw: f32,
    /// Formant targets at the start and end (they differ for diphthongs), already scaled.
    f: Formants,
    f_end: Formants,
    /// Pitch as a multiple of the voice's f0.
    pitch: f32,
}

struct Plan {
    segs: Vec<Seg>,
    total: usize,
}

struct Planner<'v> {
    voice: &'v Voice,
    segs: Vec<Seg>,
    /// (first segment, end segment, terminal) of each phrase.
    phrases: Vec<(usize, usize, Terminal)>,
    phrase_start: usize,
    /// Letters in the current word, and whether its accent has been placed.
    word_len: usize,
    word_accented: bool,
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

impl<'v> Planner<'v> {
    fn new(voice: &'v Voice) -> Planner<'v> {
        Planner { voice, segs: Vec::new(), phrases: Vec::new(), phrase_start: 0, word_len: 0, word_accented: false }
    }

    fn samples(&self, ms: f32) -> u32 {
        (ms * self.voice.tempo * SR / 1000.0).round().max(1.0) as u32
    }

    fn scaled(&self, f: Formants) -> Formants {
        f.map(|x| x * self.voice.formant_scale)
    }

    /// The formants the tract currently holds (for pauses and aspiration).
    fn held(&self) -> Formants {
        self.segs.last().map_or_else(|| self.scaled(SCHWA), |s| s.f_end)
    }

    fn push(&mut self, mut seg: Seg) {
        seg.f = self.scaled(seg.f);
        seg.f_end = self.scaled(seg.f_end);
        seg.fric_f *= self.voice.formant_scale.sqrt();
        self.segs.push(seg);
    }

    fn seg(kind: Kind, ms_len: u32, f: Formants) -> Seg {
        Seg {
            len: ms_len,
            kind,
            voice: 0.0,
            asp: 0.0,
            fric: 0.0,
            fric_f: 4000.0,
            fric_bw: 3000.0,
            f,
            f_end: f,
            pitch: 1.0,
        }
    }

    fn vowel(&mut self, f: Formants, f_end: Formants, ms: f32, amp: f32) {
        let accent = !self.word_accented && self.word_len >= 3;
        self.word_accented = true;
        let ms = if accent { ms * 1.2 } else { ms };
        let mut s = Self::seg(Kind::Vowel { accent }, self.samples(ms), f);
        s.f_end = f_end;
        s.voice = amp;
        self.push(s);
    }

    fn sonorant(&mut self, f: Formants, ms: f32, amp: f32) {
        let mut s = Self::seg(Kind::Consonant, self.samples(ms), f);
        s.voice = amp;
        self.push(s);
    }

    fn fricative(&mut self, ms: f32, voice: f32, fric: f32, fric_f: f32, fric_bw: f32, locus: Formants) {
        let mut s = Self::seg(Kind::Consonant, self.samples(ms), locus);
        s.voice = voice;
        s.fric = fric;
        s.fric_f = fric_f;
        s.fric_bw = fric_bw;
        self.push(s);
    }

    /// `h`: breath noise through the formants of what follows.
    fn aspirate(&mut self, next: Formants, ms: f32) {
        let mut s = Self::seg(Kind::Consonant, self.samples(ms), next);
        s.asp = 0.5;
        self.push(s);
    }

    /// Closure, burst, and (voiceless) aspiration.
    fn plosive(&mut self, voiced: bool, place: (f32, f32, Formants), scale: f32) {
        let (burst_f, burst_bw, locus) = place;
        let mut closure = Self::seg(Kind::Consonant, self.samples(if voiced { 35.0 } else { 45.0 } * scale), locus);
        // A voiced closure keeps a faint low "voice bar".
        closure.voice = if voiced { 0.12 } else { 0.0 };
        closure.f = [250.0, locus[1], locus[2]];
        closure.f_end = closure.f;
        self.push(closure);
        let mut burst = Self::seg(Kind::Consonant, self.samples(10.0), locus);
        burst.fric = if voiced { 0.5 } else { 0.8 };
        burst.fric_f = burst_f;
        burst.fric_bw = burst_bw;
        burst.voice = if voiced { 0.25 } else { 0.0 };
        self.push(burst);
        if !voiced {
            let mut asp = Self::seg(Kind::Consonant, self.samples(28.0), locus);
            asp.asp = 0.35;
            self.push(asp);
        }
    }

    fn gap(&mut self) {
        if matches!(self.segs.last(), Some(s) if matches!(s.kind, Kind::Vowel { .. } | Kind::Consonant)) {
            let s = Seg { f: self.held(), f_end: self.held(), ..Self::seg(Kind::Gap, self.samples(35.0), [0.0; 3]) };
            self.segs.push(s);
        }
    }

    fn pause(&mut self, ms: f32, terminal: Option<Terminal>) {
        let len = self.samples(ms);
        match self.segs.last_mut() {
            None => return,
            // Runs of punctuation ("?!", "...") make one pause, as long as the longest.
            Some(last) if last.kind == Kind::Pause => last.len = last.len.max(len),
            Some(last) if last.kind == Kind::Gap => {
                last.kind = Kind::Pause;
                last.len = len;
            }
            Some(_) => {
                let held = self.held();
                self.segs.push(Seg { f: held, f_end: held, ..Self::seg(Kind::Pause, len, [0.0; 3]) });
            }
        }
        if let Some(t) = terminal {
            self.close_phrase(t);
        }
    }

    fn close_phrase(&mut self, terminal: Terminal) {
        // The phrase is everything since the last one, minus the trailing pause.
        let mut end = self.segs.len();
        while end > self.phrase_start && matches!(self.segs[end - 1].kind, Kind::Pause | Kind::Gap) {
            end -= 1;
        }
        if end > self.phrase_start {
            self.phrases.push((self.phrase_start, end, terminal));
        } else if let Some(last) = self.phrases.last_mut() {
            // "?" after "!" or a comma: the stronger ending wins.
            if terminal != Terminal::Comma {
                last.2 = terminal;
            }
        }
        self.phrase_start = self.segs.len();
    }

    fn start_word(&mut self, chars: &[char], i: usize) {
        self.word_len = chars[i..].iter().take_while(|c| c.is_ascii_lowercase()).count();
        self.word_accented = false;
    }

    /// Plans one letter (or digraph) at `i`; returns how many characters it used.
    fn letter(&mut self, chars: &[char], i: usize) -> usize {
        let c = chars[i];
        let at = |k: usize| chars.get(i + k).copied().unwrap_or(' ');
        let (next, prev) = (at(1), if i > 0 { chars[i - 1] } else { ' ' });
        let word_end = !next.is_ascii_lowercase();
        // A doubled consonant is one, slightly longer, sound.
        let (used, len) = if next == c && !is_vowel(c) { (2, 1.2) } else { (1, 1.0) };
        match c {
            'a' | 'e' | 'i' | 'o' | 'u' => return self.vowel_letter(c, next, prev, word_end),
            'y' if !prev.is_ascii_lowercase() && is_vowel(next) => self.sonorant([280.0, 2250.0, 2950.0], 50.0, 0.55),
            'y' => self.vowel(IY, IY, 85.0, 1.0),
            'b' => self.plosive(true, LABIAL, len),
            'p' if next == 'h' => {
                self.fricative(80.0, 0.0, 0.3, 6000.0, 6000.0, LABIAL.2);
                return 2;
            }
            'p' => self.plosive(false, LABIAL, len),
            'd' => self.plosive(true, ALVEOLAR, len),
            't' if next == 'h' => {
                // Mostly the voiced "th" of the, this, there.
                self.fricative(65.0, 0.3, 0.18, 6000.0, 5000.0, ALVEOLAR.2);
                return 2;
            }
            't' => self.plosive(false, ALVEOLAR, len),
            'g' if next == 'h' => {
                // Silent after a vowel (night, though), else a g.
                if !is_vowel(prev) {
                    self.plosive(true, VELAR, 1.0);
                }
                return 2;
            }
            'g' => self.plosive(true, VELAR, len),
            'k' | 'q' => self.plosive(false, VELAR, len),
            'c' if next == 'k' => {
                self.plosive(false, VELAR, 1.0);
                return 2;
            }
            'c' if next == 'h' => {
                self.plosive(false, ALVEOLAR, 0.6);
                self.fricative(80.0, 0.0, 0.55, 3000.0, 1400.0, [350.0, 1900.0, 2500.0]);
                return 2;
            }
            'c' if matches!(next, 'e' | 'i' | 'y') => self.fricative(85.0, 0.0, 0.55, 5800.0, 2200.0, ALVEOLAR.2),
            'c' => self.plosive(false, VELAR, len),
            'x' => {
                self.plosive(false, VELAR, 0.8);
                self.fricative(75.0, 0.0, 0.55, 5800.0, 2200.0, ALVEOLAR.2);
            }
            'j' => {
                self.plosive(true, ALVEOLAR, 0.6);
                self.fricative(60.0, 0.35, 0.3, 2800.0, 1400.0, [350.0, 1900.0, 2500.0]);
            }
            's' if next == 'h' => {
                self.fricative(95.0, 0.0, 0.6, 3000.0, 1400.0, [350.0, 1900.0, 2500.0]);
                return 2;
            }
            's' => self.fricative(85.0 * len, 0.0, 0.55, 5800.0, 2200.0, ALVEOLAR.2),
            'z' => self.fricative(75.0 * len, 0.35, 0.3, 5200.0, 2200.0, ALVEOLAR.2),
            'f' => self.fricative(80.0 * len, 0.0, 0.3, 6000.0, 6000.0, LABIAL.2),
            'v' => self.fricative(60.0 * len, 0.45, 0.12, 5000.0, 5000.0, LABIAL.2),
            'h' => {
                let f = if is_vowel(next) { vowel_formants(next) } else { SCHWA };
                self.aspirate(f, if is_vowel(next) { 60.0 } else { 30.0 });
            }
            'w' if next == 'h' => {
                self.sonorant([300.0, 650.0, 2200.0], 60.0, 0.5);
                return 2;
            }
            'w' => self.sonorant([300.0, 650.0, 2200.0], 55.0, 0.55),
            'l' => self.sonorant([360.0, 1050.0, 2700.0], 65.0 * len, 0.6),
            'r' => self.sonorant([420.0, 1250.0, 1650.0], 65.0 * len, 0.6),
            'm' => self.sonorant([270.0, 1100.0, 2300.0], 70.0 * len, 0.45),
            'n' if next == 'g' => {
                self.sonorant([270.0, 2050.0, 2600.0], 75.0, 0.45);
                return 2;
            }
            'n' => self.sonorant([270.0, 1650.0, 2600.0], 65.0 * len, 0.45),
            _ => return 1,
        }
        used
    }

    fn vowel_letter(&mut self, c: char, next: char, prev: char, word_end: bool) -> usize {
        // Common vowel digraphs are one long vowel or a diphthong.
        let pair = match (c, next) {
            ('e', 'e') | ('e', 'a') | ('i', 'e') => Some((IY, IY)),
            ('o', 'o') | ('u', 'e') | ('u', 'i') => Some((UW, UW)),
            ('o', 'u') | ('o', 'w') => Some((A, UW)),
            ('a', 'i') | ('a', 'y') | ('e', 'i') | ('e', 'y') => Some((E, IY)),
            ('o', 'i') | ('o', 'y') => Some((O, IY)),
            ('a', 'u') | ('a', 'w') => Some((AO, AO)),
            ('o', 'a') => Some((O, U)),
            _ => None,
        };
        if let Some((from, to)) = pair {
            self.vowel(from, to, 140.0, 1.0);
            return 2;
        }
        if c == 'e' && word_end && self.word_len >= 4 && !is_vowel(prev) {
            // Silent final e: a faint, short schwa.
            self.vowel(SCHWA, SCHWA, 45.0, 0.35);
            return 1;
        }
        let f = vowel_formants(c);
        self.vowel(f, f, 90.0, 1.0);
        1
    }

    fn run(mut self, chars: &[char]) -> Plan {
        // A short lead-in so the first sound does not start right at the fade.
        let lead = self.samples(15.0);
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_ascii_lowercase() {
                if i == 0 || !chars[i - 1].is_ascii_lowercase() {
                    self.start_word(chars, i);
                }
                i += self.letter(chars, i);
                continue;
            }
            match c {
                ' ' => self.gap(),
                ',' | ';' | ':' => self.pause(150.0, Some(Terminal::Comma)),
                '\n' => self.pause(200.0, Some(Terminal::Comma)),
                '-' => self.pause(100.0, None),
                '.' => self.pause(300.0, Some(Terminal::Period)),
                '!' => self.pause(300.0, Some(Terminal::Exclaim)),
                '?' => self.pause(300.0, Some(Terminal::Question)),
                _ => {}
            }
            i += 1;
        }
        // Trailing pauses shrink to a short tail; an unfinished last phrase ends like a statement.
        while matches!(self.segs.last(), Some(s) if matches!(s.kind, Kind::Pause | Kind::Gap)) {
            self.segs.pop();
        }
        if self.segs.is_empty() {
            return Plan { segs: Vec::new(), total: 0 };
        }
        if self.phrase_start < self.segs.len() {
            self.close_phrase(Terminal::Period);
        }
        self.phrases.retain(|&(a, b, _)| b <= self.segs.len() && a < b);
        self.intonation();
        let held = self.held();
        let first = self.segs[0].f;
        let first_pitch = self.segs[0].pitch;
        let tail = self.samples(60.0);
        let pitch_end = self.segs.last().map_or(1.0, |s| s.pitch);
        self.segs
            .insert(0, Seg { f: first, f_end: first, pitch: first_pitch, ..Self::seg(Kind::Pause, lead, [0.0; 3]) });
        self.segs.push(Seg { f: held, f_end: held, pitch: pitch_end, ..Self::seg(Kind::Pause, tail, [0.0; 3]) });
        let total = self.segs.iter().map(|s| s.len as usize).sum();
        Plan { segs: self.segs, total }
    }

    /// Phrase-final lengthening and the pitch targets: declination over each phrase, accents on
    /// the first vowel of longer words, and the phrase ending (fall, continuation rise, question
    /// rise).
    fn intonation(&mut self) {
        let phrases = std::mem::take(&mut self.phrases);
        for &(a, b, terminal) in &phrases {
            let vowels: Vec<usize> = (a..b).filter(|&k| matches!(self.segs[k].kind, Kind::Vowel { .. })).collect();
            if let Some(&last) = vowels.last() {
                let s = &mut self.segs[last];
                s.len = (s.len as f32 * 1.3).round() as u32;
            }
            let total: u32 = self.segs[a..b].iter().map(|s| s.len).sum();
            let (top, fall) = match terminal {
                Terminal::Exclaim => (1.15, 0.28),
                Terminal::Question => (1.0, 0.08),
                Terminal::Comma => (1.04, 0.1),
                Terminal::Period => (1.06, 0.2),
            };
            let mut t = 0u32;
            for k in a..b {
                let s = &mut self.segs[k];
                let p = (t as f32 + s.len as f32 * 0.5) / total.max(1) as f32;
                t += s.len;
                s.pitch = top - fall * p;
                if matches!(s.kind, Kind::Vowel { accent: true }) {
                    s.pitch += 0.08;
                }
            }
            let n = vowels.len();
            let bump = |segs: &mut [Seg], from_end: usize, by: f32| {
                if let Some(&k) = n.checked_sub(from_end + 1).and_then(|j| vowels.get(j)) {
                    segs[k].pitch += by;
                }
            };
            match terminal {
                Terminal::Question => {
                    bump(&mut self.segs, 0, 0.35);
                    bump(&mut self.segs, 1, 0.08);
                }
                Terminal::Period => bump(&mut self.segs, 0, -0.06),
                Terminal::Comma => bump(&mut self.segs, 0, 0.06),
                Terminal::Exclaim => bump(&mut self.segs, 0, -0.04),
            }
            // Pauses and gaps keep the pitch they follow, so nothing jumps while silent.
            for k in a + 1..b {
                if matches!(self.segs[k].kind, Kind::Gap | Kind::Pause) {
                    self.segs[k].pitch = self.segs[k - 1].pitch;
                }
            }
        }
        // Between phrases the pitch resets during the pause, toward the next phrase's start.
        for k in 0..self.segs.len() {
            if self.segs[k].kind == Kind::Pause {
                self.segs[k].pitch = self.segs.get(k + 1).map_or(self.segs[k].pitch, |s| s.pitch);
            }
        }
        self.phrases = phrases;
    }
}

fn vowel_formants(c: char) -> Formants {
    match c {
        'a' => A,
        'e' => E,
        'i' => I,
        'o' => O,
        'u' => U,
        _ => SCHWA,
    }
}

// ---------------------------------------------------------------------------------------------
// Segments to samples

/// Klatt's two-pole resonator with unity gain at DC: `y = a x + b y1 + c y2`.
#[derive(Clone, Copy, Default)]
struct Resonator {
    a: f32,
    b: f32,
    c: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn set(&mut self, freq: f32, bw: f32) {
        let r = (-PI * bw / SR).exp();
        self.c = -r * r;
        self.b = 2.0 * r * (2.0 * PI * freq.min(0.45 * SR) / SR).cos();
        self.a = 1.0 - self.b - self.c;
    }

    fn process(&mut self, x: f32) -> f32 {
        let y = self.a * x + self.b * self.y1 + self.c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Band-pass with 0 dB peak gain (RBJ cookbook), for frication noise.
#[derive(Clone, Copy, Default)]
struct BandPass {
    b0: f32,
    a1: f32,
    a2: f32,
    x1: f32,
    x2: f32,
    y1: f32,
    y2: f32,
}

impl BandPass {
    fn set(&mut self, freq: f32, bw: f32) {
        let w0 = 2.0 * PI * freq.clamp(100.0, 0.45 * SR) / SR;
        let q = (freq / bw.max(1.0)).max(0.2);
        let alpha = w0.sin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        self.b0 = alpha / a0;
        self.a1 = -2.0 * w0.cos() / a0;
        self.a2 = (1.0 - alpha) / a0;
    }

    fn process(&mut self, x: f32) -> f32 {
        let y = self.b0 * (x - self.x2) - self.a1 * self.y1 - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// Rosenberg glottal flow over one period (`t` in 0..1): opening, closing, closed.
fn rosenberg(t: f32, open_quotient: f32) -> f32 {
    let opening = open_quotient * 0.66;
    let closing = open_quotient * 0.34;
    if t < opening {
        0.5 - 0.5 * (PI * t / opening).cos()
    } else if t < opening + closing {
        (0.5 * PI * (t - opening) / closing).cos()
    } else {
        0.0
    }
}

/// One-pole smoothing coefficient for time constant `ms` when stepped every `every` samples.
fn smoothing(ms: f32, every: usize) -> f32 {
    1.0 - (-(every as f32) / (ms * SR / 1000.0)).exp()
}

/// Gains of the voiced path and the frication path (set so that vowels dominate and /s/ sits
/// roughly 10 dB below them).
const VOICED_GAIN: f32 = 1.0;
const FRICATION_GAIN: f32 = 0.35;
const ASPIRATION_GAIN: f32 = 0.3;

struct Renderer<'v> {
    voice: &'v Voice,
    rng: fastrand::Rng,
    /// Cheap second noise source (xorshift), so frication and aspiration are independent.
    noise2: u32,
    phase: f32,
    flow_prev: f32,
    /// Per-period pitch factor (jitter) and amplitude factor (shimmer).
    jitter: f32,
    shimmer: f32,
    /// Slow random pitch wander.
    drift: f32,
    drift_target: f32,
    vibrato_phase: f32,
    vibrato: f32,
    pitch: f32,
    voice_amp: f32,
    asp: f32,
    fric: f32,
    formants: Formants,
    fric_f: f32,
    fric_bw: f32,
    tilt: f32,
    tilt_coef: f32,
    cascade: [Resonator; 5],
    bandwidths: [f32; 3],
    bandpass: BandPass,
    dc_x: f32,
    dc_y: f32,
}

impl<'v> Renderer<'v> {
    fn new(voice: &'v Voice, seed: u64) -> Renderer<'v> {
        let mut rng = fastrand::Rng::with_seed(seed ^ voice.id.rotate_left(17));
        let noise2 = rng.u32(1..);
        let widen = 1.0 + 0.6 * voice.breathiness;
        let mut cascade = [Resonator::default(); 5];
        // F4 and F5 stay put; they only shape the top of the spectrum (presence, brightness).
        cascade[3].set(3500.0 * voice.formant_scale, 250.0 * widen);
        cascade[4].set(4500.0 * voice.formant_scale, 300.0 * widen);
        Renderer {
            voice,
            rng,
            noise2,
            phase: 0.0,
            flow_prev: 0.0,
            jitter: 1.0,
            shimmer: 1.0,
            drift: 0.0,
            drift_target: 0.0,
            vibrato_phase: 0.0,
            vibrato: 0.0,
            pitch: 1.0,
            voice_amp: 0.0,
            asp: 0.0,
            fric: 0.0,
            formants: [0.0; 3],
            fric_f: 4000.0,
            fric_bw: 3000.0,
            tilt: 0.0,
            // Breathier voices are also softer (more high-frequency roll-off).
            tilt_coef: 0.75 - 0.4 * voice.breathiness,
            cascade,
            bandwidths: [75.0 * widen, 95.0 * widen, 130.0 * widen],
            bandpass: BandPass::default(),
            dc_x: 0.0,
            dc_y: 0.0,
        }
    }

    fn white(&mut self) -> f32 {
        self.rng.f32() * 2.0 - 1.0
    }

    fn white2(&mut self) -> f32 {
        let mut x = self.noise2;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.noise2 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }

    fn render(mut self, segs: &[Seg], out: &mut [f32]) {
        let Some(first) = segs.first() else {
            return;
        };
        self.formants = first.f;
        self.pitch = first.pitch;
        self.fric_f = first.fric_f;
        let k_formant = smoothing(18.0, BLOCK);
        let k_drift = smoothing(300.0, BLOCK);
        let k_pitch = smoothing(45.0, 1);
        let k_voice = smoothing(6.0, 1);
        let k_noise = smoothing(2.5, 1);
        let oq = self.voice.open_quotient;
        let breath = self.voice.breathiness;
        let f0 = self.voice.f0;
        let mut rest = out;
        let mut countdown = 0;
        for seg in segs {
            let len = (seg.len as usize).min(rest.len());
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            for (j, o) in head.iter_mut().enumerate() {
                if countdown == 0 {
                    countdown = BLOCK;
                    let progress = j as f32 / len as f32;
                    for k in 0..3 {
                        let target = seg.f[k] + (seg.f_end[k] - seg.f[k]) * progress;
                        self.formants[k] += (target - self.formants[k]) * k_formant;
                        self.cascade[k].set(self.formants[k], self.bandwidths[k]);
                    }
                    self.fric_f += (seg.fric_f - self.fric_f) * k_formant;
                    self.fric_bw += (seg.fric_bw - self.fric_bw) * k_formant;
                    self.bandpass.set(self.fric_f, self.fric_bw);
                    self.drift += (self.drift_target - self.drift) * k_drift;
                    self.vibrato_phase = (self.vibrato_phase + 5.3 * BLOCK as f32 / SR).fract();
                    self.vibrato = 0.004 * (2.0 * PI * self.vibrato_phase).sin();
                }
                countdown -= 1;

                self.pitch += (seg.pitch - self.pitch) * k_pitch;
                self.voice_amp += (seg.voice - self.voice_amp) * k_voice;
                self.asp += (seg.asp - self.asp) * k_noise;
                self.fric += (seg.fric - self.fric) * k_noise;

                // Glottal source.
                let hz = f0 * self.pitch * (1.0 + self.drift + self.vibrato) * self.jitter;
                self.phase += hz / SR;
                if self.phase >= 1.0 {
                    self.phase -= 1.0;
                    let r = self.voice.roughness;
                    self.jitter = 1.0 + r * (self.rng.f32() * 2.0 - 1.0);
                    self.shimmer = 1.0 + 0.08 * (self.rng.f32() - 0.5);
                    if self.rng.f32() < 0.1 {
                        self.drift_target = 0.025 * (self.rng.f32() * 2.0 - 1.0);
                    }
                }
                let flow = rosenberg(self.phase, oq);
                // Flow derivative (with lip radiation), scaled so loudness barely depends on pitch.
                let source = (flow - self.flow_prev) * (SR / hz.max(20.0)) * 0.1;
                self.flow_prev = flow;
                self.tilt += (source - self.tilt) * self.tilt_coef;

                let noise = self.white();
                let excitation = self.tilt * self.voice_amp * self.shimmer
                    + noise * ASPIRATION_GAIN * (self.asp + breath * self.voice_amp * (0.25 + flow));
                let mut y = excitation;
                for r in &mut self.cascade {
                    y = r.process(y);
                }
                let hiss = self.white2();
                let frication = self.bandpass.process(hiss) * self.fric;
                let mixed = y * VOICED_GAIN + frication * FRICATION_GAIN;

                // DC blocker (~30 Hz high-pass).
                let hp = mixed - self.dc_x + 0.992 * self.dc_y;
                self.dc_x = mixed;
                self.dc_y = hp;
                *o = hp;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "Hello there, traveller! Welcome to our village.";

    fn rms(x: &[i16]) -> f32 {
        (x.iter().map(|&v| f32::from(v).powi(2)).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// Median f0 over voiced 40 ms frames, by normalized autocorrelation (with octave-error
    /// correction toward shorter lags).
    fn estimate_f0(x: &[i16]) -> f32 {
        let x: Vec<f32> = x.iter().map(|&v| f32::from(v)).collect();
        let (frame, hop) = (960, 480);
        let (min_lag, max_lag) = (48, 400); // 500 Hz .. 60 Hz
        let frames: Vec<&[f32]> = x.windows(frame).step_by(hop).collect();
        let energy = |f: &[f32]| f.iter().map(|v| v * v).sum::<f32>();
        let loudest = frames.iter().map(|f| energy(f)).fold(0.0, f32::max);
        let mut estimates = Vec::new();
        for f in frames.iter().filter(|f| energy(f) > 0.2 * loudest) {
            let r = |lag: usize| {
                let m = frame - lag;
                let c: f32 = f[..m].iter().zip(&f[lag..]).map(|(a, b)| a * b).sum();
                c / (energy(&f[..m]) * energy(&f[lag..])).sqrt().max(1e-9)
            };
            let corr: Vec<f32> = (0..=max_lag).map(|l| if l < min_lag { 0.0 } else { r(l) }).collect();
            let mut best = (min_lag..=max_lag).max_by(|&a, &b| corr[a].total_cmp(&corr[b])).expect("lags");
            if corr[best] < 0.5 {
                continue;
            }
            for div in [3, 2] {
                let cand = best / div;
                if cand >= min_lag {
                    let local = (cand - 1..=cand + 1).max_by(|&a, &b| corr[a].total_cmp(&corr[b])).expect("lags");
                    if corr[local] > 0.85 * corr[best] {
                        best = local;
                        break;
                    }
                }
            }
            estimates.push(SR / best as f32);
        }
        assert!(estimates.len() >= 10, "only {} voiced frames", estimates.len());
        estimates.sort_by(f32::total_cmp);
        estimates[estimates.len() / 2]
    }

    #[test]
    fn deterministic_for_voice_text_and_seed() {
        let voice = Voice::for_name("Kore");
        let a = voice.synthesize(HELLO, 7);
        assert_eq!(a, voice.synthesize(HELLO, 7));
        assert_eq!(a, Voice::for_name("kORE").synthesize(HELLO, 7));
        let b = voice.synthesize(HELLO, 8);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        assert_ne!(a, Voice::for_name("Puck").synthesize(HELLO, 7));
    }

    #[test]
    fn length_follows_text() {
        let voice = Voice::for_name("Puck");
        let sentence = "Could you please open the north gate?"; // 37 characters
        let forty = "The north gate opens at dawn, traveller."; // 40 characters
        assert_eq!(forty.chars().count(), 40);
        for text in [sentence, forty] {
            let secs = voice.synthesize(text, 1).len() as f32 / SR;
            assert!((2.0..=8.0).contains(&secs), "{text}: {secs} s");
            let rate = text.chars().count() as f32 / secs;
            assert!((10.0..=17.0).contains(&rate), "{text}: {rate} chars/s");
        }
        let short = voice.synthesize("Hi.", 1).len();
        let long = voice.synthesize(&format!("{forty} {forty}"), 1).len();
        assert!(short < voice.synthesize(forty, 1).len());
        assert!(long > voice.synthesize(forty, 1).len() * 17 / 10);
        for v in ["Charon", "Leda", "Someone Else"] {
            let voice = Voice::for_name(v);
            for text in [sentence, forty, "Hi.", "", "...", "Ω 42 — ça va?"] {
                let samples = voice.synthesize(text, 3).len();
                assert_eq!(voice.duration_of(text), Duration::from_secs_f64(samples as f64 / 24_000.0), "{v}: {text}");
            }
        }
        assert!(voice.synthesize("", 1).is_empty());
        assert!(voice.synthesize(" ,.?! ", 1).is_empty());
    }

    #[test]
    fn voices_differ_in_measured_f0() {
        let text = "Well met, stranger. The road north is long, but the inn is warm and the ale is good.";
        let measured = |name: &str| {
            let voice = Voice::for_name(name);
            let f0 = estimate_f0(&voice.synthesize(text, 11));
            let ratio = f0 / voice.f0_hz();
            assert!((0.85..=1.2).contains(&ratio), "{name}: measured {f0} Hz, nominal {}", voice.f0_hz());
            f0
        };
        let (kore, puck, charon) = (measured("Kore"), measured("Puck"), measured("Charon"));
        assert!(kore >= puck * 1.2, "Kore {kore} Hz vs Puck {puck} Hz");
        assert!(kore >= charon * 1.2, "Kore {kore} Hz vs Charon {charon} Hz");
        assert!(puck >= charon * 1.2, "Puck {puck} Hz vs Charon {charon} Hz");
    }

    #[test]
    fn level_is_minus_6_dbfs_without_clipping_or_clicks() {
        for name in ["Kore", "Charon", "Enceladus", "Leda", "whoever"] {
            let x = Voice::for_name(name).synthesize(HELLO, 5);
            let peak = x.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            assert!((16_000..=16_400).contains(&peak), "{name}: peak {peak}");
            assert!(rms(&x) > 2_000.0, "{name}: rms {}", rms(&x));
            assert!(x[0].unsigned_abs() < 100 && x[x.len() - 1].unsigned_abs() < 100);
            // No sample-to-sample jump anywhere near full scale.
            let jump = x.windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).unsigned_abs()).max().unwrap_or(0);
            assert!(jump < 16_000, "{name}: jump {jump}");
        }
    }

    #[test]
    fn prebuilt_and_unknown_voices() {
        for p in &PRESETS {
            let v = Voice::for_name(&p.name.to_uppercase());
            assert_eq!(v.f0_hz(), p.f0);
            assert!((85.0..=260.0).contains(&v.f0_hz()));
            assert!((0.85..=1.2).contains(&p.formant_scale));
        }
        let kore = Voice::for_name("Kore");
        assert_eq!(kore.name(), "Kore");
        assert!(kore.f0_hz() >= 1.2 * Voice::for_name("Puck").f0_hz());
        assert!(kore.f0_hz() >= 1.2 * Voice::for_name("Charon").f0_hz());
        let a = Voice::for_name("Gandalf");
        assert_eq!(a.f0_hz(), Voice::for_name("gandalf").f0_hz());
        assert_eq!(a.synthesize("Hi.", 1), Voice::for_name("GANDALF").synthesize("Hi.", 1));
        assert_eq!(a.name(), "Gandalf");
        for name in ["Gandalf", "", "x", "A very long custom voice name", "Ñandú"] {
            let v = Voice::for_name(name);
            assert!((85.0..=260.0).contains(&v.f0_hz()), "{name}");
            assert!((0.85..=1.2).contains(&v.formant_scale), "{name}");
        }
    }

    #[test]
    fn any_text_is_safe() {
        let voice = Voice::for_name("Aoede");
        for text in ["?", "a", "zzzz", "\n\n", "1234567890", "東京へようこそ", "ÀÉÎÕÜ ß", "\u{0}\u{7f}", "!!!???...,,,"]
        {
            let _ = voice.synthesize(text, u64::MAX);
        }
        let huge = "abc ".repeat(MAX_TEXT_CHARS);
        assert_eq!(voice.duration_of(&huge), voice.duration_of(&huge[..MAX_TEXT_CHARS]));
    }

    #[test]
    fn fast_enough() {
        let voice = Voice::for_name("Zephyr");
        let text = "Greetings, traveller. The road to the north gate is long, and the night is cold. Rest here.";
        let start = std::time::Instant::now();
        let x = voice.synthesize(text, 1);
        let took = start.elapsed();
        let secs = x.len() as f32 / SR;
        assert!(secs > 4.0, "{secs}");
        // Generous bound: unoptimized builds on a loaded CI machine.
        assert!(took.as_secs_f32() < secs / 10.0, "{took:?} for {secs} s");
    }

    #[test]
    fn the_vad_hears_it_as_speech() {
        use crate::vad::{Vad, VadConfig, VadEvent};
        for name in ["Kore", "Charon"] {
            let mut x = Voice::for_name(name).synthesize("Welcome, traveller. What brings you here?", 2);
            x.resize(x.len() + 24_000, 0);
            let mut vad = Vad::new(VadConfig::default(), VOICE_SAMPLE_RATE);
            let mut events = Vec::new();
            vad.push(&x, &mut events);
            assert!(matches!(events.first(), Some(VadEvent::SpeechStart { at }) if *at < 4_800), "{name}: {events:?}");
            assert!(matches!(events.last(), Some(VadEvent::SpeechEnd { .. })), "{name}: {events:?}");
        }
    }

    #[test]
    #[ignore = "writes WAV files for listening"]
    fn write_demo_wavs() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: VOICE_SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let dir = std::env::temp_dir();
        for name in ["Kore", "Puck", "Charon", "Leda", "Enceladus"] {
            let x = Voice::for_name(name)
                .synthesize("Hello there, traveller! Welcome to our village. Would you like to rest at the inn?", 1);
            let path = dir.join(format!("voice-{name}.wav"));
            let mut w = hound::WavWriter::create(&path, spec).expect("create");
            for s in x {
                w.write_sample(s).expect("write");
            }
            w.finalize().expect("finalize");
            eprintln!("{}", path.display());
        }
    }
}
