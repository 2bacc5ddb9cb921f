//! One model turn on its way out: the items still to send and the playback clock that paces
//! them.
//!
//! Audio is cut into fixed chunks (40 ms by default) with `outputTranscription` fragments of
//! three words interleaved, each sent right before the chunk where its words begin. The
//! playback clock `play_end` is the instant the client will have played everything sent so
//! far, assuming real-time playback scaled by `pace`; a chunk is sent when less than `lead`
//! (scaled) is still unplayed. The model counts as speaking until `play_end` has passed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::brain::ToolOutcome;

/// Pseudo-duration of a TEXT-modality fragment (the model's "typing" speed).
const TEXT_FRAGMENT_TIME: Duration = Duration::from_millis(60);
/// Words per transcript or text fragment.
const WORDS_PER_FRAGMENT: usize = 3;

/// Something to send.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// A chunk of 24 kHz PCM.
    Audio(Vec<i16>),
    /// An `outputTranscription` fragment.
    Transcript {
        /// The words.
        text: String,
        /// The turn's last fragment.
        finished: bool,
    },
    /// A TEXT-modality `modelTurn.parts[].text` fragment.
    Text(String),
}

/// Where a turn is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sending items.
    Streaming,
    /// Holding for the responses of BLOCKING calls.
    AwaitingTools,
    /// `generationComplete` sent; waiting for playback to end before `turnComplete`.
    Finishing,
}

/// A model turn in progress.
#[derive(Debug)]
pub(crate) struct Generation {
    /// The turn's number on this connection (1-based).
    pub turn: u32,
    pub phase: Phase,
    items: VecDeque<Item>,
    /// Transcript of what was actually sent (history keeps only this).
    pub sent_text: String,
    /// Audio or text chunks sent.
    pub chunks_sent: u32,
    /// Audio samples sent.
    pub samples_sent: u64,
    /// When the client will have played everything sent.
    pub play_end: Instant,
    /// Ids of the calls this turn made.
    pub calls: Vec<String>,
    /// Results of this turn's BLOCKING calls, as they arrive.
    pub results: Vec<(String, ToolOutcome)>,
    /// What to say once the BLOCKING calls are answered (a scripted reply), if not the results.
    pub after_tools: Option<String>,
    /// Seconds of user audio that prompted the turn (for `usageMetadata`).
    pub prompt_audio: f64,
    /// When the turn began (the user's turn had just ended).
    pub started: Instant,
    /// Whether the first audio (or text) chunk has gone out.
    pub first_out: bool,
}

impl Generation {
    pub fn new(turn: u32, now: Instant, prompt_audio: f64) -> Generation {
        Generation {
            turn,
            phase: Phase::Streaming,
            items: VecDeque::new(),
            sent_text: String::new(),
            chunks_sent: 0,
            samples_sent: 0,
            play_end: now,
            calls: Vec::new(),
            results: Vec::new(),
            after_tools: None,
            prompt_audio,
            started: now,
            first_out: false,
        }
    }

    /// Queues spoken audio with transcript fragments (`transcripts`), or text fragments.
    pub fn queue_audio(&mut self, text: &str, samples: &[i16], chunk: usize, transcripts: bool) {
        let chunk = chunk.max(1);
        let mut frags: VecDeque<(usize, &str)> = VecDeque::new();
        if transcripts {
            for (start, frag) in fragments(text) {
                // Where the fragment's words begin in the audio, proportionally to the text.
                let pos = (start as u128 * samples.len() as u128 / text.len().max(1) as u128) as usize;
                frags.push_back((pos / chunk, frag));
            }
        }
        let last = frags.len();
        let mut n = 0;
        let mut push_frags = |items: &mut VecDeque<Item>, upto: usize, frags: &mut VecDeque<(usize, &str)>| {
            while frags.front().is_some_and(|(c, _)| *c <= upto) {
                if let Some((_, f)) = frags.pop_front() {
                    n += 1;
                    items.push_back(Item::Transcript { text: f.to_owned(), finished: n == last });
                }
            }
        };
        for (i, c) in samples.chunks(chunk).enumerate() {
            push_frags(&mut self.items, i, &mut frags);
            self.items.push_back(Item::Audio(c.to_vec()));
        }
        push_frags(&mut self.items, usize::MAX, &mut frags);
    }

    /// Queues TEXT-modality fragments.
    pub fn queue_text(&mut self, text: &str) {
        self.items.extend(fragments(text).into_iter().map(|(_, f)| Item::Text(f.to_owned())));
    }

    /// Whether everything queued has been sent.
    pub fn drained(&self) -> bool {
        self.items.is_empty()
    }

    /// When the next item may be sent: once less than `lead` is left unplayed.
    pub fn due(&self, lead: Duration) -> Instant {
        self.play_end.checked_sub(lead).unwrap_or(self.play_end)
    }

    /// Takes the next item, advancing the playback clock by its duration scaled by `pace`.
    pub fn pop(&mut self, now: Instant, pace: f64, rate: u32) -> Option<Item> {
        let item = self.items.pop_front()?;
        let played = match &item {
            Item::Audio(c) => {
                self.chunks_sent += 1;
                self.samples_sent += c.len() as u64;
                Duration::from_secs_f64(c.len() as f64 / f64::from(rate.max(1)))
            }
            Item::Text(t) => {
                self.chunks_sent += 1;
                self.sent_text.push_str(t);
                TEXT_FRAGMENT_TIME
            }
            Item::Transcript { text, .. } => {
                self.sent_text.push_str(text);
                Duration::ZERO
            }
        };
        if !played.is_zero() {
            let start = self.play_end.max(now);
            self.play_end = start + played.mul_f64(pace.max(0.0));
        }
        Some(item)
    }

    /// Whether the model is still "speaking" at `now` (barge-in applies).
    pub fn speaking(&self, now: Instant) -> bool {
        self.phase != Phase::Finishing || now < self.play_end
    }
}

/// Splits text into fragments of a few words that concatenate back to exactly `text`, with the
/// byte offset where each begins.
pub(crate) fn fragments(text: &str) -> Vec<(usize, &str)> {
    let mut starts = Vec::new();
    let mut in_word = false;
    let mut words = 0;
    for (i, c) in text.char_indices() {
        let word_char = !c.is_whitespace();
        if word_char && !in_word {
            if words % WORDS_PER_FRAGMENT == 0 {
                starts.push(i);
            }
            words += 1;
        }
        in_word = word_char;
    }
    if starts.is_empty() {
        return if text.is_empty() { Vec::new() } else { vec![(0, text)] };
    }
    starts[0] = 0;
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(text.len());
        out.push((s, &text[s..e]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_concatenate() {
        let t = "  Hello there, traveller! I'm Mira. What brings you here?";
        let f = fragments(t);
        assert_eq!(f.iter().map(|(_, s)| *s).collect::<String>(), t);
        assert_eq!(f[0].1, "  Hello there, traveller! ");
        assert!(fragments("").is_empty());
        assert_eq!(fragments("   "), [(0, "   ")]);
    }

    #[test]
    fn interleaving_and_clock() {
        let now = Instant::now();
        let mut g = Generation::new(1, now, 0.0);
        let samples = vec![0i16; 960 * 10];
        g.queue_audio("one two three four five six", &samples, 960, true);
        let kinds: Vec<char> = g
            .items
            .iter()
            .map(|i| match i {
                Item::Audio(_) => 'a',
                Item::Transcript { finished: true, .. } => 'F',
                _ => 't',
            })
            .collect();
        assert_eq!(kinds.iter().collect::<String>(), "taaaaaFaaaaa");
        // Paced at real time with a 200 ms lead: six chunks (240 ms) go at once, then one per 40 ms.
        let lead = Duration::from_millis(200);
        let mut sent = 0;
        while g.due(lead) <= now && g.pop(now, 1.0, 24_000).is_some() {
            sent += 1;
        }
        assert_eq!(sent, 8); // 2 transcripts + 6 chunks
        assert_eq!(g.play_end - now, Duration::from_millis(240));
        assert!(g.speaking(now));
    }
}
