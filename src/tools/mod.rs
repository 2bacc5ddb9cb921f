//! Tools as ordinary Bevy systems with typed arguments.
//!
//! ```
//! use bevy::prelude::*;
//! use bevy_live_npc::prelude::*;
//! use serde::Deserialize;
//! use schemars::JsonSchema;
//!
//! #[derive(Component)]
//! struct Gate { open: bool }
//!
//! /// Which gate to open.
//! #[derive(Deserialize, JsonSchema)]
//! struct OpenGate { gate: String }
//!
//! fn open_gate(In(input): In<ToolInput<OpenGate>>, mut gates: Query<&mut Gate>) -> ToolResult {
//!     for mut gate in &mut gates {
//!         gate.open = true;
//!     }
//!     Ok(serde_json::json!({ "opened": input.args.gate }))
//! }
//!
//! let mut app = App::new();
//! app.add_npc_tool(NpcTool::new("open_gate", "Opens a village gate.").run(open_gate));
//! ```

mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use bevy::ecs::system::IntoSystem;
use bevy::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use schema::{empty_object_schema, schema_for, validate};

use crate::protocol::{Behavior, FunctionCall, FunctionDeclaration, FunctionResponse, Scheduling};

/// What a tool system returns: `Ok(output)` is sent as `{"output": ...}`, `Err(message)` as
/// `{"error": "..."}`.
pub type ToolResult = Result<Value, String>;

/// What a tool system may return: an answer now, or a promise to answer later with
/// [`AnswerToolCall`](crate::messages::AnswerToolCall) (e.g. after an animation). A pending
/// BLOCKING call holds the NPC's turn; the player's interruption cancels it
/// ([`NpcToolCancelled`](crate::messages::NpcToolCancelled)).
#[derive(Clone, Debug, PartialEq)]
pub enum ToolReply {
    /// The result, sent at once.
    Now(ToolResult),
    /// The game answers later.
    Later,
}

/// Return types a tool system may have: [`ToolResult`] or [`ToolReply`].
pub trait IntoToolReply: Send + 'static {
    /// Converts into a reply.
    fn into_reply(self) -> ToolReply;
}

impl IntoToolReply for ToolResult {
    fn into_reply(self) -> ToolReply {
        ToolReply::Now(self)
    }
}

impl IntoToolReply for ToolReply {
    fn into_reply(self) -> ToolReply {
        self
    }
}

/// The arguments of a tool that takes none (its schema is an empty object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// The input of a tool system: typed arguments plus who asked.
#[derive(Clone, Debug)]
pub struct ToolInput<A = NoArgs> {
    /// The arguments, already deserialized and checked against the schema.
    pub args: A,
    /// The NPC whose model called the tool.
    pub npc: Entity,
    /// The call id.
    pub call_id: String,
}

/// Whether a tool holds the model's turn while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Reflect)]
pub enum ToolBehavior {
    /// The model waits for the result (the usual choice for quick game queries).
    #[default]
    Blocking,
    /// The model keeps talking; the result is delivered with this scheduling.
    NonBlocking(ToolScheduling),
}

/// When the model speaks about a `NON_BLOCKING` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Reflect)]
pub enum ToolScheduling {
    /// Interrupt what it is saying and talk about the result now.
    Interrupt,
    /// Talk about it after the current output.
    #[default]
    WhenIdle,
    /// Only remember it.
    Silent,
}

impl From<ToolScheduling> for Scheduling {
    fn from(s: ToolScheduling) -> Self {
        match s {
            ToolScheduling::Interrupt => Scheduling::Interrupt,
            ToolScheduling::WhenIdle => Scheduling::WhenIdle,
            ToolScheduling::Silent => Scheduling::Silent,
        }
    }
}

type Runner = dyn Fn(&mut World, Entity, &str, Value) -> ToolReply + Send + Sync;
type Registrar = Box<dyn FnOnce(&mut World) -> Arc<Runner>>;

/// A tool definition: a name, a description for the model, and the system that runs it.
pub struct NpcTool {
    name: String,
    description: String,
    behavior: ToolBehavior,
    schema: Value,
    registrar: Option<Registrar>,
}

impl std::fmt::Debug for NpcTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpcTool")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("behavior", &self.behavior)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl NpcTool {
    /// A tool named `name` (letters, digits, `_ . : -`; at most 128 characters).
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        NpcTool {
            name: name.into(),
            description: description.into(),
            behavior: ToolBehavior::Blocking,
            schema: empty_object_schema(),
            registrar: None,
        }
    }

    /// Lets the model keep talking while the tool runs; the result is spoken about per
    /// `scheduling`.
    pub fn non_blocking(mut self, scheduling: ToolScheduling) -> Self {
        self.behavior = ToolBehavior::NonBlocking(scheduling);
        self
    }

    /// The system that runs the tool. Its input is `In<ToolInput<A>>`; `A`'s JSON schema is
    /// derived with schemars and sent to the model; use [`NoArgs`] for a tool without
    /// arguments.
    ///
    /// The system returns a [`ToolResult`], or a [`ToolReply`] to answer later.
    pub fn run<A, R, M>(mut self, system: impl IntoSystem<In<ToolInput<A>>, R, M> + 'static) -> Self
    where
        A: DeserializeOwned + ToolArgs + Send + Sync + 'static,
        R: IntoToolReply,
    {
        self.schema = A::schema();
        self.registrar = Some(Box::new(move |world: &mut World| {
            let id = world.register_system(system);
            let runner: Arc<Runner> = Arc::new(move |world: &mut World, npc, call_id: &str, args: Value| {
                let args: A = match serde_json::from_value(args) {
                    Ok(a) => a,
                    Err(e) => return ToolReply::Now(Err(format!("invalid arguments: {e}"))),
                };
                let input = ToolInput { args, npc, call_id: call_id.to_owned() };
                match world.run_system_with(id, input) {
                    Ok(r) => r.into_reply(),
                    Err(e) => ToolReply::Now(Err(format!("the tool could not run: {e}"))),
                }
            });
            runner
        }));
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declaration sent to the model.
    pub fn declaration(&self) -> FunctionDeclaration {
        FunctionDeclaration {
            name: self.name.clone(),
            description: Some(self.description.clone()),
            // Explicit either way: models differ in their default (3.8 is NON_BLOCKING).
            behavior: Some(match self.behavior {
                ToolBehavior::Blocking => Behavior::Blocking,
                ToolBehavior::NonBlocking(_) => Behavior::NonBlocking,
            }),
            parameters_json_schema: Some(self.schema.clone()),
            ..Default::default()
        }
    }
}

/// Argument types of tools: anything with a derived JSON schema, or [`NoArgs`].
pub trait ToolArgs {
    /// The `parametersJsonSchema` of this type.
    fn schema() -> Value;
}

impl<T: schemars::JsonSchema> ToolArgs for T {
    fn schema() -> Value {
        schema_for::<T>()
    }
}

impl schemars::JsonSchema for NoArgs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NoArgs".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "object", "properties": {}, "additionalProperties": false})
    }
}

struct RegisteredTool {
    declaration: FunctionDeclaration,
    schema: Value,
    behavior: ToolBehavior,
    runner: Arc<Runner>,
}

/// Every tool the app registered.
#[derive(Resource, Default)]
pub struct NpcToolRegistry {
    tools: HashMap<String, RegisteredTool>,
}

impl std::fmt::Debug for NpcToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl NpcToolRegistry {
    /// Whether a tool is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// Registered tool names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tools.keys().cloned().collect();
        names.sort();
        names
    }

    /// The declarations of the listed tools that are registered, in the given order.
    pub fn declarations<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<FunctionDeclaration> {
        names.into_iter().filter_map(|n| self.tools.get(n)).map(|t| t.declaration.clone()).collect()
    }

    /// The behavior of a tool.
    pub fn behavior(&self, name: &str) -> Option<ToolBehavior> {
        self.tools.get(name).map(|t| t.behavior)
    }
}

/// `App` extension to register tools.
pub trait AppNpcToolExt {
    /// Registers a tool; NPCs list it by name in [`LiveNpc::tools`](crate::npc::LiveNpc::tools).
    fn add_npc_tool(&mut self, tool: NpcTool) -> &mut Self;
}

impl AppNpcToolExt for App {
    fn add_npc_tool(&mut self, mut tool: NpcTool) -> &mut Self {
        let world = self.world_mut();
        world.init_resource::<NpcToolRegistry>();
        let Some(registrar) = tool.registrar.take() else {
            warn!("npc tool `{}` has no system (call `.run(system)`); not registered", tool.name);
            return self;
        };
        if !valid_tool_name(&tool.name) {
            warn!("npc tool name `{}` is not valid (letters, digits, _ . : -, ≤ 128); not registered", tool.name);
            return self;
        }
        let runner = registrar(world);
        let registered = RegisteredTool {
            declaration: tool.declaration(),
            schema: tool.schema.clone(),
            behavior: tool.behavior,
            runner,
        };
        world.resource_mut::<NpcToolRegistry>().tools.insert(tool.name.clone(), registered);
        self
    }
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// The outcome of one dispatched call; `response` is `None` while a deferred tool works.
pub(crate) struct Dispatched {
    pub response: Option<FunctionResponse<'static>>,
    pub is_error: bool,
}

/// The response for a result, with the tool's scheduling.
pub(crate) fn respond(
    registry: Option<&NpcToolRegistry>,
    id: Option<String>,
    name: &str,
    result: ToolResult,
) -> (FunctionResponse<'static>, bool) {
    let (mut response, is_error) = match result {
        Ok(output) => (FunctionResponse::output(id, name, output), false),
        Err(message) => (FunctionResponse::error(id, name, message), true),
    };
    if let Some(ToolBehavior::NonBlocking(s)) = registry.and_then(|r| r.behavior(name)) {
        response.scheduling = Some(s.into());
    }
    (response, is_error)
}

/// Runs one call: rejects unknown and disallowed tools and invalid arguments without touching
/// the game; otherwise runs the tool's system.
pub(crate) fn dispatch(world: &mut World, npc: Entity, call: &FunctionCall, allowed: bool) -> Dispatched {
    let error = |message: String| Dispatched {
        response: Some(FunctionResponse::error(call.id.clone(), &call.name, message)),
        is_error: true,
    };
    let found = world
        .get_resource::<NpcToolRegistry>()
        .and_then(|r| r.tools.get(&call.name))
        .map(|t| (t.runner.clone(), t.schema.clone()));
    let Some((runner, schema)) = found else {
        return error(format!("unknown tool `{}`", call.name));
    };
    if !allowed {
        return error(format!("tool `{}` is not available to this character", call.name));
    }
    let args = Value::Object(call.args.clone().unwrap_or_default());
    if let Err(message) = validate(&schema, &args) {
        return error(message);
    }
    let call_id = call.id.clone().unwrap_or_default();
    match runner(world, npc, &call_id, args) {
        ToolReply::Later => Dispatched { response: None, is_error: false },
        ToolReply::Now(result) => {
            let (response, is_error) =
                respond(world.get_resource::<NpcToolRegistry>(), call.id.clone(), &call.name, result);
            Dispatched { response: Some(response), is_error }
        }
    }
}
