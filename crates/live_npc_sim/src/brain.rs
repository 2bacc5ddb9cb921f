//! The simulated "model": a deterministic, keyword-driven conversational character.
//!
//! The persona comes from the system instruction ("You are Mira, the village blacksmith." →
//! name `Mira`, role `the village blacksmith`). Each user turn is classified into one intent
//! (first match wins, in this order):
//!
//! | intent | triggered by |
//! |---|---|
//! | remember a fact | "my X is Y", "my name's Y", "call me Y", "I am from Y" / "I'm from Y", "I like Y" / "I love Y" |
//! | recall a fact | "what is my X", "what's my X", "do you remember my X", "where am I from", "what do I like" |
//! | who are you | "who are you", "your name", "what are you", "introduce yourself" |
//! | trade | "sell", "buy", "wares", "shop", "trade", "what do you do", "your job", "your work" |
//! | help | "help", "assist", "can you", "could you" |
//! | thanks | "thank", "thanks", "cheers", "grateful" |
//! | goodbye | "bye", "goodbye", "farewell", "see you", "good night" |
//! | greeting | "hello", "hi", "hey", "greetings", "good morning", "good evening", "howdy" |
//! | fallback | anything else |
//!
//! Each intent has several phrasings; which one is said is a pure function of the seed and
//! the turn number, so a session replays identically. Replies are one or two sentences
//! (2–8 s of speech). Facts survive session resumption (they are part of [`Memory`]).

use std::collections::BTreeMap;

/// Who the model plays.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Persona {
    /// The character's name (`Mira`), if the instruction gives one.
    pub name: Option<String>,
    /// The character's role (`the village blacksmith`), if given.
    pub role: Option<String>,
}

/// Words that introduce a role rather than a name after "you are".
const ARTICLES: &[&str] = &["a", "an", "the", "my", "our", "their", "his", "her", "this"];

impl Persona {
    /// Extracts the character from a system instruction.
    ///
    /// ```
    /// use live_npc_sim::brain::Persona;
    /// let p = Persona::from_instruction("You are Mira, the village blacksmith. Be gruff.");
    /// assert_eq!(p.name.as_deref(), Some("Mira"));
    /// assert_eq!(p.role.as_deref(), Some("the village blacksmith"));
    /// let p = Persona::from_instruction("You are a helpful guide.");
    /// assert_eq!((p.name, p.role.as_deref()), (None, Some("a helpful guide")));
    /// ```
    pub fn from_instruction(text: &str) -> Persona {
        let lower = text.to_ascii_lowercase();
        let mut persona = Persona::default();
        for intro in ["you are ", "you're ", "your name is ", "you play ", "act as "] {
            let Some(i) = find_word_start(&lower, intro) else {
                continue;
            };
            let rest = first_clause(&text[i + intro.len()..]);
            let (name, role) = split_name_role(rest);
            persona.name = persona.name.or(name);
            persona.role = persona.role.or(role);
            if persona.name.is_some() && persona.role.is_some() {
                break;
            }
        }
        persona
    }

    /// How the character introduces itself ("Mira, the village blacksmith").
    pub fn introduction(&self) -> String {
        match (&self.name, &self.role) {
            (Some(n), Some(r)) => format!("{n}, {r}"),
            (Some(n), None) => n.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => "a simulated Live model".to_owned(),
        }
    }

    fn role_or_default(&self) -> String {
        self.role.clone().unwrap_or_else(|| "someone who knows this place well".to_owned())
    }
}

/// The index of `needle` in `hay` where it starts a word.
fn find_word_start(hay: &str, needle: &str) -> Option<usize> {
    hay.match_indices(needle)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || !hay[..i].chars().next_back().is_some_and(char::is_alphanumeric))
}

/// Text up to the end of the sentence (`.`, `!`, `?`, `;`, newline).
fn first_clause(text: &str) -> &str {
    let end = text.find(['.', '!', '?', ';', '\n']).unwrap_or(text.len());
    text[..end].trim()
}

/// "Mira, the village blacksmith" → (Mira, the village blacksmith); "a guide" → (None, a guide).
fn split_name_role(clause: &str) -> (Option<String>, Option<String>) {
    let mut name_words = Vec::new();
    let mut rest = clause;
    for word in clause.split_whitespace().take(3) {
        let bare = word.trim_end_matches(',');
        let capitalised = bare.chars().next().is_some_and(char::is_uppercase);
        if !capitalised || ARTICLES.contains(&bare.to_ascii_lowercase().as_str()) {
            break;
        }
        name_words.push(bare);
        rest = rest.trim_start()[word.len()..].trim_start();
        if word.ends_with(',') {
            break;
        }
    }
    let role = rest.trim_start_matches(',').trim();
    let role = role.split(',').next().unwrap_or("").trim();
    let role: Vec<&str> = role.split_whitespace().take(8).collect();
    let name = (!name_words.is_empty()).then(|| name_words.join(" "));
    let role = (!role.is_empty()).then(|| role.join(" "));
    (name, role)
}

/// One turn of the conversation history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryTurn {
    /// `true` for the user, `false` for the model.
    pub user: bool,
    /// What was said (for the model, only what was actually sent).
    pub text: String,
    /// Context tokens the turn takes (text: characters / 4; audio: 25 per second).
    pub tokens: u32,
}

/// Everything the model remembers: restored on session resumption.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Memory {
    /// Facts the user stated (`name` → `Ada`, `from` → `Lisbon`, `like` → `apples`).
    pub facts: BTreeMap<String, String>,
    /// The conversation so far (bounded to the most recent turns).
    pub history: Vec<HistoryTurn>,
    /// Results of tools the model was told about silently.
    pub tool_results: Vec<String>,
    /// User turns answered so far (drives phrasing choice).
    pub turns: u64,
}

/// History turns kept; older ones are forgotten.
const MAX_HISTORY: usize = 200;
/// Characters kept of one history turn.
const MAX_TURN_CHARS: usize = 4096;
/// Characters kept of the whole history (oldest turns are forgotten first).
const MAX_HISTORY_CHARS: usize = 32 * 1024;
/// Facts kept.
const MAX_FACTS: usize = 64;

impl Memory {
    /// Appends a turn (cut to 4096 bytes), forgetting the oldest turns beyond 200 turns or
    /// 32 KiB in all.
    pub fn record(&mut self, user: bool, text: impl Into<String>) {
        let text = text.into();
        let tokens = text_tokens(&text);
        self.record_tokens(user, text, tokens);
    }

    /// [`Memory::record`] with the turn's context tokens given (audio turns count by duration).
    pub fn record_tokens(&mut self, user: bool, text: impl Into<String>, tokens: u32) {
        let mut text = text.into();
        if text.is_empty() {
            return;
        }
        text.truncate(floor_char_boundary(&text, MAX_TURN_CHARS));
        self.history.push(HistoryTurn { user, text, tokens });
        let mut total: usize = self.history.iter().map(|t| t.text.len()).sum();
        let mut excess = self.history.len().saturating_sub(MAX_HISTORY);
        for turn in &self.history[excess..] {
            if total <= MAX_HISTORY_CHARS {
                break;
            }
            total -= turn.text.len();
            excess += 1;
        }
        self.history.drain(..excess.min(self.history.len()));
    }

    /// Context tokens of the history.
    pub fn history_tokens(&self) -> u64 {
        self.history.iter().map(|t| u64::from(t.tokens)).sum()
    }

    /// The sliding window of `contextWindowCompression`: drops the oldest turns until the
    /// history takes at most `keep` tokens, then any model turns at its front (the window starts
    /// with a user turn). Facts stated in dropped turns are forgotten: the facts are rebuilt
    /// from the user turns that remain. Returns how many turns were dropped.
    pub fn slide(&mut self, keep: u64) -> usize {
        let mut total = self.history_tokens();
        let mut drop = 0;
        while drop < self.history.len() && total > keep {
            total -= u64::from(self.history[drop].tokens);
            drop += 1;
        }
        while drop < self.history.len() && !self.history[drop].user {
            drop += 1;
        }
        if drop == 0 {
            return 0;
        }
        self.history.drain(..drop);
        self.facts.clear();
        let stated: Vec<(String, String)> =
            self.history.iter().filter(|t| t.user).filter_map(|t| stated_fact(&t.text)).collect();
        for (key, value) in stated {
            self.remember(key, value);
        }
        drop
    }

    fn remember(&mut self, key: String, value: String) {
        if self.facts.len() >= MAX_FACTS && !self.facts.contains_key(&key) {
            return;
        }
        self.facts.insert(key, value);
    }
}

/// The outcome of a tool call, as the model speaks about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The function succeeded; a short summary of its output.
    Done(String),
    /// The function failed; its error text.
    Failed(String),
}

/// The deterministic conversational model.
#[derive(Clone, Debug)]
pub struct Brain {
    /// Who it plays.
    pub persona: Persona,
    /// What it remembers.
    pub memory: Memory,
    seed: u64,
}

/// A recognised user intent.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Intent {
    Remember { key: String, value: String },
    Recall { key: String },
    WhoAreYou,
    Trade,
    Help,
    Thanks,
    Goodbye,
    Greeting,
    Fallback,
}

impl Brain {
    /// A brain with the given persona and seed and an empty memory.
    pub fn new(persona: Persona, seed: u64) -> Brain {
        Brain { persona, memory: Memory::default(), seed }
    }

    /// Answers a user turn, remembering any fact it states. Does not record history.
    pub fn reply(&mut self, user_text: &str) -> String {
        self.memory.turns += 1;
        let intent = classify(user_text);
        if let Intent::Remember { key, value } = &intent {
            self.memory.remember(key.clone(), value.clone());
        }
        let reply = self.render(&intent);
        pad_short(reply, self.pick(99, FILLERS.len()))
    }

    /// Hears a user turn without answering it (proactive audio): a fact it states is still
    /// remembered. Does not record history.
    pub fn overhear(&mut self, user_text: &str) {
        if let Some((key, value)) = stated_fact(user_text) {
            self.memory.remember(key, value);
        }
    }

    /// Whether a user turn is addressed to the character (the proactive-audio rule): it names the
    /// character (a word of the persona's name, whole word, any case), or it is a question (a
    /// `?`, or a sentence starting with a question word: who, what, where, when, why, how,
    /// which, whose, can, could, would, will, shall, should, do, does, did, is, are, am, was,
    /// were, may, have, has), or a sentence starts with a greeting (hello, hi, hey, greetings,
    /// howdy, good morning / afternoon / evening). An audio turn the simulator could not
    /// transcribe (`[speech N.Ns]`) counts as addressed.
    ///
    /// ```
    /// use live_npc_sim::brain::{Brain, Persona};
    /// let b = Brain::new(Persona::from_instruction("You are Mira, the village blacksmith."), 0);
    /// assert!(b.addressed("Mira, a word please."));
    /// assert!(b.addressed("where is the mill"));
    /// assert!(b.addressed("Hello there."));
    /// assert!(!b.addressed("The weather is nice today."));
    /// ```
    pub fn addressed(&self, user_text: &str) -> bool {
        let t = user_text.trim();
        if t.starts_with("[speech ") && t.ends_with("s]") {
            return true;
        }
        if t.contains('?') {
            return true;
        }
        let words = lower_words(t);
        if let Some(name) = &self.persona.name {
            let name_words = lower_words(name);
            if name_words.iter().any(|n| words.contains(n)) {
                return true;
            }
        }
        t.split(['.', '!', ';', ',', '\n']).any(|sentence| {
            let words = lower_words(sentence);
            let first = words.first().map_or("", String::as_str);
            let second = words.get(1).map_or("", String::as_str);
            QUESTION_WORDS.contains(&first)
                || GREETINGS.contains(&first)
                || (first == "good" && ["morning", "afternoon", "evening", "day"].contains(&second))
        })
    }

    /// What the model says while a `NON_BLOCKING` function runs.
    pub fn acknowledge(&self, function: &str) -> String {
        let action = super::tools::name_words(function).join(" ");
        let templates = [
            "Of course. Give me a moment to {action} for you, and I'll tell you how it went.",
            "Right away. I'm seeing to {action} now; keep talking to me while I work.",
            "Consider it done soon. I'll {action} and let you know what happens.",
        ];
        templates[self.pick(7, templates.len())].replace("{action}", &action)
    }

    /// What the model says about finished function calls.
    pub fn speak_results(&self, results: &[(String, ToolOutcome)]) -> String {
        let prefix = ["There we are.", "All right.", "So, here is what happened."];
        let mut out = prefix[self.pick(11, prefix.len())].to_owned();
        for (name, outcome) in results {
            let action = super::tools::name_words(name).join(" ");
            match outcome {
                ToolOutcome::Done(summary) => out.push_str(&format!(" Done: {summary}.")),
                ToolOutcome::Failed(error) => out.push_str(&format!(" I'm sorry, I couldn't {action}: {error}.")),
            }
        }
        out
    }

    /// Remembers a result the client asked to be kept silent.
    pub fn remember_result(&mut self, name: &str, outcome: &ToolOutcome) {
        let text = match outcome {
            ToolOutcome::Done(s) => format!("{name}: {s}"),
            ToolOutcome::Failed(e) => format!("{name} failed: {e}"),
        };
        self.memory.tool_results.push(text);
        if self.memory.tool_results.len() > MAX_FACTS {
            self.memory.tool_results.remove(0);
        }
    }

    /// A deterministic choice among `n`, from the seed, the turn and a salt.
    fn pick(&self, salt: u64, n: usize) -> usize {
        let h = splitmix(self.seed ^ splitmix(self.memory.turns.wrapping_mul(31).wrapping_add(salt)));
        (h % n.max(1) as u64) as usize
    }

    fn render(&self, intent: &Intent) -> String {
        let name = self.persona.name.clone().unwrap_or_else(|| "your guide".to_owned());
        let (salt, templates): (u64, &[&str]) = match intent {
            Intent::Remember { key, value } => return self.render_remember(key, value),
            Intent::Recall { key } => return self.render_recall(key),
            Intent::WhoAreYou => (1, WHO),
            Intent::Trade => (2, TRADE),
            Intent::Help => (3, HELP),
            Intent::Thanks => (4, THANKS),
            Intent::Goodbye => (5, GOODBYE),
            Intent::Greeting => (6, GREETING),
            Intent::Fallback => (8, FALLBACK),
        };
        templates[self.pick(salt, templates.len())]
            .replace("{name}", &name)
            .replace("{intro}", &self.persona.introduction())
            .replace("{role}", &self.persona.role_or_default())
    }

    fn render_remember(&self, key: &str, value: &str) -> String {
        if key == "name" {
            let me = self.persona.name.clone().unwrap_or_else(|| "glad to help".to_owned());
            return format!("Nice to meet you, {value}! I'm {me}, and I won't forget your name.");
        }
        let templates = [
            "I'll remember that your {key} is {value}. Is there anything else I should know?",
            "Noted: your {key} is {value}. I'll keep that in mind while we talk.",
        ];
        let t = templates[self.pick(12, templates.len())];
        match key {
            "from" => format!("So you come from {value}! I'll remember that, it sounds like a fine place."),
            "like" => format!("You like {value}? I'll remember that, it's good to know what you enjoy."),
            _ => t.replace("{key}", key).replace("{value}", value),
        }
    }

    fn render_recall(&self, key: &str) -> String {
        match (key, self.memory.facts.get(key)) {
            ("from", Some(v)) => format!("You told me you come from {v}. I haven't forgotten."),
            ("like", Some(v)) => format!("You told me you like {v}. I remember these things."),
            (_, Some(v)) if self.pick(13, 2) == 0 => format!("Your {key} is {v}. You told me so yourself, earlier."),
            (_, Some(v)) => format!("You said your {key} is {v}. I remember these things, you know."),
            ("from", None) => "You haven't told me where you come from yet. Where is home for you?".to_owned(),
            (_, None) => format!("You haven't told me your {key} yet. Would you like to tell me now?"),
        }
    }
}

const WHO: &[&str] = &[
    "I'm {intro}. I've been here a long time, so ask me anything you like.",
    "The name is {name}. I'm {role}, and people around here know me well.",
    "Who am I? I'm {intro}, at your service whenever you need me.",
];
const TRADE: &[&str] = &[
    "As {role}, I deal in all sorts of useful things. Tell me what you need and I'll see what I have.",
    "My work keeps me busy every day. I'm {role}, so if it's in my trade, I can help.",
    "I'm {role}. Good work at a fair price, that's what I offer everyone who asks.",
];
const HELP: &[&str] = &[
    "Of course I'll help. Tell me what you need, and we'll work it out together.",
    "Help is what I'm here for. What's troubling you, traveller?",
    "I can certainly try. Ask away, and I'll do what I can for you.",
];
const THANKS: &[&str] = &[
    "You're very welcome. Come back any time you need something.",
    "Think nothing of it. It was my pleasure to help you today.",
    "Glad I could help. Safe travels, and mind the road.",
];
const GOODBYE: &[&str] = &[
    "Farewell, friend. May the road treat you kindly until we meet again.",
    "Goodbye for now. You know where to find me if you need me.",
    "Take care out there. I'll be right here when you come back.",
];
const GREETING: &[&str] = &[
    "Hello there, traveller! I'm {name}. What brings you here today?",
    "Well met! The name's {name}. How can I help you on this fine day?",
    "Greetings, friend. I'm {name}. Is there something you're looking for?",
];
const FALLBACK: &[&str] = &[
    "Hmm, that's an interesting thought. Tell me more about what you mean.",
    "I'm not sure I follow you, friend. Could you say that another way?",
    "Is that so? I'll have to think about that one for a while.",
];
/// Appended to a reply that would be shorter than about two seconds of speech.
const FILLERS: &[&str] = &["What else can I do for you?", "Is there anything else on your mind?"];

/// Words that make a sentence starting with them a question (the proactive-audio rule).
const QUESTION_WORDS: &[&str] = &[
    "who", "what", "where", "when", "why", "how", "which", "whose", "can", "could", "would", "will", "shall", "should",
    "do", "does", "did", "is", "are", "am", "was", "were", "may", "have", "has", "what's", "where's", "who's", "how's",
];

/// Words that make a sentence starting with them a greeting (the proactive-audio rule).
const GREETINGS: &[&str] = &["hello", "hi", "hey", "greetings", "howdy", "hail", "oi"];

/// Context tokens of a text: characters / 4, rounded up.
pub(crate) fn text_tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

/// Replies shorter than this many words get a filler sentence (≈ 2 s of speech).
const MIN_WORDS: usize = 7;

fn pad_short(reply: String, filler: usize) -> String {
    if reply.split_whitespace().count() >= MIN_WORDS {
        return reply;
    }
    format!("{reply} {}", FILLERS[filler % FILLERS.len()])
}

/// Lower-case words of a text, apostrophes kept (`what's`).
fn lower_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn classify(text: &str) -> Intent {
    if let Some((key, value)) = stated_fact(text) {
        return Intent::Remember { key, value };
    }
    let words = lower_words(text);
    if let Some(key) = asked_fact(&words) {
        return Intent::Recall { key };
    }
    let joined = format!(" {} ", words.join(" "));
    let has = |keys: &[&str]| keys.iter().any(|k| joined.contains(&format!(" {k} ")));
    let starts = |keys: &[&str]| keys.iter().any(|k| words.iter().any(|w| w.starts_with(k)));
    if has(&["who are you", "your name", "what are you", "introduce yourself", "who is this"]) {
        Intent::WhoAreYou
    } else if starts(&["sell", "buy", "ware", "shop", "trade"]) || has(&["what do you do", "your job", "your work"]) {
        Intent::Trade
    } else if has(&["help", "assist", "can you", "could you"]) {
        Intent::Help
    } else if starts(&["thank", "grateful"]) || has(&["cheers"]) {
        Intent::Thanks
    } else if has(&["bye", "goodbye", "farewell", "see you", "good night"]) {
        Intent::Goodbye
    } else if has(&["hello", "hi", "hey", "greetings", "good morning", "good evening", "howdy"]) {
        Intent::Greeting
    } else {
        Intent::Fallback
    }
}

/// A fact the text states: "my X is Y", "my X's Y", "call me Y", "I am from Y", "I like Y".
fn stated_fact(text: &str) -> Option<(String, String)> {
    // ASCII lower-casing keeps byte offsets, so values keep their original spelling.
    let lower = text.to_ascii_lowercase();
    for (pattern, key) in
        [("call me ", "name"), ("i am from ", "from"), ("i'm from ", "from"), ("i come from ", "from")]
    {
        if let Some(i) = find_word_start(&lower, pattern) {
            return value_at(text, i + pattern.len()).map(|v| (key.to_owned(), v));
        }
    }
    for (pattern, key) in [("i like ", "like"), ("i love ", "like")] {
        if let Some(i) = find_word_start(&lower, pattern) {
            return value_at(text, i + pattern.len()).map(|v| (key.to_owned(), v));
        }
    }
    let i = find_word_start(&lower, "my ")?;
    let after = &lower[i + 3..];
    let (key_end, value_start) =
        [" is ", "'s ", " was "].iter().filter_map(|sep| after.find(sep).map(|j| (j, j + sep.len()))).min()?;
    let key = after[..key_end].trim();
    if key.is_empty() || key.split_whitespace().count() > 3 || key.contains(['?', '.', ',', '!']) {
        return None;
    }
    if lower.trim_start().starts_with("what") || lower.contains('?') {
        return None;
    }
    let value = value_at(text, i + 3 + value_start)?;
    Some((key.to_owned(), value))
}

/// The value phrase starting at byte `start`: up to punctuation or " and ", at most 5 words.
fn value_at(text: &str, start: usize) -> Option<String> {
    let rest = text.get(start..)?;
    let end = rest.find(['.', ',', '!', '?', ';', '\n']).unwrap_or(rest.len());
    let mut phrase = &rest[..end];
    if let Some(j) = phrase.to_ascii_lowercase().find(" and ") {
        phrase = &phrase[..j];
    }
    let words: Vec<&str> = phrase.split_whitespace().take(5).collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The fact a question asks about: "what is my X", "do you remember my X", "where am I from".
fn asked_fact(words: &[String]) -> Option<String> {
    let joined = words.join(" ");
    if joined.contains("where am i from")
        || joined.contains("where do i come from")
        || joined.contains("where i'm from")
    {
        return Some("from".to_owned());
    }
    if joined.contains("what do i like") || joined.contains("what i like") {
        return Some("like".to_owned());
    }
    for opener in ["what is my ", "what's my ", "what was my ", "remember my ", "tell me my ", "know my "] {
        if let Some(i) = joined.find(opener) {
            let key: Vec<&str> = joined[i + opener.len()..].split_whitespace().take(3).collect();
            let key =
                key.iter().take_while(|w| !matches!(**w, "again" | "please" | "now")).copied().collect::<Vec<_>>();
            if !key.is_empty() {
                return Some(key.join(" "));
            }
        }
    }
    None
}

/// The largest char boundary of `text` at or below `max`.
pub(crate) fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// A 64-bit mixing function (`SplitMix64`), for deterministic choices.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mira() -> Brain {
        Brain::new(Persona::from_instruction("You are Mira, the village blacksmith."), 7)
    }

    #[test]
    fn persona_forms() {
        let p = Persona::from_instruction("You are Mira the blacksmith");
        assert_eq!((p.name.as_deref(), p.role.as_deref()), (Some("Mira"), Some("the blacksmith")));
        let p = Persona::from_instruction("Your name is Old Tom. You are a ferryman, tired of rain.");
        assert_eq!((p.name.as_deref(), p.role.as_deref()), (Some("Old Tom"), Some("a ferryman")));
        assert_eq!(Persona::from_instruction(""), Persona::default());
    }

    #[test]
    fn intents() {
        assert_eq!(classify("Hello there!"), Intent::Greeting);
        assert_eq!(classify("Hello there! Who are you?"), Intent::WhoAreYou);
        assert_eq!(classify("What do you sell?"), Intent::Trade);
        assert_eq!(classify("Can you help me?"), Intent::Help);
        assert_eq!(classify("Thanks a lot"), Intent::Thanks);
        assert_eq!(classify("Goodbye!"), Intent::Goodbye);
        assert_eq!(classify("The weather is odd"), Intent::Fallback);
        assert_eq!(classify("My name is Ada."), Intent::Remember { key: "name".into(), value: "Ada".into() });
        assert_eq!(classify("what is my name?"), Intent::Recall { key: "name".into() });
        assert_eq!(classify("I'm from Lisbon"), Intent::Remember { key: "from".into(), value: "Lisbon".into() });
        assert_eq!(classify("Where am I from?"), Intent::Recall { key: "from".into() });
        assert_eq!(
            classify("my favourite colour is deep blue and I like tea"),
            Intent::Remember { key: "like".into(), value: "tea".into() }
        );
    }

    #[test]
    fn remembers_facts() {
        let mut b = mira();
        let r = b.reply("Hi, my name is Ada.");
        assert!(r.contains("Ada") && r.contains("Mira"), "{r}");
        b.reply("my favourite colour is green");
        let r = b.reply("What is my name?");
        assert!(r.contains("Ada"), "{r}");
        let r = b.reply("what's my favourite colour");
        assert!(r.contains("green"), "{r}");
        let r = b.reply("what is my horse?");
        assert!(r.contains("haven't told me"), "{r}");
    }

    #[test]
    fn deterministic_and_persona() {
        let a: Vec<String> = (0..5).map(|_| mira().reply("Who are you?")).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut b = mira();
        let replies: Vec<String> = (0..6).map(|_| b.reply("hello")).collect();
        assert!(replies.iter().all(|r| r.contains("Mira")), "{replies:?}");
        assert!(replies.iter().collect::<std::collections::BTreeSet<_>>().len() > 1);
    }

    #[test]
    fn small_talk_lasts_two_to_eight_seconds() {
        let b = mira();
        let all = [WHO, TRADE, HELP, THANKS, GOODBYE, GREETING, FALLBACK];
        for voice in ["Puck", "Kore", "Achernar", "Gacrux"] {
            let voice = crate::voice::Voice::for_name(voice);
            for template in all.iter().flat_map(|t| t.iter()) {
                let text = template
                    .replace("{name}", "Mira")
                    .replace("{intro}", &b.persona.introduction())
                    .replace("{role}", &b.persona.role_or_default());
                let secs = voice.duration_of(&pad_short(text.clone(), 0)).as_secs_f64();
                assert!((2.0..=8.0).contains(&secs), "{}: {secs:.2} s for {text:?}", voice.name());
            }
        }
    }

    #[test]
    fn history_is_bounded() {
        let mut m = Memory::default();
        for i in 0..500 {
            m.record(i % 2 == 0, "é".repeat(3000));
        }
        assert!(m.history.iter().map(|t| t.text.len()).sum::<usize>() <= MAX_HISTORY_CHARS);
        assert!(m.history.iter().all(|t| t.text.len() <= MAX_TURN_CHARS && !t.text.is_empty()));
        for _ in 0..500 {
            m.record(true, "hi");
        }
        assert_eq!(m.history.len(), MAX_HISTORY);
    }

    #[test]
    fn reply_lengths() {
        let mut b = mira();
        for text in ["hi", "who are you", "what do you sell", "help", "thanks", "bye", "hmm", "my name is Ada"] {
            let n = b.reply(text).split_whitespace().count();
            assert!((MIN_WORDS..=24).contains(&n), "{text}: {n}");
        }
    }
}
