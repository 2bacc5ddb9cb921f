//! Components: the NPC, the listener, and what the game can see of a conversation.

use std::time::Duration;

use bevy::prelude::*;

use crate::protocol::{ActivityHandling, EndSensitivity, LiveError, Modality, Scheduling, StartSensitivity};
use crate::session::TextMode;

/// Server-side voice-activity detection settings of one NPC.
#[derive(Clone, Debug, PartialEq, Reflect)]
pub struct VadSettings {
    /// `false`: the game marks speech with activity start/end (push-to-talk).
    pub automatic: bool,
    /// How eagerly speech start is detected.
    pub start_sensitivity: StartSensitivity,
    /// How eagerly speech end is detected.
    pub end_sensitivity: EndSensitivity,
    /// Speech needed before start is committed.
    pub prefix_padding_ms: u32,
    /// Silence needed before end is committed.
    pub silence_duration_ms: u32,
    /// Whether the player's speech interrupts the NPC (barge-in).
    pub barge_in: bool,
}

impl Default for VadSettings {
    fn default() -> Self {
        VadSettings {
            automatic: true,
            start_sensitivity: StartSensitivity::Unspecified,
            end_sensitivity: EndSensitivity::Unspecified,
            prefix_padding_ms: 20,
            silence_duration_ms: 500,
            barge_in: true,
        }
    }
}

impl VadSettings {
    /// Manual activity detection: the game sends activity start/end (push-to-talk).
    pub fn manual() -> Self {
        VadSettings { automatic: false, ..Default::default() }
    }

    /// The wire form of the barge-in choice.
    pub fn activity_handling(&self) -> ActivityHandling {
        if self.barge_in { ActivityHandling::StartOfActivityInterrupts } else { ActivityHandling::NoInterruption }
    }
}

/// An NPC the player can talk to. Each gets its own Live session while a conversation is open.
///
/// ```
/// use bevy_live_npc::prelude::*;
///
/// let mira = LiveNpc::new("Mira")
///     .persona("You are Mira, the village blacksmith. You are gruff but kind.")
///     .voice("Kore")
///     .tools(["open_gate"]);
/// assert_eq!(mira.voice, "Kore");
/// ```
#[derive(Component, Clone, Debug, Reflect)]
#[reflect(Component)]
#[require(Transform, NpcState, NpcStats)]
pub struct LiveNpc {
    /// Name shown in subtitles (and used by the model as the character's name).
    pub name: String,
    /// System instruction: who the NPC is, how it talks, what it knows.
    pub persona: String,
    /// Prebuilt voice (`Kore`, `Puck`, `Charon`, ...).
    pub voice: String,
    /// BCP-47 language hint (native-audio models pick the language themselves).
    pub language: Option<String>,
    /// `Audio` (default) or `Text` replies.
    pub modality: Modality,
    /// Names of the tools this NPC may call (registered with `add_npc_tool`).
    pub tools: Vec<String>,
    /// Transcribe both sides (subtitles).
    pub transcription: bool,
    /// Let the model stay silent for speech not addressed to it.
    pub proactive_audio: bool,
    /// Let the model adapt to the player's tone.
    pub affective_dialog: bool,
    /// Server VAD settings.
    pub vad: VadSettings,
    /// How typed text is sent.
    pub text_mode: TextMode,
    /// At most this many tool calls per minute (0 = unlimited); further calls get an error.
    pub tool_calls_per_minute: u32,
    /// Model override for this NPC (else the plugin's).
    pub model: Option<String>,
    /// How the model's context is kept from overflowing in long conversations. On by default:
    /// without it the service ends audio sessions after 15 minutes.
    pub context_compression: ContextCompression,
}

/// Context-window compression of a conversation (`setup.contextWindowCompression`).
///
/// Without compression, the service ends an audio session when its context fills (about 15
/// minutes of audio); with it, the oldest turns are dropped and the conversation goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Reflect)]
pub enum ContextCompression {
    /// A sliding window with the service's defaults (compress at 80 % of the context window,
    /// keep half of that).
    #[default]
    SlidingWindow,
    /// A sliding window with these sizes, in tokens.
    Custom {
        /// Context size that starts a compression.
        trigger_tokens: u32,
        /// Tokens kept after it.
        target_tokens: u32,
    },
    /// No compression: the session ends when the context is full.
    Off,
}

impl ContextCompression {
    /// The setup field for this choice (`None` for [`ContextCompression::Off`]).
    pub fn to_setup(self) -> Option<crate::protocol::ContextWindowCompressionConfig> {
        use crate::protocol::{ContextWindowCompressionConfig, SlidingWindow};
        match self {
            ContextCompression::Off => None,
            ContextCompression::SlidingWindow => Some(ContextWindowCompressionConfig {
                trigger_tokens: None,
                sliding_window: Some(SlidingWindow::default()),
            }),
            ContextCompression::Custom { trigger_tokens, target_tokens } => Some(ContextWindowCompressionConfig {
                trigger_tokens: Some(i64::from(trigger_tokens)),
                sliding_window: Some(SlidingWindow {
                    target_tokens: Some(i64::from(target_tokens.min(trigger_tokens))),
                }),
            }),
        }
    }
}

impl Default for LiveNpc {
    fn default() -> Self {
        LiveNpc {
            name: "NPC".into(),
            persona: String::new(),
            voice: "Kore".into(),
            language: None,
            modality: Modality::Audio,
            tools: Vec::new(),
            transcription: true,
            proactive_audio: false,
            affective_dialog: false,
            vad: VadSettings::default(),
            text_mode: TextMode::ClientContent,
            tool_calls_per_minute: 30,
            model: None,
            context_compression: ContextCompression::SlidingWindow,
        }
    }
}

impl LiveNpc {
    /// An NPC with a display name and defaults for everything else.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        LiveNpc { persona: format!("You are {name}."), name, ..Default::default() }
    }

    /// Sets the persona (system instruction).
    pub fn persona(mut self, persona: impl Into<String>) -> Self {
        self.persona = persona.into();
        self
    }

    /// Sets the prebuilt voice.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = voice.into();
        self
    }

    /// Sets the language hint.
    pub fn language(mut self, code: impl Into<String>) -> Self {
        self.language = Some(code.into());
        self
    }

    /// Sets the tools this NPC may call.
    pub fn tools<S: Into<String>>(mut self, tools: impl IntoIterator<Item = S>) -> Self {
        self.tools = tools.into_iter().map(Into::into).collect();
        self
    }

    /// Text replies instead of audio.
    pub fn text_only(mut self) -> Self {
        self.modality = Modality::Text;
        self
    }

    /// Turns transcription on or off.
    pub fn transcription(mut self, on: bool) -> Self {
        self.transcription = on;
        self
    }

    /// Turns proactive audio on or off.
    pub fn proactive_audio(mut self, on: bool) -> Self {
        self.proactive_audio = on;
        self
    }

    /// Turns affective dialog on or off.
    pub fn affective_dialog(mut self, on: bool) -> Self {
        self.affective_dialog = on;
        self
    }

    /// Sets the VAD settings.
    pub fn vad(mut self, vad: VadSettings) -> Self {
        self.vad = vad;
        self
    }

    /// Sends typed text as `realtimeInput.text` instead of `clientContent`.
    pub fn realtime_text(mut self) -> Self {
        self.text_mode = TextMode::Realtime;
        self
    }

    /// Sets the tool-call rate limit (calls per minute; 0 = unlimited).
    pub fn tool_rate_limit(mut self, per_minute: u32) -> Self {
        self.tool_calls_per_minute = per_minute;
        self
    }

    /// Uses another model for this NPC.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets context-window compression ([`ContextCompression::Off`] to disable it).
    pub fn context_compression(mut self, compression: ContextCompression) -> Self {
        self.context_compression = compression;
        self
    }

    /// Whether this NPC may call `tool`.
    pub fn may_use(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == tool)
    }
}

/// Marks the entity whose position is the player's ears (usually the camera or the player).
#[derive(Component, Clone, Copy, Debug, Default, Reflect)]
#[reflect(Component)]
#[require(Transform)]
pub struct NpcListener;

/// What an NPC's conversation is doing right now, for UI and game logic.
#[derive(Component, Clone, Debug, Default, PartialEq, Eq, Reflect)]
#[reflect(Component)]
pub enum NpcState {
    /// No session.
    #[default]
    Idle,
    /// Opening the session.
    Connecting,
    /// Open, waiting for the player.
    Listening,
    /// The player finished; the model has not answered yet.
    Thinking,
    /// The NPC is talking.
    Speaking,
    /// The connection is being switched or re-established.
    Reconnecting,
    /// The session failed; the reason is readable.
    Failed(String),
}

impl NpcState {
    /// Whether a session is open or opening.
    pub fn is_active(&self) -> bool {
        !matches!(self, NpcState::Idle | NpcState::Failed(_))
    }

    /// A short label for UI.
    pub fn label(&self) -> String {
        match self {
            NpcState::Idle => "idle".into(),
            NpcState::Connecting => "connecting".into(),
            NpcState::Listening => "listening".into(),
            NpcState::Thinking => "thinking".into(),
            NpcState::Speaking => "speaking".into(),
            NpcState::Reconnecting => "reconnecting".into(),
            NpcState::Failed(reason) => format!("failed: {reason}"),
        }
    }

    pub(crate) fn failed(e: &LiveError) -> NpcState {
        NpcState::Failed(e.to_string())
    }
}

/// Per-NPC figures (also published as Bevy diagnostics, summed over NPCs).
#[derive(Component, Clone, Debug, Default, Reflect)]
#[reflect(Component)]
pub struct NpcStats {
    /// Last reply latency: from the player's last input to the NPC's first audio.
    pub last_reply_latency: Option<Duration>,
    /// Mic chunks dropped because the session fell behind.
    pub dropped_mic_chunks: u64,
    /// Server frames that failed to decode.
    pub decode_errors: u64,
    /// Commands (typed text, markers) dropped because the session stopped taking them.
    pub dropped_commands: u64,
    /// Tokens used (prompt + response), summed.
    pub total_tokens: u64,
    /// Reconnections.
    pub reconnects: u64,
    /// Turns the NPC completed.
    pub turns: u64,
}

/// Default scheduling for `NON_BLOCKING` tool results when a tool does not choose one.
pub const DEFAULT_SCHEDULING: Scheduling = Scheduling::WhenIdle;
