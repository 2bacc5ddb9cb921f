//! Bevy messages in and out. Every outgoing message is also triggered as an `EntityEvent` on
//! the NPC, so both `MessageReader`s and observers work.

use bevy::prelude::*;

use crate::protocol::LiveError;

/// Who said a transcribed line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Reflect)]
pub enum Speaker {
    /// The player.
    Player,
    /// The NPC.
    Npc,
}

/// A subtitle line. Partial lines update in place (`text` is everything heard so far in this
/// turn); the final line of a turn has `is_final: true`.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcTranscript {
    /// The NPC of the conversation.
    pub entity: Entity,
    /// Who spoke.
    pub speaker: Speaker,
    /// The whole turn so far.
    pub text: String,
    /// The fragment that just arrived.
    pub delta: String,
    /// Whether the turn is complete.
    pub is_final: bool,
}

/// The NPC started talking (its first output of a turn).
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcSpeechStarted {
    /// The NPC.
    pub entity: Entity,
}

/// The NPC's turn ended.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcSpeechEnded {
    /// The NPC.
    pub entity: Entity,
    /// Whether the player cut it short.
    pub interrupted: bool,
}

/// The model's turn is complete on the wire (`turnComplete`): it will say nothing more until
/// the player speaks again. Unlike [`NpcSpeechEnded`], which follows what is heard, this is
/// the protocol's turn boundary (tool round trips included).
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcTurnComplete {
    /// The NPC.
    pub entity: Entity,
    /// Whether the turn was cut short by the player.
    pub interrupted: bool,
}

/// The player barged in; the NPC's queued audio was dropped.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcInterrupted {
    /// The NPC.
    pub entity: Entity,
}

/// The model called a tool.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcToolCalled {
    /// The NPC.
    pub entity: Entity,
    /// The call id.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as compact JSON.
    pub args: String,
}

/// A tool call was answered.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcToolFinished {
    /// The NPC.
    pub entity: Entity,
    /// The call id.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// The response sent to the model (`{"output": ...}` or `{"error": "..."}`), compact JSON.
    pub response: String,
    /// The arguments, as compact JSON.
    pub args: String,
    /// Whether the call failed (unknown tool, not allowed, bad arguments, the system's error).
    pub is_error: bool,
}

/// The model cancelled a tool call because the player interrupted. When `already_ran`, the
/// tool's system has run and the game may want to undo its effect.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcToolCancelled {
    /// The NPC.
    pub entity: Entity,
    /// The call id.
    pub call_id: String,
    /// The tool's name.
    pub name: String,
    /// Whether the tool had already run.
    pub already_ran: bool,
}

/// The session state of an NPC changed.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcStateChanged {
    /// The NPC.
    pub entity: Entity,
    /// The new state.
    pub state: crate::npc::NpcState,
}

/// An error in an NPC's conversation. `fatal` ones ended the session.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcError {
    /// The NPC.
    pub entity: Entity,
    /// The error.
    pub error: LiveError,
    /// Whether the session ended.
    pub fatal: bool,
}

/// Token usage of a turn.
#[derive(Message, EntityEvent, Clone, Debug, PartialEq, Reflect)]
pub struct NpcUsage {
    /// The NPC.
    pub entity: Entity,
    /// Prompt tokens of this report.
    pub prompt_tokens: u32,
    /// Response tokens of this report.
    pub response_tokens: u32,
    /// Total tokens of this report.
    pub total_tokens: u32,
}

/// Says something to an NPC as text (a complete turn). Opens the conversation if needed.
#[derive(Message, Clone, Debug, PartialEq, Reflect)]
pub struct SayToNpc {
    /// The NPC.
    pub npc: Entity,
    /// What the player says.
    pub text: String,
}

/// What [`NpcActivity`] marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Reflect)]
pub enum ActivityKind {
    /// The player started talking (manual VAD: `activityStart`).
    Start,
    /// The player stopped talking (manual VAD: `activityEnd`).
    End,
    /// The microphone paused (automatic VAD: `audioStreamEnd`).
    StreamEnd,
}

/// Marks the player's speech for an NPC with manual VAD (push-to-talk).
#[derive(Message, Clone, Debug, PartialEq, Reflect)]
pub struct NpcActivity {
    /// The NPC.
    pub npc: Entity,
    /// Start, end, or stream end.
    pub kind: ActivityKind,
}

/// Answers a tool call whose system returned [`ToolReply::Later`](crate::tools::ToolReply::Later).
#[derive(Message, Clone, Debug, PartialEq)]
pub struct AnswerToolCall {
    /// The NPC.
    pub npc: Entity,
    /// The call id (from [`crate::tools::ToolInput::call_id`]).
    pub call_id: String,
    /// The result.
    pub result: crate::tools::ToolResult,
}

/// Writes `message` and triggers it on its entity.
pub(crate) fn announce<M>(commands: &mut Commands, message: M)
where
    M: Message + Clone + for<'t> EntityEvent<Trigger<'t>: Default>,
{
    commands.write_message(message.clone());
    commands.trigger(message);
}
