//! Tool calls run (tools are systems), within the NPC's allow-list and rate limit, and their
//! answers go back to the model; deferred tools answer later with `AnswerToolCall`.

use bevy::prelude::*;

use super::components::{NpcConversation, PendingToolCalls};
use crate::messages::*;
use crate::npc::LiveNpc;
use crate::protocol::{FunctionCall, FunctionResponse};
use crate::schedule::LiveNpcSystems;
use crate::session::SessionCommand;
use crate::tools::{Dispatched, NpcToolRegistry, dispatch, respond};

/// Tools as systems: the registry (`add_npc_tool`), running queued calls in
/// [`LiveNpcSystems::Tools`], and sending deferred answers in [`LiveNpcSystems::Send`]. Part
/// of [`LiveNpcPlugins`](crate::plugin::LiveNpcPlugins).
#[derive(Clone, Copy, Debug, Default)]
pub struct NpcToolsPlugin;

impl Plugin for NpcToolsPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<NpcToolRegistry>()
            .init_resource::<PendingToolCalls>()
            .add_systems(PreUpdate, dispatch_tool_calls.in_set(LiveNpcSystems::Tools))
            .add_systems(PostUpdate, answer_deferred_calls.in_set(LiveNpcSystems::Send));
    }
}

/// Runs queued tool calls (an exclusive system: tools are systems) and answers the model.
pub fn dispatch_tool_calls(world: &mut World) {
    let calls: Vec<(Entity, FunctionCall)> = world.resource_mut::<PendingToolCalls>().0.drain(..).collect();
    if calls.is_empty() {
        return;
    }
    let t = world.resource::<Time<Real>>().elapsed_secs_f64();
    for (npc, call) in calls {
        if answer_repeat(world, npc, &call) {
            continue;
        }
        let Some(allowed) = world.get::<LiveNpc>(npc).map(|n| (n.may_use(&call.name), n.tool_calls_per_minute)) else {
            continue;
        };
        let (allowed, per_minute) = allowed;
        let limited = world.get_mut::<NpcConversation>(npc).is_some_and(|mut conv| {
            conv.recent_calls.retain(|at| t - at < 60.0);
            let over = per_minute > 0 && conv.recent_calls.len() >= per_minute as usize;
            if !over {
                conv.recent_calls.push_back(t);
            }
            over
        });
        let args = serde_json::to_string(&call.args.clone().unwrap_or_default()).unwrap_or_default();
        let call_id = call.id.clone().unwrap_or_default();
        world.write_message(NpcToolCalled {
            entity: npc,
            call_id: call_id.clone(),
            name: call.name.clone(),
            args: args.clone(),
        });
        world.trigger(NpcToolCalled {
            entity: npc,
            call_id: call_id.clone(),
            name: call.name.clone(),
            args: args.clone(),
        });
        let outcome = if limited {
            Dispatched {
                response: Some(FunctionResponse::error(
                    call.id.clone(),
                    &call.name,
                    format!("rate limit: at most {per_minute} tool calls per minute"),
                )),
                is_error: true,
            }
        } else {
            dispatch(world, npc, &call, allowed)
        };
        let Some(mut conv) = world.get_mut::<NpcConversation>(npc) else {
            continue;
        };
        conv.ran_calls.push((call_id.clone(), call.name.clone()));
        match outcome.response {
            None => conv.deferred.push((call_id, call.name.clone(), args)),
            Some(response) => {
                let finished = finish_call(&mut conv, npc, call_id, &call.name, args, response, outcome.is_error);
                world.write_message(finished.clone());
                world.trigger(finished);
            }
        }
    }
}

/// Without [`NpcToolsPlugin`]: every tool call is answered with an error at once (never left
/// waiting, which would also hold the microphone back for a BLOCKING call).
pub(super) fn refuse_tool_calls(mut pending: ResMut<PendingToolCalls>, mut convs: Query<&mut NpcConversation>) {
    for (npc, call) in pending.0.drain(..) {
        let Ok(mut conv) = convs.get_mut(npc) else {
            continue;
        };
        conv.refused_calls += 1;
        let response = FunctionResponse::error(call.id.clone(), &call.name, "this game offers no tools");
        conv.send_or_queue(SessionCommand::ToolResponse(vec![response]));
    }
}

/// Installs [`refuse_tool_calls`] when the app has no [`NpcToolsPlugin`].
pub(super) fn fallback_without_tools(app: &mut App) {
    if !app.is_plugin_added::<NpcToolsPlugin>() {
        app.init_resource::<PendingToolCalls>().add_systems(PreUpdate, refuse_tool_calls.in_set(LiveNpcSystems::Tools));
    }
}

/// A call whose id was seen before: answered again from memory, or (its tool still owes the
/// answer) left to that answer. The tool does not run twice. Returns whether it was a repeat.
fn answer_repeat(world: &mut World, npc: Entity, call: &FunctionCall) -> bool {
    let Some(id) = call.id.as_deref().filter(|id| !id.is_empty()) else {
        return false;
    };
    let Some(mut conv) = world.get_mut::<NpcConversation>(npc) else {
        return false;
    };
    let cached = conv.answered.iter().rev().find(|(i, _)| i == id).map(|(_, r)| r.clone());
    let pending = conv.deferred.iter().any(|(i, _, _)| i == id);
    if cached.is_none() && !pending {
        return false;
    }
    conv.repeated_calls += 1;
    debug!("tool call {id} ({}) delivered again: not run again", call.name);
    if let Some(response) = cached {
        conv.send_or_queue(SessionCommand::ToolResponse(vec![response]));
    }
    true
}

/// Sends a tool response (never lost: a full queue keeps it for the next frame) and describes it.
fn finish_call(
    conv: &mut NpcConversation,
    npc: Entity,
    call_id: String,
    name: &str,
    args: String,
    response: FunctionResponse<'static>,
    is_error: bool,
) -> NpcToolFinished {
    let shown = serde_json::to_string(&response.response).unwrap_or_default();
    conv.remember_answer(&response);
    let cmd = SessionCommand::ToolResponse(vec![response]);
    conv.send_or_queue(cmd);
    NpcToolFinished { entity: npc, call_id, name: name.to_owned(), response: shown, args, is_error }
}

/// Sends the answers of deferred tools.
pub fn answer_deferred_calls(
    mut commands: Commands,
    mut answers: MessageReader<AnswerToolCall>,
    registry: Res<NpcToolRegistry>,
    mut convs: Query<&mut NpcConversation>,
) {
    for answer in answers.read() {
        let Ok(mut conv) = convs.get_mut(answer.npc) else {
            debug!("tool answer for {:?} dropped: no open conversation", answer.npc);
            continue;
        };
        let Some(i) = conv.deferred.iter().position(|(id, _, _)| *id == answer.call_id) else {
            debug!("tool answer {} dropped: the call was cancelled or already answered", answer.call_id);
            continue;
        };
        let (call_id, name, args) = conv.deferred.remove(i);
        let (response, is_error) = respond(Some(&registry), Some(call_id.clone()), &name, answer.result.clone());
        let finished = finish_call(&mut conv, answer.npc, call_id, &name, args, response, is_error);
        announce(&mut commands, finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionHandle, SessionPeer};
    use crate::tools::{AppNpcToolExt, NpcTool, ToolInput, ToolResult};

    #[derive(Resource, Default)]
    struct Opened(u32);

    fn open_gate(In(_): In<ToolInput>, mut opened: ResMut<Opened>) -> ToolResult {
        opened.0 += 1;
        Ok("the gate is open".into())
    }

    fn app() -> App {
        let mut app = App::new();
        app.add_plugins((MinimalPlugins, NpcToolsPlugin))
            .init_resource::<Opened>()
            .add_message::<NpcToolCalled>()
            .add_message::<NpcToolFinished>()
            .add_message::<AnswerToolCall>()
            .add_npc_tool(NpcTool::new("open_gate", "Opens the gate.").run(open_gate));
        app
    }

    fn npc(app: &mut App, live: LiveNpc) -> (Entity, SessionPeer) {
        let (handle, peer) = SessionHandle::pair(16);
        let conv = NpcConversation::new(handle, &live, 0.0, false);
        (app.world_mut().spawn((live, conv)).id(), peer)
    }

    fn call(app: &mut App, npc: Entity, id: &str) {
        let call = FunctionCall { id: Some(id.into()), name: "open_gate".into(), args: None };
        app.world_mut().resource_mut::<PendingToolCalls>().0.push_back((npc, call));
    }

    fn responses(peer: &mut SessionPeer) -> Vec<FunctionResponse<'static>> {
        let mut out = Vec::new();
        while let Some(cmd) = peer.try_command() {
            if let SessionCommand::ToolResponse(r) = cmd {
                out.extend(r);
            }
        }
        out
    }

    fn is_error(r: &FunctionResponse<'_>) -> bool {
        r.response.as_ref().is_some_and(|m| m.contains_key("error"))
    }

    #[test]
    fn an_allowed_call_runs_the_tool_and_answers_the_model() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app, LiveNpc::new("Bram").tools(["open_gate"]));
        call(&mut app, e, "c1");
        app.update();
        assert_eq!(app.world().resource::<Opened>().0, 1);
        let answers = responses(&mut peer);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].id.as_deref(), Some("c1"));
        assert!(!is_error(&answers[0]), "{answers:?}");
        let finished: Vec<NpcToolFinished> =
            app.world_mut().resource_mut::<Messages<NpcToolFinished>>().drain().collect();
        assert!(finished.len() == 1 && !finished[0].is_error);
    }

    #[test]
    fn a_tool_the_npc_may_not_use_answers_an_error_without_running() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app, LiveNpc::new("Mira"));
        call(&mut app, e, "c1");
        app.update();
        assert_eq!(app.world().resource::<Opened>().0, 0);
        let answers = responses(&mut peer);
        assert!(answers.len() == 1 && is_error(&answers[0]), "{answers:?}");
    }

    #[test]
    fn a_call_id_delivered_again_is_answered_again_without_running_the_tool() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app, LiveNpc::new("Bram").tools(["open_gate"]));
        call(&mut app, e, "c1");
        app.update();
        call(&mut app, e, "c1");
        call(&mut app, e, "c2");
        app.update();
        assert_eq!(app.world().resource::<Opened>().0, 2, "c1 ran once, c2 once");
        let ids: Vec<Option<String>> = responses(&mut peer).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, [Some("c1".to_owned()), Some("c1".to_owned()), Some("c2".to_owned())]);
        assert_eq!(app.world().get::<NpcConversation>(e).map(NpcConversation::repeated_calls), Some(1));
    }

    #[test]
    fn without_the_tools_plugin_every_call_is_refused_not_left_waiting() {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins);
        fallback_without_tools(&mut app);
        let (e, mut peer) = npc(&mut app, LiveNpc::new("Bram").tools(["open_gate"]));
        call(&mut app, e, "c1");
        app.update();
        let answers = responses(&mut peer);
        assert!(answers.len() == 1 && is_error(&answers[0]), "{answers:?}");
        assert!(app.world().resource::<PendingToolCalls>().0.is_empty());

        // With the plugin, nothing is installed in its place.
        let mut with_tools = self::app();
        let before = with_tools.world().resource::<PendingToolCalls>().0.len();
        fallback_without_tools(&mut with_tools);
        assert_eq!(before, 0);
        let (e, mut peer) = npc(&mut with_tools, LiveNpc::new("Bram").tools(["open_gate"]));
        call(&mut with_tools, e, "c1");
        with_tools.update();
        assert!(!is_error(&responses(&mut peer)[0]), "the tool ran");
    }

    #[test]
    fn the_rate_limit_answers_an_error_past_the_limit() {
        let mut app = app();
        let (e, mut peer) = npc(&mut app, LiveNpc::new("Bram").tools(["open_gate"]).tool_rate_limit(1));
        call(&mut app, e, "c1");
        call(&mut app, e, "c2");
        app.update();
        assert_eq!(app.world().resource::<Opened>().0, 1);
        let answers = responses(&mut peer);
        assert_eq!(answers.len(), 2);
        assert!(!is_error(&answers[0]) && is_error(&answers[1]), "{answers:?}");
    }
}
